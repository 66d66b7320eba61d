import type { Logger } from '../log/logger';
import type { StoreConfig } from './config';
import { MemoryStore } from './memory';
import { RedisStore } from './redis';
import type { Store } from './store';

export {
  MemoryConfigSchema,
  parseRedisUrl,
  parseStoreConfig,
  type RedisConfig,
  RedisConfigSchema,
  type StoreConfig,
  StoreConfigSchema,
  storeConfigFromEnv,
} from './config';
export { key } from './key';
export { MemoryStore, type MemoryStoreOptions } from './memory';
export { RedisStore, reconnectDelay } from './redis';
export {
  type ActualUsage,
  type BudgetCharge,
  type CacheLimits,
  type CachePutResult,
  type CacheRecord,
  type CacheScan,
  MAX_CACHE_SCAN,
  MAX_CHARGES,
  type ReserveRequest,
  type ReserveResult,
  type Store,
} from './store';

/**
 * The store a config asks for (parse it with `parseStoreConfig` or `storeConfigFromEnv`).
 * A Redis store starts connecting at once; `await store.ping()` waits for the connection
 * (bounded by connect_timeout_ms), and until then calls fail fast with AIGW_STORE_UNAVAILABLE.
 */
export function createStore(config: StoreConfig, logger: Logger): Store {
  const log = logger.child({ component: 'store' });
  if (config.kind === 'redis') return new RedisStore(config.redis, log);
  log.info(
    { max_entries: config.memory.max_entries },
    'memory store: state stays in this process and is not shared across Kong nodes',
  );
  return new MemoryStore({ maxEntries: config.memory.max_entries });
}
