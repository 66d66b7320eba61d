import type { Registry } from 'prom-client';
import type { PolicyAnswer, RelayOutcome, RequestContext, RouteDecision, Target } from '../../lib/context';
import { GatewayError } from '../../lib/errors';
import { usageCost } from '../../lib/llm/prices';
import type { Logger } from '../../lib/log/logger';
import type { Store } from '../../lib/store';
import type { RouterConfig } from '../../schemas/ai-router';
import type { AdaptiveRouting } from './bandit';
import type { Assignment, Experiments } from './experiments';
import { FeedbackLedger, newFeedbackId, type Rating } from './feedback';
import { Judge } from './judge';
import { type RouterMetrics, routerMetrics } from './metrics';
import { checkAnswer } from './quality';
import { ANY_TASK } from './router';

/** A route decision before the Kong adapter adds its header setting. */
type Routed = Omit<RouteDecision, 'exposeTarget'>;

/** Failures of an attempt that say nothing of the target's quality (it was not tried, or was cut short by us). */
const NOT_JUDGED = new Set(['circuit_open', 'budget', 'cancelled', 'context_window']);

/**
 * Where a request's quality signals go once it is answered: the automatic checks (right when
 * the outcome is known, for the log line), then the metrics, the adaptive pools' bandit, the
 * experiment guard and the judge (after the answer has left). Feedback arrives later, by id.
 */
export class QualitySignals {
  private readonly metrics?: RouterMetrics;
  private readonly judge?: Judge;
  private readonly ledger?: FeedbackLedger;
  private readonly pools: ReadonlyMap<string, RouterConfig['pools'][number]>;
  private readonly adaptive?: AdaptiveRouting;
  private readonly experiments?: Experiments;

  constructor(
    private readonly config: RouterConfig,
    catalog: ReadonlyMap<string, Target>,
    deps: {
      store: Store;
      logger: Logger;
      metrics?: Registry;
      adaptive?: AdaptiveRouting;
      experiments?: Experiments;
    },
  ) {
    this.pools = new Map(config.pools.map((p) => [p.name, p]));
    this.adaptive = deps.adaptive;
    this.experiments = deps.experiments;
    const quality = config.quality;
    if (!quality.enabled) return;
    if (deps.metrics) this.metrics = routerMetrics(deps.metrics);
    if (quality.judge) {
      this.judge = new Judge(quality.judge, catalog.get(quality.judge.target)!, { logger: deps.logger });
    }
    if (quality.feedback.enabled)
      this.ledger = new FeedbackLedger(deps.store, quality.feedback.max_age_s, Date.now, deps.logger);
  }

  /** Follows one routed request to its end (called once per request, with its decision). */
  watch(ctx: RequestContext, route: Routed, arm: Assignment | undefined): void {
    const started = Date.now();
    const quality = this.config.quality;
    if (quality.enabled) {
      ctx.keepAnswer(quality.max_answer_bytes);
      ctx.onOutcome(() => {
        const outcome = ctx.outcome;
        if (!outcome || !ctx.endpoint) return;
        ctx.quality = checkAnswer({
          endpoint: ctx.endpoint,
          request: ctx.body,
          answer: outcome.answer?.body,
          outcome,
        });
      });
      const ledger = this.ledger;
      if (ledger) {
        // The id goes out with the answer; what it rates is recorded once the answer is known
        // (the target that answered, after any failover).
        const id = newFeedbackId();
        ctx.responseHeaders['x-ai-feedback-id'] = id;
        ctx.onOutcome(() => {
          const outcome = ctx.outcome;
          if (outcome?.end !== 'complete') return;
          ledger.issue(
            {
              ...(ctx.facts.consumer?.id ? { consumerId: ctx.facts.consumer.id } : {}),
              ...(ctx.routeId ? { route: ctx.routeId } : {}),
              pool: route.pool ?? outcome.target,
              ...(route.task !== undefined ? { task: route.task } : {}),
              target: outcome.target,
              ...(route.experiment ? { experiment: route.experiment } : {}),
            },
            id,
          );
        });
      }
    }
    if (!quality.enabled && !arm) return;
    ctx.afterExchange(() => {
      const outcome = ctx.outcome;
      if (!outcome) return;
      const score = ctx.quality?.score;
      if (arm) {
        this.experiments?.record(arm, {
          error: outcome.status >= 500,
          latencyMs: Date.now() - started,
          ...(score !== undefined ? { quality: score } : {}),
        });
      }
      if (quality.enabled) this.learn(ctx, route, outcome);
    });
  }

