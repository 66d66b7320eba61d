/**
 * ai-fallback with ai-router through the Kong emulator and the in-process suite server:
 * three OpenAI mocks stand for three providers. Every trigger moves the request on before
 * anything reached the client; a stream broken after its first byte ends with an SSE error
 * event, or continues on the next target (`midstream: continue`); breakers skip a failing
 * target and probe it after the cooldown; a full outage stays within the attempt and retry
 * budgets and answers within the deadline.
 */
import { type AddressInfo, createServer } from 'node:net';
import type { DriverResponse } from '../../support/kong';
import { type ProviderMock, parseSse, startOpenAIMock } from '../../support/providers';
import { chatBody, type InProcess, openAIError, postChat, startInProcess } from '../../support/suite';

const KEY = 'sk-proj-FallbackKey0123456789abcdefXYZ';

let a: ProviderMock;
let b: ProviderMock;
let c: ProviderMock;
let deadUrl: string;
let gw: InProcess;

const target = (name: string, mock: { url: string }, extra: Record<string, unknown> = {}) => ({
  name,
  model: `${name}-model`,
  base_url: mock.url,
  api_key: KEY,
  ...extra,
});

/** Fallback settings for routes whose tests must not meet the breaker or the budget. */
const permissive = {
  breaker: { enabled: false },
  retry_budget: { min_retries_per_s: 1000 },
};

const CHAINS = [
  { target: 'a', fallbacks: ['b', 'c'] },
  { target: 'dead', fallbacks: ['b'] },
];

function route(name: string, fallback: Record<string, unknown>, extraTargets: unknown[] = []) {
  return {
    name,
    path: `/${name}`,
    plugins: [
      {
        name: 'ai-router',
        config: { targets: [target('a', a), target('b', b), target('c', c), ...extraTargets] },
      },
      { name: 'ai-fallback', config: { chains: CHAINS, ...fallback } },
      { name: 'ai-metrics' },
    ],
  };
}

