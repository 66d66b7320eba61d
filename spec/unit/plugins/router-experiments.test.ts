import { randomUUID } from 'node:crypto';
import { createLogger, type Logger } from '../../../lib/log/logger';
import { createStore, MemoryStore, parseStoreConfig, type Store } from '../../../lib/store';
import {
  type Assignment,
  chooseArm,
  type ExperimentConfig,
  Experiments,
  experimentHash,
  GUARD_BUCKET_MS,
  judge,
  type Requester,
  rolloutHash,
  rolloutShare,
} from '../../../plugins/ai-router/experiments';
import { type RouterConfig, routerConfig } from '../../../schemas/ai-router';
import { brokenStore } from '../../support/broken-store';
import { sharedRedisUrl } from '../../support/redis';

const START = '2026-12-01T09:00:00Z';
const T0 = Date.parse(START);
const HOUR = 3_600_000;

/** Experiments as the config validator leaves them (defaults filled, cross-field checks passed). */
function experimentsOf(...experiments: unknown[]): readonly ExperimentConfig[] {
  return routerConfig.validate({
    targets: [
      { name: 'old', model: 'm-old' },
      { name: 'new', model: 'm-new' },
      { name: 'alt', model: 'm-alt' },
    ],
    model_map: { chat: 'old' },
    experiments,
  }).config.experiments;
}

function experiment(overrides: Record<string, unknown> = {}) {
  return {
    name: 'exp',
    model: 'chat',
    control: 'control',
    arms: [
      { name: 'control', route_to: 'old' },
      { name: 'candidate', route_to: 'new' },
    ],
    ...overrides,
  };
}

const guard = {
  min_requests: 50,
  max_error_rate_increase: 0.05,
  max_latency_ratio: 1.5,
  max_quality_drop: 0.1,
};

const consumer = (id: string | undefined): Requester => ({ consumerId: id, header: () => undefined });

const users = (n: number) => Array.from({ length: n }, (_, i) => `user-${i}`);

/** A logger whose lines the test can read. */
function capturingLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    level: 'debug',
    destination: { write: (line: string) => lines.push(JSON.parse(line)) },
  });
  return { logger, lines };
}

const warnings = (lines: Array<Record<string, unknown>>) => lines.filter((l) => l.level === 'warn');

const quiet = createLogger({ level: 'silent' });

let clock = T0;
const now = () => clock;
const opened: Experiments[] = [];
const stores: Store[] = [];

function open(configs: RouterConfig['experiments'], store: Store, logger: Logger = quiet): Experiments {
  const x = new Experiments(configs, store, logger, now);
  opened.push(x);
  return x;
}

function memoryStore(): Store {
  const store = new MemoryStore();
  stores.push(store);
  return store;
}

beforeEach(() => {
  clock = T0;
});

afterEach(async () => {
  for (const x of opened.splice(0)) x.close();
  for (const s of stores.splice(0)) await s.close();
});

/** Records `n` requests on an arm, `errors` of them failed, the others taking `latencyMs`. */
function feed(x: Experiments, arm: string, n: number, errors: number, latencyMs: number): void {
  const a: Assignment = { experiment: 'exp', arm, routeTo: arm };
  for (let i = 0; i < n; i++) x.record(a, { error: i < errors, latencyMs });
}

