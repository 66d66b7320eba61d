/**
 * Where a budget counter keeps its state in Redis, as the scripts receive it: the counter
 * itself (committed usage, a decimal integer as INCRBY keeps it), a hash of its live
 * reservations (id -> amount held, and '' -> their sum) and a sorted set of the same ids scored
 * by when they lapse (Redis server time in ms). The suffixes keep the counter's hash tag,
 * which key() puts first, so all three share its Cluster slot; key() escapes braces, so no
 * other key can end in them. The three expire together.
 */
export function budgetKeys(counter: string): [string, string, string] {
  return [counter, `${counter}:{held}`, `${counter}:{expiry}`];
}

/**
 * Shared by the budget scripts. Each counter comes as its three keys in a row (budgetKeys).
 * Expiry uses the Redis server's clock, so nodes with skewed clocks agree. Lua numbers are
 * doubles: amounts and totals must stay below 2^53. The store checks amounts on the way in and
 * results on the way out; the scripts refuse counters beyond it.
 */
const BUDGET_LIB = `
local MAX_SAFE = 9007199254740991

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Lua's own formatting keeps 14 digits (1.2345678901234e+14), which Redis takes for no integer.
local function int(n)
  return string.format('%d', n)
end

local function committed(counter)
  local v = redis.call('GET', counter)
  if not v then
    return 0
  end
  local n = tonumber(v)
  if (v ~= '0' and not string.match(v, '^-?[1-9][0-9]*$')) or math.abs(n) > MAX_SAFE then
    error({ err = 'ERR value is not an integer or out of range' })
  end
  return n
end

local function total(counter, held)
  return committed(counter) + tonumber(redis.call('HGET', held, '') or '0')
end

local function release(held, expiry, id)
  redis.call('ZREM', expiry, id)
  local amount = redis.call('HGET', held, id)
  if not amount then
    return
  end
  redis.call('HDEL', held, id)
  redis.call('HINCRBY', held, '', int(-tonumber(amount)))
  -- Only the sum left: nothing is held.
  if redis.call('HLEN', held) == 1 then
    redis.call('DEL', held)
  end
end

local function release_expired(held, expiry, now)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', expiry, '-inf', int(now))) do
    release(held, expiry, id)
  end
end

-- The counter expires ttl ms from now unless it already outlives that (or never expires);
-- an absent one is created at 0. Its hash and sorted set follow it.
local function extend(counter, held, expiry, ttl)
  local left = redis.call('PTTL', counter)
  if left == -2 then
    redis.call('SET', counter, '0', 'PX', int(ttl))
    left = ttl
  elseif left >= 0 and left < ttl then
    redis.call('PEXPIRE', counter, int(ttl))
    left = ttl
  end
  for _, k in ipairs({ held, expiry }) do
    if left == -1 then
      redis.call('PERSIST', k)
    else
      redis.call('PEXPIRE', k, int(left))
    end
  end
end
`;

/**
 * Where a cache namespace keeps its entries in Redis: a hash (id -> encoded entry) and a sorted
 * set of the same ids scored by write time (Redis server time in µs, made strictly increasing
 * per namespace, so a scan's cursor never skips an entry). The suffixes keep the namespace's
 * hash tag, and key() output can never end in braces, so no other key looks like them.
 */
export function cacheKeys(ns: string): [string, string] {
  return [`${ns}:{entries}`, `${ns}:{order}`];
}