beforeAll(async () => {
  [a, b, c] = await Promise.all([1, 2, 3].map(() => startOpenAIMock({ apiKey: KEY, chunkDelayMs: 2 })));
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  deadUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/v1`;
  await new Promise((r) => closed.close(r));
  gw = await startInProcess({
    routes: () => [
      route('f', { ...permissive, triggers: { content_filter: true } }, [
        target('dead', { url: deadUrl }),
        target('small', a, { context_window: 50 }),
      ]),
      route('slow', { ...permissive, ttft_timeout_ms: 150 }),
      route('attempt', { ...permissive, attempt_timeout_ms: 200 }),
      route('mid', { ...permissive, midstream: 'continue' }),
      route('brk', {
        retry_budget: { min_retries_per_s: 1000 },
        breaker: { min_requests: 4, failure_rate: 0.5, cooldown_ms: 400 },
      }),
      route('outage', {
        max_attempts: 3,
        deadline_ms: 2_000,
        breaker: { enabled: false },
        retry_budget: { ratio: 0.2, window_ms: 60_000, min_retries_per_s: 0.05 },
      }),
      route('deadline', { ...permissive, deadline_ms: 5_000 }),
      route('badchain', { ...permissive, chains: [{ target: 'a', fallbacks: ['b', 'nope'] }] }),
      route('hedge', { ...permissive, hedge: { enabled: true, default_delay_ms: 100, min_samples: 256 } }),
      route('learn', {
        ...permissive,
        hedge: { enabled: true, percentile: 50, min_samples: 5, min_delay_ms: 20, default_delay_ms: 60_000 },
      }),
      {
        name: 'twins',
        path: '/twins',
        plugins: [
          {
            name: 'ai-router',
            config: {
              targets: [
                target('twin-a', a, { model: 'twin-model' }),
                target('twin-b', b, { model: 'twin-model' }),
              ],
            },
          },
          {
            name: 'ai-fallback',
            config: { breaker: { min_requests: 2, failure_rate: 0.5, cooldown_ms: 60_000 } },
          },
          { name: 'ai-metrics' },
        ],
      },
      route('hedge-nobudget', {
        breaker: { enabled: false },
        retry_budget: { ratio: 0, min_retries_per_s: 0 },
        hedge: { enabled: true, default_delay_ms: 50 },
      }),
    ],
  });
}, 30_000);

afterAll(async () => {
  await gw?.close();
  await Promise.all([a, b, c].map((m) => m?.close()));
});

beforeEach(() => {
  for (const m of [a, b, c]) m.reset();
});

const served = () => [a.requests.length, b.requests.length, c.requests.length];

function answeredBy(res: DriverResponse, name: string, fallbacks: number): void {
  expect(res.status).toBe(200);
  expect(res.headers['x-ai-target']).toBe(name);
  expect(res.headers['x-ai-fallback-count']).toBe(String(fallbacks));
}

/** Breaker state by target name, from the suite server's admin endpoint. */
async function breakerStates(): Promise<Record<string, string>> {
  const res = await fetch(`http://127.0.0.1:${gw.server.adminPort}/targets`);
  const { data } = (await res.json()) as { data: Array<{ target: string; state: string }> };
  return Object.fromEntries(data.map((e) => [e.target, e.state]));
}

/** The ai-metrics line of a response (its outcome carries the attempts). */
async function logLine(res: DriverResponse): Promise<Record<string, unknown>> {
  await res.stats();
  const line = gw.log
    .records()
    .find((r) => r.msg === 'ai request' && r.kong_request_id === res.headers['x-kong-request-id']);
  expect(line).toBeDefined();
  return line as Record<string, unknown>;
}

describe('triggers: failures before the first byte move on to the next target', () => {
  it.each([429, 500, 502, 503, 504, 529])(
    'a %i from the first target → the second answers',
    async (status) => {
      a.nextFault({ kind: 'status', status });
      const res = await postChat(gw.kong, '/f', chatBody({ model: 'a' }));
      answeredBy(res, 'b', 1);
      expect(served()).toEqual([1, 1, 0]);
      expect(b.requests[0]?.body).toMatchObject({ model: 'b-model' });
    },
  );

  it('a 400 is the request’s fault: answered as it is, nobody else called', async () => {
    a.nextFault({ kind: 'status', status: 400 });
    const res = await postChat(gw.kong, '/f', chatBody({ model: 'a' }));
    expect(res.status).toBe(400);
    expect(served()).toEqual([1, 0, 0]);
  });

  it('two failures in a row → the third target answers, the attempts are logged', async () => {
    a.nextFault({ kind: 'status', status: 503 });
    b.nextFault({ kind: 'reset' });
    const res = await postChat(gw.kong, '/f', chatBody({ model: 'a' }));
    answeredBy(res, 'c', 2);
    const line = await logLine(res);
    expect(line).toMatchObject({ target: 'c', fallbacks: 2 });
    expect(line.attempts).toEqual([
      { target: 'a', failure: 'status', status: 503, latency_ms: expect.any(Number) },
      { target: 'b', failure: 'connect', latency_ms: expect.any(Number) },
      { target: 'c', status: 200, latency_ms: expect.any(Number) },
    ]);
  });

  it('a connection refused → the next target answers', async () => {
    answeredBy(await postChat(gw.kong, '/f', chatBody({ model: 'dead' })), 'b', 1);
  });

  it('a target without a chain is tried once: the client gets its failure', async () => {
    b.nextFault({ kind: 'status', status: 503 });
    const res = await postChat(gw.kong, '/f', chatBody({ model: 'b' }));
    expect(res.status).toBe(503);
    expect(served()).toEqual([0, 1, 0]);
  });

  it('no first byte within ttft_timeout_ms → the next target answers, long before the slow one would', async () => {
    a.nextFault({ kind: 'slow_first_byte', ms: 1_500 });
    const started = Date.now();
    const res = await postChat(gw.kong, '/slow', chatBody({ model: 'a', stream: true }));
    answeredBy(res, 'b', 1);
    expect(Date.now() - started).toBeLessThan(1_200);
    expect(parseSse(res.text()).at(-1)?.data).toBe('[DONE]');
  });

  it('an attempt that has not started its answer within attempt_timeout_ms → the next target answers', async () => {
    a.nextFault({ kind: 'latency', ms: 1_500 });
    const started = Date.now();
    const res = await postChat(gw.kong, '/attempt', chatBody({ model: 'a' }));
    answeredBy(res, 'b', 1);
    expect(Date.now() - started).toBeLessThan(1_200);
    expect((await logLine(res)).attempts).toMatchObject([
      { target: 'a', failure: 'timeout' },
      { target: 'b', status: 200 },
    ]);
  });

  it('a prompt too long for a target’s context_window skips it without calling it', async () => {
    // `small` (context window 50) has no chain: the request fails clearly, nobody is called.
    const long = chatBody({ model: 'small', messages: [{ role: 'user', content: 'word '.repeat(200) }] });
    const res = await postChat(gw.kong, '/f', long);
    expect(res.status).toBe(400);
    expect(openAIError(res).message).toContain('context window of target small');
    expect(served()).toEqual([0, 0, 0]);
  });

  it('the provider’s context_length_exceeded → the next target answers', async () => {
    a.nextFault({
      kind: 'status',
      status: 400,
      body: {
        error: {
          message: 'too long',
          type: 'invalid_request_error',
          param: 'messages',
          code: 'context_length_exceeded',
        },
      },
    });
    answeredBy(await postChat(gw.kong, '/f', chatBody({ model: 'a' })), 'b', 1);
  });

  it('a content-filter refusal → the next target answers (triggers.content_filter)', async () => {
    a.nextFault({
      kind: 'status',
      status: 400,
      body: {
        error: { message: 'filtered', type: 'invalid_request_error', param: null, code: 'content_filter' },
      },
    });
    answeredBy(await postChat(gw.kong, '/f', chatBody({ model: 'a' })), 'b', 1);
  });

  it('a 200 answer stopped by the content filter → the next target answers (triggers.content_filter)', async () => {
    a.nextFault({ kind: 'content_filter' });
    const res = await postChat(gw.kong, '/f', chatBody({ model: 'a' }));
    answeredBy(res, 'b', 1);
    expect((await logLine(res)).attempts).toMatchObject([
      { target: 'a', failure: 'content_filter', status: 200 },
      { target: 'b', status: 200 },
    ]);
  });

  it('without the content_filter trigger, a filtered answer reaches the client as the provider gave it', async () => {
    a.nextFault({ kind: 'content_filter' });
    const res = await postChat(gw.kong, '/slow', chatBody({ model: 'a' }));
    answeredBy(res, 'a', 0);
    expect(res.json<{ choices: Array<{ finish_reason: string }> }>().choices[0]?.finish_reason).toBe(
      'content_filter',
    );
    expect(served()).toEqual([1, 0, 0]);
  });

  it('a stream cut before its first event, or reset, → the next target streams the whole answer', async () => {
    for (const fault of [{ kind: 'cut_stream', afterChunks: 0 } as const, { kind: 'reset' } as const]) {
      a.nextFault(fault);
      const res = await postChat(gw.kong, '/f', chatBody({ model: 'a', stream: true }));
      answeredBy(res, 'b', 1);
      expect(parseSse(res.text()).at(-1)?.data).toBe('[DONE]');
    }
  });
});

describe('hedging', () => {
  it('a slow first attempt is raced by the next target: the first answer wins, the slow call is cancelled', async () => {
    a.nextFault({ kind: 'latency', ms: 1_500 });
    const started = Date.now();
    const res = await postChat(gw.kong, '/hedge', chatBody({ model: 'a' }));
    answeredBy(res, 'b', 0);
    expect(Date.now() - started).toBeLessThan(1_200);
    expect(served()).toEqual([1, 1, 0]);
    expect((await logLine(res)).attempts).toEqual([
      { target: 'a', failure: 'cancelled', latency_ms: expect.any(Number) },
      { target: 'b', hedge: true, status: 200, latency_ms: expect.any(Number) },
    ]);
  });

  it('a first attempt that answers in time is not hedged', async () => {
    answeredBy(await postChat(gw.kong, '/hedge', chatBody({ model: 'a' })), 'a', 0);
    expect(served()).toEqual([1, 0, 0]);
  });

  it('streams race to their first event; the winner streams the whole answer', async () => {
    a.nextFault({ kind: 'slow_first_byte', ms: 1_500 });
    const res = await postChat(gw.kong, '/hedge', chatBody({ model: 'a', stream: true }));
    answeredBy(res, 'b', 0);
    const frames = parseSse(res.text());
    expect(frames.at(-1)?.data).toBe('[DONE]');
    expect(frames.filter((f) => f.data.includes('"role"'))).toHaveLength(1);
  });

  it('a hedge that fails leaves the first attempt to answer', async () => {
    a.nextFault({ kind: 'latency', ms: 300 });
    b.nextFault({ kind: 'status', status: 500 });
    const res = await postChat(gw.kong, '/hedge', chatBody({ model: 'a' }));
    answeredBy(res, 'a', 1);
    expect((await logLine(res)).attempts).toEqual([
      { target: 'b', hedge: true, failure: 'status', status: 500, latency_ms: expect.any(Number) },
      { target: 'a', status: 200, latency_ms: expect.any(Number) },
    ]);
  });

  it('when both racers fail, the chain goes on to the next target', async () => {
    a.setFault({ kind: 'latency', ms: 250 });
    a.nextFault({ kind: 'status', status: 503 });
    b.nextFault({ kind: 'status', status: 503 });
    const res = await postChat(gw.kong, '/hedge', chatBody({ model: 'a' }));
    answeredBy(res, 'c', 2);
    expect(served()).toEqual([1, 1, 1]);
    expect((await logLine(res)).attempts).toMatchObject([
      { target: 'b', hedge: true, failure: 'status', status: 503 },
      { target: 'a', failure: 'status', status: 503 },
      { target: 'c', status: 200 },
    ]);
  });

  it('the delay is the percentile of the target’s recent answers once enough are known', async () => {
    for (let i = 0; i < 5; i++)
      answeredBy(await postChat(gw.kong, '/learn', chatBody({ model: 'a' })), 'a', 0);
    a.nextFault({ kind: 'latency', ms: 1_500 });
    const res = await postChat(gw.kong, '/learn', chatBody({ model: 'a' }));
    answeredBy(res, 'b', 0);
    expect(served()).toEqual([6, 1, 0]);
  });

  it('a hedge takes a retry from the budget: with none left, the slow attempt answers alone', async () => {
    a.nextFault({ kind: 'latency', ms: 300 });
    answeredBy(await postChat(gw.kong, '/hedge-nobudget', chatBody({ model: 'a' })), 'a', 0);
    expect(served()).toEqual([1, 0, 0]);
  });
});

describe('after the first byte', () => {
  it('midstream error (default): the client gets an SSE error event, never [DONE]; nobody else is called', async () => {
    a.nextFault({ kind: 'cut_stream', afterChunks: 3 });
    const res = await postChat(gw.kong, '/f', chatBody({ model: 'a', stream: true }));
    expect(res.status).toBe(200);
    const frames = parseSse(res.text());
    expect(frames.at(-1)?.data).toContain('AIGW_STREAM_BROKEN');
    expect(frames.some((f) => f.data === '[DONE]')).toBe(false);
    expect(served()).toEqual([1, 0, 0]);
  });

  it('midstream continue: the next target carries on from the partial answer, in the same stream', async () => {
    a.setAnswer('one two three four five six');
    b.setAnswer('seven eight');
    a.nextFault({ kind: 'cut_stream', afterChunks: 3 });
    const res = await postChat(gw.kong, '/mid', chatBody({ model: 'a', stream: true }));
    expect(res.status).toBe(200);
    const frames = parseSse(res.text());
    expect(frames.at(-1)?.data).toBe('[DONE]');
    const chunks = frames.filter((f) => f.data !== '[DONE]').map((f) => JSON.parse(f.data));
    const roles = chunks.filter((ch) => ch.choices?.[0]?.delta?.role);
    expect(roles).toHaveLength(1);
    const text = chunks.map((ch) => ch.choices?.[0]?.delta?.content ?? '').join('');
    expect(text.endsWith('seven eight')).toBe(true);
    // b was asked to continue what the client already had.
    expect(b.requests).toHaveLength(1);
    const messages = (b.requests[0]!.body as { messages: Array<{ role: string; content: string }> }).messages;
    expect(messages.at(-1)?.role).toBe('assistant');
    expect(text.startsWith(messages.at(-1)!.content)).toBe(true);
    expect(messages.at(-1)!.content.length).toBeGreaterThan(0);
  });
});

describe('circuit breaker', () => {
  it('opens after min_requests failures, skips the target, probes it after the cooldown and closes', async () => {
    a.setFault({ kind: 'status', status: 500 });
    for (let i = 0; i < 4; i++) answeredBy(await postChat(gw.kong, '/brk', chatBody({ model: 'a' })), 'b', 1);
    expect(a.requests).toHaveLength(4);
    // Open: a is not called at all; b answers with no failed attempt.
    const skipped = await postChat(gw.kong, '/brk', chatBody({ model: 'a' }));
    answeredBy(skipped, 'b', 0);
    expect(a.requests).toHaveLength(4);
    expect((await logLine(skipped)).attempts).toEqual([
      { target: 'a', failure: 'circuit_open', latency_ms: 0 },
      { target: 'b', status: 200, latency_ms: expect.any(Number) },
    ]);
    // The admin endpoint shows it, as ai-router and the metrics read it.
    expect(await breakerStates()).toEqual({ a: 'open' });
    // After the cooldown one probe reaches a; it is healthy again, so the breaker closes.
    a.setFault(undefined);
    await new Promise((r) => setTimeout(r, 450));
    expect(await breakerStates()).toEqual({ a: 'half_open' });
    answeredBy(await postChat(gw.kong, '/brk', chatBody({ model: 'a' })), 'a', 0);
    answeredBy(await postChat(gw.kong, '/brk', chatBody({ model: 'a' })), 'a', 0);
    expect(a.requests).toHaveLength(6);
    expect(await breakerStates()).toEqual({ a: 'closed' });
  });

  it('when every candidate’s breaker is open, the first target is tried anyway (panic rule)', async () => {
    b.setFault({ kind: 'status', status: 500 });
    // b answered the test above: 8 failures make sure its failure rate passes 50 %.
    for (let i = 0; i < 8; i++)
      expect((await postChat(gw.kong, '/brk', chatBody({ model: 'b' }))).status).toBe(500);
    b.setFault(undefined);
    const res = await postChat(gw.kong, '/brk', chatBody({ model: 'b' }));
    answeredBy(res, 'b', 0);
    expect((await logLine(res)).attempts).toEqual([
      { target: 'b', failure: 'circuit_open', latency_ms: 0 },
      { target: 'b', status: 200, latency_ms: expect.any(Number) },
    ]);
  });

  it('a 429 with a rate-limit reset opens the breaker for that long at once', async () => {
    a.nextFault({ kind: 'status', status: 429, headers: { 'retry-after-ms': '300' } });
    answeredBy(await postChat(gw.kong, '/brk', chatBody({ model: 'a' })), 'b', 1);
    answeredBy(await postChat(gw.kong, '/brk', chatBody({ model: 'a' })), 'b', 0);
    expect(a.requests).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 350));
    answeredBy(await postChat(gw.kong, '/brk', chatBody({ model: 'a' })), 'a', 0);
  });
});

