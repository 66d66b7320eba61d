import { request } from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import {
  CONTEXT_HEADER,
  ContextStore,
  type Endpoint,
  type RelayOutcome,
  type RequestContext,
  type Target,
} from '../../../lib/context';
import { GatewayError } from '../../../lib/errors';
import { TargetLoad } from '../../../lib/health';
import { countOutputTokens, countPromptTokens } from '../../../lib/llm/tokens';
import { approximateTokens } from '../../../lib/llm/usage';
import { createLogger } from '../../../lib/log/logger';
import { type Relay, startRelay } from '../../../lib/relay/server';
import { type ProviderMock, startOpenAIMock } from '../../support/providers';
import { parseSse, type RawResponse, rawRequest, sseJson } from '../../support/providers/raw-http';
import { issueRouteTicket } from '../../support/tickets';

const KEY = 'sk-proj-RelayIntegrationKey0123456789abcdef';
const LIMITS = { max_body_bytes: 1024 * 1024, max_json_depth: 64 };
const PROMPT = 'PROMPT-MARKER what is the capital of France?';
const ANSWER = 'ANSWER-MARKER Paris is the capital of France, since long ago.';

let mock: ProviderMock;
let contexts: ContextStore;
let relay: Relay;
/** Every attempt the relay makes is reported here: in flight, latency, rate-limit headroom. */
const load = new TargetLoad();
const logLines: string[] = [];

beforeAll(async () => {
  mock = await startOpenAIMock({ apiKey: KEY, chunkDelayMs: 1 });
  contexts = new ContextStore();
  const logger = createLogger({
    level: 'debug',
    destination: { write: (line: string) => void logLines.push(line) },
  });
  relay = await startRelay({ port: 0, contexts, logger, limits: LIMITS, load });
});

afterEach(() => mock.reset());

afterAll(async () => {
  await relay.close();
  await mock.close();
  contexts.close();
});

function target(overrides: Partial<Target> = {}): Target {
  return {
    name: 'openai-mini',
    provider: 'openai',
    model: 'gpt-4o-mini',
    base_url: mock.url,
    api_key: KEY,
    headers: {},
    timeouts: { connect_ms: 1_000, first_byte_ms: 2_000, idle_ms: 2_000, total_ms: 10_000 },
    ...overrides,
  };
}

const PATHS: Record<Endpoint, string> = {
  'chat.completions': '/v1/chat/completions',
  completions: '/v1/completions',
  embeddings: '/v1/embeddings',
  models: '/v1/models',
  feedback: '/v1/feedback',
};

/** A request the plugins admitted: its ticket, what Kong proxies, and what the relay made of it. */
interface Admitted {
  /** The ticket ai-router's access handler would have added to the upstream request. */
  id: string;
  method: string;
  path: string;
  body?: Record<string, unknown>;
  /** The relay's context, once it has taken the ticket. */
  readonly ctx: RequestContext | undefined;
  readonly outcome: RelayOutcome | undefined;
  readonly settled: boolean;
}

/** Issues a ticket whose policy routes to one target, as ai-router would. */
function newContext(
  body: Record<string, unknown> | undefined,
  options: { endpoint?: Endpoint; target?: Partial<Target>; exposeTarget?: boolean; route?: false } = {},
): Admitted {
  const endpoint = options.endpoint ?? 'chat.completions';
  const route =
    options.route === false
      ? undefined
      : { targets: [target(options.target)], reason: 'test', exposeTarget: options.exposeTarget ?? true };
  const ticket = issueRouteTicket(contexts, route);
  return {
    id: ticket.id,
    method: endpoint === 'models' ? 'GET' : 'POST',
    path: PATHS[endpoint],
    body,
    get ctx() {
      return contexts.find([ticket.id]);
    },
    get outcome() {
      return this.ctx?.outcome;
    },
    get settled() {
      return this.ctx?.settledAt !== undefined;
    },
  };
}

const chat = (extra: Record<string, unknown> = {}) => ({
  model: 'fast',
  messages: [{ role: 'user', content: PROMPT }],
  ...extra,
});

/** What Kong sends: the ticket, the client's own headers (never forwarded) and the body. */
function send(
  admitted: Admitted | undefined,
  headers: Record<string, string> = {},
  port = relay.port,
): Promise<RawResponse> {
  return rawRequest(`http://127.0.0.1:${port}${admitted?.path ?? '/v1/chat/completions'}`, {
    method: admitted?.method ?? 'POST',
    headers: {
      ...(admitted ? { [CONTEXT_HEADER]: admitted.id } : {}),
      authorization: 'Bearer kong-consumer-key',
      'x-client-secret': 'do-not-forward',
      ...headers,
    },
    body: admitted ? admitted.body : chat(),
  });
}

