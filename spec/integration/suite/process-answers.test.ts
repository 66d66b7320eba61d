/**
 * The suite server as Kong starts it (pluginServerDefs: five entries, the first with the
 * start_cmd; dist/lib/kong/main.js, build first with `npx tsc -p .`), through the Kong
 * emulator: JSON and SSE answers, the exact PDK round trips per request (a contract: a
 * change that adds a round trip must break these tests), and bad input refused by the
 * relay with OpenAI-shaped errors.
 *
 * Round trips observed (HandleEvent + PDK steps, all phases):
 *   ai-router (access)    2 = HandleEvent + service.request.add_header (its ticket)
 *   ai-budget (access)    2 = the same (a global limit needs no consumer lookup)
 *   ai-fallback (access)  2 = the same, for its own ticket
 *   ai-metrics (log)      2 = HandleEvent + log.serialize
 *   ai-semantic-cache     3 = HandleEvent + client.get_consumer (its default scope) + add_header
 *   → 4 per request on /pair (router + metrics), 11 on /all (the five plugins), whatever
 *   the answer: the relay reads and checks the body Kong proxies, so bad input costs no
 *   extra call.
 */
import type { DriverResponse, RequestStats } from '../../support/kong';
import {
  defaultAnswer,
  type ProviderMock,
  parseSse,
  sseJson,
  startOpenAIMock,
} from '../../support/providers';
import {
  chatBody,
  openAIError,
  postChat,
  type RealProcess,
  routerConfig,
  startRealProcess,
  until,
} from '../../support/suite';

const KEY = 'sk-proj-ProcessAnswersKey0123456789abcdefXYZ';
const MAX_BODY_BYTES = 150_000;
const PROMPT = 'Say hello';

let mock: ProviderMock;
let gw: RealProcess;

const router = () => ({
  name: 'ai-router',
  config: routerConfig(mock.url, [{ name: 'gpt-4o-mini', api_key: '{vault://env/AIGW_TEST_OPENAI_KEY}' }]),
});

beforeAll(async () => {
  mock = await startOpenAIMock({ apiKey: KEY, chunkDelayMs: 1 });
  gw = await startRealProcess({
    env: { AIGW_TEST_OPENAI_KEY: KEY },
    serverEnv: { AIGW_MAX_BODY_BYTES: String(MAX_BODY_BYTES) },
    routes: () => [
      { name: 'pair', path: '/pair', plugins: [router(), { name: 'ai-metrics' }] },
      {
        name: 'all',
        path: '/all',
        plugins: [
          { name: 'ai-semantic-cache' },
          router(),
          {
            name: 'ai-budget',
            config: { limits: [{ name: 'all', scope: 'global', window: 'day', unit: 'tokens', limit: 1e9 }] },
          },
          { name: 'ai-fallback' },
          { name: 'ai-metrics' },
        ],
      },
    ],
  });
  // Instances start on first use; warm both routes so the counts below are per request only.
  for (const prefix of ['/pair', '/all']) expect((await postChat(gw.kong, prefix)).status).toBe(200);
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await mock?.close();
});

beforeEach(() => mock.reset());

const answered = (method: string, phase = 'access') => ({ phase, method, outcome: 'answered' });

const METRICS = {
  roundTrips: 2,
  events: 1,
  steps: 1,
  calls: [answered('kong.log.serialize', 'log')],
  failures: [],
};

/** A plugin that only adds its ticket in access. */
const TICKET = {
  roundTrips: 2,
  events: 1,
  steps: 1,
  calls: [answered('kong.service.request.add_header')],
  failures: [],
};

/** ai-semantic-cache with its default scope asks Kong for the consumer before adding its ticket. */
const CACHE = {
  roundTrips: 3,
  events: 1,
  steps: 2,
  calls: [answered('kong.client.get_consumer'), answered('kong.service.request.add_header')],
  failures: [],
};

/** Round trips of a request on each route. */
const ROUND_TRIPS: Record<string, number> = { '/pair': 4, '/all': 11 };

