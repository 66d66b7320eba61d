import { LOCAL_EMBEDDER_DEFAULT_THRESHOLD, LocalEmbedder } from '../../../lib/embed/local';
import {
  loadPairs,
  lowestThresholdFor,
  type Pair,
  type ScoredPair,
  scoreAt,
  scorePairs,
  TARGET_PRECISION,
} from '../../../scripts/eval-semantic-cache';

const pairs = loadPairs();
const count = (label: Pair['label']) => pairs.filter((p) => p.label === label).length;

describe('the paraphrase set (spec/fixtures/paraphrases)', () => {
  it('holds at least 300 paraphrases and 300 near-misses, with unique ids', () => {
    expect(count('paraphrase')).toBeGreaterThanOrEqual(300);
    expect(count('near-miss')).toBeGreaterThanOrEqual(300);
    expect(count('unrelated')).toBeGreaterThan(0);
    expect(new Set(pairs.map((p) => p.id)).size).toBe(pairs.length);
    for (const p of pairs) expect(p.a).not.toBe(p.b);
  });

  it('splits every file and label into two halves of nearly equal size', () => {
    const groups = new Map<string, number[]>();
    for (const p of pairs) {
      const key = `${p.category}/${p.label}`;
      const halves = groups.get(key) ?? [0, 0];
      halves[p.half === 'tuning' ? 0 : 1]!++;
      groups.set(key, halves);
    }
    for (const [tuning, heldOut] of groups.values()) expect(tuning - heldOut).toBeGreaterThanOrEqual(0);
    for (const [tuning, heldOut] of groups.values()) expect(tuning - heldOut).toBeLessThanOrEqual(1);
  });
});

describe('LocalEmbedder on the paraphrase set', () => {
  let scored: ScoredPair[];
  beforeAll(async () => {
    scored = await scorePairs(new LocalEmbedder(), pairs);
  });

  it.each(['tuning', 'held-out'] as const)(
    'reaches the target precision at the default threshold on the %s half',
    (half) => {
      const result = scoreAt(
        scored.filter((p) => p.half === half),
        LOCAL_EMBEDDER_DEFAULT_THRESHOLD,
      );
      expect(result.precision).toBeGreaterThanOrEqual(TARGET_PRECISION);
      // a precision bought with no hits at all would be worthless
      expect(result.recall).toBeGreaterThan(0.2);
    },
  );

  it('never matches unrelated prompts', () => {
    expect(scoreAt(scored, LOCAL_EMBEDDER_DEFAULT_THRESHOLD).falsePositivesBy.unrelated).toBe(0);
  });
});

describe('scoring', () => {
  const pair = (label: Pair['label'], similarity: number): ScoredPair => ({
    id: `${label}-${similarity}`,
    category: 't',
    label,
    a: 'a',
    b: 'b',
    half: 'tuning',
    similarity,
  });
  const sample = [
    pair('paraphrase', 0.9),
    pair('paraphrase', 0.6),
    pair('near-miss', 0.7),
    pair('unrelated', 0.1),
  ];

  it('counts a pair at or above the threshold as a hit', () => {
    const at = scoreAt(sample, 0.7);
    expect(at).toMatchObject({ truePositives: 1, falsePositives: 1, falseNegatives: 1 });
    expect(at.precision).toBe(0.5);
    expect(at.recall).toBe(0.5);
    expect(at.falsePositivesBy).toEqual({ 'near-miss': 1, unrelated: 0 });
  });

  it('reports precision 1 with no hits, and finds the lowest threshold that reaches a precision', () => {
    expect(scoreAt(sample, 0.95).precision).toBe(1);
    expect(lowestThresholdFor(sample, 0.97)).toBeCloseTo(0.9);
    expect(lowestThresholdFor([pair('near-miss', 0.9)], 0.97)).toBeUndefined();
  });
});