async function settled(admitted: Admitted, timeoutMs = 5_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!admitted.settled) {
    if (Date.now() > until) throw new Error('context never settled');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function json(res: RawResponse): Record<string, unknown> {
  return JSON.parse(res.text) as Record<string, unknown>;
}

describe('relay: JSON answers', () => {
  it('answers with the provider body, passes safe headers, and records the outcome', async () => {
    mock.setAnswer(ANSWER);
    const ctx = newContext(chat());
    const res = await send(ctx);
    await settled(ctx);

    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toContain('application/json');
    const body = json(res);
    expect(body).toMatchObject({ object: 'chat.completion', model: 'gpt-4o-mini' });
    expect(body.choices).toMatchObject([{ message: { content: ANSWER } }]);
    expect(res.headers['x-ai-target']).toBe('openai-mini');
    expect(res.headers['x-ai-model']).toBe('gpt-4o-mini');
    expect(res.headers['x-upstream-request-id']).toMatch(/^req_/);
    expect(res.headers['x-ratelimit-limit-requests']).toBe('10000');
    expect(res.headers['openai-organization']).toBeUndefined();
    expect(res.headers['x-request-id']).toBeUndefined();

    const outcome = ctx.outcome!;
    expect(outcome).toMatchObject({
      target: 'openai-mini',
      provider: 'openai',
      model: 'gpt-4o-mini',
      response_model: 'gpt-4o-mini',
      status: 200,
      upstream_status: 200,
      stream: false,
      end: 'complete',
      usage_source: 'provider',
      bytes_out: Buffer.byteLength(res.text),
    });
    const usage = body.usage as { prompt_tokens: number; completion_tokens: number; total_tokens: number };
    expect(outcome.usage).toEqual({
      input_tokens: usage.prompt_tokens,
      output_tokens: usage.completion_tokens,
      total_tokens: usage.total_tokens,
      cached_input_tokens: 0,
    });
    expect(outcome.ttft_ms).toBeGreaterThanOrEqual(0);
    expect(outcome.latency_ms).toBeGreaterThanOrEqual(outcome.ttft_ms!);
    expect(outcome.started_at).toBeLessThanOrEqual(Date.now());
    expect(outcome.error).toBeUndefined();
  });

  it('sends the context body with the target model, the target key, and no client header', async () => {
    const ctx = newContext(chat({ temperature: 0 }));
    await send(ctx);

    expect(mock.requests).toHaveLength(1);
    const upstream = mock.requests[0]!;
    expect(upstream.path).toBe('/v1/chat/completions');
    expect(upstream.body).toEqual({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: PROMPT }],
      temperature: 0,
    });
    expect(upstream.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(upstream.headers['x-client-secret']).toBeUndefined();
    expect(upstream.headers[CONTEXT_HEADER]).toBeUndefined();
  });

  it('omits x-ai-target and x-ai-model unless the route exposes them', async () => {
    const ctx = newContext(chat(), { exposeTarget: false });
    const res = await send(ctx);
    expect(res.status).toBe(200);
    expect(res.headers['x-ai-target']).toBeUndefined();
    expect(res.headers['x-ai-model']).toBeUndefined();
  });

  it('serves embeddings and completions', async () => {
    const emb = newContext({ model: 'embed', input: ['one two three'] }, { endpoint: 'embeddings' });
    const embRes = await send(emb);
    expect(embRes.status).toBe(200);
    expect(json(embRes)).toMatchObject({ object: 'list', model: 'gpt-4o-mini' });
    expect(mock.requests[0]!.path).toBe('/v1/embeddings');
    expect(emb.outcome).toMatchObject({
      end: 'complete',
      usage_source: 'provider',
      usage: { output_tokens: 0 },
    });

    const cmpl = newContext(
      { model: 'x', prompt: 'Say this is a test', max_tokens: 3 },
      { endpoint: 'completions' },
    );
    const cmplRes = await send(cmpl);
    expect(cmplRes.status).toBe(200);
    expect(json(cmplRes)).toMatchObject({ object: 'text_completion' });
    expect(cmpl.outcome!.usage).toMatchObject({ output_tokens: 3 });
  });

  it('counts usage when the provider reports none', async () => {
    mock.setAnswer(ANSWER);
    mock.nextFault({ kind: 'no_usage' });
    const ctx = newContext(chat());
    const res = await send(ctx);
    await settled(ctx);
    expect(json(res).usage).toBeUndefined();
    // The prompt as counted for the request (the target's model), the JSON answer from its characters.
    const input = countPromptTokens('chat.completions', chat(), 'gpt-4o-mini').tokens;
    const output = approximateTokens(ANSWER.length);
    expect(ctx.outcome).toMatchObject({
      usage_source: 'counted',
      usage: { input_tokens: input, output_tokens: output, total_tokens: input + output },
    });
  });

  it('refuses an answer over maxResponseBytes with 502', async () => {
    const small = await startRelay({
      port: 0,
      contexts,
      logger: createLogger({ level: 'silent' }),
      maxResponseBytes: 100,
      limits: LIMITS,
    });
    try {
      const ctx = newContext(chat());
      const res = await send(ctx, {}, small.port);
      await settled(ctx);
      expect(res.status).toBe(502);
      expect(json(res)).toMatchObject({ error: { code: 'AIGW_UPSTREAM_ERROR', type: 'server_error' } });
      expect(ctx.outcome).toMatchObject({ end: 'upstream_error', upstream_status: 200, status: 502 });
    } finally {
      await small.close();
    }
  });
});