/** Asserts the whole trace: plugins present, round trips, steps and the PDK calls in order. */
function expectTrace(stats: RequestStats, prefix = '/pair'): void {
  expect(stats.plugins).toEqual({
    'ai-router': TICKET,
    ...(prefix === '/all' ? { 'ai-semantic-cache': CACHE, 'ai-budget': TICKET, 'ai-fallback': TICKET } : {}),
    'ai-metrics': METRICS,
  });
  expect(stats.roundTrips).toBe(ROUND_TRIPS[prefix]);
  expect(stats.instanceRpcs).toBe(0);
}

describe('answers and round trips', () => {
  test.each(['/pair', '/all'])('JSON answer on %s: 2 round trips per plugin with a phase', async (prefix) => {
    const res = await postChat(gw.kong, prefix, chatBody({ messages: [{ role: 'user', content: PROMPT }] }));
    expect(res.status).toBe(200);
    expect(res.headers['x-ai-target']).toBe('gpt-4o-mini');
    expect(res.headers['x-ai-model']).toBe('gpt-4o-mini');
    const body = res.json<{ object: string; choices: Array<{ message: { content: string } }> }>();
    expect(body.object).toBe('chat.completion');
    expect(body.choices[0]?.message.content).toBe(defaultAnswer(PROMPT));
    expect(mock.requests).toHaveLength(1);
    const stats = await res.stats();
    expectTrace(stats, prefix);
    // The plugins' own count (in ai-metrics' log line) agrees with Kong's.
    const line = await until(
      () =>
        gw
          .output()
          .split('\n')
          .find((l) => l.includes('"msg":"ai request"') && l.includes(res.requestId)),
      'the ai-metrics log line',
    );
    expect(JSON.parse(line.slice(line.indexOf('{'))).kong_round_trips).toBe(ROUND_TRIPS[prefix]);
  });

  test.each(['/pair', '/all'])(
    'SSE answer on %s: chunk by chunk, [DONE] last, 2 round trips per plugin with a phase',
    async (prefix) => {
      const res = await postChat(
        gw.kong,
        prefix,
        chatBody({ stream: true, messages: [{ role: 'user', content: PROMPT }] }),
      );
      expect(res.status).toBe(200);
      expect(res.complete).toBe(true);
      expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
      expect(res.headers['x-ai-target']).toBe('gpt-4o-mini');
      const frames = parseSse(res.text());
      expect(frames.at(-1)?.data).toBe('[DONE]');
      const chunks = sseJson(res.text()) as Array<{
        object: string;
        choices: Array<{ delta?: { content?: string } }>;
      }>;
      expect(chunks.length).toBeGreaterThan(3);
      for (const c of chunks) expect(c.object).toBe('chat.completion.chunk');
      expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe(defaultAnswer(PROMPT));
      expectTrace(await res.stats(), prefix);
    },
  );

  test('GET /v1/models is answered by ai-router from its targets: 4 round trips, no provider call', async () => {
    const res = await gw.kong.request({ method: 'GET', path: '/pair/v1/models' });
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({
      object: 'list',
      data: [{ id: 'gpt-4o-mini', object: 'model', created: 0, owned_by: 'openai' }],
    });
    expectTrace(await res.stats());
    expect(mock.requests).toHaveLength(0);
  });
});

