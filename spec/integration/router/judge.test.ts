/**
 * ai-router's judge against the OpenAI mock: the sampling and the per-minute and per-hour
 * bounds under load, the score parsing, and failures (500, timeout, unreachable, no score).
 */
import type { Target } from '../../../lib/context';
import { usageCost } from '../../../lib/llm/prices';
import { createLogger } from '../../../lib/log/logger';
import {
  CallWindow,
  HourlySpend,
  Judge,
  type JudgeConfig,
  judgeRequest,
  parseJudgeScore,
} from '../../../plugins/ai-router/judge';
import { type ProviderMock, startOpenAIMock } from '../../support/providers';

const KEY = 'sk-proj-JudgeKey0123456789abcdefXYZ';
const HOUR = 3_600_000;
const PRICES = { input_per_1m: 1, output_per_1m: 4 };

let mock: ProviderMock;
const judges: Judge[] = [];

beforeAll(async () => {
  mock = await startOpenAIMock({ apiKey: KEY });
});
afterAll(async () => {
  await Promise.all(judges.map((j) => j.close()));
  await mock.close();
});
beforeEach(() => {
  mock.reset();
  mock.setAnswer('{"score": 8, "reason": "correct and clear"}');
});

function judgeTarget(overrides: Partial<Target> = {}): Target {
  return {
    name: 'judge',
    provider: 'openai',
    model: 'gpt-4o-mini',
    base_url: mock.url,
    api_key: KEY,
    headers: {},
    timeouts: { connect_ms: 1_000, first_byte_ms: 2_000, idle_ms: 2_000, total_ms: 5_000 },
    prices: PRICES,
    ...overrides,
  };
}

function config(overrides: Partial<JudgeConfig> = {}): JudgeConfig {
  return {
    target: 'judge',
    sample_rate: 1,
    max_per_minute: 10,
    max_cost_usd_per_hour: 1,
    rubric: 'Rate how well the answer serves the request. 1 is useless, 10 is excellent.',
    ...overrides,
  };
}

/** A judge on a fake clock (starting at a whole hour) and a seeded random source. */
function open(cfg: Partial<JudgeConfig> = {}, target: Partial<Target> = {}) {
  const clock = { t: 500_000 * HOUR };
  const judge = new Judge(config(cfg), judgeTarget(target), {
    logger: createLogger({ level: 'silent' }),
    now: () => clock.t,
    random: seeded(42),
  });
  judges.push(judge);
  return { judge, clock };
}

/** mulberry32: a small deterministic PRNG, so statistical tests never flake. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sample = (i = 0) => ({
  request: {
    model: 'fast',
    messages: [{ role: 'user', content: `How do I reverse list number ${i} in Python?` }],
  },
  answer: {
    object: 'chat.completion',
    choices: [{ index: 0, message: { role: 'assistant', content: 'Use reversed(xs) or xs[::-1].' } }],
  },
});

function many(judge: Judge, n: number): Promise<Array<number | undefined>> {
  return Promise.all(Array.from({ length: n }, (_, i) => judge.maybeJudge(sample(i))));
}

/** What the mock's answers cost at PRICES, from what it was asked (one token per word). */
function mockSpend(): number {
  const words = (s: string) => s.split(/\s+/).filter(Boolean).length;
  const answerTokens = words('{"score": 8, "reason": "correct and clear"}');
  return mock.requests.reduce((sum, r) => {
    const messages = (r.body as { messages: Array<{ content: string }> }).messages;
    const input = messages.reduce((n, m) => n + words(m.content), 0);
    return sum + usageCost(PRICES, { input_tokens: input, output_tokens: answerTokens });
  }, 0);
}

