import { LRUCache } from 'lru-cache';
import type { Store } from '../store';
import { type CacheEntry, CorruptEntryError, decodeEntry, encodeEntry } from './entry';
import { localKey, storeNamespace } from './keys';
import { type Match, VectorIndex } from './vector-index';

/** What one plugin instance asks of a namespace (its config). */
export interface NamespaceSettings {
  ttlMs: number;
  maxEntries: number;
  /** Vector length of the namespace's embedder. */
  dimensions: number;
  /** How long this node serves an entry from memory without asking the store. */
  localTtlMs: number;
  /** Least time between two catch-ups of the vector index from the store. */
  syncIntervalMs: number;
}

export type StoreOp = 'get' | 'put' | 'scan' | 'delete' | 'purge' | 'count';

/** What the cache reports to its owner (metrics, logs). */
export interface CacheEvents {
  storeError(op: StoreOp, err: unknown): void;
  /** Bytes in the store that were not an entry: deleted. */
  corrupt(): void;
}

/** A semantic match, with its entry. */
export interface SemanticHit extends Match {
  entry: CacheEntry;
}

/** One namespace as this node knows it: its vectors by partition, and how far it has read the store. */
interface NamespaceView {
  cursor: number;
  loaded: boolean;
  lastSync: number;
  syncing?: Promise<void>;
  partitions: Map<string, VectorIndex>;
  /** Ids with a vector in an index, oldest first, and when they were stored. */
  known: Map<string, { partition: string; createdAt: number }>;
}

const SCAN_PAGE = 500;
/** Longest stretch a catch-up indexes without giving the event loop back. */
const YIELD_AFTER_MS = 5;
const DEFAULT_MAX_VIEWS = 10_000;

/**
 * The cache's state on one node, shared by every ai-semantic-cache instance of the suite:
 * entries live in the store (shared by nodes through Redis); a per-node LRU holds recently
 * used entries in front of it; a vector index per namespace and partition holds the vectors
 * of the namespace's entries, filled by this node's writes and by catching up with the
 * store's write order (what other nodes stored, everything after a restart).
 *
 * Never throws on store trouble: a failed read is a miss (reported through `events`), a
 * failed write is a lost entry. Bytes that are not an entry are deleted and reported.
 */
export class AnswerCache {
  /** The per-node tier; absent when configured to 0 entries. */
  private local?: LRUCache<string, CacheEntry>;
  private readonly views: LRUCache<string, NamespaceView>;

  constructor(
    private readonly store: Store,
    private readonly events: CacheEvents,
    options: { localEntries?: number; maxNamespaces?: number; now?: () => number } = {},
  ) {
    this.now = options.now ?? Date.now;
    this.ensureLocalCapacity(options.localEntries ?? 0);
    this.views = new LRUCache({ max: options.maxNamespaces ?? DEFAULT_MAX_VIEWS });
  }

  private readonly now: () => number;

  /** Grows the per-node tier (an instance asking for more than the current size); never shrinks it. */
  ensureLocalCapacity(entries: number): void {
    if (entries > (this.local?.max ?? 0)) this.local = new LRUCache({ max: entries });
  }

  /** The entry stored under `id`, from this node's memory or the store. */
  async get(namespace: string, id: string, s: NamespaceSettings): Promise<CacheEntry | undefined> {
    const lkey = localKey(namespace, id);
    const cached = this.local?.get(lkey);
    if (cached && cached.createdAt + s.ttlMs > this.now()) return cached;
    let bytes: Buffer | null;
    try {
      bytes = await this.store.cacheGet(storeNamespace(namespace), id, s.ttlMs);
    } catch (err) {
      this.events.storeError('get', err);
      return undefined;
    }
    if (!bytes) return undefined;
    const entry = await this.decode(namespace, id, bytes, s);
    if (entry) this.local?.set(lkey, entry, { ttl: s.localTtlMs });
    return entry;
  }

  /**
   * The nearest entry of the partition whose vector is at least `threshold` similar, after
   * catching up with the store when the interval has passed. An index entry whose answer is
   * gone (evicted, expired, purged) is forgotten and the lookup misses.
   */
  async nearest(
    namespace: string,
    partition: string,
    vector: Float32Array,
    threshold: number,
    s: NamespaceSettings,
  ): Promise<SemanticHit | undefined> {
    const view = await this.synced(namespace, s);
    const match = view.partitions.get(partition)?.nearest(vector, threshold);
    if (!match) return undefined;
    const entry = await this.get(namespace, match.id, s);
    if (!entry || entry.partition !== partition) {
      if (!entry) this.forget(view, match.id);
      return undefined;
    }
    return { ...match, entry };
  }

  /** Stores an entry; true when the store took it. */
  async put(namespace: string, id: string, entry: CacheEntry, s: NamespaceSettings): Promise<boolean> {
    try {
      await this.store.cachePut(storeNamespace(namespace), id, encodeEntry(entry), {
        ttlMs: s.ttlMs,
        maxEntries: s.maxEntries,
      });
    } catch (err) {
      this.events.storeError('put', err);
      return false;
    }
    this.local?.set(localKey(namespace, id), entry, { ttl: s.localTtlMs });
    const view = this.views.get(namespace);
    if (view && entry.vector) this.learn(view, id, entry, s);
    return true;
  }

