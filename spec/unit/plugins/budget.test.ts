import { ConfigError } from '../../../lib/config';
import { listPrice, nanoUsdPerToken } from '../../../lib/llm/prices';
import {
  ANONYMOUS,
  actualAmount,
  budgetKey,
  chargeFor,
  choicesOf,
  countersFor,
  type Identity,
  limitOutput,
  outputWanted,
  scopeValues,
} from '../../../plugins/ai-budget/charges';
import { budgetHeaders } from '../../../plugins/ai-budget/headers';
import { resetText, windowSlot } from '../../../plugins/ai-budget/windows';
import { type BudgetLimit, budgetConfig } from '../../../schemas/ai-budget';

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number) => new Date(ms).toISOString();

describe('calendar windows', () => {
  it.each([
    ['minute', 'UTC', '2026-03-10T10:17:42.500Z', '2026-03-10T10:17:00.000Z', '2026-03-10T10:18:00.000Z'],
    ['hour', 'UTC', '2026-03-10T10:17:42Z', '2026-03-10T10:00:00.000Z', '2026-03-10T11:00:00.000Z'],
    ['day', 'UTC', '2026-03-10T23:59:59Z', '2026-03-10T00:00:00.000Z', '2026-03-11T00:00:00.000Z'],
    ['month', 'UTC', '2026-02-14T12:00:00Z', '2026-02-01T00:00:00.000Z', '2026-03-01T00:00:00.000Z'],
    // Paris is UTC+1 in winter: the local day starts at 23:00 UTC the day before.
    ['day', 'Europe/Paris', '2026-01-15T23:30:00Z', '2026-01-15T23:00:00.000Z', '2026-01-16T23:00:00.000Z'],
    // India is UTC+5:30: its hours start at half past in UTC.
    ['hour', 'Asia/Kolkata', '2026-01-15T10:10:00Z', '2026-01-15T09:30:00.000Z', '2026-01-15T10:30:00.000Z'],
    // New York springs forward on 2026-03-08: that local day is 23 hours long.
    [
      'day',
      'America/New_York',
      '2026-03-08T12:00:00Z',
      '2026-03-08T05:00:00.000Z',
      '2026-03-09T04:00:00.000Z',
    ],
    // ... and falls back on 2026-11-01: 25 hours.
    [
      'day',
      'America/New_York',
      '2026-11-01T12:00:00Z',
      '2026-11-01T04:00:00.000Z',
      '2026-11-02T05:00:00.000Z',
    ],
    [
      'month',
      'America/New_York',
      '2026-12-31T23:30:00-05:00',
      '2026-12-01T05:00:00.000Z',
      '2027-01-01T05:00:00.000Z',
    ],
  ] as const)('%s in %s at %s starts %s and ends %s', (kind, zone, now, start, end) => {
    const slot = windowSlot(kind, at(now), zone);
    expect(slot.buckets.map(iso)).toEqual([start]);
    expect(iso(slot.resetsAt)).toBe(end);
    expect(slot.expiresAt).toBe(slot.resetsAt);
  });

  it('every instant of a window maps to the same start (rollover exactly at the boundary)', () => {
    const start = at('2026-06-01T00:00:00Z');
    expect(windowSlot('day', start, 'UTC').buckets[0]).toBe(start);
    expect(windowSlot('day', start - 1, 'UTC').buckets[0]).toBe(at('2026-05-31T00:00:00Z'));
    expect(windowSlot('day', start + 86_399_999, 'UTC').buckets[0]).toBe(start);
  });
});

describe('sliding windows', () => {
  it('counts every bucket overlapping the window, the current one first', () => {
    const now = 1_000_000 + 250; // buckets of 100 ms for a 1 s window
    const slot = windowSlot('sliding', now, 'UTC', 1_000);
    expect(slot.buckets[0]).toBe(1_000_200);
    expect(slot.buckets).toHaveLength(11);
    expect(slot.buckets.at(-1)).toBe(999_200); // overlaps [now - 1000, now]
    expect(slot.buckets.every((b, i) => i === 0 || b === slot.buckets[i - 1]! - 100)).toBe(true);
    expect(slot.resetsAt).toBe(999_200 + 100 + 1_000); // the oldest bucket leaves
    expect(slot.expiresAt).toBe(1_000_200 + 100 + 1_000);
  });
});