describe('experiments: assignment', () => {
  it('keeps a user on one arm across requests, time and nodes', () => {
    const configs = experimentsOf(experiment());
    const a = open(configs, memoryStore());
    const b = open(configs, memoryStore());
    const ids = users(200);
    const first = ids.map((id) => a.assign('chat', consumer(id)));
    clock += 1000 * HOUR;
    expect(ids.map((id) => a.assign('chat', consumer(id)))).toEqual(first);
    expect(ids.map((id) => b.assign('chat', consumer(id)))).toEqual(first);
    expect(new Set(first.map((x) => x?.arm))).toEqual(new Set(['control', 'candidate']));
  });

  it('names the experiment, the arm and its route, and leaves other models alone', () => {
    const x = open(experimentsOf(experiment()), memoryStore());
    const a = x.assign('chat', consumer('u1'));
    expect(a?.experiment).toBe('exp');
    expect(['control', 'candidate']).toContain(a?.arm);
    expect(a?.routeTo).toBe(a?.arm === 'control' ? 'old' : 'new');
    expect(a?.halted).toBeUndefined();
    expect(x.assign('old', consumer('u1'))).toBeUndefined();
    expect(x.assign('unknown', consumer('u1'))).toBeUndefined();
  });

  it('sends a request without a user key to the control', () => {
    const noHeader = experiment({ sticky_by: 'header', sticky_header: 'x-user' });
    const byCredential = experiment({ sticky_by: 'credential', name: 'cred', model: 'old' });
    const x = open(experimentsOf(noHeader, byCredential), memoryStore());
    // Weights that leave the control almost no one, so a wrong fallback would show.
    const y = open(
      experimentsOf(
        experiment({
          arms: [
            { name: 'control', route_to: 'old', weight: 1 },
            { name: 'candidate', route_to: 'new', weight: 10_000 },
          ],
        }),
      ),
      memoryStore(),
    );
    for (let i = 0; i < 50; i++) {
      expect(y.assign('chat', consumer(undefined))?.arm).toBe('control');
      expect(y.assign('chat', consumer(''))?.arm).toBe('control');
      expect(x.assign('chat', { consumerId: `c${i}`, header: () => undefined })?.arm).toBe('control');
      expect(x.assign('old', { consumerId: `c${i}`, header: () => undefined })?.arm).toBe('control');
    }
  });

  it('keys users by the identity sticky_by names', () => {
    const byHeader = experiment({ sticky_by: 'header', sticky_header: 'x-user' });
    const x = open(experimentsOf(byHeader), memoryStore());
    const seen = new Set<string>();
    for (const id of users(100)) {
      const who = (consumerId: string): Requester => ({
        consumerId,
        header: (name) => (name === 'x-user' ? id : undefined),
      });
      const arm = x.assign('chat', who('one'))?.arm;
      // Another consumer with the same header value: same arm, since the header is the key.
      expect(x.assign('chat', who('two'))?.arm).toBe(arm);
      seen.add(arm!);
    }
    expect(seen).toEqual(new Set(['control', 'candidate']));
  });

  it('splits users close to the weights', () => {
    const config = experimentsOf(
      experiment({
        arms: [
          { name: 'control', route_to: 'old', weight: 1 },
          { name: 'candidate', route_to: 'new', weight: 2 },
          { name: 'other', route_to: 'alt', weight: 7 },
        ],
      }),
    )[0]!;
    const n = 10_000;
    const counts = new Map<string, number>();
    for (const id of users(n)) {
      const arm = chooseArm(config, id, T0);
      counts.set(arm, (counts.get(arm) ?? 0) + 1);
    }
    // Standard deviation of a share near 0.5 over 10 000 users: 0.005; the bound is 5 of them.
    expect(Math.abs((counts.get('control') ?? 0) / n - 0.1)).toBeLessThan(0.025);
    expect(Math.abs((counts.get('candidate') ?? 0) / n - 0.2)).toBeLessThan(0.025);
    expect(Math.abs((counts.get('other') ?? 0) / n - 0.7)).toBeLessThan(0.025);
  });

  it('moves the fewest users when one weight changes: only to that arm, about the minimum', () => {
    const arms = (candidateWeight: number) => [
      { name: 'control', route_to: 'old', weight: 1 },
      { name: 'candidate', route_to: 'new', weight: candidateWeight },
      { name: 'other', route_to: 'alt', weight: 2 },
    ];
    const before = experimentsOf(experiment({ arms: arms(1) }))[0]!;
    const after = experimentsOf(experiment({ arms: arms(3) }))[0]!;
    const n = 10_000;
    const destinations = new Map<string, number>();
    for (const id of users(n)) {
      const to = chooseArm(after, id, T0);
      if (chooseArm(before, id, T0) !== to) destinations.set(to, (destinations.get(to) ?? 0) + 1);
    }
    expect([...destinations.keys()]).toEqual(['candidate']);
    const moved = destinations.get('candidate')!;
    // Shares go from 1/4, 1/4, 1/2 to 1/6, 1/2, 1/3: at least a quarter of the users must move.
    const minimum = 0.5 * (Math.abs(1 / 4 - 1 / 6) + Math.abs(1 / 4 - 1 / 2) + Math.abs(1 / 2 - 1 / 3));
    expect(minimum).toBeCloseTo(0.25);
    expect(moved / n).toBeLessThan(minimum + 0.025);
    expect(moved / n).toBeGreaterThan(minimum - 0.025);
  });

  it('never sends anyone to an arm of weight 0', () => {
    const config = experimentsOf(
      experiment({
        arms: [
          { name: 'control', route_to: 'old', weight: 1 },
          { name: 'candidate', route_to: 'new', weight: 0 },
        ],
      }),
    )[0]!;
    expect(new Set(users(2000).map((id) => chooseArm(config, id, T0)))).toEqual(new Set(['control']));
  });
});

