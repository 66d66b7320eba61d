import type { Target } from '../../lib/context';
import type { Logger } from '../../lib/log/logger';
import { key, type Store } from '../../lib/store';
import type { RouterConfig } from '../../schemas/ai-router';
import { hash32 } from './hash';

export type AdaptiveConfig = RouterConfig['pools'][number]['adaptive'];

/** What `order` and `record` need of a pool. */
export interface AdaptivePool {
  name: string;
  adaptive: AdaptiveConfig;
}

/** How one request ended, as the adaptive strategy scores it. */
export interface RequestResult {
  /** 0 (useless or failed) to 1 (good), from the automatic checks. */
  quality: number;
  costUsd: number;
  /** Time to the whole answer. */
  latencyMs: number;
}

/** A posterior of one target for one task, as `order` sees it. */
export interface ArmView {
  target: string;
  /** Posterior mean of the reward (quality − penalty). */
  mean: number;
  /** Standard deviation of that mean. */
  sd: number;
  /** Requests measured in the window (all nodes). */
  requests: number;
  /** Quality observations in the window: requests and later signals. */
  qualitySignals: number;
}

/** How often each node flushes its evidence and reads everyone's. */
export const SYNC_MS = 1000;
/** The window is kept in this many buckets; the oldest ages out as a new one starts. */
export const BUCKETS = 10;
/** A bucket that ended this long ago holds every node's last flush: read once more, then never again. */
const SETTLE_MS = 3 * SYNC_MS;
/** Bucket keys outlive the window by this much (clock skew between nodes, late flushes). */
const TTL_GRACE_MS = 60_000;
/** Rewards and squares are stored in millionths (store counters are integers). */
const SCALE = 1e6;
/**
 * Largest penalty counted. Rewards are meant to weigh quality (0..1) against cost and latency
 * on a comparable scale; a penalty of 100 already loses whatever quality can win, and the cap
 * keeps squared sums far below 2^53 in a bucket.
 */
const MAX_PENALTY = 100;
/**
 * Weak prior of the quality: two pseudo-observations of mean 0.5 and variance 0.25 (the most a
 * 0..1 quality can have). It keeps the posterior of a target seen only a few times wide, so
 * that a run of good or bad luck does not settle it.
 */
const PRIOR_N = 2;
const PRIOR_MEAN = 0.5;
const PRIOR_VAR = 0.25;
/** Most (pool, task, target) arms one instance tracks; tasks and targets come from config, this only guards memory. */
const MAX_ARMS = 10_000;

/**
 * Metrics kept per target, task and bucket. Quality ones hold every quality signal; penalty
 * ones hold λ·cost + μ·latency of each request, under keys that name the weights (new weights,
 * new penalties; the quality evidence stays).
 */
const QN = 0; // quality observations
const QS = 1; // Σ quality
const QQ = 2; // Σ quality²
const PN = 3; // requests
const PS = 4; // Σ penalty
const PP = 5; // Σ penalty²
const METRICS = ['qn', 'q', 'q2', 'n', 'p', 'p2'] as const;
const PENALTY_FROM = PN;

type Values = number[];

interface Bucket {
  values: Values;
  /** Read after the bucket ended and settled: every node's evidence is in. */
  complete: boolean;
}

interface Arm {
  target: string;
  /** Totals of all nodes per bucket, as last read from the store (our flushed evidence included). */
  stored: Map<number, Bucket>;
  /** This node's evidence not yet added to the store, per bucket. */
  pending: Map<number, Values>;
  /** Times this node put the target first while it had no evidence: it is then explored by its prior. */
  started: number;
  /** The window's totals, kept between changes: every request reads them for every target. */
  memo?: { bucket: number; values: Values };
}

interface Context {
  pool: string;
  task: string;
  config: AdaptiveConfig;
  bucketMs: number;
  /** Names the cost and latency weights in penalty keys. */
  weights: string;
  arms: Map<string, Arm>;
}

