import { LRUCache } from 'lru-cache';
import {
  type ActualUsage,
  type CacheLimits,
  type CachePutResult,
  type CacheScan,
  checkBudgetKeys,
  checkCacheCall,
  checkIncrement,
  checkReserve,
  checkSettle,
  checkTtl,
  parseCounter,
  type ReserveRequest,
  type ReserveResult,
  type Store,
  storeUnavailable,
} from './store';

export interface MemoryStoreOptions {
  /** Entries kept before the least recently used one is evicted. */
  maxEntries?: number;
  /** How often expired entries nobody reads again are dropped. */
  sweepIntervalMs?: number;
  /** Monotonic clock in ms; tests inject their own. */
  now?: () => number;
}

interface Entry {
  value: Buffer;
  /** Clock time at which the entry stops existing; Infinity for no TTL. */
  expiresAt: number;
  /** Live budget reservations on this counter; they go with it. */
  holds?: Holds;
}

interface Holds {
  /** Sum of the amounts below. */
  total: number;
  byId: Map<string, { amount: number; expiresAt: number }>;
}

/** One cache namespace: entries by id, and their ids in write order (stale items skipped, compacted now and then). */
interface CacheSpace {
  entries: Map<string, { value: Buffer; cursor: number }>;
  order: Array<{ id: string; cursor: number }>;
  /** Index of the first item of `order` still to consider. */
  start: number;
  /** Cursor of the last write. */
  last: number;
}

export const DEFAULT_MAX_ENTRIES = 100_000;
const DEFAULT_SWEEP_INTERVAL_MS = 10_000;

/**
 * The embedded default: state lives in this process only. It is NOT shared across Kong nodes
 * or suite server restarts, so budgets and breakers are per node with it; use Redis for a
 * cluster. Expired entries vanish on read and in a periodic sweep; past `maxEntries` the least
 * recently used entry is evicted (a cache can lose entries; a counter can restart at 0).
 */
export class MemoryStore implements Store {
  readonly kind = 'memory';
  private readonly entries: LRUCache<string, Entry>;
  /** Cache namespaces, each bounded by its own maxEntries (not by the LRU above). */
  private readonly caches = new Map<string, CacheSpace>();
  private readonly now: () => number;
  private readonly sweepTimer: NodeJS.Timeout;
  private closed = false;

  constructor(options: MemoryStoreOptions = {}) {
    this.entries = new LRUCache<string, Entry>({ max: options.maxEntries ?? DEFAULT_MAX_ENTRIES });
    this.now = options.now ?? (() => performance.now());
    this.sweepTimer = setInterval(() => this.sweep(), options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS);
    // The sweep must never keep the process alive on its own.
    this.sweepTimer.unref();
  }

  /** Entries held, including expired ones not yet swept. */
  get size(): number {
    return this.entries.size;
  }

  async get(key: string): Promise<Buffer | null> {
    this.checkOpen();
    const entry = this.live(key);
    // A copy, so a caller that mutates the buffer cannot change what is stored (as with Redis).
    return entry ? Buffer.from(entry.value) : null;
  }

  async set(key: string, value: Buffer | string, ttlMs?: number): Promise<void> {
    this.checkOpen();
    const ttl = checkTtl(ttlMs);
    this.entries.set(key, { value: Buffer.from(value), expiresAt: this.expiry(ttl) });
  }

  async delete(key: string): Promise<void> {
    this.checkOpen();
    this.entries.delete(key);
  }

  async incrBy(key: string, by: number, ttlMs?: number): Promise<number> {
    this.checkOpen();
    checkIncrement(by);
    const ttl = checkTtl(ttlMs);
    const entry = this.live(key);
    const current = entry ? parseCounter(entry.value) : 0;
    if (current === undefined) throw storeUnavailable('value is not an integer');
    const next = current + by;
    if (!Number.isSafeInteger(next)) throw storeUnavailable('counter out of safe integer range');
    const value = Buffer.from(String(next));
    if (entry) {
      entry.value = value; // keeps the TTL set when the key was created
    } else {
      this.entries.set(key, { value, expiresAt: this.expiry(ttl) });
    }
    return next;
  }

  async reserve(req: ReserveRequest): Promise<ReserveResult> {
    this.checkOpen();
    const { id, charges, output, minOutput, holdMs } = checkReserve(req);
    const now = this.now();
    // Every key is read (and checked) before anything is written.
    const totals = new Map<string, number>();
    for (const charge of charges) {
      for (const k of charge.keys) if (!totals.has(k)) totals.set(k, this.budgetTotal(k, now));
    }
    const windowTotal = (keys: string[]) => keys.reduce((sum, k) => sum + totals.get(k)!, 0);

    let n = output;
    let refusedBy: number | undefined;
    charges.forEach((charge, i) => {
      if (!charge.hard) return;
      const fits = affordable(charge.cap - windowTotal(charge.keys) - charge.fixed, charge.perOutput, output);
      if (fits < minOutput && refusedBy === undefined) refusedBy = i;
      n = Math.min(n, fits);
    });
    if (refusedBy !== undefined) {
      return { ok: false, output: 0, used: charges.map((c) => windowTotal(c.keys)), refusedBy };
    }

    for (const charge of charges) {
      const amount = charge.fixed + charge.perOutput * n;
      const entry = this.counter(charge.keys[0], charge.ttlMs);
      entry.holds ??= { total: 0, byId: new Map() };
      // An id held twice on one key (two charges sharing a counter) holds both amounts.
      const previous = entry.holds.byId.get(id)?.amount ?? 0;
      entry.holds.byId.set(id, { amount: previous + amount, expiresAt: now + holdMs });
      entry.holds.total += amount;
      totals.set(charge.keys[0], totals.get(charge.keys[0])! + amount);
    }
    return { ok: true, output: n, used: charges.map((c) => windowTotal(c.keys)) };
  }