it('reset durations read like OpenAI’s', () => {
  expect(resetText(150)).toBe('150ms');
  expect(resetText(20_000)).toBe('20s');
  expect(resetText(360_000)).toBe('6m0s');
  expect(resetText(3_723_000)).toBe('1h2m3s');
});

const limit = (extra: Partial<BudgetLimit>): BudgetLimit =>
  ({
    name: 'l',
    scope: 'global',
    window: 'day',
    unit: 'tokens',
    limit: 1000,
    mode: 'hard',
    ...extra,
  }) as BudgetLimit;

const who = (extra: Partial<Identity> = {}): Identity => ({ groups: [], header: () => undefined, ...extra });

describe('scopes and keys', () => {
  it('names the counter of each scope; a missing identity shares the anonymous counter', () => {
    expect(scopeValues(limit({ scope: 'consumer' }), who({ consumerId: 'c-1' }))).toEqual(['c-1']);
    expect(scopeValues(limit({ scope: 'consumer' }), who())).toEqual([ANONYMOUS]);
    expect(scopeValues(limit({ scope: 'credential' }), who({ credentialId: 'k-1' }))).toEqual(['k-1']);
    expect(scopeValues(limit({ scope: 'route' }), who({ routeId: 'r' }))).toEqual(['r']);
    expect(scopeValues(limit({ scope: 'global' }), who({ consumerId: 'x' }))).toEqual(['global']);
    expect(scopeValues(limit({ scope: 'consumer_group' }), who({ groups: ['a', 'b', 'a'] }))).toEqual([
      'a',
      'b',
    ]);
    expect(
      scopeValues(limit({ scope: 'header', header: 'x-team' }), who({ header: () => 'team-7' })),
    ).toEqual(['team-7']);
  });

  it('hashes values that could break a key or grow it', () => {
    const [v] = scopeValues(
      limit({ scope: 'header', header: 'x-team' }),
      who({ header: () => '{evil}:x'.repeat(20) }),
    );
    expect(v).toMatch(/^h:[A-Za-z0-9_-]{22}$/);
  });

  it('every budget key carries the {budget} hash tag, and distinct inputs give distinct keys', () => {
    expect(budgetKey('daily', 'c-1', 5)).toBe('{budget}:daily:c-1:5');
    expect(budgetKey('a:b', 'c', 1)).not.toBe(budgetKey('a', 'b:c', 1));
  });

  it('one counter per limit and scope value', () => {
    const counters = countersFor(
      [limit({ name: 'g' }), limit({ name: 'grp', scope: 'consumer_group' })],
      who({ groups: ['x', 'y'] }),
      at('2026-01-01T10:00:00Z'),
      'UTC',
    );
    expect(counters.map((c) => `${c.limit.name}/${c.scopeValue}`)).toEqual(['g/global', 'grp/x', 'grp/y']);
  });
});

