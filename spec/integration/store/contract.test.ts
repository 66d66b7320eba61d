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
    expect(await store.incrBy(k, 3, 200)).toBe(3);
    await sleep(120);
    expect(await store.incrBy(k, -1, 200)).toBe(2); // must not restart the 200 ms window
    await sleep(130);
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
    ]) {
      expect((await rejection(call())).code).toBe('AIGW_STORE_UNAVAILABLE');
    }
  });
});
