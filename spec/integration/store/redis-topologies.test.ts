/**
 * The Redis store on Redis Cluster and behind Sentinel, each with real redis-server processes:
 * a one-node cluster that owns every slot (Redis still enforces slots: CROSSSLOT), and one
 * Sentinel watching a standalone master.
 */
import { Redis } from 'ioredis';
import { createLogger } from '../../../lib/log/logger';
import { createStore, key, parseStoreConfig, type Store } from '../../../lib/store';
import { eventually } from '../../support/eventually';
import { type RedisServer, startRedis } from '../../support/redis';

const quietLogger = createLogger({ level: 'silent' });

/** The basic operations, end to end. */
async function exercise(store: Store): Promise<void> {
  await store.set(key('acme', 'k'), Buffer.from([0, 255, 1]));
  expect(await store.get(key('acme', 'k'))).toEqual(Buffer.from([0, 255, 1]));
  expect(await store.incrBy(key('acme', 'tokens'), 5, 60_000)).toBe(5);
  expect(await store.incrBy(key('acme', 'tokens'), 5, 60_000)).toBe(10);
  await store.delete(key('acme', 'k'));
  expect(await store.get(key('acme', 'k'))).toBeNull();

  // The budget scripts touch several keys of the tenant at once (a counter and its holds).
  const [current, previous] = [key('acme', 'budget', 2), key('acme', 'budget', 1)];
  await store.settle('earlier', [{ key: previous, amount: 40, ttlMs: 60_000 }]);
  const reservation = {
    id: 'r1',
    charges: [{ keys: [current, previous], cap: 100, hard: true, fixed: 10, perOutput: 1, ttlMs: 60_000 }],
    output: 80,
    minOutput: 0,
    holdMs: 60_000,
  };
  expect(await store.reserve(reservation)).toEqual({ ok: true, output: 50, used: [100] });
  await store.settle('r1', [{ key: current, amount: 25, ttlMs: 60_000 }]);
  expect(await store.budgetUsage(current)).toEqual({ used: 25, held: 0 });
  await store.resetBudget(current);
  expect(await store.budgetUsage(current)).toEqual({ used: 0, held: 0 });
}

describe('Redis store on Redis Cluster', () => {
  let node: RedisServer;
  let raw: Redis;
  let store: Store;

  beforeAll(async () => {
    node = await startRedis({
      // Without an announced address a lone node reports its own IP as "" in CLUSTER SLOTS.
      args: [
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        'nodes.conf',
        '--cluster-announce-ip',
        '127.0.0.1',
      ],
    });
    raw = new Redis(node.url);
    await raw.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
    await eventually('cluster_state:ok', async () => {
      const info = String(await raw.call('CLUSTER', 'INFO'));
      if (!info.includes('cluster_state:ok')) throw new Error(info.split('\r\n')[0]);
    });
    store = createStore(
      parseStoreConfig({ kind: 'redis', redis: { cluster_nodes: [{ host: '127.0.0.1', port: node.port }] } }),
      quietLogger,
    );
    await eventually('the cluster client', () => store.ping());
  });

  afterAll(async () => {
    await store?.close();
    raw?.disconnect();
    await node?.destroy();
  });

  it('stores, counts and deletes', async () => {
    await exercise(store);
    expect(await raw.get('aigw:{acme}:tokens')).toBe('10');
  });

  it('puts every key of a tenant in the tenant’s slot, so multi-key scripts are allowed', async () => {
    const slot = (k: string) => raw.call('CLUSTER', 'KEYSLOT', `aigw:${k}`);
    const tenantSlot = await slot(key('acme'));
    expect(await slot(key('acme', 'budget', 'day', 20250101))).toBe(tenantSlot);
    expect(await slot(key('acme', 'cache', 'x:{y}'))).toBe(tenantSlot);

    const twoKeys = "return redis.call('MSET', KEYS[1], '1', KEYS[2], '2')";
    await expect(
      raw.eval(twoKeys, 2, `aigw:${key('acme', 'minute')}`, `aigw:${key('acme', 'day')}`),
    ).resolves.toBe('OK');
    // "acme" and "globex" hash to different slots, so Redis refuses a script over both.
    await expect(
      raw.eval(twoKeys, 2, `aigw:${key('acme', 'm')}`, `aigw:${key('globex', 'm')}`),
    ).rejects.toThrow(/CROSSSLOT|different slot|cross slot/i);
  });

  it('fails fast while the node is down and recovers by itself', async () => {
    await node.stop();
    for (const call of [() => store.get(key('acme', 'k')), () => store.incrBy(key('acme', 'n'), 1)]) {
      const started = performance.now();
      await expect(call()).rejects.toMatchObject({ code: 'AIGW_STORE_UNAVAILABLE' });
      expect(performance.now() - started).toBeLessThan(2000);
    }
    await node.start(); // keeps its nodes.conf, so it comes back owning every slot
    await eventually('the cluster client reconnecting', () => store.set(key('acme', 'again'), 'ok'), 15_000);
    expect(await store.get(key('acme', 'again'))).toEqual(Buffer.from('ok'));
  });
});

describe('Redis store behind Sentinel', () => {
  let master: RedisServer;
  let sentinel: RedisServer;
  let store: Store;

  beforeAll(async () => {
    master = await startRedis();
    sentinel = await startRedis({
      sentinelConfig: [
        `sentinel monitor mymaster 127.0.0.1 ${master.port} 1`,
        'sentinel down-after-milliseconds mymaster 60000',
        '',
      ].join('\n'),
    });
    store = createStore(
      parseStoreConfig({
        kind: 'redis',
        redis: {
          sentinels: [{ host: '127.0.0.1', port: sentinel.port }],
          sentinel_master: 'mymaster',
          db: 2,
        },
      }),
      quietLogger,
    );
    await eventually('the sentinel client', () => store.ping());
  });

  afterAll(async () => {
    await store?.close();
    await sentinel?.destroy();
    await master?.destroy();
  });

  it('finds the master through the Sentinel and uses it', async () => {
    await exercise(store);
    const raw = new Redis(`${master.url}/2`);
    try {
      expect(await raw.get('aigw:{acme}:tokens')).toBe('10');
    } finally {
      raw.disconnect();
    }
  });
});
