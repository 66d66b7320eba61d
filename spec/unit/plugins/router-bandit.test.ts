import type { Target } from '../../../lib/context';
import { createLogger, type Logger } from '../../../lib/log/logger';
import { MemoryStore, type Store } from '../../../lib/store';
import {
  type AdaptiveConfig,
  type AdaptivePool,
  AdaptiveRouting,
  type ArmView,
  keepShare,
  winProbability,
} from '../../../plugins/ai-router/bandit';
import { CLASSES, rng, SHARE_GOAL, simulate } from '../../../scripts/sim-adaptive';
import { brokenStore } from '../../support/broken-store';

const T0 = Date.parse('2026-12-01T09:00:00Z');
const quiet = createLogger({ level: 'silent' });

let clock = T0;
const now = () => clock;
const opened: AdaptiveRouting[] = [];
const stores: Store[] = [];

beforeEach(() => {
  clock = T0;
});

afterEach(async () => {
  for (const x of opened.splice(0)) x.close();
  for (const s of stores.splice(0)) await s.close();
});

function memoryStore(): MemoryStore {
  const store = new MemoryStore({ now });
  stores.push(store);
  return store;
}

function open(store: Store, logger: Logger = quiet): AdaptiveRouting {
  const x = new AdaptiveRouting(store, logger, now, { syncMs: 0 });
  opened.push(x);
  return x;
}

function poolOf(overrides: Partial<AdaptiveConfig> = {}): AdaptivePool {
  return {
    name: 'smart',
    adaptive: {
      cost_weight: 0,
      latency_weight: 0,
      min_explore: 0.02,
      max_explore: 0.2,
      window_s: 3600,
      ...overrides,
    },
  };
}

function target(name: string): Target {
  return {
    name,
    provider: 'openai',
    model: name,
    base_url: 'http://provider.invalid/v1',
    headers: {},
    timeouts: { connect_ms: 1000, first_byte_ms: 1000, idle_ms: 1000, total_ms: 1000 },
  };
}

const [A, B, C] = [target('a'), target('b'), target('c')];
const ABC = [A, B, C];

/** Records `n` results on a target, a share `passRate` of them of quality 1, the others 0. */
function feed(
  x: AdaptiveRouting,
  pool: AdaptivePool,
  name: string,
  n: number,
  passRate: number,
  extra: { costUsd?: number; latencyMs?: number } = {},
) {
  for (let i = 0; i < n; i++) {
    x.record(pool, 'code', name, {
      quality: i < Math.round(n * passRate) ? 1 : 0,
      costUsd: extra.costUsd ?? 0,
      latencyMs: extra.latencyMs ?? 0,
    });
  }
}

/** How often each target comes first in `n` orders. */
function firstShares(
  x: AdaptiveRouting,
  pool: AdaptivePool,
  targets: readonly Target[],
  n: number,
  seed = 7,
) {
  const random = rng(seed);
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const first = x.order(pool, 'code', targets, random)[0]!.name;
    counts.set(first, (counts.get(first) ?? 0) + 1);
  }
  return (name: string) => (counts.get(name) ?? 0) / n;
}

/**
 * Runs 2000 requests against hidden pass rates, costs and latencies; returns the share of the
 * last 500 on `best`.
 */
function run(
  x: AdaptiveRouting,
  pool: AdaptivePool,
  hidden: Record<string, { pass: number; costUsd?: number; latencyMs?: number }>,
  best: string,
  seed = 11,
): number {
  const random = rng(seed);
  const targets = Object.keys(hidden).map(target);
  const last: boolean[] = [];
  for (let i = 0; i < 2000; i++) {
    const chosen = x.order(pool, 'code', targets, random)[0]!.name;
    const h = hidden[chosen]!;
    x.record(pool, 'code', chosen, {
      quality: random() < h.pass ? 1 : 0,
      costUsd: h.costUsd ?? 0,
      latencyMs: h.latencyMs ?? 0,
    });
    clock += h.latencyMs ?? 1000;
    last.push(chosen === best);
    if (last.length > 500) last.shift();
  }
  return last.filter(Boolean).length / last.length;
}

const byTarget = (views: ArmView[]) => Object.fromEntries(views.map((v) => [v.target, v]));

