import { GatewayError } from '../errors';

/**
 * Shared state: budget counters, breaker state, cache entries, rollout state.
 *
 * Two implementations with the same behaviour: `MemoryStore` (one process, not shared across
 * nodes) and `RedisStore` (shared by every Kong node). Keys should be built with `key()` from
 * `./key`, which puts the tenant in a Redis Cluster hash tag; the Redis store adds its
 * configured prefix in front (`aigw:{tenant}:...`).
 *
 * Failures: every call settles. A store that is unreachable, slow, closed or answers with an
 * error rejects with `GatewayError('AIGW_STORE_UNAVAILABLE')`, within the configured command
 * timeout (the Redis store) or at once. A write that timed out may still have been applied.
 * Arguments a caller should never pass (a negative TTL, a fractional increment) reject with
 * `AIGW_INTERNAL`, since they are bugs rather than outages.
 *
 * New atomic operations (budget reservations and the like) are added here as methods with a
 * clear meaning, implemented in `MemoryStore` as plain code and in `RedisStore` as a Lua
 * script registered in `./scripts`. Callers never see Lua.
 */
export interface Store {
  readonly kind: 'memory' | 'redis';
  /** The value, or null when the key is absent or expired. */
  get(key: string): Promise<Buffer | null>;
  /** Stores the value (strings as UTF-8). Without ttlMs the key never expires, even if it had a TTL. */
  set(key: string, value: Buffer | string, ttlMs?: number): Promise<void>;
  delete(key: string): Promise<void>;
  /**
   * Atomic add; creates the key at 0; ttlMs applies when the key is created. Returns the new value.
   * Counters are integers (count money in micro-units): `by` must be a safe integer, and a key
   * holding anything but a decimal integer rejects with AIGW_STORE_UNAVAILABLE, as Redis does.
   */
  incrBy(key: string, by: number, ttlMs?: number): Promise<number>;
  /** Resolves when the store answers. The Redis store first waits for a connection in progress. */
  ping(): Promise<void>;
  /** Releases connections and timers; later calls reject. Safe to call twice. */
  close(): Promise<void>;
}

/** The one error every store failure becomes; `reason` must hold no secret and no client input. */
export function storeUnavailable(reason: string): GatewayError {
  return new GatewayError('AIGW_STORE_UNAVAILABLE', `state store unavailable: ${reason}`);
}

/** Validates a TTL and rounds it up to whole milliseconds (Redis PX takes integers). */
export function checkTtl(ttlMs: number | undefined): number | undefined {
  if (ttlMs === undefined) return undefined;
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw new GatewayError('AIGW_INTERNAL', 'store: ttlMs must be a positive number of milliseconds');
  }
  return Math.ceil(ttlMs);
}

export function checkIncrement(by: number): void {
  if (!Number.isSafeInteger(by)) {
    throw new GatewayError('AIGW_INTERNAL', 'store: incrBy takes a safe integer');
  }
}

/** Redis accepts exactly this spelling as an integer value (no sign on zero, no leading zeros). */
const INTEGER_TEXT = /^-?[1-9][0-9]*$|^0$/;

/** The integer a stored value holds, or undefined when it is not one (Redis: "not an integer"). */
export function parseCounter(value: Buffer): number | undefined {
  const text = value.toString('latin1');
  if (!INTEGER_TEXT.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : undefined;
}