  /** Removes a namespace everywhere it is known on this node and in the store; returns the store's count. */
  async purge(namespace: string): Promise<number> {
    this.views.delete(namespace);
    const prefix = localKey(namespace, '');
    for (const k of [...(this.local?.keys() ?? [])]) if (k.startsWith(prefix)) this.local?.delete(k);
    try {
      return await this.store.cachePurge(storeNamespace(namespace));
    } catch (err) {
      this.events.storeError('purge', err);
      throw err;
    }
  }

  /** Removes one entry; true when the store had it. */
  async purgeEntry(namespace: string, id: string): Promise<boolean> {
    this.local?.delete(localKey(namespace, id));
    const view = this.views.get(namespace);
    if (view) this.forget(view, id);
    try {
      return await this.store.cacheDelete(storeNamespace(namespace), id);
    } catch (err) {
      this.events.storeError('delete', err);
      throw err;
    }
  }

  /** Entries the store holds for a namespace. */
  async count(namespace: string, ttlMs: number): Promise<number> {
    try {
      return await this.store.cacheCount(storeNamespace(namespace), ttlMs);
    } catch (err) {
      this.events.storeError('count', err);
      throw err;
    }
  }

  /** What this node holds in memory, per namespace it has indexed. */
  snapshot(): {
    local_entries: number;
    namespaces: Array<{ namespace: string; indexed: number; partitions: number }>;
  } {
    return {
      local_entries: this.local?.size ?? 0,
      namespaces: [...this.views.entries()].map(([namespace, view]) => ({
        namespace,
        indexed: view.known.size,
        partitions: view.partitions.size,
      })),
    };
  }

  /**
   * The namespace's view, caught up with the store when due: the lookup that starts a
   * catch-up waits for it (its caller bounds the wait); lookups meanwhile use what is indexed
   * so far, so a long rebuild (a large namespace after a restart) never holds every request.
   */
  private async synced(namespace: string, s: NamespaceSettings): Promise<NamespaceView> {
    let view = this.views.get(namespace);
    if (!view) {
      view = { cursor: 0, loaded: false, lastSync: 0, partitions: new Map(), known: new Map() };
      this.views.set(namespace, view);
    }
    if (view.syncing) return view;
    if (!view.loaded || this.now() - view.lastSync >= s.syncIntervalMs) {
      view.syncing = this.catchUp(namespace, view, s).finally(() => {
        view.syncing = undefined;
      });
      await view.syncing;
    }
    return view;
  }

  /** Reads what was written after the view's cursor, page by page. */
  private async catchUp(namespace: string, view: NamespaceView, s: NamespaceSettings): Promise<void> {
    view.lastSync = this.now();
    const ns = storeNamespace(namespace);
    let slice = performance.now();
    try {
      for (;;) {
        const page = await this.store.cacheScan(ns, view.cursor, SCAN_PAGE, s.ttlMs);
        for (const record of page.records) {
          if (view.known.has(record.id)) continue;
          const entry = await this.decode(namespace, record.id, record.value, s);
          if (entry?.vector) this.learn(view, record.id, entry, s);
          // Indexing costs up to ~1 ms a vector in a large graph: let requests through between slices.
          if (performance.now() - slice > YIELD_AFTER_MS) {
            await new Promise((resolve) => setImmediate(resolve));
            slice = performance.now();
          }
        }
        view.cursor = page.cursor;
        if (!page.more) break;
      }
      view.loaded = true;
    } catch (err) {
      this.events.storeError('scan', err);
    }
    this.prune(view, s);
  }

  private learn(view: NamespaceView, id: string, entry: CacheEntry, s: NamespaceSettings): void {
    const vector = entry.vector!;
    if (vector.length !== s.dimensions) return;
    let index = view.partitions.get(entry.partition);
    if (!index) {
      index = new VectorIndex(s.dimensions);
      view.partitions.set(entry.partition, index);
    }
    view.known.delete(id);
    index.add(id, vector);
    view.known.set(id, { partition: entry.partition, createdAt: entry.createdAt });
    this.prune(view, s);
  }

  /** Keeps the view within what the store can still hold: the newest maxEntries, none past the TTL. */
  private prune(view: NamespaceView, s: NamespaceSettings): void {
    const oldest = this.now() - s.ttlMs;
    for (const [id, known] of view.known) {
      if (view.known.size <= s.maxEntries && known.createdAt > oldest) break;
      this.forget(view, id);
    }
  }

  private forget(view: NamespaceView, id: string): void {
    const known = view.known.get(id);
    if (!known) return;
    view.known.delete(id);
    const index = view.partitions.get(known.partition);
    index?.remove(id);
    if (index?.size === 0) view.partitions.delete(known.partition);
  }

  /** The entry in `bytes`, or undefined for bytes that are not one: those are deleted and reported. */
  private async decode(
    namespace: string,
    id: string,
    bytes: Buffer,
    s: NamespaceSettings,
  ): Promise<CacheEntry | undefined> {
    try {
      return decodeEntry(bytes, s.dimensions);
    } catch (err) {
      if (!(err instanceof CorruptEntryError)) throw err;
      this.events.corrupt();
      await this.store
        .cacheDelete(storeNamespace(namespace), id)
        .catch((e: unknown) => this.events.storeError('delete', e));
      return undefined;
    }
  }
}
