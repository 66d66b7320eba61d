/** What the Redis store writes into Redis, checked with a plain ioredis client on the same server. */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { GatewayError } from '../../../lib/errors';
import { createLogger } from '../../../lib/log/logger';
import { createStore, key, parseStoreConfig, type Store } from '../../../lib/store';
import { type RedisServer, sharedRedisUrl, startRedis } from '../../support/redis';

const quietLogger = createLogger({ level: 'silent' });

function redisStore(redis: Record<string, unknown>): Store {
  return createStore(parseStoreConfig({ kind: 'redis', redis }), quietLogger);
}

describe('RedisStore on the shared redis-server', () => {
  const prefix = `t-${randomUUID()}`;
  let store: Store;
  let raw: Redis;

  beforeAll(async () => {
    store = redisStore({ url: sharedRedisUrl(), key_prefix: prefix });
    raw = new Redis(sharedRedisUrl());
    await store.ping();
  });

  afterAll(async () => {
    await store.close();
    raw.disconnect();
  });

  it('writes keys as <prefix>:{tenant}:parts, so Cluster hashes on the tenant', async () => {
    await store.set(key('acme', 'cache', 'abc'), 'v');
    expect(await raw.get(`${prefix}:{acme}:cache:abc`)).toBe('v');
    expect(await raw.exists('{acme}:cache:abc')).toBe(0);
  });

  it('reads what others wrote under the same prefix, and only that', async () => {
    await raw.set(`${prefix}:{acme}:shared`, 'from-another-node');
    expect(await store.get(key('acme', 'shared'))).toEqual(Buffer.from('from-another-node'));
    await raw.set(`${prefix}-other:{acme}:shared`, 'elsewhere');
    const otherPrefix = redisStore({ url: sharedRedisUrl(), key_prefix: `${prefix}-other` });
    try {
      await otherPrefix.ping();
      expect(await otherPrefix.get(key('acme', 'shared'))).toEqual(Buffer.from('elsewhere'));
    } finally {
      await otherPrefix.close();
    }
  });

  it('sets a Redis TTL (PX) with set, and none without', async () => {
    await store.set(key('acme', 'ttl'), 'v', 5000);
    const pttl = await raw.pttl(`${prefix}:{acme}:ttl`);
    expect(pttl).toBeGreaterThan(4000);
    expect(pttl).toBeLessThanOrEqual(5000);
    await store.set(key('acme', 'ttl'), 'v');
    expect(await raw.pttl(`${prefix}:{acme}:ttl`)).toBe(-1);
  });

  it('incrBy sets the TTL only when it creates the key', async () => {
    const k = key('acme', 'window');
    await store.incrBy(k, 1, 60_000);
    await raw.pexpire(`${prefix}:{acme}:window`, 30_000); // as if the window were half over
    await store.incrBy(k, 1, 60_000);
    expect(await raw.pttl(`${prefix}:{acme}:window`)).toBeLessThanOrEqual(30_000);
    expect(await raw.get(`${prefix}:{acme}:window`)).toBe('2');
  });

  it('incrBy keeps working after Redis dropped its script cache', async () => {
    const k = key('acme', 'flushed');
    expect(await store.incrBy(k, 1)).toBe(1);
    await raw.script('FLUSH');
    expect(await store.incrBy(k, 1)).toBe(2);
  });

  it('refuses a counter beyond 2^53 instead of returning a wrong number', async () => {
    await raw.set(`${prefix}:{acme}:huge`, String(Number.MAX_SAFE_INTEGER));
    const err = await store.incrBy(key('acme', 'huge'), 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe('AIGW_STORE_UNAVAILABLE');
  });

  it('reports a Redis error reply in the message, e.g. a wrong type', async () => {
    await raw.lpush(`${prefix}:{acme}:list`, 'x');
    const err = (await store.get(key('acme', 'list')).catch((e: unknown) => e)) as GatewayError;
    expect(err.code).toBe('AIGW_STORE_UNAVAILABLE');
    expect(err.message).toMatch(/WRONGTYPE/);
  });

  it('uses the database number from the URL', async () => {
    const db3 = redisStore({ url: `${sharedRedisUrl()}/3`, key_prefix: prefix });
    const rawDb3 = new Redis(`${sharedRedisUrl()}/3`);
    try {
      await db3.ping();
      await db3.set(key('acme', 'db'), 'three');
      expect(await rawDb3.get(`${prefix}:{acme}:db`)).toBe('three');
      expect(await raw.get(`${prefix}:{acme}:db`)).toBeNull();
    } finally {
      rawDb3.disconnect();
      await db3.close();
    }
  });
});

describe('RedisStore with a password', () => {
  const password = 'pa55-w0rd-never-logged';
  let server: RedisServer;

  beforeAll(async () => {
    server = await startRedis({ args: ['--requirepass', password] });
  });

  afterAll(() => server.destroy());

  it('authenticates with the password field or the URL', async () => {
    for (const redis of [
      { host: '127.0.0.1', port: server.port, password },
      { url: `redis://:${encodeURIComponent(password)}@127.0.0.1:${server.port}` },
      { url: `redis://default:wrong@127.0.0.1:${server.port}`, password }, // the field wins
    ]) {
      const store = redisStore(redis);
      try {
        await store.ping();
        await store.set(key('t', 'auth'), 'ok');
        expect(await store.get(key('t', 'auth'))).toEqual(Buffer.from('ok'));
      } finally {
        await store.close();
      }
    }
  });

  it('with a wrong password fails with AIGW_STORE_UNAVAILABLE and never shows it', async () => {
    const wrong = 'wr0ng-secret-value';
    const lines: string[] = [];
    const logger = createLogger({
      level: 'debug',
      destination: { write: (line: string) => lines.push(line) },
    });
    const store = createStore(
      parseStoreConfig({
        kind: 'redis',
        redis: { url: `redis://default:${wrong}@127.0.0.1:${server.port}`, connect_timeout_ms: 300 },
      }),
      logger,
    );
    const errors: unknown[] = [];
    try {
      for (const call of [
        () => store.ping(),
        () => store.get('k'),
        () => store.set('k', 'v'),
        () => store.incrBy('k', 1),
      ]) {
        errors.push(await call().catch((e: unknown) => e));
      }
    } finally {
      await store.close();
    }
    for (const err of errors as GatewayError[]) {
      expect(err).toBeInstanceOf(GatewayError);
      expect(err.code).toBe('AIGW_STORE_UNAVAILABLE');
      expect(
        JSON.stringify({ message: err.message, stack: err.stack, cause: String(err.cause) }),
      ).not.toContain(wrong);
    }
    expect(lines.some((l) => l.includes('redis store unavailable'))).toBe(true);
    expect(lines.join('\n')).not.toContain(wrong);
  });
});