/**
 * The `adaptive` strategy: a contextual bandit per pool and task (the context), with one arm
 * per target. The reward of a request is quality − λ·cost − μ·latency_s, which is not bounded
 * to [0, 1] once cost and latency weigh in, so the posterior of each target's mean reward is a
 * Gaussian: quality and penalty each from their count, sum and sum of squares (quality with a
 * weak prior, see PRIOR_N), their variances added. Thompson sampling draws one value from each
 * posterior and ranks by it.
 *
 * Exploration bounds, on the first place (who serves the request): with probability
 * `min_explore` the first place is re-drawn uniformly among the targets, so each keeps at least
 * `min_explore / n`; when Thompson's winner is not the current best (highest posterior mean),
 * it is kept with probability c, otherwise the best takes its place. c is the exploration budget
 * left after the floor divided by the probability that Thompson picks another target (computed
 * from the posteriors, `winProbability`), so the share away from the best is at most
 * `max_explore` at every request, and Thompson's own exploration below that is left unchanged.
 * When the floor alone exceeds the ceiling, the floor wins. The other places follow the samples:
 * the failover order.
 *
 * A target with no evidence at all goes first, once per node; then its prior stands for it until
 * its first result arrives.
 *
 * Evidence is shared by all nodes through the store, as the experiments' guard does it: each
 * node keeps its new evidence in memory and adds it every SYNC_MS to counters per bucket of
 * `window_s / 10` (`incrBy`, whose answers are the totals of all nodes); older buckets are read
 * once they settle. The posterior uses the last BUCKETS buckets, so old evidence ages out and
 * a target that degrades loses its place. `order` and `record` never wait for the store; a
 * store that fails keeps this node's evidence pending (and used) until it answers again or the
 * evidence leaves the window.
 */
