import type { IncomingHeaders } from './headers';

/**
 * How long a provider asks to be left alone, in ms: `retry-after-ms`, `retry-after`
 * (seconds or an HTTP date), or (`spentLimits`, for a 429) the later of OpenAI's
 * `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` durations (`1s`, `6m0s`,
 * `20ms`) when a limit is spent. A 503 with a spent limit is an outage, not a quota: its
 * reset says nothing about when the provider is back.
 */
export function retryAfterMs(
  headers: IncomingHeaders,
  { spentLimits = true, now = Date.now() }: { spentLimits?: boolean; now?: number } = {},
): number | undefined {
  const first = (name: string) => {
    const v = headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  const ms = Number(first('retry-after-ms'));
  if (first('retry-after-ms') !== undefined && Number.isFinite(ms) && ms >= 0) return Math.ceil(ms);
  const after = first('retry-after');
  if (after !== undefined) {
    const seconds = Number(after);
    if (after.trim() !== '' && Number.isFinite(seconds) && seconds >= 0) return Math.ceil(seconds * 1000);
    const date = Date.parse(after);
    if (Number.isFinite(date)) return Math.max(0, date - now);
  }
  if (!spentLimits) return undefined;
  let reset: number | undefined;
  for (const kind of ['requests', 'tokens']) {
    if (first(`x-ratelimit-remaining-${kind}`) !== '0') continue;
    const d = durationMs(first(`x-ratelimit-reset-${kind}`));
    if (d !== undefined) reset = Math.max(reset ?? 0, d);
  }
  return reset;
}

const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1 };

/** `6m0s`, `1.5s`, `20ms` → milliseconds. */
export function durationMs(text: string | undefined): number | undefined {
  if (!text || !/^(\d+(\.\d+)?(h|ms|m|s))+$/.test(text)) return undefined;
  let total = 0;
  for (const [, n, , unit] of text.matchAll(/(\d+(\.\d+)?)(h|ms|m|s)/g)) total += Number(n) * UNIT_MS[unit!]!;
  return Math.ceil(total);
}
