/**
 * Benchmark: what ai-budget's check costs per request, against a real redis-server on loopback.
 *
 *   npm run bench:budget                       5000 requests, one client
 *   npm run bench:budget -- --requests 20000 --concurrency 8
 *   npm run bench:budget -- --no-sliding       calendar windows only (a sliding window reads 11 buckets)
 *
 * Per request, as the plugin does it: the counters of three limits (a consumer's day, a
 * global month in USD, a sliding minute) for one of 50 consumers, one reservation before the
 * provider call and one settlement after it; twice, on limits of their own: one reservation per
 * request in the store (`lease.enabled: false`), and through ai-budget's leases (the default).
 * Reported: p50 / p99 of each call, next to a plain Redis PING measured in the same run, and
 * the store calls and Redis commands per request (INFO commandstats). The acceptance target
 * is at most one store round trip and ≤ 0.3 ms p99 for the check.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { createLogger } from '../lib/log/logger';
import { createStore, type Store, storeConfigFromEnv } from '../lib/store';
import { chargeFor, countersFor } from '../plugins/ai-budget/charges';
import { type BudgetStore, LeasedBudget, leaseSettings } from '../plugins/ai-budget/leases';
import { type BudgetLimit, budgetConfig } from '../schemas/ai-budget';
import { RedisServer } from '../spec/support/redis';
import { percentile } from './bench/load';

const LIMITS: BudgetLimit[] = [
  { name: 'bench-day', scope: 'consumer', window: 'day', unit: 'tokens', limit: 1e12, mode: 'hard' },
  { name: 'bench-month', scope: 'global', window: 'month', unit: 'cost_usd', limit: 1e6, mode: 'hard' },
  {
    name: 'bench-minute',
    scope: 'consumer',
    window: 'sliding',
    sliding_window_s: 60,
    unit: 'tokens',
    limit: 1e12,
    mode: 'hard',
  },
];

interface Timing {
  p50: number;
  p99: number;
  max: number;
}

function timing(samples: number[]): Timing {
  const round = (n: number) => Math.round(n * 1000) / 1000;
  return {
    p50: round(percentile(samples, 50)),
    p99: round(percentile(samples, 99)),
    max: round(Math.max(...samples)),
  };
}

/**
 * Commands Redis has run so far (read on a connection of its own): those a client sent
 * (round trips: EVALSHA, EVAL, PING) and all of them, the scripts' inner calls included.
 */
async function commandCalls(admin: Redis): Promise<{ sent: number; all: number }> {
  const info = await admin.info('commandstats');
  let sent = 0;
  let all = 0;
  for (const m of info.matchAll(/cmdstat_([a-z|]+):calls=(\d+)/g)) {
    all += Number(m[2]);
    if (m[1] === 'evalsha' || m[1] === 'eval' || m[1] === 'ping') sent += Number(m[2]);
  }
  return { sent, all };
}

interface PhaseResult {
  reserve: Timing;
  settle: Timing;
  ping: Timing;
  /** Store calls per request (reserve + settle; leases' own calls included), PING excluded. */
  roundTrips: number;
  /** Commands the scripts run inside Redis, per request. */
  inner: number;
}

/**
 * `requests` requests as ai-budget makes them: counters of the limits for one of 50 consumers,
 * a reservation before the provider call, a settlement after it; a PING first as the reference.
 */
