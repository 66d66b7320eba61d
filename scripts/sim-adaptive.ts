/**
 * Simulation of the `adaptive` strategy: simulated providers in process, the real
 * AdaptiveRouting on the real MemoryStore, a fake clock that advances by each request's latency.
 *
 * Three targets × three task classes, a different target best for each class by expected reward
 * (quality − λ·price − μ·latency_s). Requests cycle through the classes. Halfway, the best target
 * of one class degrades (its quality drops) and the bandit must move that class elsewhere. The
 * same run again with two nodes (two instances on one store, alternating requests, syncing every
 * simulated second).
 *
 *   npx tsc -p . && node dist/scripts/sim-adaptive.js [--seed N] [--requests N] [--window-s N]
 *
 * Exits 1 when a class does not reach 90 % of a sliding window of 200 requests on its best target
 * within `--requests` requests of that class, before or after the degradation.
 */
import { parseArgs } from 'node:util';
import type { Target } from '../lib/context';
import { createLogger } from '../lib/log/logger';
import { MemoryStore } from '../lib/store';
import { type AdaptiveConfig, AdaptiveRouting } from '../plugins/ai-router/bandit';

export const CLASSES = ['code', 'summarization', 'extraction'] as const;
export type TaskClass = (typeof CLASSES)[number];

/** A simulated provider: its hidden pass rate and mean latency per class, and its price per request. */
export interface SimProvider {
  name: string;
  priceUsd: number;
  quality: Record<TaskClass, number>;
  latencyMs: Record<TaskClass, number>;
}

/** Big and slow, middling, small and fast: cost and latency weights make each best for one class. */
export const PROVIDERS: readonly SimProvider[] = [
  {
    name: 'big',
    priceUsd: 0.01,
    quality: { code: 0.95, summarization: 0.9, extraction: 0.92 },
    latencyMs: { code: 4000, summarization: 3500, extraction: 3000 },
  },
  {
    name: 'mid',
    priceUsd: 0.003,
    quality: { code: 0.6, summarization: 0.88, extraction: 0.85 },
    latencyMs: { code: 2000, summarization: 1800, extraction: 1500 },
  },
  {
    name: 'small',
    priceUsd: 0.0005,
    quality: { code: 0.35, summarization: 0.68, extraction: 0.86 },
    latencyMs: { code: 900, summarization: 800, extraction: 600 },
  },
];

/** λ: a cent costs 0.2; μ: a second costs 0.05. */
export const ADAPTIVE: AdaptiveConfig = {
  cost_weight: 20,
  latency_weight: 0.05,
  min_explore: 0.02,
  max_explore: 0.2,
  window_s: 3600,
};

/** Spread of the latency (log-normal σ). */
const LATENCY_SIGMA = 0.4;
/** The sliding window the convergence claim is measured on, and the share it must reach. */
export const SHARE_WINDOW = 200;
export const SHARE_GOAL = 0.9;

export interface SimOptions {
  seed: number;
  /** Requests per class in each phase (before and after the degradation). */
  requestsPerClass: number;
  nodes: 1 | 2;
  adaptive?: AdaptiveConfig;
  providers?: readonly SimProvider[];
  /** The class whose best target degrades after the first phase, and its quality then; none: one phase. */
  degrade?: { taskClass: TaskClass; quality: number };
}

export interface ClassReport {
  taskClass: TaskClass;
  best: string;
  /** Requests of this class until SHARE_GOAL of the last SHARE_WINDOW went to the best; undefined: never. */
  convergedAfter?: number;
  /** Share on the best in the last SHARE_WINDOW requests of the first phase. */
  finalShare: number;
  /** Share on the best from convergence to the end of the first phase. */
  shareAfter?: number;
  /** Σ (oracle's expected reward − chosen target's), first phase. */
  regret: number;
  /** For the degraded class: the new best, requests and simulated seconds after the degradation until converged again. */
  degraded?: {
    best: string;
    reconvergedAfter?: number;
    seconds?: number;
    finalShare: number;
    regret: number;
  };
}

export interface SimReport {
  nodes: number;
  requestsPerClass: number;
  classes: ClassReport[];
  /** Simulated seconds the run took. */
  seconds: number;
}

/** Expected reward of a provider on a class. */
export function expectedReward(p: SimProvider, c: TaskClass, config: AdaptiveConfig): number {
  return p.quality[c] - config.cost_weight * p.priceUsd - (config.latency_weight * p.latencyMs[c]) / 1000;
}