export class AdaptiveRouting {
  private readonly contexts = new Map<string, Context>();
  private readonly timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private storeFailing = false;
  private armCount = 0;
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
    options: { syncMs?: number } = {},
  ) {
    const every = options.syncMs ?? SYNC_MS;
    if (every > 0) {
      this.timer = setInterval(() => void this.sync(), every);
      this.timer.unref();
    }
  }

  /**
   * Orders the targets of one request of `task` ('any' without task routing), best first, by
   * Thompson sampling within the exploration bounds. Returns exactly the targets given,
   * reordered. Never waits and never throws for lack of evidence or store.
   */
  order(
    pool: AdaptivePool,
    task: string,
    targets: readonly Target[],
    random: () => number = Math.random,
  ): Target[] {
    if (targets.length <= 1) return [...targets];
    const ctx = this.context(pool, task);
    if (!ctx) return shuffle(targets, random);
    const bucket = this.bucketOf(ctx);
    const arms = targets.map((t) => this.arm(ctx, t.name));

    // A target this node has never seen with any evidence goes first, once.
    const sums = arms.map((a) => (a ? totals(a, bucket) : undefined));
    const fresh = arms.findIndex((a, i) => a !== undefined && a.started === 0 && isEmpty(sums[i]!));
    const views = arms.map((a, i) => (a ? posterior(a.target, sums[i]!) : priorView(targets[i]!.name)));
    const samples = views.map((v) => v.mean + v.sd * gaussian(random));
    const ranked = targets.map((_, i) => i).sort((a, b) => samples[b]! - samples[a]!);
    let first = ranked[0]!;
    if (fresh >= 0) {
      first = fresh;
    } else {
      const { min_explore: floor, max_explore: ceiling } = ctx.config;
      const best = bestOf(views);
      if (random() < floor) {
        first = Math.min(targets.length - 1, Math.floor(random() * targets.length));
      } else if (best >= 0 && first !== best) {
        const keep = keepShare(floor, ceiling, targets.length, 1 - winProbability(views, best));
        if (random() >= keep) first = best;
      }
    }
    const firstArm = arms[first];
    if (firstArm && isEmpty(sums[first]!)) firstArm.started++;
    return [targets[first]!, ...ranked.filter((i) => i !== first).map((i) => targets[i]!)];
  }

  /** One request's result: a quality signal and the request's penalty (λ·cost + μ·latency_s). */
  record(pool: AdaptivePool, task: string, target: string, result: RequestResult): void {
    const quality = qualityOf(result.quality);
    if (quality === undefined) return;
    const ctx = this.context(pool, task);
    const arm = ctx && this.arm(ctx, target);
    if (!ctx || !arm) return;
    const { cost_weight: lambda, latency_weight: mu } = ctx.config;
    const penalty = Math.min(
      MAX_PENALTY,
      lambda * nonNegative(result.costUsd) + (mu * nonNegative(result.latencyMs)) / 1000,
    );
    const values = this.pendingOf(ctx, arm);
    addQuality(values, quality);
    values[PN]! += 1;
    values[PS]! += Math.round(penalty * SCALE);
    values[PP]! += Math.round(penalty * penalty * SCALE);
  }

  /** A later quality signal (client feedback, judge) on an earlier request: one more quality observation. */
  recordQuality(pool: AdaptivePool, task: string, target: string, quality: number): void {
    const q = qualityOf(quality);
    if (q === undefined) return;
    const ctx = this.context(pool, task);
    const arm = ctx && this.arm(ctx, target);
    if (!ctx || !arm) return;
    addQuality(this.pendingOf(ctx, arm), q);
  }

  /** The posteriors this node holds for a pool and task: for logs, metrics and tests. */
  view(pool: AdaptivePool, task: string): ArmView[] {
    const ctx = this.contexts.get(contextKey(pool.name, task));
    if (!ctx) return [];
    const bucket = this.bucketOf(ctx);
    return [...ctx.arms.values()].map((a) => posterior(a.target, totals(a, bucket)));
  }

  /**
   * Adds this node's evidence to the store and reads every node's; what the timer runs. Calls
   * run one after another; the promise never rejects.
   */
  sync(): Promise<void> {
    this.chain = this.chain
      .then(() => this.syncOnce())
      .catch((err: unknown) => this.logger.error({ err: String(err) }, 'adaptive routing: sync failed'));
    return this.chain;
  }

  /** Stops the background sync; evidence not yet flushed stays on this node. */
  close(): void {
    this.closed = true;
    clearInterval(this.timer);
  }

  private async syncOnce(): Promise<void> {
    const work: Array<Promise<boolean>> = [];
    for (const ctx of this.contexts.values()) {
      const bucket = this.bucketOf(ctx);
      for (const arm of ctx.arms.values()) work.push(this.syncArm(ctx, arm, bucket));
    }
    const failing = (await Promise.all(work)).includes(false);
    if (failing && !this.storeFailing) {
      this.logger.warn('adaptive routing: store unavailable, evidence kept on this node until it answers');
    } else if (!failing && this.storeFailing) {
      this.logger.info('adaptive routing: store answers again');
    }
    this.storeFailing = failing;
  }

  /** Flushes one arm's pending evidence and refreshes its buckets; false when a store call failed. */
  private async syncArm(ctx: Context, arm: Arm, bucket: number): Promise<boolean> {
    const oldest = bucket - BUCKETS + 1;
    arm.memo = undefined;
    for (const b of arm.pending.keys()) if (b < oldest) arm.pending.delete(b);
    for (const b of arm.stored.keys()) if (b < oldest) arm.stored.delete(b);
    const calls: Array<Promise<boolean>> = [];
    const now = this.now();
    for (let b = oldest; b <= bucket; b++) {
      const pending = arm.pending.get(b);
      const stored = arm.stored.get(b);
      const settled = now >= (b + 1) * ctx.bucketMs + SETTLE_MS;
      if (!pending && stored?.complete) continue;
      // The current bucket is read by adding (0 when nothing is pending): one call, everyone's total.
      if (!pending && b !== bucket && stored && !settled) continue;
      const target = stored ?? { values: zeros(), complete: false };
      arm.stored.set(b, target);
      const ttlMs = (b + 1) * ctx.bucketMs + BUCKETS * ctx.bucketMs + TTL_GRACE_MS - now;
      for (let m = 0; m < METRICS.length; m++) {
        const k = this.statKey(ctx, arm, b, m);
        const by = pending?.[m] ?? 0;
        const call =
          by !== 0 || b === bucket
            ? attempt(() => this.store.incrBy(k, by, Math.max(1, ttlMs)))
            : attempt(() => this.store.get(k)).then((v) => (v === undefined ? undefined : counterOf(v)));
        calls.push(
          call.then((value) => {
            if (value === undefined) return false;
            target.values[m] = value;
            if (pending) pending[m]! -= by; // only what was sent: records made meanwhile stay pending
            arm.memo = undefined;
            return true;
          }),
        );
      }
      if (settled && !pending) target.complete = true;
    }
    const ok = !(await Promise.all(calls)).includes(false);
    for (const [b, values] of arm.pending) if (isEmpty(values)) arm.pending.delete(b);
    arm.memo = undefined;
    // A bucket read incompletely is read again next time.
    if (!ok) for (const s of arm.stored.values()) s.complete = false;
    return ok;
  }

  private context(pool: AdaptivePool, task: string): Context | undefined {
    const k = contextKey(pool.name, task);
    let ctx = this.contexts.get(k);
    if (!ctx) {
      if (this.armCount >= MAX_ARMS) return undefined;
      const config = pool.adaptive;
      ctx = {
        pool: pool.name,
        task,
        config,
        bucketMs: Math.max(1, Math.round((config.window_s * 1000) / BUCKETS)),
        weights: hash32(`${config.cost_weight}|${config.latency_weight}`).toString(36),
        arms: new Map(),
      };
      this.contexts.set(k, ctx);
    }
    return ctx;
  }

  private arm(ctx: Context, target: string): Arm | undefined {
    let arm = ctx.arms.get(target);
    if (!arm) {
      if (this.armCount >= MAX_ARMS) return undefined;
      arm = { target, stored: new Map(), pending: new Map(), started: 0 };
      ctx.arms.set(target, arm);
      this.armCount++;
      // Learn what other nodes (or this one before a restart) know of it without waiting a whole period.
      if (!this.closed) void this.sync();
    }
    return arm;
  }

  /** The current bucket's pending values, about to change: the memo of totals is dropped. */
  private pendingOf(ctx: Context, arm: Arm): Values {
    arm.memo = undefined;
    const bucket = this.bucketOf(ctx);
    let values = arm.pending.get(bucket);
    if (!values) {
      values = zeros();
      arm.pending.set(bucket, values);
    }
    return values;
  }

  private bucketOf(ctx: Context): number {
    return Math.floor(this.now() / ctx.bucketMs);
  }

  private statKey(ctx: Context, arm: Arm, bucket: number, metric: number): string {
    const name = metric >= PENALTY_FROM ? `${METRICS[metric]}.${ctx.weights}` : METRICS[metric]!;
    return key('global', 'bandit', ctx.pool, ctx.task, arm.target, ctx.bucketMs, bucket, name);
  }
}

