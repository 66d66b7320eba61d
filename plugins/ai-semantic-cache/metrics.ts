import { Counter, Gauge, type Registry } from 'prom-client';
import type { StoreOp } from '../../lib/cache/answer-cache';

export type LookupTier = 'exact' | 'semantic' | 'none';
export type LookupResult = 'hit' | 'miss' | 'bypass' | 'shadow';

/** Why an answer was stored or not: the label values of aigw_cache_fills_total. */
export type FillResult =
  | 'stored'
  | 'no_store'
  | 'error'
  | 'incomplete'
  | 'too_large'
  | 'tool_calls'
  | 'content_filter'
  | 'store_error';

/**
 * ai-semantic-cache's Prometheus metrics, once per suite. Labels take a few fixed values
 * (tier, result, store operation): never a namespace, a consumer or a prompt.
 */
export class CacheMetrics {
  readonly lookups: Counter<'tier' | 'result'>;
  readonly fills: Counter<'result'>;
  readonly shadowComparisons: Counter<'verdict'>;
  readonly shadowFalseHitRatio: Gauge;
  readonly storeErrors: Counter<'op'>;
  readonly corruptEntries: Counter;

  constructor(registry: Registry) {
    const registers = [registry];
    this.lookups = new Counter({
      name: 'aigw_cache_lookups_total',
      help: 'Cache lookups by result (hit, miss, bypass, shadow) and tier (the tier that matched; for a miss the last tier consulted; none when not looked up).',
      labelNames: ['tier', 'result'],
      registers,
    });
    this.fills = new Counter({
      name: 'aigw_cache_fills_total',
      help: 'Answers after a miss: stored, or why not (no_store, error, incomplete, too_large, tool_calls, content_filter, store_error).',
      labelNames: ['result'],
      registers,
    });
    this.shadowComparisons = new Counter({
      name: 'aigw_cache_shadow_comparisons_total',
      help: 'Shadow mode: fresh answers compared with the semantic match that would have been served (agree, disagree).',
      labelNames: ['verdict'],
      registers,
    });
    this.shadowFalseHitRatio = new Gauge({
      name: 'aigw_cache_shadow_false_hit_ratio',
      help: 'Shadow mode: share of semantic would-be hits whose cached answer disagreed with the fresh one (this node, since start).',
      registers,
    });
    this.storeErrors = new Counter({
      name: 'aigw_cache_store_errors_total',
      help: 'Cache store calls that failed or timed out, by operation.',
      labelNames: ['op'],
      registers,
    });
    this.corruptEntries = new Counter({
      name: 'aigw_cache_corrupt_entries_total',
      help: 'Stored bytes that were not a cache entry; each was ignored and deleted.',
      registers,
    });
  }

  storeError(op: StoreOp): void {
    this.storeErrors.inc({ op });
  }
}

/** Shadow mode's evidence on this node: how often a semantic would-be hit matched the fresh answer. */
export class ShadowStats {
  agree = 0;
  disagree = 0;
  exactMatches = 0;
  private similaritySum = 0;

  constructor(private readonly metrics: CacheMetrics) {}

  record(verdict: 'agree' | 'disagree', exactMatch: boolean, similarity: number): void {
    this[verdict]++;
    if (exactMatch) this.exactMatches++;
    this.similaritySum += similarity;
    this.metrics.shadowComparisons.inc({ verdict });
    this.metrics.shadowFalseHitRatio.set(this.falseHitRatio());
  }

  falseHitRatio(): number {
    const total = this.agree + this.disagree;
    return total === 0 ? 0 : this.disagree / total;
  }

  snapshot() {
    const comparisons = this.agree + this.disagree;
    return {
      comparisons,
      agree: this.agree,
      disagree: this.disagree,
      exact_match_rate: comparisons === 0 ? 0 : this.exactMatches / comparisons,
      mean_answer_similarity: comparisons === 0 ? 0 : this.similaritySum / comparisons,
      false_hit_ratio: this.falseHitRatio(),
    };
  }
}
