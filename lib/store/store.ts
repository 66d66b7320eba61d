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
  /**
   * Budget reservation, atomic: expired reservations on every key are released first; then
   * each hard charge must fit `fixed + perOutput * n` under its cap, where `n` is the largest
   * output (at most `output`, at least `minOutput`) every hard charge affords. When it fits,
   * `fixed + perOutput * n` is held on the first key of every charge (soft ones too) until
   * `settle(id)` or `holdMs`, and the first keys' TTLs are extended to `ttlMs`. When it does
   * not, nothing is written. Amounts are integers below 2^53 (the Redis store adds them in Lua,
   * whose numbers are doubles), and so must every window's total stay.
   */
  reserve(req: ReserveRequest): Promise<ReserveResult>;
  /**
   * Ends a reservation: its hold on each key of `actual` is released and the actual usage is
   * added to that key, whose TTL is extended to `ttlMs`. `actual` names the first key of each
   * charge as reserved; a hold on a key not named stays until it expires. A reservation that
   * already expired only adds the usage. Actual may exceed what was reserved. Call it once: a
   * second call adds the usage again.
   */
  settle(id: string, actual: ActualUsage[]): Promise<void>;
  /** Committed usage and live reservations of one counter key (expired reservations not counted). */
  budgetUsage(key: string): Promise<{ used: number; held: number }>;
  /** Clears one counter key: usage and reservations. */
  resetBudget(key: string): Promise<void>;
  /**
   * Cache entries (ai-semantic-cache). A namespace `ns` is a key built with key() (its hash tag
   * keeps the namespace in one Redis Cluster slot); it holds entries by id, in write order.
   * Stores the entry (replacing one of the same id, which then counts as the newest), drops
   * entries older than `ttlMs`, then evicts the oldest past `maxEntries`. Atomic.
   */
  cachePut(ns: string, id: string, value: Buffer, limits: CacheLimits): Promise<CachePutResult>;
  /** One entry, or null when absent or older than `ttlMs`. */
  cacheGet(ns: string, id: string, ttlMs: number): Promise<Buffer | null>;
  /**
   * Entries written after `cursor` (0: from the start), oldest first, at most `limit`, none older
   * than `ttlMs`. Continue with the answer's `cursor` while `more` is true: a node learns what
   * other nodes wrote this way, and rebuilds its view after a restart.
   */
  cacheScan(ns: string, cursor: number, limit: number, ttlMs: number): Promise<CacheScan>;
  /** Removes one entry; true when it was there. */
  cacheDelete(ns: string, id: string): Promise<boolean>;
  /** Removes every entry of the namespace; returns how many there were. */
  cachePurge(ns: string): Promise<number>;
  /** Entries of the namespace not older than `ttlMs`. */
  cacheCount(ns: string, ttlMs: number): Promise<number>;
  /** Resolves when the store answers. The Redis store first waits for a connection in progress. */
  ping(): Promise<void>;
  /** Releases connections and timers; later calls reject. Safe to call twice. */
  close(): Promise<void>;
}

/** One limit's part in a reservation. Amounts are integers in the limit's unit (tokens, or nano-USD). */
export interface BudgetCharge {
  /**
   * Counter keys of the limit's window, built with key(): the first is the current bucket, where
   * this reservation and its usage go; the others are earlier buckets still inside a sliding window,
   * which count toward the cap but are not written. All keys of one call share one hash tag.
   */
  keys: string[];
  /** Most the window may hold (committed usage + live reservations). */
  cap: number;
  /** Hard limits refuse; soft limits are charged but never refuse. */
  hard: boolean;
  /** Cost whatever the answer's length (the prompt). */
  fixed: number;
  /** Cost per output token (0 when output does not count toward this limit). */
  perOutput: number;
  /** The current bucket's keys expire this long from now (the window's end plus a grace). */
  ttlMs: number;
}