describe('relay: streams', () => {
  it('writes each chunk as it arrives, hides the usage chunk the client did not ask for, ends with [DONE]', async () => {
    mock.setAnswer(ANSWER);
    mock.nextFault({ kind: 'chunk_delay', ms: 40 });
    const ctx = newContext(chat({ stream: true }));
    const res = await send(ctx);
    await settled(ctx);

    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toContain('text/event-stream');
    expect(res.headers['cache-control']).toBe('no-cache');
    expect(res.headers['x-accel-buffering']).toBe('no');
    expect(res.headers['x-ai-model']).toBe('gpt-4o-mini');

    const frames = parseSse(res.text);
    expect(frames.at(-1)!.data).toBe('[DONE]');
    const chunks = sseJson(res.text);
    expect(chunks.every((c) => Array.isArray(c.choices) && c.choices.length > 0)).toBe(true);
    const text = chunks
      .map((c) => (c.choices as { delta: { content?: string } }[])[0]!.delta.content ?? '')
      .join('');
    expect(text).toBe(ANSWER);

    // 10 words + role + finish chunks, 40 ms apart: the client saw the first one long
    // before the last one left the mock, so nothing was buffered on the way.
    expect(res.chunks.length).toBeGreaterThanOrEqual(frames.length - 1);
    expect(res.chunks.at(-1)!.at - res.chunks[0]!.at).toBeGreaterThanOrEqual(300);

    const upstream = mock.requests[0]!.body as Record<string, unknown>;
    expect(upstream.stream).toBe(true);
    expect(upstream.stream_options).toEqual({ include_usage: true });
    expect(ctx.outcome).toMatchObject({
      stream: true,
      status: 200,
      end: 'complete',
      usage_source: 'provider',
      response_model: 'gpt-4o-mini',
      bytes_out: Buffer.byteLength(res.text),
    });
    expect(ctx.outcome!.usage!.output_tokens).toBe(10);
    expect(ctx.outcome!.ttft_ms).toBeLessThan(ctx.outcome!.latency_ms! - 200);
  });

  it('forwards the usage chunk when the client asked for it', async () => {
    const ctx = newContext(chat({ stream: true, stream_options: { include_usage: true } }));
    const res = await send(ctx);
    const chunks = sseJson(res.text);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({
      prompt_tokens: expect.any(Number),
      completion_tokens: expect.any(Number),
    });
    expect(parseSse(res.text).at(-1)!.data).toBe('[DONE]');
  });

  it('counts usage of a stream without a usage chunk', async () => {
    mock.setAnswer(ANSWER);
    mock.nextFault({ kind: 'no_usage' });
    const ctx = newContext(chat({ stream: true }));
    await send(ctx);
    await settled(ctx);
    expect(ctx.outcome).toMatchObject({
      end: 'complete',
      usage_source: 'counted',
      usage: {
        // A streamed answer is counted from its text.
        output_tokens: countOutputTokens(ANSWER, 'gpt-4o-mini'),
        input_tokens: countPromptTokens('chat.completions', chat({ stream: true }), 'gpt-4o-mini').tokens,
      },
    });
  });

  it('ends a stream cut after the first byte with an explicit error event and no [DONE]', async () => {
    mock.setAnswer(ANSWER);
    mock.nextFault({ kind: 'cut_stream', afterChunks: 3 });
    const ctx = newContext(chat({ stream: true }));
    const res = await send(ctx);
    await settled(ctx);

    expect(res.status).toBe(200);
    const frames = parseSse(res.text);
    expect(frames.some((f) => f.data === '[DONE]')).toBe(false);
    expect(frames).toHaveLength(4);
    expect(JSON.parse(frames.at(-1)!.data)).toEqual({
      error: {
        message: expect.stringContaining('broke'),
        type: 'server_error',
        code: 'AIGW_STREAM_BROKEN',
        param: null,
      },
    });
    expect(ctx.outcome).toMatchObject({
      status: 200,
      end: 'stream_broken',
      error: { code: 'AIGW_STREAM_BROKEN' },
      usage_source: 'counted',
    });
    // Two words got through: that is what was spent.
    expect(ctx.outcome!.usage!.output_tokens).toBeGreaterThan(0);
  });

  it('answers a stream cut before any event with a JSON 502', async () => {
    mock.nextFault({ kind: 'cut_stream', afterChunks: 0 });
    const ctx = newContext(chat({ stream: true }));
    const res = await send(ctx);
    await settled(ctx);
    expect(res.status).toBe(502);
    expect(res.headers['content-type']).toBe('application/json');
    expect(json(res)).toMatchObject({ error: { type: 'server_error', param: null } });
    expect(ctx.outcome).toMatchObject({ status: 502, end: 'upstream_error' });
  });

  it('breaks the stream when the provider goes silent longer than idle_ms', async () => {
    mock.nextFault({ kind: 'chunk_delay', ms: 1_000 });
    const ctx = newContext(chat({ stream: true }), {
      target: { timeouts: { connect_ms: 1_000, first_byte_ms: 2_000, idle_ms: 150, total_ms: 10_000 } },
    });
    const started = Date.now();
    const res = await send(ctx);
    await settled(ctx);
    expect(Date.now() - started).toBeLessThan(900);
    const frames = parseSse(res.text);
    expect(frames).toHaveLength(2); // the role chunk, then the error
    expect(JSON.parse(frames[1]!.data).error.code).toBe('AIGW_STREAM_BROKEN');
    expect(ctx.outcome).toMatchObject({ end: 'stream_broken', error: { code: 'AIGW_STREAM_BROKEN' } });
    expect(ctx.outcome!.error!.message).toContain('150 ms');
  });

  it('breaks the stream at the total deadline', async () => {
    mock.nextFault({ kind: 'chunk_delay', ms: 100 });
    const ctx = newContext(chat({ stream: true }), {
      target: { timeouts: { connect_ms: 1_000, first_byte_ms: 2_000, idle_ms: 2_000, total_ms: 250 } },
    });
    const res = await send(ctx);
    await settled(ctx);
    const frames = parseSse(res.text);
    expect(frames.length).toBeGreaterThan(1);
    expect(frames.some((f) => f.data === '[DONE]')).toBe(false);
    expect(JSON.parse(frames.at(-1)!.data).error.code).toBe('AIGW_STREAM_BROKEN');
    expect(ctx.outcome!.error!.message).toContain('250 ms');
  });
});

