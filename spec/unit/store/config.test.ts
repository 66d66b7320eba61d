import type { TSchema } from '@sinclair/typebox';
import { GatewayError } from '../../../lib/errors';
import {
  parseRedisUrl,
  parseStoreConfig,
  StoreConfigSchema,
  storeConfigFromEnv,
} from '../../../lib/store/config';

function configError(run: () => unknown): GatewayError {
  try {
    run();
  } catch (err) {
    if (err instanceof GatewayError) return err;
    throw err;
  }
  throw new Error('expected a config error');
}

describe('StoreConfigSchema', () => {
  it('describes every field', () => {
    const missing: string[] = [];
    const walk = (schema: TSchema, at: string) => {
      if (typeof schema.description !== 'string' || schema.description === '') missing.push(at);
      for (const [name, child] of Object.entries((schema.properties ?? {}) as Record<string, TSchema>)) {
        walk(child, `${at}.${name}`);
      }
      if (schema.items) walk(schema.items as TSchema, `${at}[]`);
    };
    walk(StoreConfigSchema, 'store');
    expect(missing).toEqual([]);
  });

  it('marks the fields that may hold secrets as referenceable', () => {
    const redis = StoreConfigSchema.properties.redis.properties;
    expect(redis.password.referenceable).toBe(true);
    expect(redis.sentinel_password.referenceable).toBe(true);
    expect(redis.url.referenceable).toBe(true);
  });
});

describe('parseStoreConfig', () => {
  it('defaults to the memory store', () => {
    expect(parseStoreConfig({})).toEqual({
      kind: 'memory',
      memory: { max_entries: 100000 },
      redis: { key_prefix: 'aigw', connect_timeout_ms: 1000, command_timeout_ms: 250 },
    });
    expect(parseStoreConfig(undefined).kind).toBe('memory');
  });

  it('accepts each Redis topology', () => {
    expect(parseStoreConfig({ kind: 'redis', redis: { url: 'redis://r:6379/2' } }).redis.url).toBe(
      'redis://r:6379/2',
    );
    expect(parseStoreConfig({ kind: 'redis', redis: { host: 'r', port: 6380, db: 1 } }).redis.port).toBe(
      6380,
    );
    expect(
      parseStoreConfig({
        kind: 'redis',
        redis: { sentinels: [{ host: 's1', port: 26379 }], sentinel_master: 'mymaster' },
      }).redis.sentinel_master,
    ).toBe('mymaster');
    expect(
      parseStoreConfig({ kind: 'redis', redis: { cluster_nodes: [{ host: 'c1', port: 7000 }] } }).redis
        .cluster_nodes,
    ).toEqual([{ host: 'c1', port: 7000 }]);
  });

  it.each([
    [{ kind: 'redis' }, 'exactly one'],
    [{ kind: 'redis', redis: { url: 'redis://a', host: 'b' } }, 'exactly one'],
    [{ kind: 'redis', redis: { url: 'redis://a', port: 1 } }, '/redis/port'],
    [{ kind: 'redis', redis: { sentinels: [{ host: 's', port: 1 }] } }, 'sentinel_master'],
    [{ kind: 'redis', redis: { host: 'h', sentinel_master: 'm' } }, 'sentinel_master'],
    [{ kind: 'redis', redis: { host: 'h', sentinel_password: 'p' } }, 'sentinel_password'],
    [{ kind: 'redis', redis: { cluster_nodes: [{ host: 'c', port: 1 }], db: 3 } }, '/redis/db'],
    [{ kind: 'redis', redis: { cluster_nodes: [] } }, '/redis/cluster_nodes'],
    [{ kind: 'redis', redis: { url: 'http://a' } }, '/redis/url'],
    [{ kind: 'redis', redis: { url: 'redis://a/x' } }, '/redis/url'],
    [{ kind: 'redis', redis: { url: 'redis://a?db=1' } }, '/redis/url'],
    [{ kind: 'redis', redis: { host: 'h', port: 70000 } }, '/redis/port'],
    [{ kind: 'redis', redis: { host: 'h', key_prefix: 'a{b}' } }, '/redis/key_prefix'],
    [{ kind: 'redis', redis: { host: 'h', command_timeout_ms: 0 } }, '/redis/command_timeout_ms'],
    [{ kind: 'redis', redis: { host: 'h', hots: 'typo' } }, '/redis'],
    [{ kind: 'disk' }, '/kind'],
    [{ memory: { max_entries: 0 } }, '/memory/max_entries'],
  ])('rejects %j, naming %s', (input, where) => {
    const err = configError(() => parseStoreConfig(input));
    expect(err.code).toBe('AIGW_CONFIG_INVALID');
    expect(err.message).toContain(where);
  });

  it('never echoes a password from a bad config', () => {
    const inputs = [
      { kind: 'redis', redis: { url: 'redis://u:hunter2-secret@h/notadb' } },
      { kind: 'redis', redis: { url: 'redis://u:hunter2-secret@h', host: 'x' } },
      { kind: 'redis', redis: { host: 'h', password: 'hunter2-secret', port: -1 } },
    ];
    for (const input of inputs) {
      expect(configError(() => parseStoreConfig(input)).message).not.toContain('hunter2');
    }
  });

  it('does not change its input', () => {
    const input = { kind: 'redis', redis: { host: 'h' } };
    parseStoreConfig(input);
    expect(input).toEqual({ kind: 'redis', redis: { host: 'h' } });
  });
});