describe('adaptive routing: choosing', () => {
  it('explores a target never tried before the others, once each', () => {
    const x = open(memoryStore());
    const pool = poolOf();
    feed(x, pool, 'a', 100, 1);
    const firsts = [0, 1].map(() => x.order(pool, 'code', ABC, rng(1))[0]!.name);
    expect(firsts.sort()).toEqual(['b', 'c']);
  });

  it('returns exactly the targets it is given, reordered, and never another', () => {
    const x = open(memoryStore());
    const pool = poolOf();
    feed(x, pool, 'a', 50, 1);
    feed(x, pool, 'b', 50, 0.5);
    feed(x, pool, 'c', 50, 0.9);
    const random = rng(3);
    for (const given of [[], [B], [C, A], [A, B, C], [C, B]]) {
      for (let i = 0; i < 200; i++) {
        const ordered = x.order(pool, 'code', given, random);
        expect(ordered).toHaveLength(given.length);
        expect(new Set(ordered)).toEqual(new Set(given));
      }
    }
    // Well known and best, but not given: never returned.
    expect(firstShares(x, pool, [B, C], 500)('a')).toBe(0);
  });

  it('converges to the target of the best quality', () => {
    const x = open(memoryStore());
    const share = run(x, poolOf(), { a: { pass: 0.6 }, b: { pass: 0.9 }, c: { pass: 0.5 } }, 'b');
    expect(share).toBeGreaterThanOrEqual(0.9);
  });

  it('weighs cost: the best quality loses to a cheaper target once λ makes its price count', () => {
    const hidden = { a: { pass: 0.95, costUsd: 0.01 }, b: { pass: 0.8, costUsd: 0.0005 }, c: { pass: 0.5 } };
    // λ = 0: quality alone, a wins. λ = 50: a loses 0.5 a request, b 0.025: b wins.
    expect(run(open(memoryStore()), poolOf(), hidden, 'a')).toBeGreaterThanOrEqual(0.9);
    expect(run(open(memoryStore()), poolOf({ cost_weight: 50 }), hidden, 'b')).toBeGreaterThanOrEqual(0.9);
  });

  it('weighs latency: a fast target wins once μ makes seconds count', () => {
    const hidden = { a: { pass: 0.9, latencyMs: 8000 }, b: { pass: 0.8, latencyMs: 500 }, c: { pass: 0.4 } };
    expect(run(open(memoryStore()), poolOf(), hidden, 'a')).toBeGreaterThanOrEqual(0.9);
    expect(run(open(memoryStore()), poolOf({ latency_weight: 0.1 }), hidden, 'b')).toBeGreaterThanOrEqual(
      0.9,
    );
  });

  it('counts later quality signals (feedback, judge) as quality evidence', () => {
    const x = open(memoryStore());
    const pool = poolOf();
    feed(x, pool, 'a', 20, 1);
    feed(x, pool, 'b', 20, 1);
    for (let i = 0; i < 40; i++) x.recordQuality(pool, 'code', 'a', 0);
    const views = byTarget(x.view(pool, 'code'));
    expect(views.a).toMatchObject({ requests: 20, qualitySignals: 60 });
    expect(views.b).toMatchObject({ requests: 20, qualitySignals: 20 });
    expect(views.a!.mean).toBeLessThan(0.4);
    expect(firstShares(x, pool, [A, B], 2000)('b')).toBeGreaterThan(0.9);
  });

  it('keeps tasks apart: a target best for one task is not preferred for another', () => {
    const x = open(memoryStore());
    const pool = poolOf();
    feed(x, pool, 'a', 100, 1);
    feed(x, pool, 'b', 100, 0);
    for (let i = 0; i < 100; i++) {
      x.record(pool, 'chat', 'a', { quality: 0, costUsd: 0, latencyMs: 0 });
      x.record(pool, 'chat', 'b', { quality: 1, costUsd: 0, latencyMs: 0 });
    }
    const random = rng(5);
    const chat = Array.from({ length: 1000 }, () => x.order(pool, 'chat', [A, B], random)[0]!.name);
    expect(chat.filter((n) => n === 'b').length).toBeGreaterThan(900);
    expect(firstShares(x, pool, [A, B], 1000)('a')).toBeGreaterThan(0.9);
  });

  it('ignores a quality that is no number, clamps one out of range, and takes bad costs and latencies as 0', () => {
    const x = open(memoryStore());
    const pool = poolOf({ cost_weight: 10, latency_weight: 1 });
    x.record(pool, 'code', 'a', { quality: Number.NaN, costUsd: 1, latencyMs: 1 });
    x.recordQuality(pool, 'code', 'a', Number.NaN);
    x.record(pool, 'code', 'a', { quality: 7, costUsd: -5, latencyMs: Number.NaN });
    x.record(pool, 'code', 'b', { quality: -3, costUsd: Number.POSITIVE_INFINITY, latencyMs: -1 });
    x.recordQuality(pool, 'code', 'b', 2);
    const views = byTarget(x.view(pool, 'code'));
    expect(views.a).toMatchObject({ requests: 1, qualitySignals: 1 });
    expect(views.b).toMatchObject({ requests: 1, qualitySignals: 2 });
    // Quality 1 from the prior's two pseudo-observations of 0.5: (1 + 1) / 3.
    expect(views.a!.mean).toBeCloseTo(2 / 3, 6);
    expect(views.b!.mean).toBeCloseTo((0 + 1 + 1) / 4, 6);
    expect(x.order(pool, 'code', [A, B], rng(1))).toHaveLength(2);
  });
});