/** The oracle: the provider with the highest expected reward on a class. */
export function oracle(providers: readonly SimProvider[], c: TaskClass, config: AdaptiveConfig): SimProvider {
  return providers.reduce((a, b) => (expectedReward(b, c, config) > expectedReward(a, c, config) ? b : a));
}

/** Seeded PRNG (mulberry32): the same run every time. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function targetOf(p: SimProvider): Target {
  return {
    name: p.name,
    provider: 'openai',
    model: p.name,
    base_url: 'http://sim.invalid/v1',
    headers: {},
    timeouts: { connect_ms: 1000, first_byte_ms: 1000, idle_ms: 1000, total_ms: 10_000 },
  };
}

/** Tracks one class's choices in one phase. */
class Phase {
  readonly window: boolean[] = [];
  hits = 0;
  requests = 0;
  regret = 0;
  convergedAfter?: number;
  convergedAt?: number;
  /** Requests and hits on the best after convergence. */
  after = { requests: 0, hits: 0 };

  constructor(
    readonly best: SimProvider,
    private readonly startMs: number,
  ) {}

  add(chosen: SimProvider, regret: number, nowMs: number): void {
    this.requests++;
    this.regret += regret;
    const hit = chosen === this.best;
    this.window.push(hit);
    if (hit) this.hits++;
    if (this.window.length > SHARE_WINDOW && this.window.shift()) this.hits--;
    if (this.convergedAfter !== undefined) {
      this.after.requests++;
      if (hit) this.after.hits++;
    }
    if (
      this.convergedAfter === undefined &&
      this.window.length === SHARE_WINDOW &&
      this.hits >= SHARE_GOAL * SHARE_WINDOW
    ) {
      this.convergedAfter = this.requests;
      this.convergedAt = (nowMs - this.startMs) / 1000;
    }
  }

  share(): number {
    return this.window.length === 0 ? 0 : this.hits / this.window.length;
  }

  shareAfter(): number | undefined {
    return this.after.requests === 0 ? undefined : this.after.hits / this.after.requests;
  }
}

/** Runs the simulation; see the file's comment. */
export async function simulate(options: SimOptions): Promise<SimReport> {
  const config = options.adaptive ?? ADAPTIVE;
  const providers = (options.providers ?? PROVIDERS).map((p) => ({
    ...p,
    quality: { ...p.quality },
  }));
  const random = rng(options.seed);
  let clock = Date.parse('2026-01-01T00:00:00Z');
  const now = () => clock;
  const store = new MemoryStore({ now });
  const logger = createLogger({ level: 'silent' });
  const nodes = Array.from(
    { length: options.nodes },
    () => new AdaptiveRouting(store, logger, now, { syncMs: 0 }),
  );
  const pool = { name: 'auto', adaptive: config };
  const targets = providers.map(targetOf);
  const byName = new Map(providers.map((p) => [p.name, p]));

  const runPhase = async (phases: Map<TaskClass, Phase>, count: number, turn: { n: number }) => {
    for (let i = 0; i < count * CLASSES.length; i++) {
      const c = CLASSES[i % CLASSES.length]!;
      const node = nodes[turn.n++ % nodes.length]!;
      const chosen = byName.get(node.order(pool, c, targets, random)[0]!.name)!;
      const latencyMs = logNormal(chosen.latencyMs[c], random);
      const quality = random() < chosen.quality[c] ? 1 : 0;
      node.record(pool, c, chosen.name, { quality, costUsd: chosen.priceUsd, latencyMs });
      const phase = phases.get(c)!;
      const best = phase.best;
      phase.add(chosen, expectedReward(best, c, config) - expectedReward(chosen, c, config), clock);
      const before = Math.floor(clock / 1000);
      clock += latencyMs;
      // What the nodes' timers do every second.
      if (nodes.length > 1 && Math.floor(clock / 1000) !== before) for (const n of nodes) await n.sync();
    }
  };

  const start = clock;
  const turn = { n: 0 };
  const first = new Map(CLASSES.map((c) => [c, new Phase(oracle(providers, c, config), clock)]));
  await runPhase(first, options.requestsPerClass, turn);

  let second: Phase | undefined;
  if (options.degrade) {
    const degraded = first.get(options.degrade.taskClass)!.best;
    degraded.quality[options.degrade.taskClass] = options.degrade.quality;
    const phases = new Map(CLASSES.map((c) => [c, new Phase(oracle(providers, c, config), clock)]));
    second = phases.get(options.degrade.taskClass);
    await runPhase(phases, options.requestsPerClass, turn);
  }

  for (const n of nodes) n.close();
  await store.close();
  return {
    nodes: options.nodes,
    requestsPerClass: options.requestsPerClass,
    seconds: (clock - start) / 1000,
    classes: CLASSES.map((c) => {
      const p = first.get(c)!;
      const report: ClassReport = {
        taskClass: c,
        best: p.best.name,
        convergedAfter: p.convergedAfter,
        finalShare: p.share(),
        shareAfter: p.shareAfter(),
        regret: p.regret,
      };
      if (second && options.degrade?.taskClass === c) {
        report.degraded = {
          best: second.best.name,
          reconvergedAfter: second.convergedAfter,
          seconds: second.convergedAt,
          finalShare: second.share(),
          regret: second.regret,
        };
      }
      return report;
    }),
  };
}