describe('experiments: rollout', () => {
  const rollout = { arm: 'candidate', start: START, start_percent: 5, step_percent: 10, interval_s: 3600 };

  it('computes the share: 0 before the start, then by whole steps, up to max_percent', () => {
    const r = experimentsOf(experiment({ rollout: { ...rollout, max_percent: 40 } }))[0]!.rollout!;
    expect(rolloutShare(r, T0 - 1)).toBe(0);
    expect(rolloutShare(r, T0)).toBeCloseTo(0.05);
    expect(rolloutShare(r, T0 + HOUR - 1)).toBeCloseTo(0.05);
    expect(rolloutShare(r, T0 + HOUR)).toBeCloseTo(0.15);
    expect(rolloutShare(r, T0 + 3 * HOUR)).toBeCloseTo(0.35);
    expect(rolloutShare(r, T0 + 4 * HOUR)).toBeCloseTo(0.4);
    expect(rolloutShare(r, T0 + 1000 * HOUR)).toBeCloseTo(0.4);
  });

  it('moves exactly the users whose hash is below the new share, all from the control, none back', () => {
    // The rollout arm's own weight is ignored while it is rolled out.
    const x = open(experimentsOf(experiment({ rollout: { ...rollout, max_percent: 50 } })), memoryStore());
    const ids = users(3000);
    const hash = new Map(ids.map((id) => [id, rolloutHash('exp', id)]));
    const onArm = () => new Set(ids.filter((id) => x.assign('chat', consumer(id))!.arm === 'candidate'));

    clock = T0 - 1;
    let previous = onArm();
    expect(previous.size).toBe(0);

    for (let step = 0; step <= 6; step++) {
      clock = T0 + step * HOUR;
      const share = Math.min(0.5, 0.05 + 0.1 * step);
      const current = onArm();
      // Everyone else is on the control (two arms), so these sets say it all.
      const moved = [...current].filter((id) => !previous.has(id));
      const movedBack = [...previous].filter((id) => !current.has(id));
      const shouldMove = ids.filter((id) => hash.get(id)! < share && !previous.has(id));
      expect(movedBack).toEqual([]);
      expect(moved).toEqual(shouldMove);
      expect(current).toEqual(new Set(ids.filter((id) => hash.get(id)! < share)));
      expect(Math.abs(current.size / ids.length - share)).toBeLessThan(0.05);
      previous = current;
    }
  });

  it('stops at max_percent', () => {
    const x = open(experimentsOf(experiment({ rollout: { ...rollout, max_percent: 20 } })), memoryStore());
    clock = T0 + 500 * HOUR;
    const ids = users(3000);
    const onArm = ids.filter((id) => x.assign('chat', consumer(id))!.arm === 'candidate');
    expect(onArm).toEqual(ids.filter((id) => rolloutHash('exp', id) < 0.2));
  });

  it('takes users only from the control when other arms exist; those keep theirs', () => {
    const config = experimentsOf(
      experiment({
        arms: [
          { name: 'control', route_to: 'old', weight: 3 },
          { name: 'candidate', route_to: 'new', weight: 5 },
          { name: 'other', route_to: 'alt', weight: 1 },
        ],
        rollout: { ...rollout, max_percent: 100 },
      }),
    )[0]!;
    const ids = users(4000);
    let previous = new Map(ids.map((id) => [id, chooseArm(config, id, T0 - 1)]));
    // Before the start: control and other by their weights (3:1), the rollout arm's 5 ignored.
    const before = [...previous.values()];
    expect(before.includes('candidate')).toBe(false);
    expect(Math.abs(before.filter((a) => a === 'other').length / ids.length - 0.25)).toBeLessThan(0.03);
    for (const step of [0, 1, 3, 6, 7, 8, 20]) {
      const at = T0 + step * HOUR;
      const current = new Map(ids.map((id) => [id, chooseArm(config, id, at)]));
      const moves = new Set(
        ids
          .filter((id) => current.get(id) !== previous.get(id))
          .map((id) => `${previous.get(id)}->${current.get(id)}`),
      );
      expect([...moves].filter((m) => m !== 'control->candidate')).toEqual([]);
      // The arm holds the share of all users, until it has taken every control user (75 %).
      const share = Math.min(0.75, 0.05 + 0.1 * step);
      const onArm = [...current.values()].filter((a) => a === 'candidate').length;
      expect(Math.abs(onArm / ids.length - share)).toBeLessThan(0.04);
      previous = current;
    }
    // At 100 % every control user has moved; the other arm's users have not.
    expect([...previous.values()].includes('control')).toBe(false);
    expect([...previous.values()].filter((a) => a === 'other').length).toBe(
      before.filter((a) => a === 'other').length,
    );
  });

  it('still sends a request without a key to the control', () => {
    const x = open(experimentsOf(experiment({ rollout: { ...rollout, start_percent: 100 } })), memoryStore());
    expect(x.assign('chat', consumer(undefined))?.arm).toBe('control');
    expect(x.assign('chat', consumer('someone'))?.arm).toBe('candidate');
  });
});