/** Shared by the cache scripts: the Redis clock in µs, so every node orders writes the same way. */
const CACHE_LIB = `
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function int(n)
  return string.format('%d', n)
end
`;

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
  /**
   * Store.reserve. KEYS: every charge's counters in order, three keys each. ARGV: id, output,
   * minOutput, holdMs, then per charge: number of counters, cap, hard (1 or 0), fixed,
   * perOutput, ttlMs. Returns ok (1 or 0), the output reserved, the refusing charge's index
   * (-1 for none), then what each charge's window holds, all as decimal text.
   */
  aigwReserve: {
    lua: `${BUDGET_LIB}
local id = ARGV[1]
local output = tonumber(ARGV[2])
local min_output = tonumber(ARGV[3])
local hold_ms = tonumber(ARGV[4])
local now = now_ms()

local charges = {}
local k = 1
for a = 5, #ARGV, 6 do
  local c = {
    first = k,
    last = k + 3 * (tonumber(ARGV[a]) - 1),
    cap = tonumber(ARGV[a + 1]),
    hard = ARGV[a + 2] == '1',
    fixed = tonumber(ARGV[a + 3]),
    per_output = tonumber(ARGV[a + 4]),
    ttl = tonumber(ARGV[a + 5]),
  }
  charges[#charges + 1] = c
  k = c.last + 3
end

-- Every counter is read (and checked) before anything but expired holds is written.
local totals = {}
for j = 1, #KEYS, 3 do
  if totals[KEYS[j]] == nil then
    release_expired(KEYS[j + 1], KEYS[j + 2], now)
    totals[KEYS[j]] = total(KEYS[j], KEYS[j + 1])
  end
end

local function window(c)
  local sum = 0
  for j = c.first, c.last, 3 do
    sum = sum + totals[KEYS[j]]
  end
  return sum
end

local function reply(ok, reserved, refused_by)
  local out = { ok, int(reserved), int(refused_by) }
  for _, c in ipairs(charges) do
    out[#out + 1] = int(window(c))
  end
  return out
end

-- The largest output every hard charge affords; -1 when even a charge's fixed cost does not fit.
local n = output
local refused_by = -1
for i, c in ipairs(charges) do
  if c.hard then
    local room = c.cap - window(c) - c.fixed
    local fits = output
    if room < 0 then
      fits = -1
    elseif c.per_output > 0 then
      fits = math.min(output, math.floor(room / c.per_output))
    end
    if fits < min_output and refused_by < 0 then
      refused_by = i - 1
    end
    n = math.min(n, fits)
  end
end
if refused_by >= 0 then
  return reply('0', 0, refused_by)
end

for _, c in ipairs(charges) do
  local counter, held, expiry = KEYS[c.first], KEYS[c.first + 1], KEYS[c.first + 2]
  local amount = c.fixed + c.per_output * n
  -- HINCRBY: an id held twice on one counter (charges sharing it) holds both amounts.
  redis.call('HINCRBY', held, id, int(amount))
  redis.call('HINCRBY', held, '', int(amount))
  redis.call('ZADD', expiry, int(now + hold_ms), id)
  extend(counter, held, expiry, c.ttl)
  totals[counter] = totals[counter] + amount
end
return reply('1', n, -1)
`,
  },
  /**
   * Store.settle. KEYS: the counters settled, three keys each. ARGV: id, then per counter:
   * amount, ttlMs. Every counter is checked before anything is written.
   */
  aigwSettle: {
    lua: `${BUDGET_LIB}
local id = ARGV[1]
local now = now_ms()

local after = {}
for i = 1, #KEYS / 3 do
  local counter = KEYS[3 * i - 2]
  local value = (after[counter] or committed(counter)) + tonumber(ARGV[2 * i])
  if value > MAX_SAFE then
    error({ err = 'ERR counter out of safe integer range' })
  end
  after[counter] = value
end

for i = 1, #KEYS / 3 do
  local counter, held, expiry = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  release_expired(held, expiry, now)
  release(held, expiry, id)
  extend(counter, held, expiry, tonumber(ARGV[2 * i + 1]))
  redis.call('INCRBY', counter, ARGV[2 * i])
end
`,
  },
  /** Store.budgetUsage. KEYS: one counter's three keys. Returns committed usage, live holds (text). */
  aigwBudgetUsage: {
    numberOfKeys: 3,
    lua: `${BUDGET_LIB}
release_expired(KEYS[2], KEYS[3], now_ms())
return { int(committed(KEYS[1])), redis.call('HGET', KEYS[2], '') or '0' }
`,
  },

  /**
   * Store.cachePut. KEYS: entries hash, order set. ARGV: id, value, ttlMs, maxEntries.
   * Returns how many entries the write removed (expired, then the oldest past maxEntries).
   */
  aigwCachePut: {
    numberOfKeys: 2,
    lua: `${CACHE_LIB}
local entries, order = KEYS[1], KEYS[2]
local id, ttl, max = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_us()
local cursor = now
local top = redis.call('ZRANGE', order, -1, -1, 'WITHSCORES')
if top[2] and tonumber(top[2]) >= cursor then
  cursor = tonumber(top[2]) + 1
end
redis.call('HSET', entries, id, ARGV[2])
redis.call('ZADD', order, int(cursor), id)
local removed = 0
local expired = redis.call('ZRANGEBYSCORE', order, '-inf', '(' .. int(now - ttl * 1000))
for i = 1, #expired, 1000 do
  local batch = { unpack(expired, i, math.min(i + 999, #expired)) }
  redis.call('HDEL', entries, unpack(batch))
  redis.call('ZREM', order, unpack(batch))
end
removed = removed + #expired
local over = redis.call('ZCARD', order) - max
if over > 0 then
  local oldest = redis.call('ZRANGE', order, 0, over - 1)
  for i = 1, #oldest, 1000 do
    redis.call('HDEL', entries, unpack(oldest, i, math.min(i + 999, #oldest)))
  end
  redis.call('ZREMRANGEBYRANK', order, 0, over - 1)
  removed = removed + over
end
-- A namespace nobody writes to any more goes away with its last entry.
redis.call('PEXPIRE', entries, int(ttl))
redis.call('PEXPIRE', order, int(ttl))
return removed
`,
  },
  /** Store.cacheGet. KEYS: entries hash, order set. ARGV: id, ttlMs. The entry, or nil. */
  aigwCacheGet: {
    numberOfKeys: 2,
    lua: `${CACHE_LIB}
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) < now_us() - tonumber(ARGV[2]) * 1000 then
  return false
end
return redis.call('HGET', KEYS[1], ARGV[1])
`,
  },
  /**
   * Store.cacheScan. KEYS: entries hash, order set. ARGV: cursor, limit, ttlMs. Returns
   * more (1 or 0), then id, cursor, value for each record, oldest first.
   */
  aigwCacheScan: {
    numberOfKeys: 2,
    lua: `${CACHE_LIB}
local after = math.max(tonumber(ARGV[1]), now_us() - tonumber(ARGV[3]) * 1000 - 1)
local limit = tonumber(ARGV[2])
local items = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. int(after), '+inf', 'WITHSCORES', 'LIMIT', 0, limit + 1)
local out = { 0 }
local n = math.min(#items / 2, limit)
if #items / 2 > limit then
  out[1] = 1
end
for i = 1, n do
  local id = items[2 * i - 1]
  local value = redis.call('HGET', KEYS[1], id)
  if value then
    out[#out + 1] = id
    out[#out + 1] = int(tonumber(items[2 * i]))
    out[#out + 1] = value
  end
end
return out
`,
  },
  /** Store.cacheDelete. KEYS: entries hash, order set. ARGV: id. Returns 1 when it was there. */
  aigwCacheDelete: {
    numberOfKeys: 2,
    lua: `
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
`,
  },
  /** Store.cachePurge. KEYS: entries hash, order set. Returns how many entries there were. */
  aigwCachePurge: {
    numberOfKeys: 2,
    lua: `
local n = redis.call('HLEN', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
return n
`,
  },
  /** Store.cacheCount. KEYS: order set. ARGV: ttlMs. */
  aigwCacheCount: {
    numberOfKeys: 1,
    lua: `${CACHE_LIB}
return redis.call('ZCOUNT', KEYS[1], int(now_us() - tonumber(ARGV[1]) * 1000), '+inf')
`,
  },
} as const;