  /** `POST …/v1/feedback`: the client rates an answer it got, by its `x-ai-feedback-id`. */
  async answerFeedback(ctx: RequestContext): Promise<PolicyAnswer> {
    if (!this.ledger) {
      throw new GatewayError(
        'AIGW_NOT_FOUND',
        'this route takes no feedback (ai-router quality.feedback.enabled is off)',
      );
    }
    const body = ctx.body as { request_id: string } & Rating;
    const rating: Rating = 'label' in body ? { label: body.label } : { score: body.score };
    const result = await this.ledger.take(body.request_id, ctx.facts.consumer?.id, rating);
    if (!result.ok) throw result.error;
    const { record, quality } = result;
    this.metrics?.feedback.observe(labelsOf(record.target, record.task, record.experiment), quality);
    if (record.experiment) this.experiments?.recordQuality(record.experiment, quality);
    const pool = this.pools.get(record.pool);
    if (pool?.strategy === 'adaptive') {
      this.adaptive?.recordQuality(pool, record.task ?? ANY_TASK, record.target, quality);
    }
    return result.answer;
  }

  close(): void {
    this.judge?.close();
  }

  /** The checks' verdict to the metrics and the bandit; a sample of answers to the judge. */
  private learn(ctx: RequestContext, route: Routed, outcome: RelayOutcome): void {
    const verdict = ctx.quality;
    const task = route.task;
    const labels = labelsOf(outcome.target, task, route.experiment);
    if (verdict) {
      const results = verdict.failed.length > 0 ? verdict.failed : ['pass'];
      for (const result of results) this.metrics?.checks.inc({ ...labels, result });
      this.metrics?.score.observe(labels, verdict.score);
    }
    const pool = route.pool !== undefined ? this.pools.get(route.pool) : undefined;
    if (pool?.strategy === 'adaptive' && this.adaptive) {
      const key = task ?? ANY_TASK;
      // Targets that failed before the one that answered learn that they failed.
      for (const attempt of outcome.attempts ?? []) {
        if (attempt.failure === undefined || NOT_JUDGED.has(attempt.failure)) continue;
        this.adaptive.record(pool, key, attempt.target, {
          quality: 0,
          costUsd: 0,
          latencyMs: attempt.latency_ms,
        });
      }
      if (verdict) {
        const target = route.catalog?.get(outcome.target);
        const cost = target?.prices && outcome.usage ? usageCost(target.prices, outcome.usage) : 0;
        this.adaptive.record(pool, key, outcome.target, {
          quality: verdict.score,
          costUsd: cost,
          latencyMs: outcome.latency_ms ?? 0,
        });
      }
    }
    const answer = outcome.answer?.body;
    if (this.judge && answer && ctx.body) {
      const before = { ...this.judge.stats };
      void this.judge.maybeJudge({ request: ctx.body, answer }).then((score) => {
        this.countJudge(before);
        if (score === undefined) return;
        this.metrics?.judged.observe(labels, score);
        if (route.experiment) this.experiments?.recordQuality(route.experiment, score);
        if (pool?.strategy === 'adaptive')
          this.adaptive?.recordQuality(pool, task ?? ANY_TASK, outcome.target, score);
      });
    }
  }

  /** The judge's own counters, moved to Prometheus as they change. */
  private countJudge(before: Judge['stats']): void {
    const after = this.judge!.stats;
    const m = this.metrics;
    if (!m) return;
    m.judgeCalls.inc({ outcome: 'judged' }, after.judged - before.judged);
    m.judgeCalls.inc({ outcome: 'skipped_rate' }, after.skippedRate - before.skippedRate);
    m.judgeCalls.inc({ outcome: 'skipped_cost' }, after.skippedCost - before.skippedCost);
    m.judgeCalls.inc({ outcome: 'failed' }, after.failures - before.failures);
    m.judgeCost.inc(Math.max(0, after.spentUsd - before.spentUsd));
  }
}

function labelsOf(
  target: string,
  task: string | undefined,
  experiment: { name: string; arm: string } | undefined,
) {
  return { target, task: task ?? '', arm: experiment ? `${experiment.name}=${experiment.arm}` : '' };
}