describe('relay: provider errors before the first byte', () => {
  it('passes a 429 through in OpenAI shape with retry-after and rate-limit headers', async () => {
    mock.nextFault({ kind: 'status', status: 429, headers: { 'retry-after': '7' } });
    const ctx = newContext(chat({ stream: true }));
    const res = await send(ctx);
    await settled(ctx);

    expect(res.status).toBe(429);
    expect(res.headers['retry-after']).toBe('7');
    expect(res.headers['x-ratelimit-remaining-requests']).toBe('0');
    expect(res.headers['content-type']).toBe('application/json');
    const body = json(res);
    expect(body).toEqual({
      error: {
        message: expect.stringContaining('Rate limit reached for gpt-4o-mini'),
        type: 'requests',
        code: 'rate_limit_exceeded',
        param: null,
      },
    });
    expect(res.text).not.toContain('org-mock');
    expect(ctx.outcome).toMatchObject({ status: 429, upstream_status: 429, end: 'upstream_error' });
    expect(ctx.outcome!.usage).toBeUndefined();
  });

  it('passes a 500 through in OpenAI shape', async () => {
    mock.nextFault({ kind: 'status', status: 500 });
    const ctx = newContext(chat());
    const res = await send(ctx);
    expect(res.status).toBe(500);
    expect(json(res)).toEqual({
      error: {
        message: 'The server had an error while processing your request. Sorry about that!',
        type: 'server_error',
        code: 'AIGW_UPSTREAM_ERROR',
        param: null,
      },
    });
  });

  it('answers 502 AIGW_UPSTREAM_UNAVAILABLE when the provider resets the connection', async () => {
    mock.nextFault({ kind: 'reset' });
    const ctx = newContext(chat({ stream: true }));
    const res = await send(ctx);
    await settled(ctx);
    expect(res.status).toBe(502);
    expect(json(res)).toMatchObject({ error: { code: 'AIGW_UPSTREAM_UNAVAILABLE', type: 'server_error' } });
    expect(ctx.outcome).toMatchObject({
      status: 502,
      end: 'upstream_error',
      error: { code: 'AIGW_UPSTREAM_UNAVAILABLE' },
    });
    expect(ctx.outcome!.upstream_status).toBeUndefined();
  });

  it('answers 502 when nothing listens at the provider address', async () => {
    const port = await freePort();
    const ctx = newContext(chat(), { target: { base_url: `http://127.0.0.1:${port}/v1` } });
    const res = await send(ctx);
    expect(res.status).toBe(502);
    expect(json(res)).toMatchObject({ error: { code: 'AIGW_UPSTREAM_UNAVAILABLE' } });
  });

  it.each([
    ['stream', true],
    ['JSON', false],
  ])('answers 504 when the first byte (%s) comes later than first_byte_ms', async (_kind, stream) => {
    mock.nextFault({ kind: 'slow_first_byte', ms: 1_500 });
    const ctx = newContext(chat({ stream }), {
      target: { timeouts: { connect_ms: 1_000, first_byte_ms: 200, idle_ms: 5_000, total_ms: 10_000 } },
    });
    const started = Date.now();
    const res = await send(ctx);
    await settled(ctx);
    expect(Date.now() - started).toBeLessThan(1_200);
    expect(res.status).toBe(504);
    expect(json(res)).toMatchObject({ error: { code: 'AIGW_UPSTREAM_TIMEOUT', type: 'server_error' } });
    expect(ctx.outcome).toMatchObject({
      status: 504,
      end: 'timeout',
      error: { code: 'AIGW_UPSTREAM_TIMEOUT' },
    });
  });

  it('answers 504 when the headers come later than first_byte_ms', async () => {
    mock.nextFault({ kind: 'latency', ms: 1_500 });
    const ctx = newContext(chat(), {
      target: { timeouts: { connect_ms: 1_000, first_byte_ms: 200, idle_ms: 5_000, total_ms: 10_000 } },
    });
    const res = await send(ctx);
    expect(res.status).toBe(504);
    expect(json(res)).toMatchObject({ error: { code: 'AIGW_UPSTREAM_TIMEOUT' } });
  });
});

