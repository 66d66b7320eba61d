/**
 * Offline evaluation of the `adaptive` strategy on recorded traffic, before it is turned on.
 *
 *   tsc -p . && node dist/scripts/replay-routing.js requests.jsonl [--pool NAME]
 *       [--cost-weight 0] [--latency-weight 0] [--min-explore 0.02] [--max-explore 0.2] [--window-s 3600]
 *
 * Input: ai-metrics' request log as JSON lines (the `file` sink, or the `logger` sink's lines
 * with `msg: "ai request"`), from routes whose ai-router has `quality.enabled` (each line then
 * has `pool`, `task`, `target`, `quality.score`, `cost_usd`, `provider_latency_ms`).
 *
 * Method: the replay estimator. In the log's order (`started_at`), the adaptive strategy orders
 * the pool's targets (those the log shows in it) for the request's task; when its first choice
 * is the target the log shows, the logged result is its reward and it learns from it, else
 * the line is skipped. The mean reward over accepted lines estimates the strategy's own;
 * it is unbiased when the logged choices were uniformly random among the targets (a
 * `round-robin` or equal-`weighted` pool), biased towards the logged policy otherwise, and
 * needs enough lines per task (the accepted count says how many). Reported per pool and task:
 * the logged policy's mean reward, the adaptive strategy's estimate, and its choices.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Target } from '../lib/context';
import { createLogger } from '../lib/log/logger';
import { MemoryStore } from '../lib/store/memory';
import { type AdaptiveConfig, AdaptiveRouting } from '../plugins/ai-router/bandit';

/** One request of the log, as the replay reads it. */
export interface LoggedRequest {
  at: number;
  pool: string;
  task: string;
  target: string;
  quality: number;
  costUsd: number;
  latencyMs: number;
}

/** The log's lines that can be replayed: routed by a pool, checked for quality, with a target. */
export function readLog(text: string): LoggedRequest[] {
  const out: LoggedRequest[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue; // a line cut by a rotation, or another logger's
    }
    const quality = (json.quality as { score?: unknown } | undefined)?.score;
    if (typeof json.pool !== 'string' || typeof json.target !== 'string' || typeof quality !== 'number')
      continue;
    out.push({
      at:
        typeof json.started_at === 'number' ? json.started_at : typeof json.time === 'number' ? json.time : 0,
      pool: json.pool,
      task: typeof json.task === 'string' ? json.task : 'any',
      target: json.target,
      quality,
      costUsd: typeof json.cost_usd === 'number' ? json.cost_usd : 0,
      latencyMs: typeof json.provider_latency_ms === 'number' ? json.provider_latency_ms : 0,
    });
  }
  return out.sort((a, b) => a.at - b.at);
}

export function rewardOf(r: LoggedRequest, config: AdaptiveConfig): number {
  return r.quality - config.cost_weight * r.costUsd - config.latency_weight * (r.latencyMs / 1000);
}

export interface ReplayRow {
  pool: string;
  task: string;
  lines: number;
  loggedReward: number;
  accepted: number;
  adaptiveReward: number;
  /** The strategy's first choice, counted over every line (accepted or not). */
  choices: Record<string, number>;
}