describe('experiments: guard', () => {
  const guarded = (overrides: Record<string, unknown> = {}) =>
    experimentsOf(experiment({ guard, ...overrides }));

  it('halts on a higher error rate: every user to the control, reason logged once', async () => {
    const { logger, lines } = capturingLogger();
    const x = open(guarded(), memoryStore(), logger);
    const onCandidate = users(500).filter((id) => x.assign('chat', consumer(id))?.arm === 'candidate');
    expect(onCandidate.length).toBeGreaterThan(100);

    feed(x, 'control', 50, 1, 100);
    feed(x, 'candidate', 50, 5, 100); // 10 % against 2 %
    await x.sync();

    expect(x.haltOf('exp')).toMatchObject({ reason: 'error_rate', arm: 'candidate' });
    for (const id of onCandidate) {
      expect(x.assign('chat', consumer(id))).toEqual({
        experiment: 'exp',
        arm: 'control',
        routeTo: 'old',
        halted: true,
      });
    }
    feed(x, 'candidate', 50, 50, 100);
    await x.sync();
    await x.sync();
    const halts = warnings(lines).filter((l) => String(l.msg).startsWith('experiment halted'));
    expect(halts).toHaveLength(1);
    expect(halts[0]).toMatchObject({ experiment: 'exp', reason: 'error_rate', arm: 'candidate' });
  });

  it('halts on a higher mean latency of successful requests', async () => {
    const x = open(guarded(), memoryStore());
    feed(x, 'control', 60, 0, 100);
    feed(x, 'candidate', 60, 0, 151);
    await x.sync();
    expect(x.haltOf('exp')).toMatchObject({ reason: 'latency', arm: 'candidate', value: 151, control: 100 });
  });

  it('halts on a lower mean quality score, once both sides have enough scored answers', async () => {
    const x = open(guarded(), memoryStore());
    const rate = (arm: string, n: number, quality: number) => {
      for (let i = 0; i < n; i++) {
        x.record(
          { experiment: 'exp', arm, routeTo: arm === 'control' ? 'old' : 'new' },
          { error: false, latencyMs: 100, quality },
        );
      }
    };
    rate('control', 60, 0.9);
    rate('candidate', 49, 0.5);
    await x.sync();
    expect(x.haltOf('exp')).toBeUndefined(); // 49 scored answers: not judged yet
    rate('candidate', 1, 0.5);
    rate('candidate', 10, 2); // out of range: not a score
    await x.sync();
    expect(x.haltOf('exp')).toMatchObject({ reason: 'quality', arm: 'candidate', value: 0.5, control: 0.9 });
  });

  it('counts later quality signals (feedback, judge) towards the quality guard', async () => {
    const x = open(guarded(), memoryStore());
    for (let i = 0; i < 60; i++) {
      x.recordQuality({ name: 'exp', arm: 'control' }, 1);
      x.recordQuality({ name: 'exp', arm: 'candidate' }, i < 40 ? 0 : 1);
    }
    x.recordQuality({ name: 'exp', arm: 'candidate' }, Number.NaN); // not a score
    x.recordQuality({ name: 'nope', arm: 'candidate' }, 0); // not an experiment here
    await x.sync();
    expect(x.haltOf('exp')).toMatchObject({ reason: 'quality', arm: 'candidate', control: 1 });
    expect(x.haltOf('exp')?.value).toBeCloseTo(1 / 3);
  });

  it('does not halt within the thresholds', async () => {
    const x = open(guarded(), memoryStore());
    feed(x, 'control', 100, 2, 100);
    feed(x, 'candidate', 100, 6, 150); // 4 points more errors; exactly 1.5 times slower
    await x.sync();
    expect(x.haltOf('exp')).toBeUndefined();
    expect(x.assign('chat', consumer('u'))?.halted).toBeUndefined();
  });

  it('does not judge below min_requests, on either side', async () => {
    const x = open(guarded(), memoryStore());
    feed(x, 'control', 49, 0, 100);
    feed(x, 'candidate', 500, 500, 1000);
    await x.sync();
    expect(x.haltOf('exp')).toBeUndefined();

    const y = open(guarded({ name: 'exp' }), memoryStore());
    feed(y, 'control', 500, 0, 100);
    feed(y, 'candidate', 49, 49, 1000);
    await y.sync();
    expect(y.haltOf('exp')).toBeUndefined();
    // The next request reaches min_requests.
    feed(y, 'candidate', 1, 1, 1000);
    await y.sync();
    expect(y.haltOf('exp')).toMatchObject({ reason: 'error_rate' });
  });

  it('judges the current and the previous bucket, not older ones', async () => {
    const store = memoryStore();
    const x = open(guarded(), store);
    clock = Math.ceil(T0 / GUARD_BUCKET_MS) * GUARD_BUCKET_MS;
    feed(x, 'control', 30, 0, 100);
    feed(x, 'candidate', 30, 30, 100);
    await x.sync();
    clock += 2 * GUARD_BUCKET_MS; // the first counts are out of the window
    feed(x, 'control', 30, 0, 100);
    feed(x, 'candidate', 30, 30, 100);
    await x.sync();
    expect(x.haltOf('exp')).toBeUndefined();
    clock += GUARD_BUCKET_MS; // the second counts are in the previous bucket: 60 each
    feed(x, 'control', 30, 0, 100);
    feed(x, 'candidate', 30, 30, 100);
    await x.sync();
    expect(x.haltOf('exp')).toMatchObject({ reason: 'error_rate' });
  });

  it('adds up the counts of two nodes and shares the halt between them', async () => {
    const store = memoryStore();
    const a = open(guarded(), store);
    const b = open(guarded(), store);
    // Each node alone stays below min_requests (50); together they reach it.
    feed(a, 'control', 30, 0, 100);
    feed(a, 'candidate', 30, 10, 100);
    await a.sync();
    expect(a.haltOf('exp')).toBeUndefined();
    feed(b, 'control', 30, 0, 100);
    feed(b, 'candidate', 30, 10, 100);
    await b.sync();
    expect(b.haltOf('exp')).toMatchObject({ reason: 'error_rate', arm: 'candidate' });

    // Node a learns it at its next refresh, without traffic of its own.
    expect(a.haltOf('exp')).toBeUndefined();
    await a.sync();
    expect(a.haltOf('exp')).toMatchObject({ reason: 'error_rate', arm: 'candidate' });
    expect(a.assign('chat', consumer('anyone'))?.halted).toBe(true);

    // A node started later (or restarted) with the same config is halted too.
    const c = open(guarded(), store);
    await c.sync();
    expect(c.assign('chat', consumer('anyone'))?.halted).toBe(true);
  });

  it('lifts the halt when the experiment config changes', async () => {
    const store = memoryStore();
    const x = open(guarded(), store);
    feed(x, 'control', 50, 0, 100);
    feed(x, 'candidate', 50, 50, 100);
    await x.sync();
    expect(x.haltOf('exp')).toBeDefined();

    const changed = guarded({ guard: { ...guard, min_requests: 51 } });
    expect(experimentHash(changed[0]!)).not.toBe(experimentHash(guarded()[0]!));
    const y = open(changed, store);
    await y.sync();
    expect(y.haltOf('exp')).toBeUndefined();
    expect(y.assign('chat', consumer('u'))?.halted).toBeUndefined();
    // And its counts start from zero: the old config's 50 + 50 do not count.
    feed(y, 'control', 50, 0, 100);
    feed(y, 'candidate', 50, 50, 100);
    await y.sync();
    expect(y.haltOf('exp')).toBeUndefined();
  });

  it('keeps counting nothing for halted assignments, unknown experiments and unknown arms', async () => {
    const x = open(guarded(), memoryStore());
    x.record(
      { experiment: 'exp', arm: 'candidate', routeTo: 'new', halted: true },
      { error: true, latencyMs: 1 },
    );
    x.record({ experiment: 'nope', arm: 'candidate', routeTo: 'new' }, { error: true, latencyMs: 1 });
    x.record({ experiment: 'exp', arm: 'nope', routeTo: 'new' }, { error: true, latencyMs: 1 });
    feed(x, 'control', 50, 0, 100);
    for (let i = 0; i < 49; i++) {
      x.record(
        { experiment: 'exp', arm: 'candidate', routeTo: 'new', halted: true },
        { error: true, latencyMs: 1 },
      );
    }
    await x.sync();
    expect(x.haltOf('exp')).toBeUndefined();
  });

  it('takes bad latencies as 0 without upsetting the store', async () => {
    const { logger, lines } = capturingLogger();
    const x = open(guarded(), memoryStore(), logger);
    feed(x, 'control', 50, 0, 100);
    for (const latencyMs of [Number.NaN, -5, Number.POSITIVE_INFINITY, 1e300, Number.MAX_SAFE_INTEGER]) {
      x.record({ experiment: 'exp', arm: 'candidate', routeTo: 'new' }, { error: false, latencyMs });
    }
    await x.sync();
    expect(warnings(lines)).toEqual([]);
  });

  it('counts nothing for experiments without a guard', async () => {
    const store = memoryStore();
    const incr = jest.spyOn(store, 'incrBy');
    const x = open(experimentsOf(experiment()), store);
    feed(x, 'candidate', 100, 100, 100);
    await x.sync();
    expect(incr).not.toHaveBeenCalled();
    expect(x.haltOf('exp')).toBeUndefined();
  });

  it('batches: one flush per arm and measure, whatever the number of requests', async () => {
    const store = memoryStore();
    const incr = jest.spyOn(store, 'incrBy');
    const x = open(guarded(), store);
    feed(x, 'control', 1000, 0, 100);
    feed(x, 'candidate', 1000, 0, 100);
    expect(incr).not.toHaveBeenCalled(); // nothing on the request path
    await x.sync();
    expect(incr).toHaveBeenCalledTimes(2 * 5); // two arms × five measures
  });
});

