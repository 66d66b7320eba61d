import { randomBytes } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from '../../lib/log/logger';
import type { ActualUsage, BudgetCharge, ReserveRequest, ReserveResult, Store } from '../../lib/store';
import type { BudgetConfig } from '../../schemas/ai-budget';

/** What a reservation needs of a store: ai-budget reserves and settles, nothing else. */
export type BudgetStore = Pick<Store, 'reserve' | 'settle'>;

export interface LeaseSettings {
  /** A lease serves requests this long, then is settled once its requests are. */
  maxAgeMs: number;
  /** A lease takes at most this share of a hard limit's headroom. */
  headroomShare: number;
  /** A lease covers at most this many requests like the one that asked for it (fewer when traffic is lighter). */
  requests: number;
  /** The reservations' hold_ms: the lease's hold outlives its last request by this much. */
  holdMs: number;
}

export function leaseSettings(config: BudgetConfig): LeaseSettings {
  return {
    maxAgeMs: config.lease.max_age_ms,
    headroomShare: config.lease.headroom_share,
    requests: config.lease.requests,
    holdMs: config.hold_ms,
  };
}

/**
 * One lease: a reservation this node made in the store for several requests, each charged
 * to it locally. It is settled in the store with what its requests really used.
 */
interface Lease {
  id: string;
  /** The counters' current buckets (the charges' first keys), in charge order. */
  keys: string[];
  ttlMs: number[];
  /** Held in the store, per counter. */
  amounts: number[];
  /** Held by requests in flight, per counter. */
  outstanding: number[];
  /** Actual usage of the requests settled so far, per counter. */
  consumed: number[];
  /** Each window's total right after the grant, the lease included. */
  usedAtGrant: number[];
  grantedAt: number;
  retired: boolean;
}

interface Grant {
  lease: Lease;
  amounts: number[];
}

/**
 * Budget reservations served from node-local leases: once a set of counters is busy (a few
 * reservations per `maxAgeMs`), this node reserves a slice of their headroom in the store (one
 * round trip, off the request's path) and admits the next requests against that slice in
 * memory, with no round trip. A lease is a store reservation like any other, so the caps hold
 * across nodes; only the share of the headroom it takes is unavailable to other nodes while it
 * lives. Near a cap no lease is taken, and every request reserves exactly in the store, as
 * without leases.
 *
 * Trade-offs: usage served from a lease reaches the store when the lease is settled (at most
 * `maxAgeMs` after its last request ends); a node that dies loses that usage, and its lease is
 * released by expiry. Response headers computed from a lease do not see other nodes' usage
 * since the grant.
 */
