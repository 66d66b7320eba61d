/**
 * ai-metrics through the Kong emulator and the in-process suite server: known traffic (JSON
 * and streamed answers, an unknown model, a fallback, budget refusals), then a scrape of the
 * admin endpoint's /metrics, parsed as Prometheus text, with exact counter values and
 * histogram counts. Then what the log line holds, and what it must never hold.
 */
import { randomBytes } from 'node:crypto';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import type { DriverResponse } from '../../support/kong';
import { type ProviderMock, sseJson, startOpenAIMock } from '../../support/providers';
import { chatBody, type InProcess, postChat, startInProcess } from '../../support/suite';

const KEY = 'sk-proj-MetricsKey0123456789abcdefXYZ';
const LIMIT = `metrics-${randomBytes(4).toString('hex')}`;

let mock: ProviderMock;
let flaky: ProviderMock;
let gw: InProcess;

const target = (name: string, model: string, m: ProviderMock, extra: Record<string, unknown> = {}) => ({
  name,
  model,
  base_url: m.url,
  api_key: KEY,
  ...extra,
});

beforeAll(async () => {
  [mock, flaky] = await Promise.all([
    startOpenAIMock({ apiKey: KEY, chunkDelayMs: 1 }),
    startOpenAIMock({ apiKey: KEY, chunkDelayMs: 1 }),
  ]);
  gw = await startInProcess({
    serverEnv: { AIGW_STORE: process.env.AIGW_TEST_REDIS_URL! },
    routes: () => [
      {
        name: 'm',
        path: '/m',
        plugins: [
          {
            name: 'ai-router',
            config: {
              targets: [
                target('fast', 'gpt-4o-mini', mock, { prices: { input_per_1m: 1, output_per_1m: 2 } }),
              ],
            },
          },
          { name: 'ai-metrics' },
        ],
      },
      {
        name: 'fb',
        path: '/fb',
        plugins: [
          {
            name: 'ai-router',
            config: { targets: [target('a', 'flaky-model', flaky), target('b', 'backup-model', mock)] },
          },
          {
            name: 'ai-fallback',
            config: { chains: [{ target: 'a', fallbacks: ['b'] }], breaker: { enabled: false } },
          },
          { name: 'ai-metrics' },
        ],
      },
      {
        name: 'budget',
        path: '/budget',
        plugins: [
          { name: 'ai-router', config: { targets: [target('fast', 'gpt-4o-mini', mock)] } },
          {
            name: 'ai-budget',
            config: {
              limits: [{ name: LIMIT, scope: 'global', window: 'day', unit: 'tokens', limit: 1 }],
              on_exceed: 'reject',
            },
          },
          { name: 'ai-metrics' },
        ],
      },
      {
        name: 'cached',
        path: '/cached',
        plugins: [
          { name: 'ai-semantic-cache', config: { scope: 'global', semantic: { enabled: false } } },
          { name: 'ai-router', config: { targets: [target('fast', 'gpt-4o-mini', mock)] } },
          // Answers logged here too: the cache and ai-metrics both ask the relay to keep them.
          { name: 'ai-metrics', config: { content: { answers: true } } },
        ],
      },
      {
        name: 'content',
        path: '/content',
        plugins: [
          { name: 'ai-router', config: { targets: [target('fast', 'gpt-4o-mini', mock)] } },
          {
            name: 'ai-metrics',
            config: {
              metrics: false,
              content: {
                prompts: true,
                answers: true,
                patterns: [{ name: 'ticket', pattern: 'TCK-\\d{6}' }],
              },
            },
          },
        ],
      },
    ],
  });
});

afterAll(async () => {
  await gw?.close();
  await Promise.all([mock?.close(), flaky?.close()]);
});