describe('charges', () => {
  const now = at('2026-01-01T10:00:00Z');
  const prices = { input_per_1m: 2.5, output_per_1m: 10, cached_input_per_1m: 1.25 };
  const cost = { promptTokens: 100, choices: 2, prices };
  const counter = (extra: Partial<BudgetLimit>) => countersFor([limit(extra)], who(), now, 'UTC')[0]!;

  it('prices each unit: tokens, input, output (times the choices), cost in nano-USD', () => {
    expect(chargeFor(counter({ unit: 'tokens' }), cost, 1, now)).toMatchObject({ fixed: 100, perOutput: 2 });
    expect(chargeFor(counter({ unit: 'input_tokens' }), cost, 1, now)).toMatchObject({
      fixed: 100,
      perOutput: 0,
    });
    expect(chargeFor(counter({ unit: 'output_tokens' }), cost, 1, now)).toMatchObject({
      fixed: 0,
      perOutput: 2,
    });
    expect(chargeFor(counter({ unit: 'cost_usd', limit: 5 }), cost, 1, now)).toMatchObject({
      fixed: 100 * 2_500,
      perOutput: 2 * 10_000,
      cap: 5e9,
    });
  });

  it('hard caps shrink to the priority share; soft caps do not', () => {
    expect(chargeFor(counter({}), cost, 0.8, now)).toMatchObject({ cap: 800, hard: true });
    expect(chargeFor(counter({ mode: 'soft' }), cost, 0.8, now)).toMatchObject({ cap: 1000, hard: false });
  });

  it('keys live until the window ends plus a grace', () => {
    expect(chargeFor(counter({}), cost, 1, now).ttlMs).toBe(14 * 3_600_000 + 3_600_000);
  });

  it('actual usage in each unit, with cached prompt tokens at their price', () => {
    const usage = { input_tokens: 1000, output_tokens: 50, total_tokens: 1050, cached_input_tokens: 400 };
    expect(actualAmount('tokens', usage)).toBe(1050);
    expect(actualAmount('input_tokens', usage)).toBe(1000);
    expect(actualAmount('output_tokens', usage)).toBe(50);
    expect(actualAmount('cost_usd', usage, prices)).toBe(600 * 2_500 + 400 * 1_250 + 50 * 10_000);
    expect(actualAmount('tokens', undefined)).toBe(0);
  });
});

describe('the answer limit', () => {
  it('is the client’s max_completion_tokens or max_tokens, else the default', () => {
    expect(outputWanted('chat.completions', { max_tokens: 50 }, 4096)).toEqual({ tokens: 50, given: true });
    expect(outputWanted('chat.completions', { max_completion_tokens: 70, max_tokens: 50 }, 4096)).toEqual({
      tokens: 70,
      given: true,
    });
    expect(outputWanted('chat.completions', {}, 4096)).toEqual({ tokens: 4096, given: false });
    expect(outputWanted('embeddings', {}, 4096)).toEqual({ tokens: 0, given: true });
    expect(choicesOf({ n: 3 })).toBe(3);
    expect(choicesOf({ n: 'x' })).toBe(1);
  });

  it('is written in the field the client used, or the one the model takes', () => {
    const a: Record<string, unknown> = { max_completion_tokens: 900 };
    limitOutput('chat.completions', a, 'gpt-4o', 100);
    expect(a).toEqual({ max_completion_tokens: 100 });
    const b: Record<string, unknown> = {};
    limitOutput('chat.completions', b, 'o3-mini', 100);
    expect(b).toEqual({ max_completion_tokens: 100 });
    const c: Record<string, unknown> = {};
    limitOutput('chat.completions', c, 'llama3.1', 100);
    expect(c).toEqual({ max_tokens: 100 });
    const d: Record<string, unknown> = { max_tokens: 5000 };
    limitOutput('completions', d, 'gpt-3.5-turbo-instruct', 100);
    expect(d).toEqual({ max_tokens: 100 });
  });
});

describe('rate-limit headers', () => {
  it('show the tightest hard limit of each kind, after the reservation', () => {
    const now = at('2026-01-01T10:00:00Z');
    const counters = countersFor(
      [
        limit({ name: 'day', limit: 10_000 }),
        limit({ name: 'minute', window: 'minute', limit: 500 }),
        limit({ name: 'usd', unit: 'cost_usd', limit: 2 }),
        limit({ name: 'soft', limit: 10, mode: 'soft' }),
      ],
      who(),
      now,
      'UTC',
    );
    const charges = counters.map((c) =>
      chargeFor(c, { promptTokens: 10, choices: 1, prices: { input_per_1m: 1, output_per_1m: 1 } }, 1, now),
    );
    const headers = budgetHeaders(
      counters,
      charges,
      { ok: true, output: 10, used: [200, 450, 500_000_000, 20] },
      now,
    );
    expect(headers).toEqual({
      'x-ratelimit-limit-tokens': '500',
      'x-ratelimit-remaining-tokens': '50',
      'x-ratelimit-reset-tokens': '1m0s',
      'x-ratelimit-limit-cost-usd': '2',
      'x-ratelimit-remaining-cost-usd': '1.5',
      'x-ratelimit-reset-cost-usd': '14h0m0s',
    });
  });
});

