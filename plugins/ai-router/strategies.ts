import type { Target } from '../../lib/context';
import type { LoadView } from '../../lib/health';
import type { Strategy } from '../../schemas/ai-router';

/** A target that passed the filters, with what the strategies score it on. */
export interface Candidate {
  target: Target;
  weight: number;
  load: LoadView;
}

/** What the request is expected to cost a target: its prompt and answer tokens. */
export interface Demand {
  inputTokens: number;
  outputTokens: number;
}

/** The state a strategy keeps between requests (per pool, per node). */
export interface StrategyState {
  turn: number;
}

/**
 * Orders the candidates, best first: the first serves the request, the others are its
 * failover order. Pure but for `random` and the round-robin turn.
 */
export function rank(
  strategy: Strategy,
  candidates: readonly Candidate[],
  demand: Demand,
  state: StrategyState,
  random: () => number = Math.random,
): Candidate[] {
  if (candidates.length <= 1) return [...candidates];
  switch (strategy) {
    case 'weighted':
    case 'adaptive': // the router orders adaptive pools with their bandit; before it has learnt, by weight
      return weightedOrder(candidates, random);
    case 'round-robin': {
      const start = state.turn++ % candidates.length;
      return [...candidates.slice(start), ...candidates.slice(0, start)];
    }
    case 'least-latency':
      return byScore(candidates, (c) => expectedLatencyMs(c.load, demand), random);
    case 'least-busy':
      // Relative to weight, so a target twice as big takes twice the requests.
      return byScore(candidates, (c) => (c.load.inFlight + 1) / Math.max(c.weight, 1e-9), random);
    case 'least-cost':
      return byScore(candidates, (c) => expectedCost(c.target, demand), random);
    case 'quota-aware':
      // Most headroom first; a target that sent no rate-limit headers counts as unlimited.
      return byScore(candidates, (c) => -(c.load.quotaLeft ?? 1), random);
  }
}

/**
 * Time to first token plus time per token for the expected answer. A target never measured
 * scores 0, so it gets tried (and measured) before the averages decide.
 */
export function expectedLatencyMs(load: LoadView, demand: Demand): number {
  return (load.ttftMs ?? 0) + (load.msPerToken ?? 0) * demand.outputTokens;
}

/** USD for the demand at the target's prices; a target without prices sorts last. */
export function expectedCost(target: Target, demand: Demand): number {
  const p = target.prices;
  if (!p) return Number.POSITIVE_INFINITY;
  return (demand.inputTokens * p.input_per_1m + demand.outputTokens * p.output_per_1m) / 1e6;
}

/** Lowest score first; equal scores in random order, so ties share the traffic. */
function byScore(candidates: readonly Candidate[], score: (c: Candidate) => number, random: () => number) {
  return candidates
    .map((c) => ({ c, s: score(c), tie: random() }))
    .sort((a, b) => a.s - b.s || a.tie - b.tie)
    .map((x) => x.c);
}

/**
 * A weighted random order: each next target drawn with probability proportional to its
 * weight among those left (Efraimidis–Spirakis keys), so the first is drawn by weight and
 * the failover order follows the weights too. Weight 0 goes last.
 */
function weightedOrder(candidates: readonly Candidate[], random: () => number): Candidate[] {
  return candidates
    .map((c) => ({ c, key: c.weight > 0 ? random() ** (1 / c.weight) : -1 }))
    .sort((a, b) => b.key - a.key)
    .map((x) => x.c);
}
