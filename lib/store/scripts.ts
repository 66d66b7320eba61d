/**
 * Lua scripts the Redis store registers with ioredis (`scripts` option): ioredis sends each
 * with EVAL once per connection, then EVALSHA, and re-sends it after a Redis restart flushed
 * the script cache. Keys passed to a script must share one hash tag (see `key()`) so the
 * script runs on Redis Cluster. Each script mirrors a `Store` method, and `MemoryStore`
 * implements the same meaning in plain code; add new atomic operations the same way.
 */
export const SCRIPTS = {
  /**
   * KEYS[1] counter; ARGV[1] increment; ARGV[2] TTL in ms, 0 for none.
   * Creates the key at 0 with the TTL only when absent, so the TTL of a live window stays.
   */
  aigwIncrBy: {
    numberOfKeys: 1,
    lua: `
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], 0, 'PX', ttl, 'NX')
end
return redis.call('INCRBY', KEYS[1], ARGV[1])
`,
  },
} as const;

/** The commands ioredis adds to a client for `SCRIPTS`, typed. */
export interface ScriptCommands {
  aigwIncrBy(key: string, by: number, ttlMs: number): Promise<number>;
}