describe('relay: answers that are not what was asked', () => {
  it('does not pass on a redirect (a wrong base_url): 502 AIGW_UPSTREAM_PROTOCOL', async () => {
    mock.nextFault({
      kind: 'status',
      status: 302,
      headers: { location: 'https://elsewhere.example/' },
      body: {},
    });
    const ctx = newContext(chat());
    const res = await send(ctx);
    expect(res.status).toBe(502);
    expect(res.headers.location).toBeUndefined();
    expect(json(res)).toMatchObject({ error: { code: 'AIGW_UPSTREAM_PROTOCOL' } });
    expect(ctx.outcome).toMatchObject({ upstream_status: 302, end: 'upstream_error' });
  });

  it('answers 502 when a 200 body is not JSON', async () => {
    mock.nextFault({ kind: 'status', status: 200, body: 'surprise, plain text' });
    const ctx = newContext(chat());
    const res = await send(ctx);
    expect(res.status).toBe(502);
    expect(json(res)).toMatchObject({ error: { code: 'AIGW_UPSTREAM_PROTOCOL' } });
  });

  it('answers 502 when a stream request gets JSON or plain text instead of events', async () => {
    mock.nextFault({ kind: 'status', status: 200, body: { object: 'chat.completion', choices: [] } });
    const asJson = await send(newContext(chat({ stream: true })));
    expect(asJson.status).toBe(502);
    expect(json(asJson)).toMatchObject({ error: { code: 'AIGW_UPSTREAM_PROTOCOL' } });

    mock.nextFault({ kind: 'status', status: 200, body: 'no events here' });
    const asText = await send(newContext(chat({ stream: true })));
    expect(asText.status).toBe(502);
    expect(json(asText)).toMatchObject({ error: { code: 'AIGW_STREAM_BROKEN' } });
  });

  it('does not echo an HTML error page', async () => {
    mock.nextFault({ kind: 'status', status: 502, body: '<html><body>nginx: bad gateway</body></html>' });
    const res = await send(newContext(chat()));
    expect(res.status).toBe(502);
    expect(json(res)).toEqual({
      error: {
        message: 'the provider answered HTTP 502',
        type: 'server_error',
        code: 'AIGW_UPSTREAM_ERROR',
        param: null,
      },
    });
  });
});