describe('experiments: a failing store', () => {
  it('never breaks assign, record or sync, and warns once', async () => {
    const { logger, lines } = capturingLogger();
    const x = open(
      experimentsOf(experiment({ guard, rollout: { arm: 'candidate', start: START, start_percent: 50 } })),
      brokenStore(),
      logger,
    );
    for (let round = 0; round < 3; round++) {
      for (const id of users(100)) {
        const a = x.assign('chat', consumer(id));
        expect(a?.arm).toBe(rolloutHash('exp', id) < 0.5 ? 'candidate' : 'control');
        x.record(a!, { error: true, latencyMs: 10 });
      }
      await expect(x.sync()).resolves.toBeUndefined();
    }
    expect(x.haltOf('exp')).toBeUndefined();
    const storeWarnings = warnings(lines).filter((l) => String(l.msg).includes('store unavailable'));
    expect(storeWarnings).toHaveLength(1);
  });

  it('keeps a halt it judged while the store was down and shares it once the store answers', async () => {
    const good = memoryStore();
    let down = false;
    const flaky = new Proxy(good, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (prop === 'set' && typeof value === 'function') {
          return (...args: unknown[]) =>
            down ? Promise.reject(new Error('store down')) : value.apply(target, args);
        }
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const x = open(experimentsOf(experiment({ guard })), flaky);
    down = true;
    feed(x, 'control', 50, 0, 100);
    feed(x, 'candidate', 50, 50, 100);
    await x.sync();
    expect(x.haltOf('exp')).toBeDefined();
    expect(
      await good.get(
        `{global}:experiment:exp:${experimentHash(experimentsOf(experiment({ guard }))[0]!)}:halt`,
      ),
    ).toBeNull();

    down = false;
    await x.sync();
    const other = open(experimentsOf(experiment({ guard })), good);
    await other.sync();
    expect(other.haltOf('exp')).toMatchObject({ reason: 'error_rate' });
  });
});

describe('experiments: pure parts', () => {
  it('judges nothing when the control fails everything (no latency to compare)', () => {
    const none = { rated: 0, qualityMilli: 0 };
    const control = { requests: 100, errors: 100, latencyMs: 0, ...none };
    expect(judge(guard, 'b', { requests: 100, errors: 100, latencyMs: 0, ...none }, control)).toBeUndefined();
    expect(
      judge(guard, 'b', { requests: 100, errors: 0, latencyMs: 100_000, ...none }, control),
    ).toBeUndefined();
  });

  it('hashes an experiment the same whatever the order of its keys', () => {
    const [config] = experimentsOf(experiment({ guard }));
    const reordered = Object.fromEntries(Object.entries(config!).reverse()) as ExperimentConfig;
    expect(experimentHash(reordered)).toBe(experimentHash(config!));
    const [other] = experimentsOf(experiment({ guard, name: 'exp2' }));
    expect(experimentHash(other!)).not.toBe(experimentHash(config!));
  });
});

describe('experiments: on Redis', () => {
  let a: Store;
  let b: Store;

  beforeAll(async () => {
    const prefix = `t-${randomUUID()}`;
    const redis = () =>
      createStore(
        parseStoreConfig({ kind: 'redis', redis: { url: sharedRedisUrl(), key_prefix: prefix } }),
        quiet,
      );
    a = redis();
    b = redis();
    await Promise.all([a.ping(), b.ping()]);
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  it('adds up two nodes and shares the halt through Redis', async () => {
    const one = open(experimentsOf(experiment({ guard })), a);
    const two = open(experimentsOf(experiment({ guard })), b);
    feed(one, 'control', 30, 0, 100);
    feed(one, 'candidate', 30, 0, 300);
    await one.sync();
    feed(two, 'control', 30, 0, 100);
    feed(two, 'candidate', 30, 0, 300);
    await two.sync();
    expect(two.haltOf('exp')).toMatchObject({
      reason: 'latency',
      arm: 'candidate',
      value: 300,
      control: 100,
    });
    await one.sync();
    expect(one.assign('chat', consumer('u'))).toEqual({
      experiment: 'exp',
      arm: 'control',
      routeTo: 'old',
      halted: true,
    });
  });
});