async function phase(
  budget: BudgetStore,
  store: Store,
  admin: Redis,
  limits: BudgetLimit[],
  requests: number,
  concurrency: number,
): Promise<PhaseResult> {
  const reserve: number[] = [];
  const settle: number[] = [];
  const ping: number[] = [];
  const prices = { input_per_1m: 0.15, output_per_1m: 0.6 };
  const one = async (i: number) => {
    const now = Date.now();
    const who = { consumerId: `c${Math.abs(i) % 50}`, groups: [], header: () => undefined };
    const counters = countersFor(limits, who, now, 'UTC');
    const charges = counters.map((c) => chargeFor(c, { promptTokens: 900, choices: 1, prices }, 1, now));
    let t = performance.now();
    await store.ping();
    ping.push(performance.now() - t);
    t = performance.now();
    const id = `r${i}:${Math.random()}`;
    const result = await budget.reserve({ id, charges, output: 512, minOutput: 16, holdMs: 600_000 });
    reserve.push(performance.now() - t);
    t = performance.now();
    await budget.settle(
      id,
      counters.map((c, k) => ({ key: c.keys[0]!, amount: result.ok ? 1_100 : 0, ttlMs: charges[k]!.ttlMs })),
    );
    settle.push(performance.now() - t);
  };
  // Warm-up: scripts loaded, connection and JIT warm (and, with leases, the counters busy).
  for (let i = 0; i < 200; i++) await one(-i - 1);
  reserve.length = settle.length = ping.length = 0;
  const before = await commandCalls(admin);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < requests) await one(next++);
    }),
  );
  const after = await commandCalls(admin);
  return {
    reserve: timing(reserve),
    settle: timing(settle),
    ping: timing(ping),
    roundTrips: (after.sent - before.sent - requests) / requests,
    inner: (after.all - before.all - 1 - 2 * requests) / requests,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      requests: { type: 'string', default: '5000' },
      concurrency: { type: 'string', default: '1' },
      'no-sliding': { type: 'boolean', default: false },
    },
  });
  const requests = Number(values.requests);
  const concurrency = Number(values.concurrency);
  const redis = await RedisServer.create();
  const logger = createLogger({ level: 'silent' });
  const store: Store = createStore(storeConfigFromEnv({ AIGW_STORE: redis.url }), logger);
  const admin = new Redis(redis.url);
  // Each variant has limits of its own names: no counter is shared between them.
  const limitsOf = (variant: string) =>
    LIMITS.filter((l) => !values['no-sliding'] || l.window !== 'sliding').map((l) => ({
      ...l,
      name: `${l.name}-${variant}`,
    }));
  try {
    await store.ping();
    const direct = await phase(store, store, admin, limitsOf('direct'), requests, concurrency);
    // Reservations requests make in the store themselves (not their leases').
    let ownReserves = 0;
    const counting: BudgetStore = {
      reserve: (req) => {
        if (!req.id.startsWith('lease:')) ownReserves++;
        return store.reserve(req);
      },
      settle: (id, actual) => store.settle(id, actual),
    };
    // ai-budget's defaults.
    const leases = new LeasedBudget(
      counting,
      leaseSettings(budgetConfig.validate({ limits: LIMITS }).config),
      logger,
    );
    const leased = await phase(leases, store, admin, limitsOf('leased'), requests, concurrency);
    leases.close();
    const row = (name: string, t: Timing) => `| ${name} | ${t.p50} | ${t.p99} | ${t.max} |`;
    const limits = limitsOf('direct');
    const lines = [
      `machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version}`,
      `requests: ${requests} per variant, concurrency ${concurrency}, 50 consumers, limits per request: ${limits.map((l) => `${l.window} ${l.unit}`).join(', ')}`,
      '',
      '| call | p50 ms | p99 ms | max ms |',
      '|---|---|---|---|',
      row('redis PING (reference)', direct.ping),
      row('reserve, lease.enabled false (one store round trip)', direct.reserve),
      row('reserve, leases (the default)', leased.reserve),
      row('settle, lease.enabled false (after the answer)', direct.settle),
      row('settle, leases (after the answer)', leased.settle),
      '',
      `store calls per request: ${direct.roundTrips.toFixed(2)} without leases, ${leased.roundTrips.toFixed(3)} with leases (reserve + settle, leases' own calls included); commands the scripts run inside Redis: ${direct.inner.toFixed(1)} / ${leased.inner.toFixed(2)}`,
      `with leases, ${((100 * ownReserves) / (requests + 200)).toFixed(1)} % of the requests reserved in the store themselves (the warm-up's 200 included)`,
      `check: ${leased.reserve.p99 <= 0.3 ? 'PASS' : 'FAIL'} (reserve p99 with leases ${leased.reserve.p99} ms, target ≤ 0.3 ms)`,
      `  without leases: reserve p99 ${direct.reserve.p99} ms; over a bare round trip (PING) the script adds p50 ${(direct.reserve.p50 - direct.ping.p50).toFixed(3)} ms, p99 ${(direct.reserve.p99 - direct.ping.p99).toFixed(3)} ms`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await store.close();
    admin.disconnect();
    await redis.destroy();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench-budget failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
