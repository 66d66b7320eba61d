import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../log/logger';
import { parseRedisUrl, type RedisConfig } from './config';
import { budgetKeys, cacheKeys, SCRIPTS, type ScriptCommands } from './scripts';
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
  type ReserveRequest,
  type ReserveResult,
  type Store,
  storeUnavailable,
} from './store';

type Client = (Redis | Cluster) & ScriptCommands;

const RECONNECT_BASE_MS = 50;
const RECONNECT_CAP_MS = 2000;
const RECONNECT_JITTER_MS = 100;

/**
 * Delay before reconnect attempt `attempt` (1, 2, ...): doubles from 50 ms up to 2 s, plus a
 * little jitter so many nodes do not reconnect in step. Always a number: ioredis stops
 * reconnecting for good when a strategy returns anything else.
 */
export function reconnectDelay(attempt: number, random: () => number = Math.random): number {
  const exponential = RECONNECT_BASE_MS * 2 ** Math.max(0, attempt - 1);
  return Math.min(exponential, RECONNECT_CAP_MS) + Math.floor(random() * RECONNECT_JITTER_MS);
}

/**
 * Redis (standalone, Sentinel or Cluster) through ioredis. Fails fast rather than queueing:
 * with no connection a call rejects at once (no offline queue); with a connection every call
 * is bounded by `command_timeout_ms`, by ioredis and again by our own timer (Cluster
 * redirections and retries are not covered by ioredis' per-command timeout). The client
 * reconnects forever in the background, so the store recovers by itself.
 *
 * Nothing from ioredis errors reaches a log line or a GatewayError unfiltered: ioredis attaches
 * the failed command's arguments to its errors, and for AUTH/HELLO those include the password.
 */
export class RedisStore implements Store {
  readonly kind = 'redis';
  private readonly client: Client;
  private readonly prefix: string;
  private readonly commandTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly secrets: string[];
  private readonly log: Logger;
  private state: 'connecting' | 'up' | 'down' = 'connecting';
  private closed = false;

  constructor(config: RedisConfig, logger: Logger) {
    this.prefix = `${config.key_prefix}:`;
    this.commandTimeoutMs = config.command_timeout_ms;
    this.connectTimeoutMs = config.connect_timeout_ms;
    const target = describeTarget(config);
    this.secrets = target.secrets;
    this.log = logger.child({ store: 'redis', ...target.where });
    this.client = target.create();
    this.client.on('ready', () => this.transition('up'));
    this.client.on('error', (err: unknown) => this.transition('down', err));
    this.client.on('close', () => this.transition('down'));
  }

  get(key: string): Promise<Buffer | null> {
    return this.call('get', () => this.client.getBuffer(this.prefix + key));
  }

  async set(key: string, value: Buffer | string, ttlMs?: number): Promise<void> {
    const ttl = checkTtl(ttlMs);
    const k = this.prefix + key;
    await this.call('set', () =>
      ttl === undefined ? this.client.set(k, value) : this.client.set(k, value, 'PX', ttl),
    );
  }

  async delete(key: string): Promise<void> {
    await this.call('delete', () => this.client.del(this.prefix + key));
  }

  async incrBy(key: string, by: number, ttlMs?: number): Promise<number> {
    checkIncrement(by);
    const ttl = checkTtl(ttlMs) ?? 0;
    const next = await this.call('incrBy', () => this.client.aigwIncrBy(this.prefix + key, by, ttl));
    // Redis counts in 64 bits; past 2^53 a JavaScript number would silently lose precision.
    if (!Number.isSafeInteger(next)) {
      throw storeUnavailable('redis incrBy: counter out of safe integer range');
    }
    return next;
  }

  async reserve(req: ReserveRequest): Promise<ReserveResult> {
    const { id, charges, output, minOutput, holdMs } = checkReserve(req);
    const keys: string[] = [];
    const args: Array<string | number> = [id, output, minOutput, holdMs];
    for (const charge of charges) {
      for (const k of charge.keys) keys.push(...budgetKeys(this.prefix + k));
      args.push(
        charge.keys.length,
        charge.cap,
        charge.hard ? 1 : 0,
        charge.fixed,
        charge.perOutput,
        charge.ttlMs,
      );
    }
    const reply = await this.call('reserve', () => this.client.aigwReserve(keys.length, ...keys, ...args));
    const [ok, reserved, refusedBy, ...used] = safeIntegers('reserve', reply);
    if (ok === 1) return { ok: true, output: reserved, used };
    return { ok: false, output: 0, used, refusedBy };
  }

  async settle(id: string, actual: ActualUsage[]): Promise<void> {
    const usage = checkSettle(id, actual);
    const keys = usage.flatMap((u) => budgetKeys(this.prefix + u.key));
    const args = usage.flatMap((u) => [u.amount, u.ttlMs]);
    await this.call('settle', () => this.client.aigwSettle(keys.length, ...keys, id, ...args));
  }