/**
 * Share of Thompson's non-best winners to keep so that the traffic away from the best stays within
 * the ceiling, given how often Thompson picks another target (`explore`): the floor's uniform
 * re-draw already sends floor·(n−1)/n there.
 */
export function keepShare(floor: number, ceiling: number, n: number, explore: number): number {
  if (floor >= 1) return 0;
  const budget = Math.max(0, ceiling - (floor * (n - 1)) / n) / (1 - floor);
  return explore <= budget ? 1 : budget / explore;
}

/** Window totals of an arm: everyone's stored evidence and this node's pending. */
/** An arm's evidence in the window ending with `bucket`, all nodes'; read-only (memoised). */
function totals(arm: Arm, bucket: number): Values {
  if (arm.memo?.bucket === bucket) return arm.memo.values;
  const sum = zeros();
  const oldest = bucket - BUCKETS + 1;
  for (const [b, s] of arm.stored) if (b >= oldest && b <= bucket) addInto(sum, s.values);
  for (const [b, p] of arm.pending) if (b >= oldest && b <= bucket) addInto(sum, p);
  arm.memo = { bucket, values: sum };
  return sum;
}

/**
 * The Gaussian posterior of an arm's mean reward. Quality: the data and PRIOR_N pseudo-
 * observations pooled; penalty: the data alone (none yet: 0, optimistic, so it gets tried).
 */
function posterior(target: string, t: Values): ArmView {
  const qn = Math.max(0, t[QN]!);
  const qSum = t[QS]! / SCALE;
  const qMean = (qSum + PRIOR_MEAN * PRIOR_N) / (qn + PRIOR_N);
  const qSquares = qn > 0 ? Math.max(0, t[QQ]! / SCALE - (qSum * qSum) / qn) : 0;
  const qVar = (qSquares + PRIOR_VAR * PRIOR_N) / (qn + PRIOR_N) / (qn + PRIOR_N);
  const n = Math.max(0, t[PN]!);
  let pMean = 0;
  let pVar = 0;
  if (n > 0) {
    const pSum = t[PS]! / SCALE;
    pMean = pSum / n;
    pVar = Math.max(0, t[PP]! / SCALE - (pSum * pSum) / n) / n / n;
  }
  return {
    target,
    mean: qMean - pMean,
    sd: Math.sqrt(qVar + pVar),
    requests: n,
    qualitySignals: qn,
  };
}

/** The posterior of a target the instance cannot track (memory cap): the prior alone. */
function priorView(target: string): ArmView {
  return { target, mean: PRIOR_MEAN, sd: Math.sqrt(PRIOR_VAR / PRIOR_N), requests: 0, qualitySignals: 0 };
}