describe('bad input through Kong: refused by the relay, OpenAI error shape, no provider call', () => {
  const path = '/pair/v1/chat/completions';
  const json = { 'content-type': 'application/json' };

  async function refused(
    send: () => Promise<DriverResponse>,
    expected: { status: number; code: string; param?: string | null },
  ) {
    const res = await send();
    expect(res.status).toBe(expected.status);
    const error = openAIError(res);
    expect(error.code).toBe(expected.code);
    expect(error.param).toBe(expected.param ?? null);
    expectTrace(await res.stats());
    expect(mock.requests).toHaveLength(0);
    return { res, error };
  }

  test('malformed JSON → 400 AIGW_INVALID_JSON', async () => {
    await refused(
      () => gw.kong.request({ method: 'POST', path, headers: json, body: '{"model": "gpt-4o-mini",' }),
      {
        status: 400,
        code: 'AIGW_INVALID_JSON',
      },
    );
  });

  test('a JSON array → 400 AIGW_BAD_REQUEST', async () => {
    const { error } = await refused(() => postChat(gw.kong, '/pair', [chatBody()]), {
      status: 400,
      code: 'AIGW_BAD_REQUEST',
    });
    expect(error.message).toBe('request body must be a JSON object');
  });

  test('missing messages → 400 AIGW_BAD_REQUEST with param messages', async () => {
    await refused(() => postChat(gw.kong, '/pair', { model: 'gpt-4o-mini' }), {
      status: 400,
      code: 'AIGW_BAD_REQUEST',
      param: 'messages',
    });
  });

  test('invalid UTF-8 → 400 AIGW_INVALID_UTF8, and the message does not echo the input', async () => {
    const body = Buffer.concat([
      Buffer.from('{"model":"gpt-4o-mini","messages":[{"role":"user","content":"'),
      Buffer.from([0xc3, 0x28, 0xff]),
      Buffer.from('"}]}'),
    ]);
    const { res } = await refused(() => gw.kong.request({ method: 'POST', path, headers: json, body }), {
      status: 400,
      code: 'AIGW_INVALID_UTF8',
    });
    expect(res.text()).not.toContain('gpt-4o-mini');
  });

  test('wrong content type → 415 AIGW_UNSUPPORTED_MEDIA_TYPE', async () => {
    await refused(
      () =>
        gw.kong.request({
          method: 'POST',
          path,
          headers: { 'content-type': 'text/plain' },
          body: JSON.stringify(chatBody()),
        }),
      { status: 415, code: 'AIGW_UNSUPPORTED_MEDIA_TYPE' },
    );
  });

  const oversized = () => chatBody({ messages: [{ role: 'user', content: 'x'.repeat(MAX_BODY_BYTES) }] });

  test('a body over AIGW_MAX_BODY_BYTES with content-length → 413 before the body is parsed', async () => {
    await refused(() => postChat(gw.kong, '/pair', oversized()), {
      status: 413,
      code: 'AIGW_BODY_TOO_LARGE',
    });
  });

  test('a chunked body over AIGW_MAX_BODY_BYTES (no content-length) → 413 after reading it', async () => {
    await refused(
      () =>
        gw.kong.request({
          method: 'POST',
          path,
          headers: { ...json, 'transfer-encoding': 'chunked' },
          body: JSON.stringify(oversized()),
        }),
      { status: 413, code: 'AIGW_BODY_TOO_LARGE' },
    );
  });

  test('an unknown model → 404 AIGW_UNKNOWN_MODEL (route without default_target)', async () => {
    await refused(() => postChat(gw.kong, '/pair', chatBody({ model: 'no-such-model' })), {
      status: 404,
      code: 'AIGW_UNKNOWN_MODEL',
      param: 'model',
    });
  });

  test('GET /v1/chat/completions → 405 AIGW_METHOD_NOT_ALLOWED with allow: POST', async () => {
    const { res } = await refused(() => gw.kong.request({ method: 'GET', path }), {
      status: 405,
      code: 'AIGW_METHOD_NOT_ALLOWED',
    });
    expect(res.headers.allow).toBe('POST');
  });

  test('a 100 KiB valid body (above Kong’s 8 KiB client body buffer) → 200', async () => {
    const content = 'y'.repeat(100 * 1024);
    const res = await postChat(gw.kong, '/pair', chatBody({ messages: [{ role: 'user', content }] }));
    expect(res.status).toBe(200);
    expect(res.json<{ choices: Array<{ message: { content: string } }> }>().choices[0]?.message.content).toBe(
      defaultAnswer(content),
    );
    expect(mock.requests[0]?.body).toMatchObject({ messages: [{ role: 'user', content }] });
    expectTrace(await res.stats());
  });
});
