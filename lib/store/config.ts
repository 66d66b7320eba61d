import { type Static, Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { GatewayError } from '../errors';

const HostPortSchema = Type.Object(
  {
    host: Type.String({ minLength: 1, description: 'Host name or IP address.' }),
    port: Type.Integer({ minimum: 1, maximum: 65535, description: 'TCP port.' }),
  },
  { additionalProperties: false, description: 'A host and port.' },
);

export const RedisConfigSchema = Type.Object(
  {
    url: Type.Optional(
      Type.String({
        pattern: '^rediss?://',
        referenceable: true,
        description:
          'Standalone Redis as a URL: redis://[[user]:password@]host[:port][/db], rediss:// for TLS. ' +
          'Referenceable, since it may carry a password. Explicit username, password, db and tls win over the URL.',
      }),
    ),
    host: Type.Optional(
      Type.String({ minLength: 1, description: 'Standalone Redis host (instead of url).' }),
    ),
    port: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 65535, description: 'Standalone Redis port; 6379 when unset.' }),
    ),
    db: Type.Optional(
      Type.Integer({
        minimum: 0,
        description: 'Database number for standalone and Sentinel; 0 when unset. Cluster has only 0.',
      }),
    ),
    username: Type.Optional(Type.String({ minLength: 1, description: 'Redis ACL user (Redis 6+).' })),
    password: Type.Optional(
      Type.String({
        minLength: 1,
        referenceable: true,
        description: 'Redis password, e.g. {vault://env/REDIS_PASSWORD}.',
      }),
    ),
    tls: Type.Optional(
      Type.Boolean({ description: 'Connect with TLS (also to Sentinels); on for rediss:// URLs.' }),
    ),
    sentinels: Type.Optional(
      Type.Array(HostPortSchema, {
        minItems: 1,
        description: 'Sentinel addresses; use with sentinel_master.',
      }),
    ),
    sentinel_master: Type.Optional(
      Type.String({ minLength: 1, description: 'Name of the master group the Sentinels watch.' }),
    ),
    sentinel_username: Type.Optional(
      Type.String({ minLength: 1, description: 'ACL user for the Sentinels.' }),
    ),
    sentinel_password: Type.Optional(
      Type.String({ minLength: 1, referenceable: true, description: 'Password for the Sentinels.' }),
    ),
    cluster_nodes: Type.Optional(
      Type.Array(HostPortSchema, {
        minItems: 1,
        description: 'Some Redis Cluster nodes; the others are discovered.',
      }),
    ),
    key_prefix: Type.String({
      default: 'aigw',
      minLength: 1,
      pattern: '^[^{}]+$',
      description:
        'Prefix of every key, before the {tenant} hash tag. No braces: they would move the hash tag.',
    }),
    connect_timeout_ms: Type.Integer({
      default: 1000,
      minimum: 1,
      maximum: 60000,
      description: 'Limit for establishing a connection, and how long ping() waits for one.',
    }),
    command_timeout_ms: Type.Integer({
      default: 250,
      minimum: 1,
      maximum: 60000,
      description: 'Limit for each Redis call; past it the call fails with AIGW_STORE_UNAVAILABLE.',
    }),
  },
  {
    additionalProperties: false,
    default: {},
    description: 'Redis connection: exactly one of url, host, sentinels or cluster_nodes.',
  },
);

export const MemoryConfigSchema = Type.Object(
  {
    max_entries: Type.Integer({
      default: 100000,
      minimum: 1,
      description: 'Entries kept in memory before the least recently used is evicted.',
    }),
  },
  { additionalProperties: false, default: {}, description: 'In-process store settings.' },
);

export const StoreConfigSchema = Type.Object(
  {
    kind: Type.Union([Type.Literal('memory'), Type.Literal('redis')], {
      default: 'memory',
      description: 'memory: in this process only, not shared across nodes. redis: shared by every node.',
    }),
    redis: RedisConfigSchema,
    memory: MemoryConfigSchema,
  },
  { additionalProperties: false, description: 'Where shared state (budgets, breakers, cache) lives.' },
);

export type StoreConfig = Static<typeof StoreConfigSchema>;
export type RedisConfig = Static<typeof RedisConfigSchema>;

/** What a standalone URL holds, parsed once so that bad URLs fail at config time. */
export interface RedisUrlParts {
  host: string;
  port: number;
  db?: number;
  username?: string;
  password?: string;
  tls: boolean;
}