describe('adaptive routing: exploration bounds', () => {
  it('keeps every target at least min_explore / n of the traffic, however clear the winner', () => {
    const x = open(memoryStore());
    const pool = poolOf({ min_explore: 0.3, max_explore: 1 });
    feed(x, pool, 'a', 300, 1);
    feed(x, pool, 'b', 300, 0);
    feed(x, pool, 'c', 300, 0);
    const share = firstShares(x, pool, ABC, 20_000);
    // Each loser's floor is 0.1; the standard deviation of its share over 20 000 orders is 0.002.
    for (const loser of ['b', 'c']) {
      expect(share(loser)).toBeGreaterThan(0.1 - 0.008);
      expect(share(loser)).toBeLessThan(0.1 + 0.008); // Thompson alone would give it nothing
    }
  });

  it('sends at most max_explore of the traffic away from the best, even while Thompson is unsure', () => {
    const x = open(memoryStore());
    const uncertain = (pool: AdaptivePool) => {
      feed(x, pool, 'a', 20, 0.7);
      feed(x, pool, 'b', 20, 0.65);
      feed(x, pool, 'c', 20, 0.6);
    };
    const capped = poolOf({ min_explore: 0.02, max_explore: 0.2 });
    const free = { ...poolOf({ min_explore: 0.02, max_explore: 1 }), name: 'free' };
    uncertain(capped);
    uncertain(free);
    const best = x.view(capped, 'code').reduce((p, q) => (q.mean > p.mean ? q : p)).target;
    expect(best).toBe('a');
    const freeShare = firstShares(x, free, ABC, 20_000)('a');
    expect(1 - freeShare).toBeGreaterThan(0.4); // without a ceiling, Thompson explores much more
    const cappedShare = firstShares(x, capped, ABC, 20_000)('a');
    // Standard deviation of the share over 20 000 orders: 0.003.
    expect(1 - cappedShare).toBeLessThan(0.2 + 0.012);
    expect(1 - cappedShare).toBeGreaterThan(0.2 - 0.012); // up to the ceiling, not below it
  });

  it('lets the floor win when floor and ceiling conflict', () => {
    const x = open(memoryStore());
    const pool = poolOf({ min_explore: 0.9, max_explore: 0.1 });
    feed(x, pool, 'a', 300, 1);
    feed(x, pool, 'b', 300, 0);
    feed(x, pool, 'c', 300, 0);
    const share = firstShares(x, pool, ABC, 20_000);
    expect(share('b')).toBeGreaterThan(0.3 - 0.012);
    expect(share('c')).toBeGreaterThan(0.3 - 0.012);
  });

  it('keepShare spends what the floor leaves of the ceiling', () => {
    expect(keepShare(0, 0.2, 3, 0.1)).toBe(1);
    expect(keepShare(0, 0.2, 3, 0.4)).toBeCloseTo(0.5);
    // The floor sends 0.3 · 2/3 = 0.2 away: nothing left.
    expect(keepShare(0.3, 0.2, 3, 0.5)).toBeCloseTo(0, 12);
    expect(keepShare(1, 1, 3, 0.5)).toBe(0);
  });

  it('winProbability matches the closed form for two targets, whatever their spreads', () => {
    const view = (mean: number, sd: number): ArmView => ({
      target: 't',
      mean,
      sd,
      requests: 1,
      qualitySignals: 1,
    });
    const phi = (z: number) => 0.5 * (1 + erf(z / Math.SQRT2));
    for (const [mb, sb, mo, so] of [
      [0.7, 0.05, 0.65, 0.05],
      [0.7, 0.2, 0.6, 0.01],
      [0.7, 0.01, 0.69, 0.3],
      [0.5, 0.1, 0.5, 0.1],
      [0.9, 0.01, 0.1, 0.01],
    ] as const) {
      const exact = phi((mb - mo) / Math.sqrt(sb * sb + so * so));
      expect(winProbability([view(mb, sb), view(mo, so)], 0)).toBeCloseTo(exact, 3);
    }
  });
});