describe('parseRedisUrl', () => {
  it('reads host, port, db, credentials and TLS', () => {
    expect(parseRedisUrl('rediss://us%40er:p%3Ass@cache.internal:6390/4')).toEqual({
      host: 'cache.internal',
      port: 6390,
      db: 4,
      username: 'us@er',
      password: 'p:ss',
      tls: true,
    });
    expect(parseRedisUrl('redis://:pw@[::1]')).toEqual({
      host: '::1',
      port: 6379,
      db: undefined,
      username: undefined,
      password: 'pw',
      tls: false,
    });
  });
});

describe('storeConfigFromEnv', () => {
  it('is the memory store when AIGW_STORE is unset, empty or "memory"', () => {
    expect(storeConfigFromEnv({}).kind).toBe('memory');
    expect(storeConfigFromEnv({ AIGW_STORE: '' }).kind).toBe('memory');
    expect(storeConfigFromEnv({ AIGW_STORE: 'memory' }).kind).toBe('memory');
  });

  it('takes a redis:// or rediss:// URL and the command timeout', () => {
    const config = storeConfigFromEnv({
      AIGW_STORE: 'rediss://:pw@redis.internal:6380/1',
      AIGW_STORE_COMMAND_TIMEOUT_MS: '120',
    });
    expect(config.kind).toBe('redis');
    expect(config.redis.url).toBe('rediss://:pw@redis.internal:6380/1');
    expect(config.redis.command_timeout_ms).toBe(120);
    expect(storeConfigFromEnv({ AIGW_STORE: 'redis://r' }).redis.command_timeout_ms).toBe(250);
  });

  it.each([
    [{ AIGW_STORE: 'memcached://m' }, 'AIGW_STORE'],
    [{ AIGW_STORE: 'redis' }, 'AIGW_STORE'],
    [{ AIGW_STORE: 'redis://r', AIGW_STORE_COMMAND_TIMEOUT_MS: 'fast' }, 'AIGW_STORE_COMMAND_TIMEOUT_MS'],
    [{ AIGW_STORE: 'redis://r', AIGW_STORE_COMMAND_TIMEOUT_MS: '0' }, 'AIGW_STORE_COMMAND_TIMEOUT_MS'],
    [{ AIGW_STORE: 'redis://r', AIGW_STORE_COMMAND_TIMEOUT_MS: '1e3' }, 'AIGW_STORE_COMMAND_TIMEOUT_MS'],
  ])('rejects %j', (env, name) => {
    const err = configError(() => storeConfigFromEnv(env));
    expect(err.code).toBe('AIGW_CONFIG_INVALID');
    expect(err.message).toContain(name);
  });

  it('does not echo the URL it rejects', () => {
    const err = configError(() => storeConfigFromEnv({ AIGW_STORE: 'redis://:hunter2-secret@h/db' }));
    expect(err.message).not.toContain('hunter2');
  });
});
