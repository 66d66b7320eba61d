import { createHash } from 'node:crypto';
import type { Logger } from '../../lib/log/logger';
import { key, type Store } from '../../lib/store';
import type { RouterConfig } from '../../schemas/ai-router';
import { uniform as uniformOf } from './hash';

export type ExperimentConfig = RouterConfig['experiments'][number];
type ArmConfig = ExperimentConfig['arms'][number];
type RolloutConfig = NonNullable<ExperimentConfig['rollout']>;
type GuardConfig = NonNullable<ExperimentConfig['guard']>;

/** Where one request of an experimented model goes. */
export interface Assignment {
  experiment: string;
  arm: string;
  /** Pool or target serving the arm. */
  routeTo: string;
  /** The guard halted the experiment: every user is on the control. */
  halted?: boolean;
}

/** Who is asking: the identities `sticky_by` may name. */
export interface Requester {
  consumerId?: string;
  credentialId?: string;
  header(name: string): string | undefined;
}

/** How a request served by an arm ended. */
export interface Outcome {
  /** A 5xx answer or an upstream failure (connection, timeout): the arm's fault, not the client's. */
  error: boolean;
  latencyMs: number;
  /** ai-router's quality score of the answer (0..1), when quality checks ran. */
  quality?: number;
}

/** Per-arm counts; latency is summed over successful requests only (a fast failure is not fast service). */
export interface ArmStats {
  requests: number;
  errors: number;
  latencyMs: number;
  /** Answers with a quality score, and their scores summed in thousandths (store counters are integers). */
  rated: number;
  qualityMilli: number;
}

export interface Halt {
  /** `unknown`: a halt flag this version cannot read (it still halts). */
  reason: 'error_rate' | 'latency' | 'quality' | 'unknown';
  arm: string;
  /** The arm's and the control's measure (error rate, mean latency in ms, or mean quality). */
  value: number;
  control: number;
}

/** How often each node flushes its counts and reads halts from the store. */
export const REFRESH_MS = 1000;
/** The guard judges the current bucket and the one before it: between 5 and 10 minutes of traffic. */
export const GUARD_BUCKET_MS = 5 * 60_000;
/** A bucket is read during the next one, so it must outlive both. */
const STATS_TTL_MS = 2 * GUARD_BUCKET_MS + 60_000;

const METRICS = ['requests', 'errors', 'latencyMs', 'rated', 'qualityMilli'] as const;

/** A number uniform in (0, 1), the same on every node for the same parts. */
export function uniform(parts: readonly string[]): number {
  return uniformOf(parts.join('\u0000'));
}

/** The user's hash that decides the rollout: on the arm while it is below the rollout's share. */
export function rolloutHash(experiment: string, userKey: string): number {
  return uniform([experiment, userKey]);
}

/** The rollout arm's share (0..1) at `nowMs`: start_percent, plus step_percent per whole interval, at most max_percent. */
export function rolloutShare(rollout: RolloutConfig, nowMs: number): number {
  const start = Date.parse(rollout.start);
  if (!(nowMs >= start)) return 0; // before the start (or an unparsable start, which the config check refuses)
  const steps = Math.floor((nowMs - start) / (rollout.interval_s * 1000));
  return Math.min(rollout.max_percent, rollout.start_percent + rollout.step_percent * steps) / 100;
}

/**
 * Weighted rendezvous hashing: each arm scores -ln(u)/weight with u the user's hash for that
 * arm, the lowest score wins. An arm wins with probability weight / total, and changing one
 * arm's weight only moves users to or from that arm. Undefined when no arm has a weight.
 */
export function rendezvous(
  experiment: string,
  arms: readonly ArmConfig[],
  userKey: string,
): ArmConfig | undefined {
  let best: ArmConfig | undefined;
  let bestScore = Number.POSITIVE_INFINITY;
  for (const arm of arms) {
    if (arm.weight <= 0) continue;
    const score = -Math.log(uniform([experiment, arm.name, userKey])) / arm.weight;
    if (score < bestScore) {
      best = arm;
      bestScore = score;
    }
  }
  return best;
}

/**
 * The arm of a user, halts aside.
 *
 * - No user key: the control.
 * - Without a rollout: weighted rendezvous over every arm.
 * - With a rollout (whatever its progress), the rollout arm's weight is ignored: the other
 *   arms split users by their weights (everyone is the control's when none has a weight);
 *   then, of the control's users, those whose `rolloutHash` is below p / c go to the rollout
 *   arm, where p is `rolloutShare` and c the control's share of the weights. So the rollout
 *   arm holds p of all users (at most the control's share c, when it has taken them all),
 *   the other arms keep exactly their users, and as p grows users only move from the control
 *   to the rollout arm. With only a control and a rollout arm, c = 1: users whose hash is
 *   below p are on the arm.
 */