/** Replays the log through the adaptive strategy; one row per pool and task. */
export async function replay(
  log: LoggedRequest[],
  config: AdaptiveConfig,
  random: () => number = Math.random,
) {
  let now = log[0]?.at ?? 0;
  const store = new MemoryStore();
  const adaptive = new AdaptiveRouting(store, createLogger({ level: 'silent' }), () => now);
  const rows = new Map<string, ReplayRow & { loggedSum: number; adaptiveSum: number }>();
  const targets = new Map<string, Target[]>();
  for (const r of log) {
    const known = targets.get(r.pool) ?? [];
    if (!known.some((t) => t.name === r.target)) known.push(targetNamed(r.target));
    targets.set(r.pool, known);
  }
  try {
    for (const r of log) {
      now = Math.max(now, r.at);
      const key = `${r.pool}\u0000${r.task}`;
      let row = rows.get(key);
      if (!row) {
        row = {
          pool: r.pool,
          task: r.task,
          lines: 0,
          loggedReward: 0,
          accepted: 0,
          adaptiveReward: 0,
          choices: {},
          loggedSum: 0,
          adaptiveSum: 0,
        };
        rows.set(key, row);
      }
      const pool = { name: r.pool, adaptive: config };
      const reward = rewardOf(r, config);
      row.lines++;
      row.loggedSum += reward;
      const choice = adaptive.order(pool, r.task, targets.get(r.pool)!, random)[0]!.name;
      row.choices[choice] = (row.choices[choice] ?? 0) + 1;
      if (choice !== r.target) continue;
      row.accepted++;
      row.adaptiveSum += reward;
      adaptive.record(pool, r.task, r.target, {
        quality: r.quality,
        costUsd: r.costUsd,
        latencyMs: r.latencyMs,
      });
      await adaptive.sync(); // the evidence is shared at once, as if every node saw it
    }
  } finally {
    adaptive.close();
    await store.close();
  }
  return [...rows.values()].map(({ loggedSum, adaptiveSum, ...row }) => ({
    ...row,
    loggedReward: loggedSum / row.lines,
    adaptiveReward: row.accepted > 0 ? adaptiveSum / row.accepted : Number.NaN,
  }));
}

/** The replay needs only a target's name: it never calls one. */
function targetNamed(name: string): Target {
  return {
    name,
    provider: 'openai',
    model: name,
    base_url: 'http://replay.invalid',
    headers: {},
    timeouts: { connect_ms: 1, first_byte_ms: 1, idle_ms: 1, total_ms: 1 },
  };
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      pool: { type: 'string' },
      'cost-weight': { type: 'string', default: '0' },
      'latency-weight': { type: 'string', default: '0' },
      'min-explore': { type: 'string', default: '0.02' },
      'max-explore': { type: 'string', default: '0.2' },
      'window-s': { type: 'string', default: '3600' },
    },
  });
  const file = positionals[0];
  if (!file) {
    console.error(
      'usage: replay-routing <requests.jsonl> [--pool NAME] [--cost-weight λ] [--latency-weight μ] ...',
    );
    process.exit(2);
  }
  const config: AdaptiveConfig = {
    cost_weight: Number(values['cost-weight']),
    latency_weight: Number(values['latency-weight']),
    min_explore: Number(values['min-explore']),
    max_explore: Number(values['max-explore']),
    window_s: Number(values['window-s']),
  };
  const log = readLog(readFileSync(file, 'utf8')).filter(
    (r) => values.pool === undefined || r.pool === values.pool,
  );
  if (log.length === 0) {
    console.error(
      'no replayable lines: the log needs ai-router with quality.enabled (pool, target, quality.score)',
    );
    process.exit(1);
  }
  const rows = await replay(log, config);
  console.log(
    `replay of ${log.length} requests, reward = quality − ${config.cost_weight}·cost − ${config.latency_weight}·latency_s\n`,
  );
  console.log(
    `${'pool'.padEnd(14)} ${'task'.padEnd(16)} ${'lines'.padStart(7)} ${'logged'.padStart(8)} ${'adaptive'.padStart(9)} ${'accepted'.padStart(9)}  adaptive's choices`,
  );
  for (const r of rows) {
    const choices = Object.entries(r.choices)
      .sort((a, b) => b[1] - a[1])
      .map(([t, n]) => `${t} ${((100 * n) / r.lines).toFixed(0)}%`)
      .join(', ');
    console.log(
      `${r.pool.padEnd(14)} ${r.task.padEnd(16)} ${String(r.lines).padStart(7)} ${r.loggedReward.toFixed(3).padStart(8)} ${(Number.isNaN(r.adaptiveReward) ? '—' : r.adaptiveReward.toFixed(3)).padStart(9)} ${String(r.accepted).padStart(9)}  ${choices}`,
    );
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
