/**
 * Benchmark: what ai-budget's check costs per request, against a real redis-server on loopback.
 *
 *   npm run bench:budget                       5000 requests, one client
 *   npm run bench:budget -- --requests 20000 --concurrency 8
 *   npm run bench:budget -- --no-sliding       calendar windows only (a sliding window reads 11 buckets)
 *
 * Per request, as the plugin does it: the counters of three limits (a consumer's day, a
 * global month in USD, a sliding minute), one `reserve` before the provider call and one
 * `settle` after it. Reported: p50 / p99 of each call (the reservation is on the request's
 * path, the settlement after the answer), next to a plain Redis PING measured in the same
 * run, and the Redis commands per request (INFO commandstats). The acceptance target is one
 * store round trip and ≤ 0.3 ms p99 for the check.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { createLogger } from '../lib/log/logger';
import { createStore, type Store, storeConfigFromEnv } from '../lib/store';
import { chargeFor, countersFor } from '../plugins/ai-budget/charges';
import type { BudgetLimit } from '../schemas/ai-budget';
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

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      requests: { type: 'string', default: '5000' },
      concurrency: { type: 'string', default: '1' },
      'no-sliding': { type: 'boolean', default: false },
    },
  });
  const limits = values['no-sliding'] ? LIMITS.filter((l) => l.window !== 'sliding') : LIMITS;
  const requests = Number(values.requests);
  const concurrency = Number(values.concurrency);
  const redis = await RedisServer.create();
  const logger = createLogger({ level: 'silent' });
  const store: Store = createStore(storeConfigFromEnv({ AIGW_STORE: redis.url }), logger);
  const admin = new Redis(redis.url);
  try {
    await store.ping();
    const reserve: number[] = [];
    const settle: number[] = [];
    const ping: number[] = [];
    const prices = { input_per_1m: 0.15, output_per_1m: 0.6 };
    const one = async (i: number) => {
      const now = Date.now();
      const who = { consumerId: `c${i % 50}`, groups: [], header: () => undefined };
      const counters = countersFor(limits, who, now, 'UTC');
      const charges = counters.map((c) => chargeFor(c, { promptTokens: 900, choices: 1, prices }, 1, now));
      let t = performance.now();
      await store.ping();
      ping.push(performance.now() - t);
      t = performance.now();
      const result = await store.reserve({
        id: `r${i}`,
        charges,
        output: 512,
        minOutput: 16,
        holdMs: 600_000,
      });
      reserve.push(performance.now() - t);
      t = performance.now();
      await store.settle(
        `r${i}`,
        counters.map((c, k) => ({
          key: c.keys[0]!,
          amount: result.ok ? 1_100 : 0,
          ttlMs: charges[k]!.ttlMs,
        })),
      );
      settle.push(performance.now() - t);
    };
    // Warm-up: scripts loaded, connection and JIT warm.
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
    // Minus the reference PING of each request.
    const roundTrips = (after.sent - before.sent - requests) / requests;
    const inner = (after.all - before.all - 1 - 2 * requests) / requests;
    const check = timing(reserve);
    const bare = timing(ping);
    const rows = [
      ['redis PING (reference)', bare],
      ['reserve (on the request path)', check],
      ['settle (after the answer)', timing(settle)],
    ] as const;
    const lines = [
      `machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version}`,
      `requests: ${requests}, concurrency ${concurrency}, limits per request: ${limits.map((l) => `${l.window} ${l.unit}`).join(', ')}`,
      '',
      '| call | p50 ms | p99 ms | max ms |',
      '|---|---|---|---|',
      ...rows.map(([name, t]) => `| ${name} | ${t.p50} | ${t.p99} | ${t.max} |`),
      '',
      `store round trips per request: ${roundTrips.toFixed(2)} (reserve + settle); commands the scripts run inside Redis: ${inner.toFixed(1)}`,
      `check: ${check.p99 <= 0.3 ? 'PASS' : 'FAIL'} (reserve p99 ${check.p99} ms, target ≤ 0.3 ms; one store round trip on the request path)`,
      `  over a bare round trip (PING) on this machine the script adds p50 ${(check.p50 - bare.p50).toFixed(3)} ms, p99 ${(check.p99 - bare.p99).toFixed(3)} ms`,
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