describe('Judge: scores', () => {
  it('asks the judge and returns its score on 0..1', async () => {
    const { judge } = open();
    expect(await judge.maybeJudge(sample())).toBeCloseTo(7 / 9);
    expect(mock.requests).toHaveLength(1);
    const sent = mock.requests[0]!.body as {
      model: string;
      max_tokens: number;
      messages: Array<{ content: string }>;
    };
    expect(sent.model).toBe('gpt-4o-mini');
    expect(sent.max_tokens).toBe(256);
    expect(sent.messages[0]!.content).toContain('Rate how well the answer serves the request');
    expect(JSON.parse(sent.messages[1]!.content)).toEqual({
      request: 'How do I reverse list number 0 in Python?',
      answer: 'Use reversed(xs) or xs[::-1].',
    });
    expect(judge.stats).toMatchObject({ sampled: 1, judged: 1, failures: 0 });
    expect(judge.stats.spentUsd).toBeCloseTo(mockSpend(), 12);
  });

  it.each([
    ['{"score": 1, "reason": "useless"}', 0],
    ['{"score": 10, "reason": "excellent"}', 1],
    ['Sure! ```json\n{"score": 4, "reason": "misses the {edge} case"}\n``` Hope this helps.', 3 / 9],
    ['{"reason": "fine", "score": "7"}', 6 / 9],
  ])('reads %j', async (answer, expected) => {
    mock.setAnswer(answer);
    const { judge } = open();
    expect(await judge.maybeJudge(sample())).toBeCloseTo(expected);
  });

  it.each([
    ['words without a score', 'The answer looks good to me.'],
    ['a score out of range', '{"score": 42, "reason": "great"}'],
    ['a score of zero', '{"score": 0}'],
    ['a broken JSON without a score', '{"reason": "cut'],
  ])('counts %s as a failure', async (_name, answer) => {
    mock.setAnswer(answer);
    const { judge } = open();
    expect(await judge.maybeJudge(sample())).toBeUndefined();
    expect(judge.stats).toMatchObject({ sampled: 1, judged: 0, failures: 1 });
    // The call was made and is paid for.
    expect(judge.stats.spentUsd).toBeGreaterThan(0);
  });

  it('counts a 500 as a failure that costs nothing', async () => {
    mock.setFault({ kind: 'status', status: 500 });
    const { judge } = open();
    expect(await judge.maybeJudge(sample())).toBeUndefined();
    expect(judge.stats).toMatchObject({ judged: 0, failures: 1, spentUsd: 0 });
  });

  it('counts a timeout as a failure, charged at its bound (the judge may have worked)', async () => {
    mock.setFault({ kind: 'latency', ms: 1_000 });
    const { judge } = open(
      {},
      { timeouts: { connect_ms: 1_000, first_byte_ms: 100, idle_ms: 100, total_ms: 200 } },
    );
    expect(await judge.maybeJudge(sample())).toBeUndefined();
    expect(judge.stats).toMatchObject({ judged: 0, failures: 1 });
    expect(judge.stats.spentUsd).toBeGreaterThan(0);
  });

  it('counts an unreachable judge as a failure, and never throws', async () => {
    const { judge } = open({}, { base_url: 'http://127.0.0.1:1/v1' });
    await expect(judge.maybeJudge(sample())).resolves.toBeUndefined();
    expect(judge.stats).toMatchObject({ failures: 1 });
  });

  it('never throws on a sample it cannot read', async () => {
    const { judge } = open();
    const odd = [
      { request: {}, answer: {} },
      { request: { messages: 'hi' }, answer: { choices: 'x' } },
      { request: { messages: [null, { role: 'user', content: 'q' }] }, answer: { choices: [null] } },
      {
        request: { messages: [{ role: 'user', content: 'q' }] },
        answer: { choices: [{ message: { content: '' } }] },
      },
      null as never,
    ];
    for (const s of odd) await expect(judge.maybeJudge(s)).resolves.toBeUndefined();
    expect(mock.requests).toHaveLength(0);
    expect(judge.stats.sampled).toBe(odd.length);
    expect(judge.stats.skippedEmpty + judge.stats.failures).toBe(odd.length);
  });
});