describe('relay: reading the request and running the policies', () => {
  it.each([
    ['malformed JSON', '{"model": "fast",', {}, 400, 'AIGW_INVALID_JSON'],
    ['a JSON array', '[]', {}, 400, 'AIGW_BAD_REQUEST'],
    ['no messages', '{"model":"fast"}', {}, 400, 'AIGW_BAD_REQUEST'],
    [
      'a text body',
      JSON.stringify(chat()),
      { 'content-type': 'text/plain' },
      415,
      'AIGW_UNSUPPORTED_MEDIA_TYPE',
    ],
    ['invalid UTF-8', Buffer.from([0x7b, 0xc3, 0x28, 0x7d]), {}, 400, 'AIGW_INVALID_UTF8'],
    [
      'a body over max_body_bytes, chunked',
      JSON.stringify(chat({ pad: 'x'.repeat(LIMITS.max_body_bytes) })),
      { 'transfer-encoding': 'chunked' },
      413,
      'AIGW_BODY_TOO_LARGE',
    ],
  ] as const)(
    'refuses %s before any policy or provider call, and records why',
    async (_case, body, headers, status, code) => {
      let policyRan = false;
      const ticket = contexts.issue({
        plugin: 'ai-router',
        priority: 750,
        apply: () => {
          policyRan = true;
          return undefined;
        },
      });
      const res = await rawRequest(`http://127.0.0.1:${relay.port}/v1/chat/completions`, {
        method: 'POST',
        headers: { [CONTEXT_HEADER]: ticket.id, 'content-type': 'application/json', ...headers },
        body,
      });
      expect(res.status).toBe(status);
      expect(json(res)).toMatchObject({ error: { code } });
      const ctx = contexts.find([ticket.id]);
      expect(ctx?.refusal).toEqual({ status, code });
      expect(ctx?.settledAt).toBeDefined();
      expect(policyRan).toBe(false);
      expect(mock.requests).toHaveLength(0);
    },
  );

  it('refuses an unknown endpoint (404) and a wrong method (405 with allow)', async () => {
    const admitted = newContext(chat());
    const unknown = await send({ ...admitted, path: '/v1/nothing' });
    expect(unknown.status).toBe(404);
    const get = await send({ ...newContext(chat()), method: 'GET', body: undefined });
    expect(get.status).toBe(405);
    expect(get.headers.allow).toBe('POST');
    expect(mock.requests).toHaveLength(0);
  });

  it('runs the policies of every ticket, highest priority first, whether the tickets come as lines or joined', async () => {
    for (const joined of [true, false]) {
      const order: string[] = [];
      const issue = (plugin: string, priority: number) =>
        contexts.issue({ plugin, priority, apply: () => void order.push(plugin) }).id;
      const router = newContext(chat());
      // Kong adds each plugin's ticket in priority order; here they arrive shuffled.
      const ids = [
        issue('ai-fallback', 730),
        router.id,
        issue('ai-semantic-cache', 760),
        issue('ai-budget', 740),
      ];
      const res = await new Promise<{ status: number }>((resolve, reject) => {
        const req = request(`http://127.0.0.1:${relay.port}/v1/chat/completions`, {
          method: 'POST',
          headers: { [CONTEXT_HEADER]: joined ? ids.join(', ') : ids, 'content-type': 'application/json' },
        });
        req.on('response', (r) => r.resume().on('end', () => resolve({ status: r.statusCode ?? 0 })));
        req.on('error', reject);
        req.end(JSON.stringify(chat()));
      });
      expect(res.status).toBe(200);
      expect(order).toEqual(['ai-semantic-cache', 'ai-budget', 'ai-fallback']); // ai-router (750) ran between
      expect(router.ctx?.policies.map((p) => p.priority)).toEqual([760, 750, 740, 730]);
      expect(router.ctx?.pdkCalls).toBe(0);
    }
    expect(mock.requests).toHaveLength(2);
  });

  it('lets a policy answer the request itself (no later policy, no provider call)', async () => {
    let laterRan = false;
    const hit = contexts.issue({
      plugin: 'ai-semantic-cache',
      priority: 760,
      apply: () => ({ status: 200, body: { object: 'chat.completion', cached: true } }),
    });
    const later = contexts.issue({
      plugin: 'ai-budget',
      priority: 740,
      apply: () => {
        laterRan = true;
        return undefined;
      },
    });
    const res = await rawRequest(`http://127.0.0.1:${relay.port}/v1/chat/completions`, {
      headers: { [CONTEXT_HEADER]: `${later.id},${hit.id}` },
      body: chat(),
    });
    expect(res.status).toBe(200);
    expect(json(res)).toEqual({ object: 'chat.completion', cached: true });
    expect(laterRan).toBe(false);
    expect(contexts.find([hit.id])?.settledAt).toBeDefined();
    expect(mock.requests).toHaveLength(0);
  });

  it('answers a policy’s GatewayError in OpenAI shape with its status and headers', async () => {
    const ticket = contexts.issue({
      plugin: 'ai-budget',
      priority: 740,
      apply: () => {
        throw new GatewayError('AIGW_STORE_UNAVAILABLE', 'budget store down', {
          headers: { 'retry-after': '7' },
        });
      },
    });
    const res = await rawRequest(`http://127.0.0.1:${relay.port}/v1/chat/completions`, {
      headers: { [CONTEXT_HEADER]: ticket.id },
      body: chat(),
    });
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('7');
    expect(json(res)).toMatchObject({
      error: { code: 'AIGW_STORE_UNAVAILABLE', message: 'budget store down' },
    });
    expect(mock.requests).toHaveLength(0);
  });
});