  async settle(id: string, actual: ActualUsage[]): Promise<void> {
    this.checkOpen();
    const usage = checkSettle(id, actual);
    const now = this.now();
    // Every counter is checked before anything is written, as the Redis script does.
    const after = new Map<string, number>();
    for (const { key, amount } of usage) {
      const value = (after.get(key) ?? this.committed(key)) + amount;
      if (!Number.isSafeInteger(value)) throw storeUnavailable('counter out of safe integer range');
      after.set(key, value);
    }
    for (const { key, amount, ttlMs } of usage) {
      const entry = this.counter(key, ttlMs);
      this.releaseExpired(entry, now);
      const mine = entry.holds?.byId.get(id);
      if (entry.holds && mine) {
        entry.holds.byId.delete(id);
        entry.holds.total -= mine.amount;
      }
      entry.value = Buffer.from(String(this.committed(key) + amount));
    }
  }

  async budgetUsage(key: string): Promise<{ used: number; held: number }> {
    this.checkOpen();
    checkBudgetKeys('budgetUsage', [key]);
    const used = this.committed(key);
    const entry = this.live(key);
    if (entry === undefined) return { used, held: 0 };
    this.releaseExpired(entry, this.now());
    return { used, held: entry.holds?.total ?? 0 };
  }

  async resetBudget(key: string): Promise<void> {
    this.checkOpen();
    checkBudgetKeys('resetBudget', [key]);
    this.entries.delete(key);
  }

  async cachePut(ns: string, id: string, value: Buffer, limits: CacheLimits): Promise<CachePutResult> {
    this.checkOpen();
    checkCacheCall('cachePut', ns, { id, ttlMs: limits.ttlMs, maxEntries: limits.maxEntries });
    let space = this.caches.get(ns);
    if (!space) {
      space = { entries: new Map(), order: [], start: 0, last: 0 };
      this.caches.set(ns, space);
    }
    const cursor = Math.max(Math.floor(this.now() * 1000), space.last + 1);
    space.last = cursor;
    space.entries.set(id, { value: Buffer.from(value), cursor });
    space.order.push({ id, cursor });
    let removed = this.expireCache(space, limits.ttlMs);
    while (space.entries.size > limits.maxEntries) {
      const oldest = this.nextLive(space);
      if (!oldest) break;
      space.entries.delete(oldest.id);
      space.start++;
      removed++;
    }
    this.compact(space);
    return { removed };
  }

  async cacheGet(ns: string, id: string, ttlMs: number): Promise<Buffer | null> {
    this.checkOpen();
    checkCacheCall('cacheGet', ns, { id, ttlMs });
    const entry = this.caches.get(ns)?.entries.get(id);
    if (!entry || entry.cursor < this.cacheCutoff(ttlMs)) return null;
    return Buffer.from(entry.value);
  }