/** The commands ioredis adds to a client for `SCRIPTS`, typed. */
export interface ScriptCommands {
  aigwIncrBy(key: string, by: number, ttlMs: number): Promise<number>;
  /**
   * Variadic scripts take the number of keys first, then the keys, then the arguments. Budget
   * scripts answer numbers as text: ioredis decodes integer replies just below 2^53 inexactly.
   */
  aigwReserve(numberOfKeys: number, ...keysAndArgs: Array<string | number>): Promise<string[]>;
  aigwSettle(numberOfKeys: number, ...keysAndArgs: Array<string | number>): Promise<null>;
  aigwBudgetUsage(counter: string, held: string, expiry: string): Promise<string[]>;
  aigwCachePut(
    entries: string,
    order: string,
    id: string,
    value: Buffer,
    ttlMs: number,
    max: number,
  ): Promise<number>;
  aigwCacheGetBuffer(entries: string, order: string, id: string, ttlMs: number): Promise<Buffer | null>;
  /** Raw: more flag, then id, cursor, value triples, all as Buffers. */
  aigwCacheScanBuffer(
    entries: string,
    order: string,
    cursor: number,
    limit: number,
    ttlMs: number,
  ): Promise<Buffer[]>;
  aigwCacheDelete(entries: string, order: string, id: string): Promise<number>;
  aigwCachePurge(entries: string, order: string): Promise<number>;
  aigwCacheCount(order: string, ttlMs: number): Promise<number>;
}