describe('adaptive routing: shared state', () => {
  it('shares evidence between two nodes on one store', async () => {
    const store = memoryStore();
    const pool = poolOf();
    const one = open(store);
    const two = open(store);
    feed(one, pool, 'a', 100, 1);
    feed(one, pool, 'b', 100, 0);
    await one.sync();
    two.order(pool, 'code', [A, B], rng(1));
    await two.sync();
    expect(byTarget(two.view(pool, 'code'))).toMatchObject({
      a: { requests: 100, qualitySignals: 100 },
      b: { requests: 100, qualitySignals: 100 },
    });
    expect(firstShares(two, pool, [A, B], 1000)('a')).toBeGreaterThan(0.9);

    feed(two, pool, 'b', 50, 1);
    await two.sync();
    await one.sync();
    // Totals of both nodes, each result counted once.
    for (const node of [one, two]) {
      expect(byTarget(node.view(pool, 'code'))).toMatchObject({ a: { requests: 100 }, b: { requests: 150 } });
    }
  });

  it('survives a restart: a new instance on the same store knows what the old one learnt', async () => {
    const store = memoryStore();
    const pool = poolOf({ cost_weight: 10 });
    const before = open(store);
    feed(before, pool, 'a', 40, 0.9, { costUsd: 0.001 });
    feed(before, pool, 'b', 40, 0.5, { costUsd: 0.002 });
    await before.sync();
    const seen = before.view(pool, 'code');
    before.close();

    clock += 30_000;
    const after = open(store);
    after.order(pool, 'code', [A, B], rng(1));
    await after.sync();
    const views = byTarget(after.view(pool, 'code'));
    for (const v of seen) {
      expect(views[v.target]).toMatchObject({ requests: v.requests, qualitySignals: v.qualitySignals });
      expect(views[v.target]!.mean).toBeCloseTo(v.mean, 6);
    }
  });

  it('keeps quality evidence but not penalties when the cost or latency weight changes', async () => {
    const store = memoryStore();
    const cheap = poolOf({ cost_weight: 10 });
    const before = open(store);
    feed(before, cheap, 'a', 40, 1, { costUsd: 0.01 });
    await before.sync();
    const after = open(store);
    const dearer = poolOf({ cost_weight: 20 });
    after.order(dearer, 'code', [A, B], rng(1));
    await after.sync();
    expect(byTarget(after.view(dearer, 'code')).a).toMatchObject({ qualitySignals: 40, requests: 0 });
  });

  it('forgets evidence older than window_s, so a target that degraded loses its place', async () => {
    const store = memoryStore();
    const pool = poolOf({ window_s: 100 }); // buckets of 10 s
    const x = open(store);
    feed(x, pool, 'a', 200, 1);
    feed(x, pool, 'b', 200, 0.7);
    await x.sync();
    clock += 95_000; // the first bucket is still the window's oldest
    await x.sync();
    expect(byTarget(x.view(pool, 'code')).a).toMatchObject({ requests: 200 });
    clock += 5_000;
    await x.sync();
    expect(x.view(pool, 'code').every((v) => v.requests === 0 && v.qualitySignals === 0)).toBe(true);

    // The same on a node that starts now: nothing out of the window is read back.
    const late = open(store);
    late.order(pool, 'code', [A, B], rng(1));
    await late.sync();
    expect(late.view(pool, 'code').every((v) => v.requests === 0)).toBe(true);

    // New evidence: a now fails; it is no longer preferred.
    feed(x, pool, 'a', 50, 0.2);
    feed(x, pool, 'b', 50, 0.7);
    expect(firstShares(x, pool, [A, B], 1000)('b')).toBeGreaterThan(0.8);
  });

  it('follows a degraded best target within the window, evidence ageing out bucket by bucket', () => {
    const x = open(memoryStore());
    const pool = poolOf({ window_s: 600 });
    const random = rng(9);
    const pass: Record<string, number> = { a: 0.9, b: 0.7 };
    let onB = 0;
    for (let i = 0; i < 3000; i++) {
      if (i === 1000) pass.a = 0.3;
      const chosen = x.order(pool, 'code', [A, B], random)[0]!.name;
      x.record(pool, 'code', chosen, { quality: random() < pass[chosen]! ? 1 : 0, costUsd: 0, latencyMs: 0 });
      clock += 1000;
      if (i >= 2800 && chosen === 'b') onB++;
    }
    expect(onB / 200).toBeGreaterThan(0.9);
  });
});

