/**
 * The behaviour every Store promises, run against both implementations: the memory store and
 * the Redis store on the shared redis-server. Where they could differ (TTL, counters on odd
 * values, binary data), this suite is what keeps them the same.
 */
import { randomUUID } from 'node:crypto';
import { createLogger } from '../../../lib/log/logger';
import { createStore, key, parseStoreConfig, type Store } from '../../../lib/store';
import { rejection } from '../../support/errors';
import { sharedRedisUrl } from '../../support/redis';

const quietLogger = createLogger({ level: 'silent' });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const kinds: Array<[string, () => Promise<Store>]> = [
  ['memory', async () => createStore(parseStoreConfig({ kind: 'memory' }), quietLogger)],
  [
    'redis',
    async () => {
      const store = createStore(
        parseStoreConfig({
          kind: 'redis',
          redis: { url: sharedRedisUrl(), key_prefix: `t-${randomUUID()}` },
        }),
        quietLogger,
      );
      await store.ping();
      return store;
    },
  ],
];

describe.each(kinds)('%s store', (kind, open) => {
  let store: Store;

  beforeAll(async () => {
    store = await open();
  });

  afterAll(() => store.close());

  it('reports its kind', () => {
    expect(store.kind).toBe(kind);
  });

  it('sets, gets and deletes', async () => {
    const k = key('tenant-a', 'plain');
    expect(await store.get(k)).toBeNull();
    await store.set(k, 'value');
    expect(await store.get(k)).toEqual(Buffer.from('value'));
    await store.set(k, 'other');
    expect(await store.get(k)).toEqual(Buffer.from('other'));
    await store.delete(k);
    expect(await store.get(k)).toBeNull();
    await store.delete(k);
  });

  it('round-trips every byte value and UTF-8 text', async () => {
    const bytes = Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 7) % 256));
    await store.set(key('tenant-a', 'bin'), bytes);
    expect((await store.get(key('tenant-a', 'bin')))?.equals(bytes)).toBe(true);
    await store.set(key('tenant-a', 'text'), 'zürich 東京 🚀');
    expect((await store.get(key('tenant-a', 'text')))?.toString('utf8')).toBe('zürich 東京 🚀');
    await store.set(key('tenant-a', 'empty'), Buffer.alloc(0));
    expect(await store.get(key('tenant-a', 'empty'))).toEqual(Buffer.alloc(0));
  });

  it('expires keys after their TTL, and set without TTL clears it', async () => {
    await store.set(key('tenant-a', 'ttl'), 'v', 60);
    await store.set(key('tenant-a', 'ttl-cleared'), 'v', 60);
    await store.set(key('tenant-a', 'ttl-cleared'), 'v2');
    expect(await store.get(key('tenant-a', 'ttl'))).toEqual(Buffer.from('v'));
    await sleep(150);
    expect(await store.get(key('tenant-a', 'ttl'))).toBeNull();
    expect(await store.get(key('tenant-a', 'ttl-cleared'))).toEqual(Buffer.from('v2'));
  });

  it('incrBy creates at 0, adds, and keeps the TTL of the window it created', async () => {
    const k = key('tenant-a', 'counter');
    // The second call comes well inside the first window and asks for a long one: were the
    // window restarted, the key would outlive the first window's end by far.
    expect(await store.incrBy(k, 3, 600)).toBe(3);
    await sleep(150);
    expect(await store.incrBy(k, -1, 60_000)).toBe(2); // must not restart the window
    await sleep(650);
    expect(await store.get(k)).toBeNull();
    expect(await store.incrBy(k, 1)).toBe(1);
    expect(await store.get(k)).toEqual(Buffer.from('1'));
  });

  it('incrBy is atomic under concurrent callers', async () => {
    const k = key('tenant-a', 'concurrent');
    const results = await Promise.all(Array.from({ length: 200 }, () => store.incrBy(k, 1, 10_000)));
    expect(new Set(results).size).toBe(200);
    expect(Math.max(...results)).toBe(200);
  });

  it('incrBy counts a value set as a decimal integer', async () => {
    await store.set(key('tenant-a', 'preset'), '40');
    expect(await store.incrBy(key('tenant-a', 'preset'), 2)).toBe(42);
  });

  it.each(['abc', '1.5', '01', '+1', ' 1', ''])(
    'incrBy on %p rejects with AIGW_STORE_UNAVAILABLE and leaves it as is',
    async (value) => {
      const k = key('tenant-a', 'not-a-counter', value);
      await store.set(k, value);
      expect((await rejection(store.incrBy(k, 1))).code).toBe('AIGW_STORE_UNAVAILABLE');
      expect(await store.get(k)).toEqual(Buffer.from(value));
    },
  );

  it.each([
    ['a fractional increment', (s: Store) => s.incrBy(key('t', 'x'), 0.5)],
    ['a zero TTL', (s: Store) => s.set(key('t', 'x'), 'v', 0)],
    ['a negative TTL on incrBy', (s: Store) => s.incrBy(key('t', 'x'), 1, -5)],
  ])('rejects %s as AIGW_INTERNAL without touching the store', async (_, call) => {
    expect((await rejection(call(store))).code).toBe('AIGW_INTERNAL');
    expect(await store.get(key('t', 'x'))).toBeNull();
  });

  describe('cache namespaces', () => {
    const limits = { ttlMs: 60_000, maxEntries: 100 };
    const ns = (name: string) => key(`cache-${name}-${randomUUID()}`, 'cache');

    it('puts, gets, deletes, and keeps binary values intact', async () => {
      const n = ns('basic');
      const bytes = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 13) % 256));
      expect(await store.cacheGet(n, 'a', 60_000)).toBeNull();
      expect(await store.cachePut(n, 'a', bytes, limits)).toEqual({ removed: 0 });
      expect((await store.cacheGet(n, 'a', 60_000))?.equals(bytes)).toBe(true);
      expect(await store.cacheCount(n, 60_000)).toBe(1);
      expect(await store.cacheDelete(n, 'a')).toBe(true);
      expect(await store.cacheDelete(n, 'a')).toBe(false);
      expect(await store.cacheGet(n, 'a', 60_000)).toBeNull();
      expect(await store.cacheCount(n, 60_000)).toBe(0);
    });

    it('evicts the oldest entries past maxEntries', async () => {
      const n = ns('evict');
      for (const id of ['a', 'b', 'c'])
        await store.cachePut(n, id, Buffer.from(id), { ...limits, maxEntries: 3 });
      // Rewriting `a` makes it the newest: `b` is now the oldest.
      await store.cachePut(n, 'a', Buffer.from('a2'), { ...limits, maxEntries: 3 });
      expect(await store.cachePut(n, 'd', Buffer.from('d'), { ...limits, maxEntries: 3 })).toEqual({
        removed: 1,
      });
      expect(await store.cacheGet(n, 'b', 60_000)).toBeNull();
      expect((await store.cacheGet(n, 'a', 60_000))?.toString()).toBe('a2');
      expect(await store.cacheCount(n, 60_000)).toBe(3);
      const scan = await store.cacheScan(n, 0, 10, 60_000);
      expect(scan.records.map((r) => r.id)).toEqual(['c', 'a', 'd']);
    });

    it('hides entries older than the TTL, and they are gone for good', async () => {
      const n = ns('ttl');
      await store.cachePut(n, 'old', Buffer.from('x'), { ...limits, ttlMs: 80 });
      await sleep(150);
      expect(await store.cacheGet(n, 'old', 80)).toBeNull();
      expect(await store.cacheCount(n, 80)).toBe(0);
      expect((await store.cacheScan(n, 0, 10, 80)).records).toEqual([]);
      await store.cachePut(n, 'new', Buffer.from('y'), { ...limits, ttlMs: 80 });
      // With a longer TTL the old entry would have counted: it is really gone.
      expect(await store.cacheGet(n, 'old', 60_000)).toBeNull();
    });

    it('scans in write order, page by page, from a cursor', async () => {
      const n = ns('scan');
      const ids = Array.from({ length: 25 }, (_, i) => `id-${i}`);
      for (const id of ids) await store.cachePut(n, id, Buffer.from(id), limits);
      const seen: string[] = [];
      let cursor = 0;
      let pages = 0;
      for (;;) {
        const page = await store.cacheScan(n, cursor, 10, 60_000);
        pages++;
        for (const r of page.records) {
          expect(r.value.toString()).toBe(r.id);
          expect(r.cursor).toBeGreaterThan(cursor);
        }
        seen.push(...page.records.map((r) => r.id));
        cursor = page.cursor;
        if (!page.more) break;
      }
      expect(seen).toEqual(ids);
      expect(pages).toBe(3);
      // Nothing new: the same cursor comes back, with nothing.
      expect(await store.cacheScan(n, cursor, 10, 60_000)).toEqual({ records: [], cursor, more: false });
      await store.cachePut(n, 'late', Buffer.from('late'), limits);
      const after = await store.cacheScan(n, cursor, 10, 60_000);
      expect(after.records.map((r) => r.id)).toEqual(['late']);
      expect(after.cursor).toBeGreaterThan(cursor);
    });

    it('gives every concurrent write its own cursor', async () => {
      const n = ns('concurrent');
      await Promise.all(
        Array.from({ length: 50 }, (_, i) => store.cachePut(n, `c${i}`, Buffer.from('v'), limits)),
      );
      const { records } = await store.cacheScan(n, 0, 100, 60_000);
      expect(records).toHaveLength(50);
      expect(new Set(records.map((r) => r.cursor)).size).toBe(50);
    });

    it('purges one namespace and leaves the others', async () => {
      const a = ns('purge-a');
      const b = ns('purge-b');
      await store.cachePut(a, 'x', Buffer.from('1'), limits);
      await store.cachePut(a, 'y', Buffer.from('2'), limits);
      await store.cachePut(b, 'x', Buffer.from('3'), limits);
      expect(await store.cachePurge(a)).toBe(2);
      expect(await store.cacheGet(a, 'x', 60_000)).toBeNull();
      expect((await store.cacheGet(b, 'x', 60_000))?.toString()).toBe('3');
      expect(await store.cachePurge(a)).toBe(0);
    });

    it.each([
      ['a namespace without a hash tag', (s: Store) => s.cacheGet('plain', 'a', 1000)],
      [
        'an empty id',
        (s: Store) => s.cachePut(key('t', 'c'), '', Buffer.from('v'), { ttlMs: 1000, maxEntries: 1 }),
      ],
      [
        'a zero maxEntries',
        (s: Store) => s.cachePut(key('t', 'c'), 'a', Buffer.from('v'), { ttlMs: 1000, maxEntries: 0 }),
      ],
      ['a scan limit above the maximum', (s: Store) => s.cacheScan(key('t', 'c'), 0, 100_000, 1000)],
      ['a negative cursor', (s: Store) => s.cacheScan(key('t', 'c'), -1, 10, 1000)],
    ])('rejects %s as AIGW_INTERNAL', async (_, call) => {
      expect((await rejection(call(store))).code).toBe('AIGW_INTERNAL');
    });
  });

  it('answers ping', async () => {
    await expect(store.ping()).resolves.toBeUndefined();
  });

  it('rejects every call after close() with AIGW_STORE_UNAVAILABLE', async () => {
    const other = await open();
    await other.close();
    await other.close();
    for (const call of [
      () => other.get('k'),
      () => other.set('k', 'v'),
      () => other.delete('k'),
      () => other.incrBy('k', 1),
      () => other.ping(),
      () => other.cacheGet(key('t', 'c'), 'a', 1000),
      () => other.cachePut(key('t', 'c'), 'a', Buffer.from('v'), { ttlMs: 1000, maxEntries: 1 }),
    ]) {
      expect((await rejection(call())).code).toBe('AIGW_STORE_UNAVAILABLE');
    }
  });
});