/**
 * Applies defaults and validates, including the cross-field rules JSON Schema cannot say.
 * Error messages name the field, never its value (values can be secrets).
 */
export function parseStoreConfig(input: unknown): StoreConfig {
  const value = Value.Default(StoreConfigSchema, Value.Clone(input ?? {}));
  const first = Value.Errors(StoreConfigSchema, value).First();
  if (first) invalid(`${first.path || '/'}: ${first.message}`);
  const config = value as StoreConfig;
  if (config.kind === 'redis') checkRedisTopology(config.redis);
  return config;
}

function checkRedisTopology(redis: RedisConfig): void {
  const modes = [
    redis.url !== undefined && 'url',
    redis.host !== undefined && 'host',
    redis.sentinels !== undefined && 'sentinels',
    redis.cluster_nodes !== undefined && 'cluster_nodes',
  ].filter(Boolean);
  if (modes.length !== 1) {
    invalid(
      `/redis: set exactly one of url, host, sentinels or cluster_nodes (found ${modes.join(', ') || 'none'})`,
    );
  }
  if (redis.port !== undefined && redis.host === undefined) invalid('/redis/port: only with host');
  if ((redis.sentinels === undefined) !== (redis.sentinel_master === undefined)) {
    invalid('/redis: sentinels and sentinel_master go together');
  }
  if (redis.sentinels === undefined && (redis.sentinel_username ?? redis.sentinel_password) !== undefined) {
    invalid('/redis: sentinel_username and sentinel_password only with sentinels');
  }
  if (redis.cluster_nodes !== undefined && redis.db !== undefined && redis.db !== 0) {
    invalid('/redis/db: Redis Cluster has only database 0');
  }
  if (redis.url !== undefined) parseRedisUrl(redis.url);
}

/** Splits a redis:// or rediss:// URL; throws AIGW_CONFIG_INVALID without echoing it. */
export function parseRedisUrl(url: string): RedisUrlParts {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    invalid('/redis/url: not a valid URL');
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    invalid('/redis/url: scheme must be redis:// or rediss://');
  }
  if (parsed.hostname === '') invalid('/redis/url: host missing');
  if (parsed.search !== '' || parsed.hash !== '') {
    invalid('/redis/url: query and fragment are not supported; use the config fields');
  }
  const path = parsed.pathname.replace(/^\//, '');
  if (path !== '' && !/^(0|[1-9][0-9]*)$/.test(path)) invalid('/redis/url: path must be a database number');
  return {
    host: parsed.hostname.replace(/^\[(.*)\]$/, '$1'), // IPv6 literals come bracketed
    port: parsed.port === '' ? 6379 : Number(parsed.port),
    db: path === '' ? undefined : Number(path),
    username: parsed.username === '' ? undefined : decodeURIComponent(parsed.username),
    password: parsed.password === '' ? undefined : decodeURIComponent(parsed.password),
    tls: parsed.protocol === 'rediss:',
  };
}

/**
 * The suite server's process-wide store from its environment:
 * AIGW_STORE = "memory" (the default when unset) or a redis:// / rediss:// URL;
 * AIGW_STORE_COMMAND_TIMEOUT_MS = the per-call limit for Redis.
 */
export function storeConfigFromEnv(env: NodeJS.ProcessEnv = process.env): StoreConfig {
  const store = env.AIGW_STORE?.trim() ?? '';
  const redis: Record<string, unknown> = {};
  const timeout = env.AIGW_STORE_COMMAND_TIMEOUT_MS?.trim();
  if (timeout !== undefined && timeout !== '') {
    if (!/^[1-9][0-9]*$/.test(timeout)) {
      invalid('AIGW_STORE_COMMAND_TIMEOUT_MS must be a positive integer of milliseconds');
    }
    redis.command_timeout_ms = Number(timeout);
  }
  if (store === '' || store === 'memory') return parseStoreConfig({ kind: 'memory', redis });
  if (!/^rediss?:\/\//.test(store)) {
    invalid('AIGW_STORE must be "memory" or a redis:// or rediss:// URL');
  }
  redis.url = store;
  return parseStoreConfig({ kind: 'redis', redis });
}

function invalid(message: string): never {
  throw new GatewayError('AIGW_CONFIG_INVALID', `store config ${message}`);
}