/** A log-normal latency with the given mean. */
function logNormal(meanMs: number, random: () => number): number {
  const z = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  return meanMs * Math.exp(LATENCY_SIGMA * z - (LATENCY_SIGMA * LATENCY_SIGMA) / 2);
}

/** Whether every class converged (and re-converged after a degradation) within the run. */
export function passed(report: SimReport): boolean {
  return report.classes.every(
    (c) => c.convergedAfter !== undefined && (!c.degraded || c.degraded.reconvergedAfter !== undefined),
  );
}

function table(report: SimReport): string {
  const rows = [
    [
      'class',
      'best',
      'converged after',
      'share since',
      'final share',
      'regret',
      'degraded → new best',
      'reconverged after',
    ],
  ];
  for (const c of report.classes) {
    rows.push([
      c.taskClass,
      c.best,
      c.convergedAfter === undefined ? 'never' : String(c.convergedAfter),
      c.shareAfter === undefined ? '' : `${(c.shareAfter * 100).toFixed(1)} %`,
      `${(c.finalShare * 100).toFixed(1)} %`,
      c.regret.toFixed(1),
      c.degraded ? `${c.best} → ${c.degraded.best}` : '',
      c.degraded
        ? c.degraded.reconvergedAfter === undefined
          ? 'never'
          : `${c.degraded.reconvergedAfter} (${c.degraded.seconds?.toFixed(0)} s simulated; then ${(c.degraded.finalShare * 100).toFixed(1)} %, regret ${c.degraded.regret.toFixed(1)})`
        : '',
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ')).join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string', default: '1' },
      requests: { type: 'string', default: '2000' },
      'window-s': { type: 'string', default: String(ADAPTIVE.window_s) },
    },
  });
  const requestsPerClass = Number(values.requests);
  const adaptive = { ...ADAPTIVE, window_s: Number(values['window-s']) };
  console.log(
    `adaptive: λ=${adaptive.cost_weight}/USD μ=${adaptive.latency_weight}/s min_explore=${adaptive.min_explore} max_explore=${adaptive.max_explore} window_s=${adaptive.window_s}`,
  );
  for (const p of PROVIDERS) {
    const rewards = CLASSES.map((c) => `${c} ${expectedReward(p, c, adaptive).toFixed(3)}`).join(', ');
    console.log(`  ${p.name}: $${p.priceUsd}/request, expected reward ${rewards}`);
  }
  console.log(
    `claim: ≥ ${SHARE_GOAL * 100} % of a sliding window of ${SHARE_WINDOW} requests on the best within ${requestsPerClass} requests per class; then summarization's best drops to quality 0.45\n`,
  );
  let ok = true;
  for (const nodes of [1, 2] as const) {
    const report = await simulate({
      seed: Number(values.seed),
      requestsPerClass,
      nodes,
      adaptive,
      degrade: { taskClass: 'summarization', quality: 0.45 },
    });
    console.log(`${nodes} node${nodes > 1 ? 's' : ''} (${report.seconds.toFixed(0)} s simulated):`);
    console.log(table(report));
    console.log('');
    ok &&= passed(report);
  }
  console.log(ok ? 'PASS' : 'FAIL');
  if (!ok) process.exitCode = 1;
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