export function chooseArm(config: ExperimentConfig, userKey: string | undefined, nowMs: number): string {
  if (userKey === undefined) return config.control;
  const rollout = config.rollout;
  if (!rollout) return rendezvous(config.name, config.arms, userKey)?.name ?? config.control;
  const others = config.arms.filter((a) => a.name !== rollout.arm);
  const base = rendezvous(config.name, others, userKey)?.name ?? config.control;
  if (base !== config.control) return base;
  const total = others.reduce((sum, a) => sum + a.weight, 0);
  const controlWeight = others.find((a) => a.name === config.control)?.weight ?? 0;
  const controlShare = total > 0 ? controlWeight / total : 1;
  return rolloutHash(config.name, userKey) < rolloutShare(rollout, nowMs) / controlShare
    ? rollout.arm
    : config.control;
}

/**
 * Whether an arm does worse than the control: with `min_requests` on both sides, its error
 * rate exceeds the control's by more than `max_error_rate_increase`, or its mean latency (of
 * successful requests) exceeds the control's times `max_latency_ratio`; with `min_requests`
 * quality scores on both sides, its mean quality is below the control's by more than
 * `max_quality_drop`.
 */
export function judge(guard: GuardConfig, arm: string, stats: ArmStats, control: ArmStats): Halt | undefined {
  return judgeService(guard, arm, stats, control) ?? judgeQuality(guard, arm, stats, control);
}

/** Errors and latency, once both sides have `min_requests`. */
function judgeService(guard: GuardConfig, arm: string, stats: ArmStats, control: ArmStats): Halt | undefined {
  if (stats.requests < guard.min_requests || control.requests < guard.min_requests) return undefined;
  const errorRate = stats.errors / stats.requests;
  const controlErrorRate = control.errors / control.requests;
  if (errorRate - controlErrorRate > guard.max_error_rate_increase) {
    return { reason: 'error_rate', arm, value: errorRate, control: controlErrorRate };
  }
  const ok = stats.requests - stats.errors;
  const controlOk = control.requests - control.errors;
  if (ok > 0 && controlOk > 0) {
    const latency = stats.latencyMs / ok;
    const controlLatency = control.latencyMs / controlOk;
    if (latency > controlLatency * guard.max_latency_ratio) {
      return { reason: 'latency', arm, value: latency, control: controlLatency };
    }
  }
  return undefined;
}

/** Mean quality (checks, feedback, judge), once both sides have `min_requests` scores. */
function judgeQuality(guard: GuardConfig, arm: string, stats: ArmStats, control: ArmStats): Halt | undefined {
  if (stats.rated < guard.min_requests || control.rated < guard.min_requests) return undefined;
  const quality = stats.qualityMilli / 1000 / stats.rated;
  const controlQuality = control.qualityMilli / 1000 / control.rated;
  if (controlQuality - quality > guard.max_quality_drop) {
    return { reason: 'quality', arm, value: quality, control: controlQuality };
  }
  return undefined;
}