describe('ai-router reads the breakers', () => {
  it('a request for a model goes to a target serving it whose breaker is not open', async () => {
    a.setFault({ kind: 'status', status: 500 });
    // No chain: the other target serving the model is the failover candidate; the first one's
    // failures open its breaker.
    for (let i = 0; i < 2; i++) {
      answeredBy(await postChat(gw.kong, '/twins', chatBody({ model: 'twin-model' })), 'twin-b', 1);
    }
    const res = await postChat(gw.kong, '/twins', chatBody({ model: 'twin-model' }));
    answeredBy(res, 'twin-b', 0);
    expect((await logLine(res)).route_reason).toBe('model twin-model; 1 open breaker passed over');
    expect(a.requests).toHaveLength(2);
  });
});

describe('full outage', () => {
  it('every target failing: attempts per request ≤ max_attempts, retries within the budget, a clear error each time', async () => {
    for (const m of [a, b, c]) m.setFault({ kind: 'status', status: 503 });
    const requests = 40;
    const started = Date.now();
    for (let i = 0; i < requests; i++) {
      const res = await postChat(gw.kong, '/outage', chatBody({ model: 'a' }));
      expect(res.status).toBe(503);
      expect(openAIError(res).type).toBe('server_error');
    }
    expect(Date.now() - started).toBeLessThan(requests * 2_000);
    const calls = served().reduce((x, y) => x + y, 0);
    // Budget: 0.05 retries/s × 60 s = 3, plus 20 % of 40 requests = 8 → at most 11 retries.
    expect(calls).toBeGreaterThanOrEqual(requests);
    expect(calls).toBeLessThanOrEqual(requests + 11);
  });
});

describe('config', () => {
  it('a chain naming a target the route’s ai-router lacks fails closed, naming the field', async () => {
    const res = await postChat(gw.kong, '/badchain', chatBody({ model: 'a' }));
    expect(res.status).toBe(500);
    expect(openAIError(res)).toMatchObject({ code: 'AIGW_CONFIG_INVALID' });
    expect(openAIError(res).message).toContain('config.chains[0].fallbacks[1]');
    expect(served()).toEqual([0, 0, 0]);
  });
});

describe('deadline', () => {
  it('x-ai-deadline-ms shortens the deadline: slow targets → 504 within it', async () => {
    for (const m of [a, b, c]) m.setFault({ kind: 'slow_first_byte', ms: 2_000 });
    const started = Date.now();
    const res = await postChat(gw.kong, '/deadline', chatBody({ model: 'a' }), { 'x-ai-deadline-ms': '300' });
    expect(res.status).toBe(504);
    expect(openAIError(res).message).toContain('request deadline of 300 ms');
    expect(Date.now() - started).toBeLessThan(1_500);
  });
});