describe('prices', () => {
  it('finds list prices by the longest known name, across dated versions and provider prefixes', () => {
    expect(listPrice('gpt-4o-mini-2024-07-18')?.input_per_1m).toBe(0.15);
    expect(listPrice('gpt-4o-2024-08-06')?.input_per_1m).toBe(2.5);
    expect(listPrice('openai/gpt-4o')?.output_per_1m).toBe(10);
    expect(listPrice('llama3.1')).toBeUndefined();
    expect(listPrice('gpt-4ox')).toBeUndefined();
  });

  it('counts money in whole nano-USD per token, rounding up', () => {
    expect(nanoUsdPerToken(2.5)).toBe(2_500);
    expect(nanoUsdPerToken(0.075)).toBe(75);
    expect(nanoUsdPerToken(0.0015)).toBe(2);
    expect(nanoUsdPerToken(0)).toBe(0);
  });
});

describe('ai-budget config', () => {
  const problems = (raw: unknown) => {
    try {
      budgetConfig.validate(raw);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as ConfigError).problems.map((p) => p.path);
    }
    return [];
  };
  const ok = { name: 'l', scope: 'global', window: 'day', unit: 'tokens', limit: 1000 };

  it('fills the defaults', () => {
    expect(budgetConfig.validate({ limits: [ok] }).config).toMatchObject({
      time_zone: 'UTC',
      on_exceed: 'clamp',
      fault_tolerant: true,
      limits: [{ mode: 'hard' }],
      lease: { enabled: true, max_age_ms: 1_000, headroom_share: 0.1, requests: 16 },
    });
  });

  it.each([
    [{ limits: [] }, 'config.limits'],
    [{ limits: [{ ...ok, limit: -5 }] }, 'config.limits[0].limit'],
    [{ limits: [{ ...ok, limit: 0 }] }, 'config.limits[0].limit'],
    [{ limits: [{ ...ok, limit: 1e15 }] }, 'config.limits[0].limit'],
    [{ limits: [{ ...ok, limit: 10.5 }] }, 'config.limits[0].limit'],
    [{ limits: [{ ...ok, unit: 'cost_usd', limit: 5_000_000 }] }, 'config.limits[0].limit'],
    [{ limits: [{ ...ok, scope: 'header' }] }, 'config.limits[0].header'],
    [{ limits: [{ ...ok, header: 'x-team' }] }, 'config.limits[0].header'],
    [{ limits: [{ ...ok, scope: 'header', header: 'X-Team' }] }, 'config.limits[0].header'],
    [{ limits: [{ ...ok, window: 'sliding' }] }, 'config.limits[0].sliding_window_s'],
    [{ limits: [{ ...ok, window: 'week' }] }, 'config.limits[0].window'],
    [{ limits: [ok, ok] }, 'config.limits[1].name'],
    [{ limits: [ok], time_zone: 'Mars/Olympus' }, 'config.time_zone'],
    [{ limits: [ok], lease: { max_age_ms: 5 } }, 'config.lease.max_age_ms'],
    [{ limits: [ok], lease: { headroom_share: 0.9 } }, 'config.lease.headroom_share'],
    [{ limits: [ok], lease: { requests: 1 } }, 'config.lease.requests'],
    [
      { limits: [ok], priority: { classes: [{ name: 'low', share: 1.5 }] } },
      'config.priority.classes[0].share',
    ],
    [{ limits: [ok], priority: { default_class: 'gold' } }, 'config.priority.default_class'],
    [{ limits: [ok], min_output_tokens: 0 }, 'config.min_output_tokens'],
    [{ limits: [ok], local_share: 2 }, 'config.local_share'],
  ])('refuses %j naming %s', (raw, path) => {
    expect(problems(raw)).toContain(path);
  });
});