export interface ReserveRequest {
  /** Unique per request. */
  id: string;
  /** At most MAX_CHARGES. */
  charges: BudgetCharge[];
  /** Output tokens wanted (max_tokens, or the configured default). */
  output: number;
  /** Fewest output tokens worth reserving when the whole `output` does not fit; `output` means no clamping. 0 is allowed. */
  minOutput: number;
  /** A reservation not settled within this time is released automatically (its request died). */
  holdMs: number;
}

export interface ReserveResult {
  /** Whether the reservation was made. */
  ok: boolean;
  /** Output tokens reserved: `output`, or fewer (≥ minOutput) when clamped; 0 when refused. */
  output: number;
  /** Per charge, in order: what its window holds after this call (committed + live reservations, over all its keys). */
  used: number[];
  /** When refused: index of the first hard charge that could not fit even minOutput. */
  refusedBy?: number;
}

/** What one charge of a reservation actually cost, for `settle`. */
export interface ActualUsage {
  /** The charge's first key, as reserved. */
  key: string;
  amount: number;
  /** As the charge's `ttlMs`. */
  ttlMs: number;
}

/** What one cache namespace keeps: entries live `ttlMs`, and at most `maxEntries` of them (oldest evicted first). */
export interface CacheLimits {
  ttlMs: number;
  maxEntries: number;
}

export interface CachePutResult {
  /** Entries removed by this write: expired ones and the oldest past `maxEntries`. */
  removed: number;
}

/** One cache entry as a scan returns it. */
export interface CacheRecord {
  id: string;
  value: Buffer;
  /** Its place in the namespace's write order (strictly increasing; a store clock in microseconds). */
  cursor: number;
}

export interface CacheScan {
  records: CacheRecord[];
  /** Pass to the next scan: the last record's cursor, or the one given when nothing was new. */
  cursor: number;
  /** More records follow this page. */
  more: boolean;
}

/** Most records one cache scan returns. */
export const MAX_CACHE_SCAN = 1000;

/** Validates a cache call's arguments; throws AIGW_INTERNAL on a caller's bug. */
export function checkCacheCall(
  op: string,
  ns: string,
  args: { id?: string; ttlMs?: number; maxEntries?: number; limit?: number; cursor?: number },
): void {
  if (typeof ns !== 'string' || hashTag(ns) === '') {
    throw internal(`${op}: a cache namespace is built with key() and carries a hash tag`);
  }
  if (args.id !== undefined && (typeof args.id !== 'string' || args.id === '')) {
    throw internal(`${op}: id must be a non-empty string`);
  }
  if (args.ttlMs !== undefined) checkDuration('ttlMs', args.ttlMs);
  if (args.maxEntries !== undefined && (!Number.isSafeInteger(args.maxEntries) || args.maxEntries < 1)) {
    throw internal(`${op}: maxEntries must be a positive integer`);
  }
  if (
    args.limit !== undefined &&
    (!Number.isSafeInteger(args.limit) || args.limit < 1 || args.limit > MAX_CACHE_SCAN)
  ) {
    throw internal(`${op}: limit must be an integer from 1 to ${MAX_CACHE_SCAN}`);
  }
  if (args.cursor !== undefined && (!Number.isSafeInteger(args.cursor) || args.cursor < 0)) {
    throw internal(`${op}: cursor must be a non-negative safe integer`);
  }
}

/** Most charges (and settled keys) one call may carry. */
export const MAX_CHARGES = 64;

/** The one error every store failure becomes; `reason` must hold no secret and no client input. */
export function storeUnavailable(reason: string): GatewayError {
  return new GatewayError('AIGW_STORE_UNAVAILABLE', `state store unavailable: ${reason}`);
}

/** Validates a TTL and rounds it up to whole milliseconds (Redis PX takes integers). */
export function checkTtl(ttlMs: number | undefined): number | undefined {
  if (ttlMs === undefined) return undefined;
  return checkDuration('ttlMs', ttlMs);
}