describe('adaptive routing: a failing store', () => {
  function capturingLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
    const lines: Array<Record<string, unknown>> = [];
    const logger = createLogger({
      level: 'debug',
      destination: { write: (line: string) => lines.push(JSON.parse(line)) },
    });
    return { logger, lines };
  }

  it('never breaks order, record or sync, learns on this node, and warns once', async () => {
    const { logger, lines } = capturingLogger();
    const x = open(brokenStore(), logger);
    const pool = poolOf();
    for (let round = 0; round < 3; round++) {
      feed(x, pool, 'a', 50, 1);
      feed(x, pool, 'b', 50, 0);
      expect(x.order(pool, 'code', [A, B], rng(round))).toHaveLength(2);
      await expect(x.sync()).resolves.toBeUndefined();
    }
    expect(byTarget(x.view(pool, 'code')).a).toMatchObject({ requests: 150 });
    expect(firstShares(x, pool, [A, B], 1000)('a')).toBeGreaterThan(0.9);
    const warnings = lines.filter((l) => l.level === 'warn' && String(l.msg).includes('store unavailable'));
    expect(warnings).toHaveLength(1);
  });

  it('flushes what it kept once the store answers again, each result once', async () => {
    const good = memoryStore();
    let down = true;
    const flaky = new Proxy(good, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) =>
          down ? Promise.reject(new Error('store down')) : value.apply(target, args);
      },
    });
    const pool = poolOf();
    const x = open(flaky);
    feed(x, pool, 'a', 30, 1);
    await x.sync();
    clock += 20_000;
    feed(x, pool, 'a', 10, 0);
    await x.sync();
    down = false;
    await x.sync();
    await x.sync();
    expect(byTarget(x.view(pool, 'code')).a).toMatchObject({ requests: 40, qualitySignals: 40 });
    const other = open(good);
    other.order(pool, 'code', [A, B], rng(1));
    await other.sync();
    expect(byTarget(other.view(pool, 'code')).a).toMatchObject({ requests: 40, qualitySignals: 40 });
  });

  it('drops evidence kept for the store once it leaves the window', async () => {
    const x = open(brokenStore());
    const pool = poolOf({ window_s: 100 });
    feed(x, pool, 'a', 30, 1);
    await x.sync();
    clock += 100_000;
    await x.sync();
    expect(byTarget(x.view(pool, 'code')).a).toMatchObject({ requests: 0 });
  });
});

describe('adaptive routing: the simulation', () => {
  it.each([1, 2] as const)(
    'brings every class to %s node(s) to 90 %% on its best within 1000 requests',
    async (nodes) => {
      const report = await simulate({ seed: 3, requestsPerClass: 1000, nodes });
      expect(report.classes.map((c) => c.taskClass)).toEqual([...CLASSES]);
      for (const c of report.classes) {
        expect(c.convergedAfter).toBeDefined();
        expect(c.convergedAfter!).toBeLessThanOrEqual(1000);
      }
      expect(SHARE_GOAL).toBe(0.9);
    },
  );
});

/** erf (Abramowitz & Stegun 7.1.26), for the closed form. */
function erf(x: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(x));
  const y =
    1 -
    ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) *
      t *
      Math.exp(-x * x);
  return x >= 0 ? y : -y;
}