export class LeasedBudget implements BudgetStore {
  /** The lease serving each set of counters (by signature). */
  private readonly active = new Map<string, Lease>();
  /** Retired leases waiting for their requests to settle. */
  private readonly draining = new Set<Lease>();
  /** Signatures whose lease is being reserved. */
  private readonly acquiring = new Set<string>();
  /** Reservations per traffic key in this and the last max-age period: how busy the counters are. */
  private readonly traffic = new Map<string, { since: number; count: number; previous: number }>();
  private readonly grants = new Map<string, Grant>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly store: BudgetStore,
    private readonly settings: LeaseSettings,
    private readonly logger: Logger,
    private readonly onLeased: () => void = () => {},
    private readonly now: () => number = Date.now,
  ) {
    this.timer = setInterval(() => this.sweep(), Math.max(50, settings.maxAgeMs / 2)).unref();
  }

  async reserve(req: ReserveRequest): Promise<ReserveResult> {
    const sig = signature(req.charges);
    const rate = this.count(trafficKey(req.charges));
    const local = this.fromLease(sig, req, rate);
    if (local) return local;
    const result = await this.store.reserve(req);
    if (result.ok && rate >= MIN_BUSY) this.acquire(sig, req, result.used, rate);
    return result;
  }

  async settle(id: string, actual: ActualUsage[]): Promise<void> {
    const grant = this.grants.get(id);
    if (!grant) return this.store.settle(id, actual);
    this.grants.delete(id);
    const { lease, amounts } = grant;
    lease.keys.forEach((key, i) => {
      lease.outstanding[i]! -= amounts[i]!;
      lease.consumed[i]! += actual.find((a) => a.key === key)?.amount ?? 0;
    });
    if (lease.retired) this.releaseIfIdle(lease);
  }

  /** Retires every lease (each is settled once its requests are) and takes no new one. */
  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    for (const lease of this.active.values()) this.retire(lease);
    this.active.clear();
  }

  /** Leases this node holds in the store: serving, or waiting for their last requests. */
  get leases(): number {
    return this.active.size + this.draining.size;
  }

  // ------------------------------------------------------------------ internals

  /** The whole request charged to the live lease of its counters, or undefined when it does not fit. */
  private fromLease(sig: string, req: ReserveRequest, rate: number): ReserveResult | undefined {
    const lease = this.active.get(sig);
    if (!lease) return undefined;
    const age = this.now() - lease.grantedAt;
    if (age > this.settings.maxAgeMs) {
      this.active.delete(sig);
      this.retire(lease);
      return undefined;
    }
    const amounts = req.charges.map((c) => c.fixed + c.perOutput * req.output);
    if (amounts.some((amount, i) => amount > free(lease, i))) return undefined;
    amounts.forEach((amount, i) => {
      lease.outstanding[i]! += amount;
    });
    this.grants.set(req.id, { lease, amounts });
    this.onLeased();
    // Half spent or half its life gone: the next lease is reserved now, so requests do not wait for it.
    const halfSpent = amounts.some((amount, i) => amount > 0 && free(lease, i) < lease.amounts[i]! / 2);
    if (halfSpent || age > this.settings.maxAgeMs / 2) {
      this.acquire(
        sig,
        req,
        lease.keys.map((_, i) => estimatedUsed(lease, i)),
        rate,
      );
    }
    return { ok: true, output: req.output, used: lease.keys.map((_, i) => estimatedUsed(lease, i)) };
  }

  /**
   * Reserves a lease for the request's counters in the background, sized for the requests
   * `rate` says one period brings (at most `requests`), if the headroom allows one.
   */
  private acquire(sig: string, req: ReserveRequest, used: number[], rate: number): void {
    if (this.closed || this.acquiring.has(sig)) return;
    const sizes: number[] = [];
    for (const [i, charge] of req.charges.entries()) {
      const amount = charge.fixed + charge.perOutput * req.output;
      const wanted = amount * Math.min(this.settings.requests, 2 * rate);
      const size = charge.hard
        ? Math.min(wanted, Math.floor((charge.cap - used[i]!) * this.settings.headroomShare))
        : wanted;
      // Too close to a cap: each request reserves exactly, so no node holds what another needs.
      if (size < 2 * amount || !Number.isSafeInteger(size)) return;
      sizes.push(size);
    }
    const charges: BudgetCharge[] = req.charges.map((c, i) => ({ ...c, fixed: sizes[i]!, perOutput: 0 }));
    const id = `lease:${randomBytes(9).toString('base64url')}`;
    this.acquiring.add(sig);
    // The store call starts after the current request's turn: never on its path.
    nextTurn()
      .then(() =>
        this.store.reserve({
          id,
          charges,
          output: 0,
          minOutput: 0,
          holdMs: this.settings.maxAgeMs + this.settings.holdMs,
        }),
      )
      .then((result) => {
        if (!result.ok) return;
        if (this.closed) {
          // Closed while the store answered: the slice goes back at once.
          const none = charges.map((c) => ({ key: c.keys[0]!, amount: 0, ttlMs: c.ttlMs }));
          return this.store.settle(id, none);
        }
        const previous = this.active.get(sig);
        if (previous) this.retire(previous);
        this.active.set(sig, {
          id,
          keys: charges.map((c) => c.keys[0]!),
          ttlMs: charges.map((c) => c.ttlMs),
          amounts: sizes,
          outstanding: sizes.map(() => 0),
          consumed: sizes.map(() => 0),
          usedAtGrant: result.used,
          grantedAt: this.now(),
          retired: false,
        });
      })
      .catch((err: unknown) => this.logger.debug({ err: String(err) }, 'ai-budget: lease not reserved'))
      .finally(() => this.acquiring.delete(sig));
  }

  private retire(lease: Lease): void {
    lease.retired = true;
    this.draining.add(lease);
    this.releaseIfIdle(lease);
  }

  /** Settles a retired lease in the store once none of its requests is in flight. */
  private releaseIfIdle(lease: Lease): void {
    if (lease.outstanding.some((n) => n > 0) || !this.draining.delete(lease)) return;
    const actual = lease.keys.map((key, i) => ({ key, amount: lease.consumed[i]!, ttlMs: lease.ttlMs[i]! }));
    nextTurn()
      .then(() => this.store.settle(lease.id, actual))
      .catch((err: unknown) => {
        // Its hold expires after hold_ms; the usage it served is not counted.
        this.logger.error(
          { err: String(err), lease: lease.id },
          'ai-budget: lease usage not recorded, the store failed',
        );
      });
  }

  private sweep(): void {
    const now = this.now();
    for (const [sig, lease] of this.active) {
      if (now - lease.grantedAt > this.settings.maxAgeMs) {
        this.active.delete(sig);
        this.retire(lease);
      }
    }
    for (const [sig, t] of this.traffic)
      if (now - t.since > 2 * this.settings.maxAgeMs) this.traffic.delete(sig);
    // A lease whose store hold has expired still waits for requests that hold_ms says are dead
    // (never settled): record what the others used; a late settlement goes to the store alone.
    for (const lease of this.draining) {
      if (now - lease.grantedAt <= this.settings.maxAgeMs + this.settings.holdMs) continue;
      for (const [id, grant] of this.grants) if (grant.lease === lease) this.grants.delete(id);
      lease.outstanding.fill(0);
      this.releaseIfIdle(lease);
    }
  }

  /** Counts a reservation of these counters; returns the busier of this period and the last. */
  private count(key: string): number {
    const now = this.now();
    let t = this.traffic.get(key);
    if (!t) {
      t = { since: now, count: 0, previous: 0 };
      this.traffic.set(key, t);
    }
    if (now - t.since > this.settings.maxAgeMs) {
      t.previous = now - t.since > 2 * this.settings.maxAgeMs ? 0 : t.count;
      t.since = now;
      t.count = 0;
    }
    t.count++;
    return Math.max(t.count, t.previous);
  }
}

/** Reservations per period from which a lease saves more store calls than it costs. */
const MIN_BUSY = 4;

/** The counters a reservation touches, with the cap each is held to (a priority class changes it). */
function signature(charges: readonly BudgetCharge[]): string {
  return charges.map((c) => `${c.keys[0]}|${c.cap}|${c.hard ? 'h' : 's'}`).join(' ');
}

/**
 * The signature without the windows' buckets (the last part of a budget key, see budgetKey):
 * a busy counter stays busy when its window rolls over to a new bucket.
 */
function trafficKey(charges: readonly BudgetCharge[]): string {
  return charges
    .map((c) => `${c.keys[0]!.slice(0, c.keys[0]!.lastIndexOf(':'))}|${c.cap}|${c.hard ? 'h' : 's'}`)
    .join(' ');
}

function free(lease: Lease, i: number): number {
  return lease.amounts[i]! - lease.outstanding[i]! - lease.consumed[i]!;
}

/** The window's total as this node sees it: at the grant, with the unused part of the lease taken out. */
function estimatedUsed(lease: Lease, i: number): number {
  return lease.usedAtGrant[i]! - free(lease, i);
}
