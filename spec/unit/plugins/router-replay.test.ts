import { readLog, replay, rewardOf } from '../../../scripts/replay-routing';

const config = { cost_weight: 0, latency_weight: 0, min_explore: 0.02, max_explore: 0.2, window_s: 3600 };

/** A seeded generator, so the logged traffic and the replay are reproducible. */
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Hidden pass rate per task and target: a different target is best for each task. */
const QUALITY: Record<string, Record<string, number>> = {
  code: { a: 0.9, b: 0.5, c: 0.4 },
  chat: { a: 0.5, b: 0.4, c: 0.85 },
};

/** A log of traffic routed uniformly at random (round robin), as ai-metrics writes it. */
function uniformLog(lines: number, random: () => number): string {
  const out: string[] = [];
  for (let i = 0; i < lines; i++) {
    const task = i % 2 === 0 ? 'code' : 'chat';
    const target = ['a', 'b', 'c'][i % 3]!;
    const score = random() < QUALITY[task]![target]! ? 1 : 0;
    out.push(
      JSON.stringify({
        type: 'ai_request',
        started_at: 1_700_000_000_000 + i * 100,
        pool: 'smart',
        task,
        target,
        quality: { score, failed: score ? [] : ['refusal'] },
        cost_usd: 0.001,
        provider_latency_ms: 800,
      }),
    );
  }
  return out.join('\n');
}

describe('replay of recorded traffic', () => {
  it('reads only replayable lines, in time order', () => {
    const text = [
      JSON.stringify({ started_at: 2, pool: 'p', target: 'a', task: 'code', quality: { score: 1 } }),
      'not json',
      JSON.stringify({ started_at: 1, pool: 'p', target: 'b', quality: { score: 0 }, cost_usd: 0.5 }),
      JSON.stringify({ started_at: 3, target: 'a', quality: { score: 1 } }), // no pool
      JSON.stringify({ started_at: 4, pool: 'p', target: 'a' }), // no quality
    ].join('\n');
    expect(readLog(text)).toEqual([
      { at: 1, pool: 'p', task: 'any', target: 'b', quality: 0, costUsd: 0.5, latencyMs: 0 },
      { at: 2, pool: 'p', task: 'code', target: 'a', quality: 1, costUsd: 0, latencyMs: 0 },
    ]);
  });

  it('weighs cost and latency as the strategy would', () => {
    const r = { at: 0, pool: 'p', task: 'x', target: 't', quality: 0.9, costUsd: 0.002, latencyMs: 1500 };
    expect(rewardOf(r, { ...config, cost_weight: 100, latency_weight: 0.1 })).toBeCloseTo(0.9 - 0.2 - 0.15);
  });

  it('estimates a better reward than uniform routing, and learns the best target of each task', async () => {
    const log = readLog(uniformLog(9_000, seeded(7)));
    const rows = await replay(log, config, seeded(11));
    for (const row of rows) {
      const best = row.task === 'code' ? 'a' : 'c';
      expect(row.accepted).toBeGreaterThan(500);
      expect(row.adaptiveReward).toBeGreaterThan(row.loggedReward + 0.15);
      const share = (row.choices[best] ?? 0) / row.lines;
      expect(share).toBeGreaterThan(0.7);
    }
  });
});