/** Hash of an experiment's config: its shared state (counts, halt) belongs to this exact config. */
export function experimentHash(config: ExperimentConfig): string {
  return createHash('sha256').update(canonicalJson(config)).digest('base64url').slice(0, 16);
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

interface Live {
  config: ExperimentConfig;
  hash: string;
  control: ArmConfig;
  arms: Map<string, ArmConfig>;
  halt?: Halt;
  /** The halt is in the store (written by this node, or read from it). */
  haltShared: boolean;
  /** Counts recorded since the last flush. */
  pending: Map<string, ArmStats>;
  /** Totals of the bucket before the current one, read once when the bucket turns. */
  previous?: { bucket: number; totals: Map<string, ArmStats> };
}

/**
 * The experiments of one ai-router instance.
 *
 * `assign` is pure computation over config, clock and what this node last learned: it never
 * waits for the store. `record` adds to in-memory counts. Every REFRESH_MS (and on `sync()`),
 * each guarded experiment's counts are added to the shared store (one `incrBy` per arm and
 * measure, whose answers are the current bucket's totals over all nodes), the guard judges
 * each arm against the control, and a halt is written to the store; halts written by other
 * nodes are read. A halted experiment sends every user to the control until its config
 * changes: all shared state is keyed by the hash of the experiment's config.
 *
 * Store failures lose the counts of that flush and never reach a request. Experiment names
 * are expected to be unique within an instance (`record` finds the experiment by name).
 */
export class Experiments {
  private readonly byModel = new Map<string, Live>();
  private readonly byName = new Map<string, Live>();
  private readonly timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private storeFailing = false;

  constructor(
    configs: RouterConfig['experiments'],
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    for (const config of configs) {
      const control = config.arms.find((a) => a.name === config.control);
      if (!control) continue; // refused by the config check
      const live: Live = {
        config,
        hash: experimentHash(config),
        control,
        arms: new Map(config.arms.map((a) => [a.name, a])),
        haltShared: false,
        pending: new Map(),
      };
      if (!this.byModel.has(config.model)) this.byModel.set(config.model, live);
      if (!this.byName.has(config.name)) this.byName.set(config.name, live);
    }
    // Only guarded experiments have shared state; learn their halts at once, then every REFRESH_MS.
    if ([...this.byName.values()].some((e) => e.config.guard)) {
      this.timer = setInterval(() => void this.sync(), REFRESH_MS);
      this.timer.unref();
      void this.sync();
    }
  }

  /** The arm serving this request, or undefined when the model has no experiment. */
  assign(model: string, who: Requester): Assignment | undefined {
    const e = this.byModel.get(model);
    if (!e) return undefined;
    const name = e.config.name;
    if (e.halt) return { experiment: name, arm: e.control.name, routeTo: e.control.route_to, halted: true };
    const arm = e.arms.get(chooseArm(e.config, userKeyOf(e.config, who), this.now())) ?? e.control;
    return { experiment: name, arm: arm.name, routeTo: arm.route_to };
  }

  /** Counts a finished request for the guard (in memory; flushed in the background). */
  record(a: Assignment, outcome: Outcome): void {
    if (a.halted) return;
    const counts = this.countsOf(a.experiment, a.arm);
    if (!counts) return;
    counts.requests++;
    if (outcome.error) counts.errors++;
    else counts.latencyMs += wholeMs(outcome.latencyMs);
    const quality = outcome.quality;
    if (quality !== undefined && quality >= 0 && quality <= 1) {
      counts.rated++;
      counts.qualityMilli += Math.round(quality * 1000);
    }
  }

  /** A later quality signal (client feedback, the judge) for an answer an arm served. */
  recordQuality(served: { name: string; arm: string }, quality: number): void {
    if (!(quality >= 0 && quality <= 1)) return;
    const counts = this.countsOf(served.name, served.arm);
    if (!counts) return;
    counts.rated++;
    counts.qualityMilli += Math.round(quality * 1000);
  }

  /** This node's unflushed counts of an arm; undefined when its experiment is not guarded or halted. */
  private countsOf(experiment: string, arm: string): ArmStats | undefined {
    const e = this.byName.get(experiment);
    if (!e?.config.guard || e.halt || !e.arms.has(arm)) return undefined;
    let counts = e.pending.get(arm);
    if (!counts) {
      counts = { requests: 0, errors: 0, latencyMs: 0, rated: 0, qualityMilli: 0 };
      e.pending.set(arm, counts);
    }
    return counts;
  }

  /** The halt of an experiment, if any, as this node knows it. */
  haltOf(experiment: string): Halt | undefined {
    return this.byName.get(experiment)?.halt;
  }

  /**
   * Flushes the counts, judges, and reads halts from the store; what the timer runs. Calls
   * run one after another; the promise never rejects.
   */
  sync(): Promise<void> {
    this.chain = this.chain.then(() => this.syncOnce());
    return this.chain;
  }

  /** Stops the background refresh; counts not yet flushed are dropped. */
  close(): void {
    clearInterval(this.timer);
  }

  private async syncOnce(): Promise<void> {
    const guarded = [...this.byName.values()].filter((e) => e.config.guard);
    const results = await Promise.all(
      guarded.map((e) =>
        this.syncExperiment(e).then(
          () => true,
          (err: unknown) => {
            if (!this.storeFailing) {
              this.logger.warn(
                { err: String(err), experiment: e.config.name },
                'experiment guard: store unavailable, counts dropped until it answers',
              );
            }
            return false;
          },
        ),
      ),
    );
    const failing = results.includes(false);
    if (this.storeFailing && !failing) this.logger.info('experiment guard: store answers again');
    this.storeFailing = failing;
  }

  private async syncExperiment(e: Live): Promise<void> {
    if (e.halt) {
      if (!e.haltShared) await this.store.set(this.haltKey(e), JSON.stringify(e.halt));
      e.haltShared = true;
      return;
    }
    const shared = await this.store.get(this.haltKey(e));
    if (shared !== null) {
      this.halt(e, parseHalt(shared), true);
      return;
    }
    await this.flush(e);
  }

  /** Adds this node's counts to the current bucket and judges the totals of all nodes. */
  private async flush(e: Live): Promise<void> {
    const pending = e.pending;
    if (pending.size === 0) return; // nothing new here; nodes with traffic judge it
    e.pending = new Map();
    const bucket = Math.floor(this.now() / GUARD_BUCKET_MS);
    const arms = [...e.arms.keys()];
    const current = await Promise.all(
      arms.map(async (arm) => {
        const counts = pending.get(arm);
        const values = await Promise.all(
          METRICS.map((m) =>
            this.store.incrBy(this.statKey(e, bucket, arm, m), counts?.[m] ?? 0, STATS_TTL_MS),
          ),
        );
        return [arm, statsOf(values)] as const;
      }),
    );
    const previous = await this.previousTotals(e, bucket - 1, arms);
    const total = (arm: string, stats: ArmStats) => add(stats, previous.get(arm));
    const control = total(e.control.name, current.find(([arm]) => arm === e.control.name)![1]);
    for (const [arm, stats] of current) {
      if (arm === e.control.name) continue;
      const halt = judge(e.config.guard!, arm, total(arm, stats), control);
      if (halt) {
        this.halt(e, halt, false);
        await this.store.set(this.haltKey(e), JSON.stringify(halt));
        e.haltShared = true;
        return;
      }
    }
  }

  private async previousTotals(e: Live, bucket: number, arms: string[]): Promise<Map<string, ArmStats>> {
    if (e.previous?.bucket === bucket) return e.previous.totals;
    const totals = new Map<string, ArmStats>();
    await Promise.all(
      arms.map(async (arm) => {
        const values = await Promise.all(
          METRICS.map(async (m) => {
            const value = await this.store.get(this.statKey(e, bucket, arm, m));
            return value === null ? 0 : Number(value.toString('latin1')) || 0;
          }),
        );
        totals.set(arm, statsOf(values));
      }),
    );
    e.previous = { bucket, totals };
    return totals;
  }

  private halt(e: Live, halt: Halt, shared: boolean): void {
    if (e.halt) return;
    e.halt = halt;
    e.haltShared = shared;
    e.pending = new Map();
    this.logger.warn(
      { experiment: e.config.name, config_hash: e.hash, ...halt, from_store: shared },
      'experiment halted: every user goes to the control until the experiment is changed',
    );
  }

  private haltKey(e: Live): string {
    return key('global', 'experiment', e.config.name, e.hash, 'halt');
  }

  private statKey(e: Live, bucket: number, arm: string, metric: (typeof METRICS)[number]): string {
    return key('global', 'experiment', e.config.name, e.hash, 'stats', bucket, arm, metric);
  }
}

function userKeyOf(config: ExperimentConfig, who: Requester): string | undefined {
  const value =
    config.sticky_by === 'consumer'
      ? who.consumerId
      : config.sticky_by === 'credential'
        ? who.credentialId
        : config.sticky_header !== undefined
          ? who.header(config.sticky_header)
          : undefined;
  return value === '' ? undefined : value;
}

/** Longest latency counted: a day (anything longer is a bad reading, and sums must stay safe integers). */
const MAX_LATENCY_MS = 86_400_000;

/** Latency as a whole number of ms from 0 to MAX_LATENCY_MS (a store counter takes integers); NaN counts as 0. */
function wholeMs(ms: number): number {
  return ms > 0 ? Math.round(Math.min(ms, MAX_LATENCY_MS)) : 0;
}

function statsOf(values: number[]): ArmStats {
  return {
    requests: values[0] ?? 0,
    errors: values[1] ?? 0,
    latencyMs: values[2] ?? 0,
    rated: values[3] ?? 0,
    qualityMilli: values[4] ?? 0,
  };
}

function add(a: ArmStats, b: ArmStats | undefined): ArmStats {
  if (!b) return a;
  return {
    requests: a.requests + b.requests,
    errors: a.errors + b.errors,
    latencyMs: a.latencyMs + b.latencyMs,
    rated: a.rated + b.rated,
    qualityMilli: a.qualityMilli + b.qualityMilli,
  };
}

/** A halt as stored; anything unreadable still halts (the flag is what matters). */
function parseHalt(value: Buffer): Halt {
  try {
    const parsed = JSON.parse(value.toString('utf8')) as Partial<Halt>;
    if (
      parsed &&
      (parsed.reason === 'error_rate' || parsed.reason === 'latency' || parsed.reason === 'quality')
    ) {
      return {
        reason: parsed.reason,
        arm: String(parsed.arm),
        value: Number(parsed.value),
        control: Number(parsed.control),
      };
    }
  } catch {
    // falls through
  }
  return { reason: 'unknown', arm: 'unknown', value: Number.NaN, control: Number.NaN };
}
