import { ConfigError } from '../../../lib/config';
import type { Target } from '../../../lib/context';
import { TargetHealth } from '../../../lib/health';
import { createLogger } from '../../../lib/log/logger';
import { durationMs, retryAfterMs } from '../../../lib/relay/retry-after';
import { MemoryStore } from '../../../lib/store';
import { Breakers } from '../../../plugins/ai-fallback/breaker';
import { HedgeDelays } from '../../../plugins/ai-fallback/hedge';
import { backoffMs } from '../../../plugins/ai-fallback/index';
import { RetryBudget } from '../../../plugins/ai-fallback/retry-budget';
import { fallbackConfig } from '../../../schemas/ai-fallback';

const problems = (raw: unknown) => {
  try {
    fallbackConfig.validate(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems.map((p) => p.path);
  }
  return [];
};

describe('ai-fallback config', () => {
  it('fills every default', () => {
    const { config } = fallbackConfig.validate({});
    expect(config).toMatchObject({
      chains: [],
      max_attempts: 3,
      deadline_ms: 120_000,
      midstream: 'error',
      triggers: { statuses: [429, 500, 502, 503, 504, 529], connect_error: true, timeout: true },
      breaker: { enabled: true, min_requests: 10, failure_rate: 0.5 },
      retry_budget: { ratio: 0.2 },
    });
  });

  it.each([
    [{ chains: [{ target: 'a', fallbacks: ['a'] }] }, 'config.chains[0].fallbacks'],
    [{ chains: [{ target: 'a', fallbacks: ['b', 'b'] }] }, 'config.chains[0].fallbacks'],
    [
      {
        chains: [
          { target: 'a', fallbacks: ['b'] },
          { target: 'a', fallbacks: ['c'] },
        ],
      },
      'config.chains[1].target',
    ],
    [{ chains: [{ target: 'a', fallbacks: [] }] }, 'config.chains[0].fallbacks'],
    [{ max_attempts: 0 }, 'config.max_attempts'],
    [{ max_attempts: 11 }, 'config.max_attempts'],
    [{ deadline_ms: -5 }, 'config.deadline_ms'],
    [{ triggers: { statuses: [200] } }, 'config.triggers.statuses[0]'],
    [{ backoff: { base_ms: 500, max_ms: 100 } }, 'config.backoff.base_ms'],
    [{ breaker: { failure_rate: 1.5 } }, 'config.breaker.failure_rate'],
    [{ breaker: { cooldown_ms: 10_000, max_cooldown_ms: 1_000 } }, 'config.breaker.cooldown_ms'],
    [{ retry_budget: { ratio: -1 } }, 'config.retry_budget.ratio'],
    [{ midstream: 'retry' }, 'config.midstream'],
    [{ hedge: { percentile: 100 } }, 'config.hedge.percentile'],
    [{ hedge: { min_samples: 0 } }, 'config.hedge.min_samples'],
    [{ hedge: { default_delay_ms: -1 } }, 'config.hedge.default_delay_ms'],
  ])('refuses %j naming %s', (raw, path) => {
    expect(problems(raw)).toContain(path);
  });
});

describe('backoff', () => {
  it('doubles from base_ms up to max_ms; full jitter picks up to it', () => {
    const s = { base_ms: 100, max_ms: 350, jitter: false };
    expect([1, 2, 3, 4, 5].map((n) => backoffMs(s, n))).toEqual([0, 100, 200, 350, 350]);
    expect(backoffMs({ ...s, jitter: true }, 3, () => 0.5)).toBe(100);
    expect(backoffMs({ ...s, base_ms: 0 }, 3)).toBe(0);
  });
});

describe('retry budget', () => {
  it('allows min_retries_per_s × window plus ratio × requests, per window', () => {
    let now = 0;
    const budget = new RetryBudget({ ratio: 0.2, window_ms: 10_000, min_retries_per_s: 0.1 }, () => now);
    for (let i = 0; i < 20; i++) budget.recordRequest();
    // 0.1/s × 10 s = 1, + 20 % of 20 = 4 → 5 retries.
    const granted = Array.from({ length: 10 }, () => budget.tryRetry()).filter(Boolean).length;
    expect(granted).toBe(5);
    now = 20_000; // the window has passed: only the floor is left
    expect(budget.tryRetry()).toBe(true);
    expect(budget.tryRetry()).toBe(false);
  });
});

describe('retry-after', () => {
  it('reads retry-after-ms, retry-after (seconds or date) and spent rate-limit resets', () => {
    expect(retryAfterMs({ 'retry-after-ms': '250' })).toBe(250);
    expect(retryAfterMs({ 'retry-after': '2' })).toBe(2000);
    expect(retryAfterMs({ 'retry-after': new Date(11_000).toUTCString() }, { now: 1_000 })).toBe(10_000);
    expect(
      retryAfterMs({
        'x-ratelimit-remaining-requests': '0',
        'x-ratelimit-reset-requests': '1m30s',
        'x-ratelimit-remaining-tokens': '0',
        'x-ratelimit-reset-tokens': '20ms',
      }),
    ).toBe(90_000);
    // A reset for a limit that is not spent says nothing.
    expect(
      retryAfterMs({ 'x-ratelimit-remaining-requests': '5', 'x-ratelimit-reset-requests': '1s' }),
    ).toBeUndefined();
    expect(retryAfterMs({ 'retry-after': 'soon' })).toBeUndefined();
    // A 503 whose rate limit happens to be spent is an outage: the reset is not its cooldown.
    const spent = { 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '6ms' };
    expect(retryAfterMs(spent, { spentLimits: false })).toBeUndefined();
    expect(retryAfterMs({ ...spent, 'retry-after': '3' }, { spentLimits: false })).toBe(3_000);
    expect(durationMs('6m0s')).toBe(360_000);
    expect(durationMs('1.5s')).toBe(1_500);
    expect(durationMs('abc')).toBeUndefined();
  });
});

describe('hedge delays', () => {
  const target = { name: 't' } as Target;
  const settings = { enabled: true, percentile: 90, min_samples: 10, default_delay_ms: 700, min_delay_ms: 5 };

  it('uses the default until min_samples answers are known, then the percentile', () => {
    const delays = new HedgeDelays(settings);
    for (let i = 1; i <= 9; i++) delays.record(target, i * 10);
    expect(delays.delayMs(target)).toBe(700);
    delays.record(target, 100);
    expect(delays.delayMs(target)).toBe(90); // p90 of 10…100
  });

  it('never goes below min_delay_ms, keeps targets apart, and is off when disabled', () => {
    const delays = new HedgeDelays(settings);
    for (let i = 0; i < 10; i++) delays.record(target, 1);
    expect(delays.delayMs(target)).toBe(5);
    expect(delays.delayMs({ name: 'other' } as Target)).toBe(700);
    expect(new HedgeDelays({ ...settings, enabled: false }).delayMs(target)).toBeUndefined();
  });

  it('follows the recent answers, not the whole history', () => {
    const delays = new HedgeDelays({ ...settings, percentile: 50 });
    for (let i = 0; i < 256; i++) delays.record(target, 10);
    expect(delays.delayMs(target)).toBe(10);
    for (let i = 0; i < 256; i++) delays.record(target, 400);
    expect(delays.delayMs(target)).toBe(400);
  });
});

describe('breakers', () => {
  const target: Target = {
    name: 't',
    provider: 'openai',
    model: 'm',
    base_url: 'http://127.0.0.1:1/v1',
    headers: {},
    timeouts: { connect_ms: 1, first_byte_ms: 1, idle_ms: 1, total_ms: 1 },
  };
  const settings = {
    enabled: true,
    window_ms: 10_000,
    min_requests: 4,
    failure_rate: 0.5,
    cooldown_ms: 1_000,
    max_cooldown_ms: 5_000,
    half_open_probes: 1,
  };
  const logger = createLogger({ level: 'silent' });
  let store: MemoryStore;
  beforeEach(() => {
    store = new MemoryStore();
  });
  afterEach(() => store.close());

  it('opens on the failure rate once min_requests is reached; 4xx do not count', async () => {
    let now = 100_000;
    const health = new TargetHealth(() => now);
    const breakers = new Breakers(settings, store, health, logger, () => now);
    breakers.report(target, { kind: 'status', status: 400 });
    breakers.report(target, { kind: 'status', status: 500 });
    breakers.report(target, undefined);
    expect(health.state(target)).toBe('closed');
    breakers.report(target, { kind: 'timeout' }); // 2 of 4 failed
    expect(health.state(target)).toBe('open');
    expect(await breakers.admits(target)).toBe(false);
    now += 1_001;
    expect(await breakers.admits(target)).toBe(true); // the probe
    expect(await breakers.admits(target)).toBe(false); // only one at a time
    breakers.report(target, { kind: 'connect' });
    expect(health.state(target)).toBe('open'); // the probe failed
    now += 1_001;
    expect(await breakers.admits(target)).toBe(true);
    breakers.report(target, undefined);
    expect(health.state(target)).toBe('closed');
    expect(await breakers.admits(target)).toBe(true);
  });

  it('a 429 with a retry-after opens at once for that long, capped by max_cooldown_ms', () => {
    let now = 0;
    const health = new TargetHealth(() => now);
    const breakers = new Breakers(settings, store, health, logger, () => now);
    breakers.report(target, { kind: 'status', status: 429, retryAfterMs: 60_000 });
    expect(health.state(target)).toBe('open');
    now = 4_999;
    expect(health.state(target)).toBe('open');
    now = 5_001;
    expect(health.state(target)).toBe('half_open');
  });

  it('a breaker past its cooldown stays half open on every node until a probe closes it (it closed without a probe)', async () => {
    let now = 1_000_000;
    const clock = () => now;
    const shared = new MemoryStore({ now: clock });
    const opener = new Breakers(
      { ...settings, min_requests: 1 },
      shared,
      new TargetHealth(clock),
      logger,
      clock,
    );
    const other = new Breakers(settings, shared, new TargetHealth(clock), logger, clock);
    opener.report(target, { kind: 'status', status: 503 });
    await new Promise((r) => setImmediate(r)); // the shared write
    now += 600;
    expect(await other.admits(target)).toBe(false);
    now += 1_000; // past the cooldown, and past the refresh
    expect(await other.admits(target)).toBe(true); // the one probe
    now += 600;
    expect(await other.admits(target)).toBe(false); // still half open: no probe has answered
    other.report(target, undefined); // the probe succeeds: closed here and for everyone
    await new Promise((r) => setImmediate(r));
    now += 600;
    expect(await opener.admits(target)).toBe(true);
    expect(await opener.admits(target)).toBe(true);
    await shared.close();
  });

  it('an answer from a request let in before the breaker opened does not close it', () => {
    let now = 0;
    const health = new TargetHealth(() => now);
    const breakers = new Breakers({ ...settings, min_requests: 1 }, store, health, logger, () => now);
    breakers.report(target, { kind: 'timeout' });
    expect(health.state(target)).toBe('open');
    breakers.report(target, undefined); // in flight since before: not a probe
    expect(health.state(target)).toBe('open');
    now = 1_001;
    expect(health.state(target)).toBe('half_open');
  });

  it('another node’s open breaker, read from the shared store, keeps this node out', async () => {
    const opener = new Breakers({ ...settings, min_requests: 1 }, store, new TargetHealth(), logger);
    const other = new Breakers(settings, store, new TargetHealth(), logger);
    expect(await other.admits(target)).toBe(true);
    opener.report(target, { kind: 'status', status: 503 });
    await new Promise((r) => setTimeout(r, 600)); // past the 500 ms refresh
    expect(await other.admits(target)).toBe(false);
  });
});