/** Points of the numerical integration in winProbability, at most (many targets, very different spreads). */
const MAX_POINTS = 512;

/**
 * Probability that Thompson sampling picks `best`: ∫ φ_best(x) · Π_others Φ_i(x) dx, by the
 * trapezoid rule over best's mean ± 7 sd, with steps fine enough for the sharpest Φ that changes
 * there. A few microseconds; computed only when a draw picked another target.
 */
export function winProbability(views: readonly ArmView[], best: number): number {
  const b = views[best]!;
  if (!(b.sd > 0)) return views.every((v, i) => i === best || v.mean + 8 * v.sd < b.mean) ? 1 : 0;
  const lo = b.mean - 7 * b.sd;
  const hi = b.mean + 7 * b.sd;
  let step = b.sd / 3;
  for (let i = 0; i < views.length; i++) {
    const v = views[i]!;
    if (i !== best && v.sd > 0 && v.mean + 8 * v.sd > lo && v.mean - 8 * v.sd < hi)
      step = Math.min(step, v.sd / 2);
  }
  const points = Math.min(MAX_POINTS, Math.ceil((hi - lo) / step));
  const h = (hi - lo) / points;
  let sum = 0;
  for (let k = 0; k <= points; k++) {
    const x = lo + k * h;
    const z = (x - b.mean) / b.sd;
    let f = Math.exp((-z * z) / 2);
    for (let i = 0; i < views.length && f > 0; i++) {
      if (i === best) continue;
      const v = views[i]!;
      f *= v.sd > 0 ? normalCdf((x - v.mean) / v.sd) : x > v.mean ? 1 : 0;
    }
    sum += k === 0 || k === points ? f / 2 : f;
  }
  return Math.min(1, Math.max(0, (sum * h) / (b.sd * Math.sqrt(2 * Math.PI))));
}

/** Φ, the standard normal distribution function (Abramowitz & Stegun 26.2.17, error < 7.5e-8). */
function normalCdf(z: number): number {
  const t = 1 / (1 + 0.2316419 * Math.abs(z));
  const d = 0.3989422804014327 * Math.exp((-z * z) / 2);
  const p =
    d * t * (0.31938153 + t * (-0.356563782 + t * (1.781477937 + t * (-1.821255978 + t * 1.330274429))));
  return z > 0 ? 1 - p : p;
}

/** Index of the highest posterior mean among targets with measured requests; -1 when none has any. */
function bestOf(views: readonly ArmView[]): number {
  let best = -1;
  for (let i = 0; i < views.length; i++) {
    if (views[i]!.requests === 0) continue;
    if (best < 0 || views[i]!.mean > views[best]!.mean) best = i;
  }
  return best;
}

function contextKey(pool: string, task: string): string {
  return `${pool}\u0000${task}`;
}

/** A quality in [0, 1], or undefined for a value that is no number. */
function qualityOf(q: number): number | undefined {
  if (typeof q !== 'number' || Number.isNaN(q)) return undefined;
  return Math.min(1, Math.max(0, q));
}

function nonNegative(x: number): number {
  return typeof x === 'number' && Number.isFinite(x) && x > 0 ? x : 0;
}

function addQuality(values: Values, q: number): void {
  values[QN]! += 1;
  values[QS]! += Math.round(q * SCALE);
  values[QQ]! += Math.round(q * q * SCALE);
}

function zeros(): Values {
  return [0, 0, 0, 0, 0, 0];
}

function addInto(sum: Values, values: Values): void {
  for (let i = 0; i < sum.length; i++) sum[i]! += values[i] ?? 0;
}

function isEmpty(values: Values): boolean {
  return values.every((v) => v === 0);
}

/** A standard normal draw (Box–Muller). */
function gaussian(random: () => number): number {
  const u = 1 - random(); // (0, 1]: log(0) never happens
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

function shuffle<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.min(i, Math.floor(random() * (i + 1)));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** The store's answer, or undefined when it threw or rejected. */
async function attempt<T>(call: () => Promise<T>): Promise<T | undefined> {
  try {
    return await call();
  } catch {
    return undefined;
  }
}

/** A counter as stored; anything unreadable counts as 0. */
function counterOf(value: Buffer | null): number {
  if (value === null) return 0;
  const n = Number(value.toString('latin1'));
  return Number.isSafeInteger(n) ? n : 0;
}