describe('Judge: bounds under load', () => {
  it('makes at most max_per_minute calls in any minute, from 5 000 concurrent samples', async () => {
    const { judge, clock } = open({ max_per_minute: 25, max_cost_usd_per_hour: 1_000 });
    const first = await many(judge, 5_000);
    expect(mock.requests).toHaveLength(25);
    expect(first.filter((s) => s !== undefined)).toHaveLength(25);
    expect(judge.stats).toMatchObject({ sampled: 5_000, judged: 25, skippedRate: 4_975, failures: 0 });

    clock.t += 59_999;
    await many(judge, 1_000);
    expect(mock.requests).toHaveLength(25);

    clock.t += 1;
    await many(judge, 1_000);
    expect(mock.requests).toHaveLength(50);
    expect(judge.stats).toMatchObject({ sampled: 7_000, judged: 50, skippedRate: 6_950 });
  });

  it('spends at most max_cost_usd_per_hour in each hour, from 5 000 concurrent samples', async () => {
    // Each call's bound is about 0.00127 USD (prompt bytes at 1 USD/1M, 256 output tokens at 4 USD/1M).
    const cap = 0.05;
    const { judge, clock } = open({ max_per_minute: 100_000, max_cost_usd_per_hour: cap });
    await many(judge, 5_000);
    const firstHour = mock.requests.length;
    expect(firstHour).toBeGreaterThan(10);
    expect(judge.stats.spentUsd).toBeLessThanOrEqual(cap);
    expect(judge.stats.spentUsd).toBeCloseTo(mockSpend(), 12);
    expect(judge.stats.skippedCost).toBe(5_000 - firstHour);

    // The hour's holds became actual costs, far under the bounds: a few more fit.
    await many(judge, 5_000);
    const spentFirstHour = judge.stats.spentUsd;
    expect(spentFirstHour).toBeLessThanOrEqual(cap);
    expect(mock.requests.length).toBeGreaterThan(firstHour);

    clock.t += HOUR;
    const before = mock.requests.length;
    await many(judge, 5_000);
    expect(mock.requests.length).toBeGreaterThan(before);
    expect(judge.stats.spentUsd - spentFirstHour).toBeLessThanOrEqual(cap);
    expect(judge.stats.spentUsd).toBeCloseTo(mockSpend(), 12);
  });

  it('samples about sample_rate of the answers', async () => {
    const { judge } = open({ sample_rate: 0.1, max_per_minute: 1 });
    await many(judge, 10_000);
    // Binomial(10 000, 0.1): mean 1 000, sd 30; ±5 sd.
    expect(judge.stats.sampled).toBeGreaterThanOrEqual(850);
    expect(judge.stats.sampled).toBeLessThanOrEqual(1_150);
    expect(mock.requests).toHaveLength(1);
  });

  it('sends nothing at sample_rate 0', async () => {
    const { judge } = open({ sample_rate: 0 });
    expect(await many(judge, 1_000)).toEqual(Array(1_000).fill(undefined));
    expect(mock.requests).toHaveLength(0);
    expect(judge.stats.sampled).toBe(0);
  });

  it('sends nothing with a cap of 0 USD, unless the judge is free', async () => {
    const paid = open({ max_cost_usd_per_hour: 0 }).judge;
    await many(paid, 100);
    expect(paid.stats).toMatchObject({ sampled: 100, skippedCost: 100 });
    const free = open({ max_cost_usd_per_hour: 0 }, { prices: { input_per_1m: 0, output_per_1m: 0 } }).judge;
    await many(free, 3);
    expect(free.stats).toMatchObject({ judged: 3, spentUsd: 0 });
  });
});

describe('Judge: config', () => {
  it('refuses a target without prices', () => {
    expect(() => open({}, { prices: undefined })).toThrow(
      expect.objectContaining({ code: 'AIGW_CONFIG_INVALID', message: expect.stringMatching(/no prices/) }),
    );
  });

  it('refuses a target that cannot chat', () => {
    expect(() => open({}, { provider: 'nonesuch' as Target['provider'] })).toThrow(
      expect.objectContaining({ code: 'AIGW_CONFIG_INVALID' }),
    );
  });
});