describe('relay: who may call it', () => {
  it.each([
    ['no context header', undefined],
    ['an unknown context id', 'not-a-real-context-id'],
  ])('refuses a request with %s: 403 in OpenAI shape, no provider call', async (_case, id) => {
    const res = await rawRequest(`http://127.0.0.1:${relay.port}/v1/chat/completions`, {
      method: 'POST',
      headers: id ? { [CONTEXT_HEADER]: id } : {},
      body: chat(),
    });
    expect(res.status).toBe(403);
    expect(json(res)).toEqual({
      error: {
        message: expect.any(String),
        type: 'permission_error',
        code: 'AIGW_CONTEXT_REQUIRED',
        param: null,
      },
    });
    expect(mock.requests).toHaveLength(0);
  });

  it('refuses a context that was already used', async () => {
    const ctx = newContext(chat());
    expect((await send(ctx)).status).toBe(200);
    const again = await send(ctx);
    expect(again.status).toBe(403);
    expect(mock.requests).toHaveLength(1);
  });

  it('answers 500 AIGW_NO_ROUTE when no plugin chose a target, and settles the context', async () => {
    const ctx = newContext(chat(), { route: false });
    const res = await send(ctx);
    expect(res.status).toBe(500);
    expect(json(res)).toMatchObject({
      error: {
        code: 'AIGW_NO_ROUTE',
        message: 'no target chosen for this request: enable ai-router on the route',
      },
    });
    await settled(ctx);
    expect(mock.requests).toHaveLength(0);
  });

  it('refuses an endpoint the provider does not serve with 400', async () => {
    const ctx = newContext(undefined, { endpoint: 'models' });
    const res = await send(ctx);
    expect(res.status).toBe(400);
    expect(json(res)).toMatchObject({ error: { code: 'AIGW_UNSUPPORTED_FEATURE' } });
    expect(ctx.outcome).toMatchObject({ end: 'rejected', status: 400 });
    expect(mock.requests).toHaveLength(0);
  });
});