/** One exposition line: a series and its value (histograms: one line per `_bucket`/`_sum`/`_count`). */
interface Series {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * The scrape, checked by a Prometheus text-format parser (it throws on a malformed line), then
 * read line by line: that parser folds labelled histograms into one sample, so the values are
 * read from the lines themselves.
 */
async function scrape(): Promise<Series[]> {
  const res = await fetch(`http://127.0.0.1:${gw.server.adminPort}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  expect(parsePrometheusTextFormat(text).length).toBeGreaterThan(10);
  // No key, prompt or client-chosen string ever becomes a label.
  for (const leaked of [KEY, 'no-such-model', 'json 0', 'cached question'])
    expect(text).not.toContain(leaked);
  return text
    .split('\n')
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => {
      const [, name, labelText = '', value] = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)!;
      const labels = Object.fromEntries(
        [...labelText.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]),
      );
      return { name: name!, labels, value: Number(value) };
    });
}

/** The value of the one series of `name` whose labels include `labels`. */
function value(all: Series[], name: string, labels: Record<string, string> = {}): number {
  const found = all.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (found.length !== 1)
    throw new Error(`${found.length} series of ${name} match ${JSON.stringify(labels)}`);
  return found[0]!.value;
}

/** Observations in a histogram series. */
const count = (all: Series[], name: string, labels: Record<string, string>) =>
  value(all, `${name}_count`, labels);

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
}

function usageOf(res: DriverResponse): Usage {
  if (res.headers['content-type']?.startsWith('text/event-stream')) {
    const last = sseJson(res.text()).find((e) => e.usage);
    return last!.usage as Usage;
  }
  return res.json<{ usage: Usage }>().usage;
}

describe('GET /metrics after known traffic', () => {
  let families: Series[];
  const usages: Usage[] = [];
  const cacheStatuses: string[] = [];

  beforeAll(async () => {
    for (let i = 0; i < 3; i++) {
      const res = await postChat(
        gw.kong,
        '/m',
        chatBody({ model: 'fast', messages: [{ role: 'user', content: `json ${i}` }] }),
      );
      expect(res.status).toBe(200);
      usages.push(usageOf(res));
      await res.stats();
    }
    for (let i = 0; i < 2; i++) {
      const res = await postChat(
        gw.kong,
        '/m',
        chatBody({
          model: 'fast',
          stream: true,
          stream_options: { include_usage: true },
          messages: [{ role: 'user', content: `a longer streamed question number ${i}` }],
        }),
      );
      expect(res.status).toBe(200);
      usages.push(usageOf(res));
      await res.stats();
    }
    const unknown = await postChat(gw.kong, '/m', chatBody({ model: 'no-such-model' }));
    expect(unknown.status).toBe(404);
    await unknown.stats();

    flaky.nextFault({ kind: 'status', status: 503 });
    const failover = await postChat(gw.kong, '/fb', chatBody({ model: 'a' }));
    expect(failover.status).toBe(200);
    await failover.stats();

    // One miss, then hits, JSON and streamed (a streamed hit is replayed from the JSON fill).
    const question = `cached question ${LIMIT}`;
    for (const stream of [false, false, true]) {
      const res = await postChat(
        gw.kong,
        '/cached',
        chatBody({ model: 'fast', stream, messages: [{ role: 'user', content: question }] }),
      );
      expect(res.status).toBe(200);
      cacheStatuses.push(res.headers['x-cache-status'] as string);
      await res.stats();
    }

    for (let i = 0; i < 2; i++) {
      const refused = await postChat(gw.kong, '/budget', chatBody({ model: 'fast' }));
      expect(refused.status).toBe(429);
      await refused.stats();
    }
    families = await scrape();
  });

  const m = {
    route: 'm',
    ai_provider: 'openai',
    ai_model: 'gpt-4o-mini',
    cache_status: '',
    request_type: 'chat',
  };

  it('counts requests by route, model and status, as Kong names them', () => {
    expect(value(families, 'aigw_ai_llm_requests_total', { ...m, status: '200' })).toBe(5);
    // An unknown model never reaches a target: no model label is made up from the client's string.
    expect(value(families, 'aigw_ai_llm_requests_total', { route: 'm', status: '404', ai_model: '' })).toBe(
      1,
    );
    expect(
      value(families, 'aigw_ai_llm_requests_total', { route: 'fb', status: '200', ai_model: 'backup-model' }),
    ).toBe(1);
    expect(value(families, 'aigw_ai_llm_requests_total', { route: 'budget', status: '429' })).toBe(2);
    const labels = families
      .filter((s) => s.name === 'aigw_ai_llm_requests_total')
      .flatMap((s) => Object.values(s.labels));
    expect(labels).not.toContain('no-such-model');
  });

  it('counts every token by type, and the cost from the target prices', () => {
    const prompt = usages.reduce((s, u) => s + u.prompt_tokens, 0);
    const completion = usages.reduce((s, u) => s + u.completion_tokens, 0);
    expect(prompt).toBeGreaterThan(0);
    expect(value(families, 'aigw_ai_llm_tokens_total', { ...m, token_type: 'prompt_tokens' })).toBe(prompt);
    expect(value(families, 'aigw_ai_llm_tokens_total', { ...m, token_type: 'completion_tokens' })).toBe(
      completion,
    );
    expect(value(families, 'aigw_ai_llm_tokens_total', { ...m, token_type: 'total_tokens' })).toBe(
      prompt + completion,
    );
    expect(value(families, 'aigw_ai_llm_cost_total', m)).toBeCloseTo((prompt * 1 + completion * 2) / 1e6, 12);
  });

  it('observes latency, first-token time and speed once per answered request', () => {
    const model = { ai_provider: 'openai', ai_model: 'gpt-4o-mini' };
    // Five on /m and the cache's miss on /cached.
    expect(count(families, 'aigw_ai_llm_provider_latency_ms', model)).toBe(6);
    expect(count(families, 'aigw_ai_llm_total_latency_ms', model)).toBe(6);
    // Requests no target answered: the unknown model, the two cache hits and the two refused on /budget.
    expect(count(families, 'aigw_ai_llm_total_latency_ms', { ai_provider: '', ai_model: '' })).toBe(5);
    expect(count(families, 'aigw_ai_llm_time_to_first_token_ms', model)).toBe(2); // streams only
    expect(count(families, 'aigw_ai_llm_output_tokens_per_second', model)).toBe(6);
    expect(count(families, 'aigw_ai_llm_prompt_tokens', model)).toBe(6);
    expect(count(families, 'aigw_ai_llm_completion_tokens', model)).toBe(6);
    // Kong's buckets, so one dashboard reads both.
    const buckets = families
      .filter(
        (s) => s.name === 'aigw_ai_llm_provider_latency_ms_bucket' && s.labels.ai_model === 'gpt-4o-mini',
      )
      .map((s) => s.labels.le);
    expect(buckets).toEqual([
      '250',
      '500',
      '1000',
      '1500',
      '2000',
      '2500',
      '3000',
      '3500',
      '4000',
      '4500',
      '5000',
      '10000',
      '30000',
      '60000',
      '+Inf',
    ]);
    expect(value(families, 'aigw_ai_llm_provider_latency_ms_bucket', { ...model, le: '+Inf' })).toBe(6);
  });

  it('counts cache misses and hits by cache status, a hit without provider time', () => {
    expect(cacheStatuses).toEqual(['MISS', 'HIT', 'HIT']);
    const cached = { route: 'cached', status: '200' };
    expect(
      value(families, 'aigw_ai_llm_requests_total', {
        ...cached,
        cache_status: 'MISS',
        ai_model: 'gpt-4o-mini',
      }),
    ).toBe(1);
    // A hit made no provider call: no target, so no model label either.
    expect(
      value(families, 'aigw_ai_llm_requests_total', { ...cached, cache_status: 'HIT', ai_model: '' }),
    ).toBe(2);
    expect(value(families, 'aigw_cache_lookups_total', { tier: 'exact', result: 'hit' })).toBe(2);
    expect(value(families, 'aigw_cache_lookups_total', { tier: 'exact', result: 'miss' })).toBe(1);
    expect(value(families, 'aigw_cache_fills_total', { result: 'stored' })).toBe(1);
    const providerTime = families.filter((f) => f.name === 'aigw_ai_llm_provider_latency_ms_count');
    expect(providerTime.map((f) => f.labels.ai_model)).not.toContain('');
  });

  it('counts the fallback by target and reason, and errors by code', () => {
    expect(value(families, 'aigw_fallbacks_total', { target: 'a', reason: 'status_503' })).toBe(1);
    expect(value(families, 'aigw_relay_errors_total', { code: 'AIGW_UNKNOWN_MODEL' })).toBe(1);
    expect(value(families, 'aigw_relay_errors_total', { code: 'AIGW_BUDGET_EXCEEDED' })).toBe(2);
    expect(value(families, 'aigw_budget_refused_total', { limit: LIMIT })).toBe(2);
  });

  it('counts prompt templates per route: the metric by template id, the text on GET /patterns', async () => {
    // On /m: `json <n>` three times (one template), `a longer streamed question number <n>`
    // twice, and the unknown model's `Say hello` (refused, but its prompt was asked).
    const res = await fetch(`http://127.0.0.1:${gw.server.adminPort}/patterns/m`);
    const body = (await res.json()) as { patterns: Array<{ id: string; template: string; count: number }> };
    expect(body.patterns.map((p) => [p.template, p.count])).toEqual([
      ['json <num>', 3],
      ['a longer streamed question number <num>', 2],
      ['Say hello', 1],
    ]);
    expect(
      value(families, 'aigw_prompt_pattern_requests', { route: 'm', pattern: body.patterns[0]!.id }),
    ).toBe(3);
  });