  async cacheScan(ns: string, cursor: number, limit: number, ttlMs: number): Promise<CacheScan> {
    this.checkOpen();
    checkCacheCall('cacheScan', ns, { ttlMs, limit, cursor });
    const space = this.caches.get(ns);
    if (!space) return { records: [], cursor, more: false };
    const after = Math.max(cursor, this.cacheCutoff(ttlMs) - 1);
    // Binary search: the first item written after `after`.
    let lo = space.start;
    let hi = space.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (space.order[mid]!.cursor <= after) lo = mid + 1;
      else hi = mid;
    }
    const records: CacheScan['records'] = [];
    let next = cursor;
    for (let i = lo; i < space.order.length; i++) {
      const item = space.order[i]!;
      const entry = space.entries.get(item.id);
      if (!entry || entry.cursor !== item.cursor) continue;
      if (records.length === limit) return { records, cursor: next, more: true };
      records.push({ id: item.id, value: Buffer.from(entry.value), cursor: item.cursor });
      next = item.cursor;
    }
    return { records, cursor: next, more: false };
  }

  async cacheDelete(ns: string, id: string): Promise<boolean> {
    this.checkOpen();
    checkCacheCall('cacheDelete', ns, { id });
    const space = this.caches.get(ns);
    if (!space?.entries.delete(id)) return false;
    this.compact(space);
    return true;
  }

  async cachePurge(ns: string): Promise<number> {
    this.checkOpen();
    checkCacheCall('cachePurge', ns, {});
    const count = this.caches.get(ns)?.entries.size ?? 0;
    this.caches.delete(ns);
    return count;
  }

  async cacheCount(ns: string, ttlMs: number): Promise<number> {
    this.checkOpen();
    checkCacheCall('cacheCount', ns, { ttlMs });
    const space = this.caches.get(ns);
    if (!space) return 0;
    // Counts without removing: expired entries go on the next write, as in Redis.
    const cutoff = this.cacheCutoff(ttlMs);
    let expired = 0;
    for (let i = space.start; i < space.order.length && space.order[i]!.cursor < cutoff; i++) {
      const item = space.order[i]!;
      if (space.entries.get(item.id)?.cursor === item.cursor) expired++;
    }
    return space.entries.size - expired;
  }

  async ping(): Promise<void> {
    this.checkOpen();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweepTimer);
    this.entries.clear();
    this.caches.clear();
  }

  /** Drops every expired entry; returns how many. Runs on a timer, callable directly. */
  sweep(): number {
    const now = this.now();
    const expired: string[] = [];
    for (const [key, entry] of this.entries.entries()) {
      if (entry.expiresAt <= now) expired.push(key);
    }
    for (const key of expired) this.entries.delete(key);
    for (const [ns, space] of this.caches) if (space.entries.size === 0) this.caches.delete(ns);
    return expired.length;
  }

  /** Oldest write time a cache entry may have and still count, as a cursor (µs). */
  private cacheCutoff(ttlMs: number): number {
    return Math.floor((this.now() - ttlMs) * 1000);
  }

  /** The oldest live item of a namespace's write order, skipping stale ones. */
  private nextLive(space: CacheSpace): { id: string; cursor: number } | undefined {
    while (space.start < space.order.length) {
      const item = space.order[space.start]!;
      if (space.entries.get(item.id)?.cursor === item.cursor) return item;
      space.start++;
    }
    return undefined;
  }

  /** Drops entries older than the TTL (the oldest come first); returns how many. */
  private expireCache(space: CacheSpace, ttlMs: number): number {
    const cutoff = this.cacheCutoff(ttlMs);
    let removed = 0;
    for (let item = this.nextLive(space); item && item.cursor < cutoff; item = this.nextLive(space)) {
      space.entries.delete(item.id);
      space.start++;
      removed++;
    }
    return removed;
  }

  /** Rebuilds the write order once stale items outnumber live ones. */
  private compact(space: CacheSpace): void {
    if (space.order.length - space.start <= 2 * space.entries.size + 64) {
      if (space.start > 4096 && space.start * 2 > space.order.length) {
        space.order = space.order.slice(space.start);
        space.start = 0;
      }
      return;
    }
    space.order = [...space.entries].map(([id, e]) => ({ id, cursor: e.cursor }));
    space.order.sort((a, b) => a.cursor - b.cursor);
    space.start = 0;
  }

  /** The entry if present and not expired; an expired one is removed on the way. */
  private live(key: string): Entry | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  /** A counter's committed usage: 0 when absent; a value that is no integer fails as Redis does. */
  private committed(key: string): number {
    const entry = this.live(key);
    if (entry === undefined) return 0;
    const value = parseCounter(entry.value);
    if (value === undefined) throw storeUnavailable('value is not an integer');
    return value;
  }

  /** Committed usage plus live reservations of a counter, after releasing the expired ones. */
  private budgetTotal(key: string, now: number): number {
    const used = this.committed(key);
    const entry = this.live(key);
    if (entry === undefined) return used;
    this.releaseExpired(entry, now);
    return used + (entry.holds?.total ?? 0);
  }

  private releaseExpired(entry: Entry, now: number): void {
    const holds = entry.holds;
    if (holds === undefined) return;
    for (const [id, hold] of holds.byId) {
      if (hold.expiresAt > now) continue;
      holds.byId.delete(id);
      holds.total -= hold.amount;
    }
    if (holds.byId.size === 0) entry.holds = undefined;
  }

  /** The live counter, created at 0 when absent; it expires `ttlMs` from now unless it outlives that. */
  private counter(key: string, ttlMs: number): Entry {
    const expiresAt = this.now() + ttlMs;
    const entry = this.live(key);
    if (entry === undefined) {
      const created = { value: Buffer.from('0'), expiresAt };
      this.entries.set(key, created);
      return created;
    }
    entry.expiresAt = Math.max(entry.expiresAt, expiresAt);
    return entry;
  }

  private expiry(ttlMs: number | undefined): number {
    return ttlMs === undefined ? Number.POSITIVE_INFINITY : this.now() + ttlMs;
  }

  private checkOpen(): void {
    if (this.closed) throw storeUnavailable('store closed');
  }
}

/**
 * The most output tokens a hard charge affords: the largest n ≤ output with
 * perOutput * n ≤ room, where room is what the cap leaves after the window and the fixed cost;
 * -1 when even the fixed cost does not fit.
 */
function affordable(room: number, perOutput: number, output: number): number {
  if (room < 0) return -1;
  if (perOutput === 0) return output;
  return Math.min(output, Math.floor(room / perOutput));
}
