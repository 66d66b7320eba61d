import { NANO_USD } from '../../lib/llm/prices';
import type { BudgetCharge, ReserveResult } from '../../lib/store';
import type { Counter } from './charges';
import { resetText } from './windows';

/**
 * OpenAI-style rate-limit headers for the tightest limit of each kind (tokens, cost), as the
 * request left it: `x-ratelimit-{limit,remaining,reset}-tokens` and `-cost-usd`. They replace
 * the provider's, which describe the gateway's own key, not the client's budget.
 */
export function budgetHeaders(
  counters: readonly Counter[],
  charges: readonly BudgetCharge[],
  result: ReserveResult,
  now: number,
): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const kind of ['tokens', 'cost-usd'] as const) {
    const i = tightest(
      charges,
      result,
      (k) => (counters[k]!.limit.unit === 'cost_usd') === (kind === 'cost-usd'),
    );
    if (i === undefined) continue;
    const remaining = Math.max(0, charges[i]!.cap - (result.used[i] ?? 0));
    const show = (n: number) => (kind === 'tokens' ? String(n) : usd(n));
    headers[`x-ratelimit-limit-${kind}`] = show(charges[i]!.cap);
    headers[`x-ratelimit-remaining-${kind}`] = show(remaining);
    headers[`x-ratelimit-reset-${kind}`] = resetText(counters[i]!.slot.resetsAt - now);
  }
  return headers;
}

/** Index of the hard charge with the least room left (among those `among` accepts), if any. */
export function tightest(
  charges: readonly BudgetCharge[],
  result: ReserveResult,
  among: (i: number) => boolean = () => true,
): number | undefined {
  let best: number | undefined;
  let room = Infinity;
  charges.forEach((charge, i) => {
    const left = charge.cap - (result.used[i] ?? 0);
    if (charge.hard && among(i) && left < room) {
      room = left;
      best = i;
    }
  });
  return best;
}

/** Nano-USD as USD with up to 6 decimals, rounded down (never promises more than is left). */
function usd(nano: number): string {
  return (Math.floor(nano / 1_000) / (NANO_USD / 1_000)).toFixed(6).replace(/\.?0+$/, '');
}
