import { Counter, Histogram, type Registry } from 'prom-client';

/** Buckets of a 0..1 quality score. */
const SCORE_BUCKETS = [0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1];

/**
 * ai-router's quality signals, per target, task and experiment arm: names from config, never
 * from clients, so the label sets stay small. `task` is '' without task routing, `arm`
 * `experiment=arm` or ''.
 */
export class RouterMetrics {
  readonly checks: Counter<'target' | 'task' | 'arm' | 'result'>;
  readonly score: Histogram<'target' | 'task' | 'arm'>;
  readonly feedback: Histogram<'target' | 'task' | 'arm'>;
  readonly judged: Histogram<'target' | 'task' | 'arm'>;
  readonly judgeCalls: Counter<'outcome'>;
  readonly judgeCost: Counter;

  constructor(registry: Registry) {
    const registers = [registry];
    const labelNames = ['target', 'task', 'arm'] as const;
    this.checks = new Counter({
      name: 'aigw_quality_checks_total',
      help: "Answers checked by ai-router: result 'pass', or the name of each check that failed (empty, refusal, truncated, invalid_json, tool_call_schema, language_mismatch, broken_stream).",
      labelNames: [...labelNames, 'result'],
      registers,
    });
    this.score = new Histogram({
      name: 'aigw_quality_score',
      help: "Score of ai-router's automatic checks per answer (1: every check passed).",
      labelNames,
      buckets: SCORE_BUCKETS,
      registers,
    });
    this.feedback = new Histogram({
      name: 'aigw_quality_feedback_score',
      help: 'Scores clients gave answers through the feedback endpoint (good = 1, bad = 0).',
      labelNames,
      buckets: SCORE_BUCKETS,
      registers,
    });
    this.judged = new Histogram({
      name: 'aigw_quality_judge_score',
      help: 'Scores the judge model gave a sample of answers (its 1–10 scale as 0..1).',
      labelNames,
      buckets: SCORE_BUCKETS,
      registers,
    });
    this.judgeCalls = new Counter({
      name: 'aigw_quality_judge_calls_total',
      help: "Answers offered to the judge: 'judged', or why not ('not_sampled' is not counted): skipped_rate, skipped_cost, failed.",
      labelNames: ['outcome'],
      registers,
    });
    this.judgeCost = new Counter({
      name: 'aigw_quality_judge_cost_usd_total',
      help: "What the judge's calls cost, in USD, at the judge target's prices.",
      registers,
    });
  }
}

/** One registry per suite server, however many ai-router instances it runs. */
const perRegistry = new WeakMap<Registry, RouterMetrics>();

export function routerMetrics(registry: Registry): RouterMetrics {
  let metrics = perRegistry.get(registry);
  if (!metrics) {
    metrics = new RouterMetrics(registry);
    perRegistry.set(registry, metrics);
  }
  return metrics;
}