  it('counts Kong round trips once per request', () => {
    // 12 requests, each with a context (ai-router or the cache issued a ticket for all of them).
    expect(value(families, 'aigw_kong_round_trips_count')).toBe(12);
  });
});

describe('the log line', () => {
  const lines = () => gw.log.records().filter((r) => r.msg === 'ai request');

  it('holds the latency split, cost and route, never a prompt or a key by default', async () => {
    const res = await postChat(
      gw.kong,
      '/m',
      chatBody({ model: 'fast', messages: [{ role: 'user', content: 'PROMPT-MARKER' }] }),
      {
        'x-request-id': 'metrics-log-1',
      },
    );
    await res.stats();
    const line = lines().find((r) => r.request_id === 'metrics-log-1')!;
    expect(line).toMatchObject({
      route: 'm',
      'gen_ai.request.model': 'fast',
      'gen_ai.usage.input_tokens': expect.any(Number),
      cost_usd: expect.any(Number),
      provider_latency_ms: expect.any(Number),
      relay_latency_ms: expect.any(Number),
      total_latency_ms: expect.any(Number),
    });
    const text = gw.log.text();
    expect(text).not.toContain('PROMPT-MARKER');
    expect(text).not.toContain(KEY);
  });

  it('with content on: prompt and answer redacted, even a key split across stream chunks', async () => {
    // Kong starts a plugin instance at its first event: the log phase of the route's first
    // request, too late to ask for that request's answer. From the second request on it is kept.
    await (await postChat(gw.kong, '/content', chatBody({ model: 'fast' }))).stats();
    const secret = 'sk-proj-LeakedInAnswer0123456789abcdef';
    // The mock streams one word per chunk: the key and the e-mail arrive in pieces.
    mock.setAnswer(`here you go ${secret} mail bob@example.com ok`);
    try {
      const res = await postChat(
        gw.kong,
        '/content',
        chatBody({
          model: 'fast',
          stream: true,
          messages: [
            { role: 'user', content: 'my card 4111 1111 1111 1111, ticket TCK-004211, call +1 415 555 0100' },
          ],
        }),
        { 'x-request-id': 'metrics-content-1' },
      );
      expect(res.status).toBe(200);
      expect(res.text()).toContain('sk-proj-'); // the client gets its answer untouched
      await res.stats();
    } finally {
      mock.setAnswer(undefined);
    }
    const line = lines().find((r) => r.request_id === 'metrics-content-1')!;
    const input = line['gen_ai.input.messages'] as Array<{ role: string; content: string }>;
    const output = line['gen_ai.output.messages'] as Array<{
      role: string;
      content: string;
      finish_reason: string;
    }>;
    expect(input).toEqual([
      {
        role: 'user',
        content: 'my card [REDACTED:credit_card], ticket [REDACTED:ticket], call [REDACTED:phone]',
      },
    ]);
    expect(output[0]).toMatchObject({ role: 'assistant', finish_reason: 'stop' });
    expect(output[0]!.content).toMatch(
      /^here you go \[REDACTED len=\d+ hash=\w+\] mail \[REDACTED:email\] ok$/,
    );
    const text = gw.log.text();
    for (const leaked of [secret, '4111 1111', 'bob@example.com', 'TCK-004211'])
      expect(text).not.toContain(leaked);
  });
});