  async budgetUsage(key: string): Promise<{ used: number; held: number }> {
    checkBudgetKeys('budgetUsage', [key]);
    const reply = await this.call('budgetUsage', () =>
      this.client.aigwBudgetUsage(...budgetKeys(this.prefix + key)),
    );
    const [used, held] = safeIntegers('budgetUsage', reply);
    return { used, held };
  }

  async resetBudget(key: string): Promise<void> {
    checkBudgetKeys('resetBudget', [key]);
    await this.call('resetBudget', () => this.client.del(...budgetKeys(this.prefix + key)));
  }

  async cachePut(ns: string, id: string, value: Buffer, limits: CacheLimits): Promise<CachePutResult> {
    checkCacheCall('cachePut', ns, { id, ttlMs: limits.ttlMs, maxEntries: limits.maxEntries });
    const [entries, order] = cacheKeys(this.prefix + ns);
    const removed = await this.call('cachePut', () =>
      this.client.aigwCachePut(entries, order, id, value, Math.ceil(limits.ttlMs), limits.maxEntries),
    );
    return { removed: Number(removed) };
  }

  async cacheGet(ns: string, id: string, ttlMs: number): Promise<Buffer | null> {
    checkCacheCall('cacheGet', ns, { id, ttlMs });
    const [entries, order] = cacheKeys(this.prefix + ns);
    return this.call('cacheGet', () => this.client.aigwCacheGetBuffer(entries, order, id, Math.ceil(ttlMs)));
  }

  async cacheScan(ns: string, cursor: number, limit: number, ttlMs: number): Promise<CacheScan> {
    checkCacheCall('cacheScan', ns, { ttlMs, limit, cursor });
    const [entries, order] = cacheKeys(this.prefix + ns);
    const reply = await this.call('cacheScan', () =>
      this.client.aigwCacheScanBuffer(entries, order, cursor, limit, Math.ceil(ttlMs)),
    );
    const records: CacheScan['records'] = [];
    let next = cursor;
    for (let i = 1; i + 2 < reply.length; i += 3) {
      next = Number(String(reply[i + 1]));
      records.push({ id: String(reply[i]), cursor: next, value: reply[i + 2]! });
    }
    return { records, cursor: next, more: String(reply[0]) === '1' };
  }

  async cacheDelete(ns: string, id: string): Promise<boolean> {
    checkCacheCall('cacheDelete', ns, { id });
    const [entries, order] = cacheKeys(this.prefix + ns);
    return (await this.call('cacheDelete', () => this.client.aigwCacheDelete(entries, order, id))) === 1;
  }

  async cachePurge(ns: string): Promise<number> {
    checkCacheCall('cachePurge', ns, {});
    const [entries, order] = cacheKeys(this.prefix + ns);
    return Number(await this.call('cachePurge', () => this.client.aigwCachePurge(entries, order)));
  }

  async cacheCount(ns: string, ttlMs: number): Promise<number> {
    checkCacheCall('cacheCount', ns, { ttlMs });
    const [, order] = cacheKeys(this.prefix + ns);
    return Number(await this.call('cacheCount', () => this.client.aigwCacheCount(order, Math.ceil(ttlMs))));
  }

  async ping(): Promise<void> {
    if (this.closed) throw storeUnavailable('store closed');
    if (this.client.status !== 'ready') await this.waitForReady();
    await this.call('ping', () => this.client.ping());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      // QUIT lets Redis finish what it has; bounded like any call, then the socket goes anyway.
      if (this.client.status === 'ready') await withDeadline(this.client.quit(), this.commandTimeoutMs);
    } catch {
      // Closing anyway.
    } finally {
      this.client.disconnect();
      this.log.info('redis store closed');
    }
  }

  /** Runs one Redis call: at most `command_timeout_ms`, every failure a GatewayError. */
  private async call<T>(op: string, run: () => Promise<T>): Promise<T> {
    if (this.closed) throw storeUnavailable('store closed');
    try {
      return await withDeadline(run(), this.commandTimeoutMs);
    } catch (err) {
      throw storeUnavailable(`redis ${op}: ${this.failureReason(err)}`);
    }
  }

  /** Waits for a connection in progress, at most `connect_timeout_ms`. */
  private waitForReady(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.client.off('ready', onReady);
        reject(storeUnavailable(`redis ping: not connected within ${this.connectTimeoutMs} ms`));
      }, this.connectTimeoutMs);
      this.client.once('ready', onReady);
    });
  }

  /** Logs each change between connected and unavailable once, not every reconnect attempt. */
  private transition(next: 'up' | 'down', err?: unknown): void {
    if (this.closed || next === this.state) return;
    this.state = next;
    if (next === 'up') {
      this.log.info('redis store connected');
    } else {
      const reason = err === undefined ? 'connection closed' : this.scrub(errorMessage(err));
      this.log.warn({ reason }, 'redis store unavailable; calls fail until it reconnects');
    }
  }

  /** A short reason for a failed call: no secrets, no addresses, no client input. */
  private failureReason(err: unknown): string {
    if (err instanceof DeadlineError || errorMessage(err) === 'Command timed out') {
      return `timed out after ${this.commandTimeoutMs} ms`;
    }
    // Errors Redis itself sent back (WRONGTYPE, OOM, NOAUTH, a failed script) say what went wrong.
    if (err instanceof Error && err.name === 'ReplyError') return this.scrub(err.message).slice(0, 200);
    return this.state === 'up' ? 'connection failed' : 'not connected';
  }

  private scrub(text: string): string {
    let out = text;
    for (const secret of this.secrets) out = out.split(secret).join('[REDACTED]');
    return out;
  }
}

