import { LRUCache } from 'lru-cache';
import { checkIncrement, checkTtl, parseCounter, type Store, storeUnavailable } from './store';

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

  async ping(): Promise<void> {
    this.checkOpen();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweepTimer);
    this.entries.clear();
  }

  /** Drops every expired entry; returns how many. Runs on a timer, callable directly. */
  sweep(): number {
    const now = this.now();
    const expired: string[] = [];
    for (const [key, entry] of this.entries.entries()) {
      if (entry.expiresAt <= now) expired.push(key);
    }
    for (const key of expired) this.entries.delete(key);
    return expired.length;
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

  private expiry(ttlMs: number | undefined): number {
    return ttlMs === undefined ? Number.POSITIVE_INFINITY : this.now() + ttlMs;
  }

  private checkOpen(): void {
    if (this.closed) throw storeUnavailable('store closed');
  }
}