function checkDuration(name: string, ms: number): number {
  if (!Number.isFinite(ms) || ms <= 0) {
    throw new GatewayError('AIGW_INTERNAL', `store: ${name} must be a positive number of milliseconds`);
  }
  return Math.ceil(ms);
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

/**
 * Validates a reservation; returns it with durations rounded up to whole milliseconds. Every
 * amount must be a safe integer, and so must the most a charge can hold (fixed + perOutput *
 * output), so that Lua's doubles count it exactly.
 */
export function checkReserve(req: ReserveRequest): ReserveRequest {
  checkId('reserve', req.id);
  if (!Array.isArray(req.charges) || req.charges.length > MAX_CHARGES) {
    throw internal(`reserve takes at most ${MAX_CHARGES} charges`);
  }
  checkAmount('reserve', 'output', req.output);
  checkAmount('reserve', 'minOutput', req.minOutput);
  if (req.minOutput > req.output) throw internal('reserve: minOutput must not exceed output');
  const charges = req.charges.map((charge) => {
    if (!Array.isArray(charge.keys) || charge.keys.length === 0) {
      throw internal('reserve: every charge needs at least one key');
    }
    if (new Set(charge.keys).size !== charge.keys.length) {
      throw internal('reserve: a key must not appear twice in one charge');
    }
    checkAmount('reserve', 'cap', charge.cap);
    checkAmount('reserve', 'fixed', charge.fixed);
    checkAmount('reserve', 'perOutput', charge.perOutput);
    if (typeof charge.hard !== 'boolean') throw internal('reserve: hard must be a boolean');
    if (!Number.isSafeInteger(charge.fixed + charge.perOutput * req.output)) {
      throw internal('reserve: fixed + perOutput * output must be a safe integer');
    }
    return { ...charge, ttlMs: checkDuration('ttlMs', charge.ttlMs) };
  });
  checkBudgetKeys(
    'reserve',
    charges.flatMap((c) => c.keys),
  );
  return { ...req, charges, holdMs: checkDuration('holdMs', req.holdMs) };
}

/** Validates a settlement; returns it with TTLs rounded up to whole milliseconds. */
export function checkSettle(id: string, actual: ActualUsage[]): ActualUsage[] {
  checkId('settle', id);
  if (!Array.isArray(actual) || actual.length > MAX_CHARGES) {
    throw internal(`settle takes at most ${MAX_CHARGES} keys`);
  }
  checkBudgetKeys(
    'settle',
    actual.map((a) => a.key),
  );
  return actual.map((a) => {
    checkAmount('settle', 'amount', a.amount);
    return { ...a, ttlMs: checkDuration('ttlMs', a.ttlMs) };
  });
}

/**
 * Budget counter keys must carry a hash tag (key() gives each the tenant's), and the keys of
 * one call must share it: a Lua script may only touch keys of one Redis Cluster slot, and the
 * Redis store keeps each counter's reservations beside it under the same tag.
 */
export function checkBudgetKeys(op: string, keys: string[]): void {
  let tag: string | undefined;
  for (const k of keys) {
    const own = typeof k === 'string' ? hashTag(k) : '';
    if (own === '') throw internal(`${op}: budget keys are built with key() and carry a hash tag`);
    if (tag !== undefined && own !== tag) throw internal(`${op}: all keys of one call share one hash tag`);
    tag = own;
  }
}

/** What Redis Cluster hashes: the text between the first `{` and the next `}`, or '' when absent or empty. */
function hashTag(k: string): string {
  const open = k.indexOf('{');
  if (open < 0) return '';
  const close = k.indexOf('}', open + 1);
  return close < 0 ? '' : k.slice(open + 1, close);
}

function checkId(op: string, id: string): void {
  if (typeof id !== 'string' || id === '') throw internal(`${op}: id must be a non-empty string`);
}

function checkAmount(op: string, name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw internal(`${op}: ${name} must be a non-negative safe integer`);
  }
}

function internal(message: string): GatewayError {
  return new GatewayError('AIGW_INTERNAL', `store: ${message}`);
}