describe('judge parts', () => {
  it('finds the score in what judges write', () => {
    expect(parseJudgeScore('{"score": 9}')).toBe(9);
    expect(parseJudgeScore('{"result": {"score": 6}}')).toBe(6);
    expect(parseJudgeScore('Score below.\n{"reason": "has \\"}\\" inside", "score": 3}')).toBe(3);
    expect(parseJudgeScore('{ "score" : 5, "reason": "cut')).toBe(5);
    expect(parseJudgeScore('{"score": 7.5}')).toBe(7.5);
    expect(parseJudgeScore('{"score": 11}')).toBeUndefined();
    expect(parseJudgeScore('{"score": -3}')).toBeUndefined();
    expect(parseJudgeScore('{"score": null}')).toBeUndefined();
    expect(parseJudgeScore('8/10')).toBeUndefined();
    expect(parseJudgeScore('')).toBeUndefined();
    expect(parseJudgeScore(undefined)).toBeUndefined();
    expect(parseJudgeScore('{ never closed {"score": 5, "reason": "ok"}')).toBe(5);
    expect(parseJudgeScore('{'.repeat(100_000))).toBeUndefined();
    expect(parseJudgeScore(`${'{'.repeat(50_000)}${'}'.repeat(50_000)}`)).toBeUndefined();
    expect(parseJudgeScore(`${'x'.repeat(5_000)}{"score": 9}`)).toBeUndefined();
  });

  it('shows the judge the last user message and the answer as data', () => {
    const body = judgeRequest(
      'Be strict.',
      {
        messages: [
          { role: 'user', content: 'first question' },
          { role: 'assistant', content: 'first answer' },
          {
            role: 'user',
            content: [
              { type: 'text', text: 'second' },
              { type: 'image_url' },
              { type: 'text', text: 'question' },
            ],
          },
        ],
      },
      { choices: [{ message: { content: null, tool_calls: [{ id: 't', function: { name: 'f' } }] } }] },
    )!;
    const [system, user] = body.messages as Array<{ role: string; content: string }>;
    expect(system!.content).toContain('Be strict.');
    expect(JSON.parse(user!.content)).toEqual({
      request: 'second\nquestion',
      answer: JSON.stringify([{ id: 't', function: { name: 'f' } }]),
    });
    expect(judgeRequest('r', { prompt: 'complete me' }, { choices: [{ text: 'done' }] })).toBeDefined();
    expect(judgeRequest('r', { input: 'embed me' }, { data: [] })).toBeUndefined();
  });

  it('cuts long texts to an excerpt', () => {
    const long = 'x'.repeat(50_000);
    const body = judgeRequest('r', { prompt: long }, { choices: [{ text: long }] })!;
    const shown = JSON.parse((body.messages as Array<{ content: string }>)[1]!.content);
    expect(shown.request.length).toBeLessThan(8_100);
    expect(shown.answer.length).toBeLessThan(8_100);
  });

  it('CallWindow: at most max in any window, exact at the edge', () => {
    const w = new CallWindow(3, 1_000);
    for (const t of [0, 10, 20]) {
      expect(w.admits(t)).toBe(true);
      w.record(t);
    }
    expect(w.admits(999)).toBe(false);
    expect(w.admits(1_000)).toBe(true);
    w.record(1_000);
    expect(w.admits(1_009)).toBe(false);
    expect(w.admits(1_010)).toBe(true);
  });

  it('HourlySpend: holds count until settled, a new hour starts at 0, late settlements stay in their hour', () => {
    const s = new HourlySpend(1);
    const a = s.hold(0.6, 0)!;
    expect(s.hold(0.6, 1)).toBeUndefined();
    s.settle(a, 0.1);
    const b = s.hold(0.6, 2)!;
    expect(s.current).toBeCloseTo(0.7);
    const c = s.hold(0.9, HOUR)!;
    s.settle(b, 0.5);
    expect(s.current).toBeCloseTo(0.9);
    s.settle(c, 0.2);
    expect(s.current).toBeCloseTo(0.2);
  });
});
