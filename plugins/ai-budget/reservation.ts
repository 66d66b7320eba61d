import type { BudgetHold, BudgetSummary, RelayOutcome, RouteDecision, Target } from '../../lib/context';
import type { Logger } from '../../lib/log/logger';
import type { BudgetCharge } from '../../lib/store';
import { actualAmount, type Counter, chargeFor, type RequestCost } from './charges';
import type { BudgetStore } from './leases';

export interface ReservationParts {
  summary: BudgetSummary;
  /** Where the reservation was made: the shared store, or this node's own while the shared one is down. */
  store: BudgetStore;
  id: string;
  counters: Counter[];
  /** The charges as reserved (same order as counters). */
  charges: BudgetCharge[];
  cost: RequestCost;
  /** Output tokens reserved. */
  output: number;
  /** Share of the hard caps this request may use (priority class; times the local share when alone). */
  share: number;
  /** The target the reservation was priced for. */
  priced: Target;
  route: RouteDecision;
  holdMs: number;
  logger: Logger;
  now: () => number;
}

/**
 * One request's budget reservation, as the relay sees it: fallback hops to pricier targets
 * reserve the difference, and the end of the exchange settles it with the actual usage.
 */
export class Reservation implements BudgetHold {
  private readonly extra: string[] = [];
  /** The most per counter this request may cost so far (grows when a pricier target is tried). */
  private readonly ceiling: number[];
  private settled = false;

  readonly summary: BudgetSummary;

  constructor(private readonly parts: ReservationParts) {
    this.summary = parts.summary;
    this.ceiling = parts.charges.map((c) => c.fixed + c.perOutput * parts.output);
  }

  async retarget(target: Target): Promise<boolean> {
    const p = this.parts;
    if (target === p.priced) return true;
    const costsMoney = p.counters.some((c) => c.limit.unit === 'cost_usd');
    if (costsMoney && !target.prices) {
      p.logger.error(
        { target: target.name },
        "ai-budget: fallback target has no price (set prices on ai-router's target); it is skipped",
      );
      return false;
    }
    const now = p.now();
    const charges: BudgetCharge[] = [];
    const raised: number[] = [];
    p.counters.forEach((counter, i) => {
      const charge = chargeFor(counter, { ...p.cost, prices: target.prices }, p.share, now);
      const most = charge.fixed + charge.perOutput * p.output;
      const more = Math.max(0, most - this.ceiling[i]!);
      raised.push(Math.max(most, this.ceiling[i]!));
      if (more > 0) charges.push({ ...charge, fixed: more, perOutput: 0 });
    });
    if (charges.length === 0) return true;
    const id = `${p.id}:${this.extra.length + 1}`;
    try {
      const result = await p.store.reserve({ id, charges, output: 0, minOutput: 0, holdMs: p.holdMs });
      if (!result.ok) return false;
    } catch (err) {
      p.logger.warn({ err: String(err) }, 'ai-budget: fallback not re-priced, the store failed');
      return false;
    }
    this.extra.push(id);
    raised.forEach((v, i) => {
      this.ceiling[i] = v;
    });
    return true;
  }

  async settle(outcome: RelayOutcome | undefined): Promise<void> {
    if (this.settled) return;
    this.settled = true;
    const p = this.parts;
    const answered = outcome ? targetNamed(p.route, outcome.target) : undefined;
    const prices = answered?.prices ?? p.priced.prices;
    const actual = p.counters.map((counter, i) => ({
      key: counter.keys[0]!,
      amount: actualAmount(counter.limit.unit, outcome?.usage, prices),
      ttlMs: p.charges[i]!.ttlMs,
    }));
    const over = actual.findIndex((a, i) => a.amount > this.ceiling[i]!);
    if (over >= 0) {
      // The prompt count was an estimate (non-OpenAI tokenizers): log what went past the hold.
      p.logger.warn(
        { limit: p.counters[over]!.limit.name, reserved: this.ceiling[over], actual: actual[over]!.amount },
        'ai-budget: actual usage above the reservation',
      );
    }
    try {
      await p.store.settle(p.id, actual);
      for (const id of this.extra) {
        await p.store.settle(
          id,
          actual.map((a) => ({ ...a, amount: 0 })),
        );
      }
    } catch (err) {
      // The holds expire after hold_ms; the usage of this request is not counted.
      p.logger.error(
        { err: String(err), reservation: p.id },
        'ai-budget: usage not recorded, the store failed',
      );
    }
  }
}

function targetNamed(route: RouteDecision, name: string): Target | undefined {
  return route.catalog?.get(name) ?? route.targets.find((t) => t.name === name);
}