class DeadlineError extends Error {}

function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineError('timed out')), ms);
  });
  // race() keeps a handler on `promise`, so its late rejection is never unhandled.
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** A script's numbers, sent as text; past 2^53 Lua's doubles have lost precision, so they are refused. */
function safeIntegers(op: string, reply: string[]): number[] {
  const numbers = reply.map(Number);
  if (!numbers.every((n) => Number.isSafeInteger(n))) {
    throw storeUnavailable(`redis ${op}: counter out of safe integer range`);
  }
  return numbers;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

interface Target {
  /** Safe to log: where the store connects, never credentials. */
  where: Record<string, unknown>;
  /** Strings to scrub from any error text. */
  secrets: string[];
  create(): Client;
}

/** The ioredis client for the configured topology, plus what may be logged about it. */
function describeTarget(config: RedisConfig): Target {
  const fromUrl = config.url === undefined ? undefined : parseRedisUrl(config.url);
  const username = config.username ?? fromUrl?.username;
  const password = config.password ?? fromUrl?.password;
  const tls = (config.tls ?? fromUrl?.tls ?? false) ? {} : undefined;
  const secrets = [password, config.sentinel_password].filter(
    (s): s is string => s !== undefined && s !== '',
  );
  // Shared by every connection: fail fast, bounded calls, never resend a command the caller
  // was already told had failed (an INCRBY resent after a reconnect would count twice).
  const connection = {
    username,
    password,
    tls,
    connectTimeout: config.connect_timeout_ms,
    commandTimeout: config.command_timeout_ms,
    // How long close() lets a half-closed socket linger (ioredis: 2 s, which delays shutdown).
    disconnectTimeout: config.connect_timeout_ms,
    maxRetriesPerRequest: 1,
    autoResendUnfulfilledCommands: false,
    connectionName: 'aigw',
  } satisfies RedisOptions;

  if (config.cluster_nodes !== undefined) {
    const nodes = config.cluster_nodes.map(({ host, port }) => ({ host, port }));
    const options: ClusterOptions = {
      enableOfflineQueue: false,
      clusterRetryStrategy: (attempt) => reconnectDelay(attempt),
      slotsRefreshTimeout: config.connect_timeout_ms,
      scripts: SCRIPTS,
      redisOptions: connection,
    };
    return {
      where: { mode: 'cluster', nodes: nodes.map((n) => `${n.host}:${n.port}`) },
      secrets,
      create: () => new Cluster(nodes, options) as Cluster & ScriptCommands,
    };
  }

  const common: RedisOptions = {
    ...connection,
    enableOfflineQueue: false,
    retryStrategy: (attempt) => reconnectDelay(attempt),
    scripts: SCRIPTS,
  };

  if (config.sentinels !== undefined) {
    const sentinels = config.sentinels.map(({ host, port }) => ({ host, port }));
    const options: RedisOptions = {
      ...common,
      db: config.db ?? 0,
      name: config.sentinel_master,
      sentinels,
      sentinelUsername: config.sentinel_username,
      sentinelPassword: config.sentinel_password,
      sentinelRetryStrategy: (attempt) => reconnectDelay(attempt),
      sentinelCommandTimeout: config.command_timeout_ms,
      enableTLSForSentinelMode: tls !== undefined,
    };
    return {
      where: {
        mode: 'sentinel',
        master: config.sentinel_master,
        sentinels: sentinels.map((s) => `${s.host}:${s.port}`),
      },
      secrets,
      create: () => new Redis(options) as Redis & ScriptCommands,
    };
  }

  const host = config.host ?? fromUrl?.host ?? '127.0.0.1';
  const port = config.host !== undefined ? (config.port ?? 6379) : (fromUrl?.port ?? 6379);
  const db = config.db ?? fromUrl?.db ?? 0;
  const options: RedisOptions = { ...common, host, port, db };
  return {
    where: { mode: 'standalone', host, port, db, tls: tls !== undefined },
    secrets,
    create: () => new Redis(options) as Redis & ScriptCommands,
  };
}