describe('relay: client goes away', () => {
  it('aborts the upstream stream and records client_aborted', async () => {
    mock.setAnswer('one two three four five six seven eight nine ten eleven twelve');
    mock.nextFault({ kind: 'chunk_delay', ms: 150 });
    const ctx = newContext(chat({ stream: true }));
    await abortAfterFirstChunk(ctx);
    const abortedAt = Date.now();
    await settled(ctx);

    // The full stream takes ~2 s; the relay only settles once it has left the upstream read
    // loop, so settling right away means the upstream call was cut.
    expect(Date.now() - abortedAt).toBeLessThan(300);
    expect(ctx.outcome).toMatchObject({
      end: 'client_aborted',
      status: 200,
      stream: true,
      usage_source: 'counted',
    });
    expect(ctx.outcome!.latency_ms).toBeLessThan(1_000);
  });

  it('aborts a JSON call waiting for the provider and records 499', async () => {
    mock.nextFault({ kind: 'latency', ms: 2_000 });
    const ctx = newContext(chat());
    const req = request(`http://127.0.0.1:${relay.port}${ctx.path}`, {
      method: 'POST',
      headers: { [CONTEXT_HEADER]: ctx.id, 'content-type': 'application/json' },
    });
    req.on('error', () => {});
    req.end(JSON.stringify(ctx.body));
    await new Promise((r) => setTimeout(r, 150));
    req.destroy();
    await settled(ctx, 1_000);
    expect(ctx.outcome).toMatchObject({ end: 'client_aborted', status: 499 });
    expect(ctx.outcome!.usage).toBeUndefined();
  });

  it('leaves nothing in flight after answers, provider errors, cut streams and clients gone', () => {
    // Every test of this file used target(); each attempt it started has ended.
    expect(load.view(target())).toMatchObject({ inFlight: 0 });
    expect(load.view(target()).ttftMs).toBeGreaterThan(0);
  });
});

describe('relay: secrets', () => {
  it('sends the key upstream but never shows it in a response or a log line, nor prompts or answers', async () => {
    logLines.length = 0;
    mock.setAnswer(ANSWER);
    const responses: RawResponse[] = [];
    responses.push(await send(newContext(chat())));
    responses.push(await send(newContext(chat({ stream: true }))));
    mock.nextFault({ kind: 'cut_stream', afterChunks: 2 });
    responses.push(await send(newContext(chat({ stream: true }))));
    // A wrong key: the provider's 401 echoes part of it.
    const wrongKey = 'sk-proj-WrongKeyForTheRelayTest987654321';
    const wrong = newContext(chat(), { target: { api_key: wrongKey } });
    responses.push(await send(wrong));
    await settled(wrong);

    expect(mock.requests.map((r) => r.headers.authorization)).toEqual([
      `Bearer ${KEY}`,
      `Bearer ${KEY}`,
      `Bearer ${KEY}`,
      `Bearer ${wrongKey}`,
    ]);
    expect(responses[3]!.status).toBe(401);
    expect(json(responses[3]!)).toMatchObject({
      error: { message: expect.stringContaining('Incorrect API key') },
    });

    const keyParts = [KEY, wrongKey, KEY.slice(0, 12), KEY.slice(-8), wrongKey.slice(-4), '****'];
    for (const res of responses) {
      const whole = res.text + JSON.stringify(res.headers);
      for (const part of keyParts) expect(whole).not.toContain(part);
    }

    expect(logLines.length).toBeGreaterThanOrEqual(4);
    const exchanges = logLines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'relay exchange');
    expect(exchanges).toHaveLength(4);
    expect(exchanges[0]).toMatchObject({
      level: 'debug',
      component: 'relay',
      request_id: expect.any(String),
    });
    for (const line of logLines) {
      for (const part of keyParts) expect(line).not.toContain(part);
      expect(line).not.toContain('PROMPT-MARKER');
      expect(line).not.toContain('ANSWER-MARKER');
    }
  });
});

/** Client that reads the first body chunk, then hangs up. */
function abortAfterFirstChunk(ctx: Admitted): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(`http://127.0.0.1:${relay.port}${ctx.path}`, {
      method: 'POST',
      headers: { [CONTEXT_HEADER]: ctx.id, 'content-type': 'application/json' },
    });
    req.on('response', (res) => {
      res.once('data', () => {
        req.destroy();
        resolve();
      });
    });
    req.on('error', (err) => (ctx.settled ? undefined : reject(err)));
    req.end(JSON.stringify(ctx.body));
  });
}

/** A loopback port with nothing listening on it. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}
