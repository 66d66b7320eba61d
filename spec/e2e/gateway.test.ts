/**
 * End to end, as a user runs it: the dev gateway (Kong emulator → real suite server process
 * → relay → provider mock) and the official `openai` client. Needs the build (`npm test`
 * runs it first).
 */
import OpenAI from 'openai';
import { type DevGateway, startDevGateway } from '../../scripts/dev-gateway';
import { type ProviderMock, rawRequest, startOpenAIMock } from '../support/providers';
import { freePort, startRedis } from '../support/redis';

const KEY = 'sk-e2e-provider-key-0123456789';

function declarative(mockUrl: string, relayPort: number) {
  const target = (name: string) => ({ name, model: 'gpt-4o-mini', base_url: mockUrl, api_key: KEY });
  const router = (name: string) => ({ name: 'ai-router', config: { targets: [target(name)] } });
  return {
    _format_version: '3.0',
    services: [
      {
        name: 'relay',
        url: `http://127.0.0.1:${relayPort}`,
        routes: [
          { name: 'a', paths: ['/a/v1'], strip_path: false, plugins: [router('target-a')] },
          { name: 'b', paths: ['/b/v1'], strip_path: false, plugins: [router('target-b')] },
        ],
        plugins: [
          { name: 'ai-metrics' },
          { name: 'ai-budget' },
          { name: 'ai-fallback' },
          { name: 'ai-semantic-cache' },
        ],
      },
    ],
  };
}

async function startGateway(mock: ProviderMock, env: NodeJS.ProcessEnv = {}): Promise<DevGateway> {
  const relayPort = await freePort();
  return startDevGateway({
    config: declarative(mock.url, relayPort),
    port: await freePort(),
    relayPort,
    mock: false,
    env: { ...process.env, AIGW_LOG_LEVEL: 'warn', ...env },
  });
}

const chat = (content: string) => ({ model: 'target-a', messages: [{ role: 'user' as const, content }] });

describe('e2e: the dev gateway with the official openai client', () => {
  let mock: ProviderMock;
  let gateway: DevGateway;
  let client: OpenAI;

  beforeAll(async () => {
    mock = await startOpenAIMock({ apiKey: KEY });
    gateway = await startGateway(mock, { AIGW_MAX_BODY_BYTES: String(256 * 1024) });
    client = new OpenAI({
      baseURL: `${gateway.url}/a/v1`,
      apiKey: 'client-key-not-forwarded',
      maxRetries: 0,
    });
  });
  afterAll(async () => {
    await gateway?.close();
    await mock?.close();
  });
  beforeEach(() => mock.reset());

  it('answers a completion and says which target answered', async () => {
    const { data, response } = await client.chat.completions.create(chat('hello there')).withResponse();
    expect(data.object).toBe('chat.completion');
    expect(data.choices[0]!.message.content).toMatch(/mock answer/);
    expect(data.usage).toMatchObject({ prompt_tokens: 2, completion_tokens: expect.any(Number) });
    expect(response.headers.get('x-ai-target')).toBe('target-a');
    // The provider got the configured key, never the client's.
    expect(mock.requests[0]!.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(JSON.stringify(mock.requests[0]!.headers)).not.toContain('client-key-not-forwarded');
  });

  it('streams chunk by chunk: the first chunk arrives long before the mock sends its last', async () => {
    const delay = 120;
    mock.setFault({ kind: 'chunk_delay', ms: delay });
    const arrivals: number[] = [];
    let text = '';
    const stream = await client.chat.completions.create({ ...chat('stream this please'), stream: true });
    for await (const chunk of stream) {
      arrivals.push(Date.now());
      text += chunk.choices[0]?.delta.content ?? '';
    }
    expect(text).toMatch(/mock answer/);
    // With every chunk held back until the end, all would arrive within a few ms of each other.
    const spread = arrivals[arrivals.length - 1]! - arrivals[0]!;
    expect(arrivals.length).toBeGreaterThan(5);
    expect(spread).toBeGreaterThanOrEqual((arrivals.length - 2) * delay * 0.7);
  });

  it('hides the usage chunk unless the client asks for it, and shows it when asked', async () => {
    const plain = await client.chat.completions.create({ ...chat('usage please'), stream: true });
    const plainChunks = [];
    for await (const c of plain) plainChunks.push(c);
    expect(plainChunks.every((c) => c.choices.length > 0)).toBe(true);

    const withUsage = await client.chat.completions.create({
      ...chat('usage please'),
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const c of withUsage) chunks.push(c);
    expect(chunks[chunks.length - 1]!.usage).toMatchObject({ prompt_tokens: 2 });
  });

  it('serves embeddings, legacy completions and the model list', async () => {
    const emb = await client.embeddings.create({ model: 'target-a', input: 'vector me' });
    expect(emb.data[0]!.embedding.length).toBeGreaterThan(0);
    const completion = await client.completions.create({
      model: 'target-a',
      prompt: 'Say hi',
      max_tokens: 5,
    });
    expect(completion.choices[0]!.text.length).toBeGreaterThan(0);
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['target-a']);
  });

  it('reads a body larger than Kong’s client body buffer', async () => {
    const big = 'word '.repeat(30_000); // ~150 KiB > 8 KiB buffer, < the 256 KiB limit
    const res = await client.chat.completions.create(chat(big));
    expect(res.choices[0]!.message.content).toMatch(/mock answer/);
  });

  it('surfaces a provider 429 as the SDK’s RateLimitError with retry-after', async () => {
    mock.nextFault({ kind: 'status', status: 429, headers: { 'retry-after': '7' } });
    const err = await client.chat.completions.create(chat('too many')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect((err as InstanceType<typeof OpenAI.RateLimitError>).headers.get('retry-after')).toBe('7');
  });

  it('ends a stream cut by the provider with an error, never a clean finish', async () => {
    mock.nextFault({ kind: 'cut_stream', afterChunks: 3 });
    const stream = await client.chat.completions.create({ ...chat('cut me off'), stream: true });
    const seen: string[] = [];
    const err = await (async () => {
      for await (const c of stream) seen.push(c.choices[0]?.delta.content ?? '');
    })().catch((e: unknown) => e);
    expect(seen.length).toBeGreaterThan(0);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(String((err as Error).message)).toMatch(/stream/i);
  });

  describe('bad input gets a clear error in OpenAI shape', () => {
    const url = () => `${gateway.url}/a/v1/chat/completions`;
    it.each([
      [
        'malformed JSON',
        { body: '{"model":', headers: { 'content-type': 'application/json' } },
        400,
        'AIGW_INVALID_JSON',
      ],
      [
        'a non-object body',
        { body: '["a"]', headers: { 'content-type': 'application/json' } },
        400,
        'AIGW_BAD_REQUEST',
      ],
      ['missing messages', { body: { model: 'target-a' } }, 400, 'AIGW_BAD_REQUEST'],
      [
        'a wrong content type',
        { body: 'hello', headers: { 'content-type': 'text/plain' } },
        415,
        'AIGW_UNSUPPORTED_MEDIA_TYPE',
      ],
      ['a body over the limit', { body: { ...chat('x'.repeat(300 * 1024)) } }, 413, 'AIGW_BODY_TOO_LARGE'],
      ['an unknown model', { body: { ...chat('hi'), model: 'gpt-9' } }, 404, 'AIGW_UNKNOWN_MODEL'],
    ])('%s', async (_name, request, status, code) => {
      const res = await rawRequest(url(), { method: 'POST', ...request });
      expect(res.status).toBe(status);
      expect(JSON.parse(res.text)).toMatchObject({
        error: { code, type: expect.any(String), message: expect.any(String) },
      });
    });

    it('invalid UTF-8 → 400 AIGW_INVALID_UTF8', async () => {
      const prefix = Buffer.from('{"model":"target-a","messages":[{"role":"user","content":"');
      const body = Buffer.concat([prefix, Buffer.from([0xff, 0xfe]), Buffer.from('"}]}')]);
      const res = await fetch(url(), {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json' },
      });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('AIGW_INVALID_UTF8');
    });

    it('the suite server survived all of it', async () => {
      const res = await client.chat.completions.create(chat('still alive?'));
      expect(res.choices[0]!.message.content).toMatch(/mock answer/);
    });
  });
});

describe('e2e: faults of the suite server and of Redis', () => {
  let mock: ProviderMock;
  beforeAll(async () => {
    mock = await startOpenAIMock({ apiKey: KEY });
  });
  afterAll(() => mock?.close());

  it('kill -9 during traffic: in-flight requests fail visibly, Kong respawns the server, each route keeps its config', async () => {
    const gateway = await startGateway(mock);
    try {
      const clientFor = (route: string) =>
        new OpenAI({ baseURL: `${gateway.url}/${route}/v1`, apiKey: 'x', maxRetries: 0 });
      // Warm both routes so Kong holds instance ids for both configs.
      for (const route of ['a', 'b']) {
        const r = await clientFor(route)
          .chat.completions.create({ ...chat('warm'), model: `target-${route}` })
          .withResponse();
        expect(r.response.headers.get('x-ai-target')).toBe(`target-${route}`);
      }

      // A JSON answer held back 2 s, then a stream of one chunk every 150 ms: both in flight.
      mock.nextFault({ kind: 'latency', ms: 2_000 });
      const jsonOutcome = rawRequest(`${gateway.url}/a/v1/chat/completions`, {
        method: 'POST',
        body: chat('json in flight'),
      });
      await new Promise((r) => setTimeout(r, 100));
      mock.setFault({ kind: 'chunk_delay', ms: 150 });
      const streamOutcome = (async () => {
        const stream = await clientFor('a').chat.completions.create({ ...chat('long answer'), stream: true });
        let chunks = 0;
        try {
          for await (const _ of stream) chunks++;
          return { chunks, completed: true };
        } catch (err) {
          return { chunks, completed: false, err };
        }
      })();
      await new Promise((r) => setTimeout(r, 400)); // both are now inside the relay
      const pid = gateway.kong.pluginServers.pid('ai-router')!;
      process.kill(pid, 'SIGKILL');

      const stream = await streamOutcome;
      expect(stream.completed).toBe(false); // never a clean end after the kill
      const json = await jsonOutcome;
      expect(json.status === 200 && json.complete).toBe(false); // never a (partial) 200
      if (json.status !== 0) expect(json.status).toBeGreaterThanOrEqual(500);
      mock.setFault(undefined);

      // Kong (the emulator) respawns the server; later requests succeed with the right config.
      const deadline = Date.now() + 15_000;
      for (;;) {
        const res = await rawRequest(`${gateway.url}/b/v1/chat/completions`, {
          method: 'POST',
          body: { ...chat('back?'), model: 'target-b' },
        });
        if (res.status === 200) break;
        if (Date.now() > deadline) throw new Error(`server did not come back: last status ${res.status}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(gateway.kong.pluginServers.pid('ai-router')).not.toBe(pid);
      for (const route of ['a', 'b', 'a', 'b']) {
        const r = await clientFor(route)
          .chat.completions.create({ ...chat('after'), model: `target-${route}` })
          .withResponse();
        expect(r.response.headers.get('x-ai-target')).toBe(`target-${route}`);
      }
    } finally {
      mock.setFault(undefined);
      await gateway.close();
    }
  }, 40_000);

  it('Redis stopped mid-run: requests still answer and the server stays up', async () => {
    const redis = await startRedis();
    const gateway = await startGateway(mock, { AIGW_STORE: redis.url, AIGW_STORE_COMMAND_TIMEOUT_MS: '200' });
    try {
      const client = new OpenAI({ baseURL: `${gateway.url}/a/v1`, apiKey: 'x', maxRetries: 0 });
      const pid = gateway.kong.pluginServers.pid('ai-router');
      await client.chat.completions.create(chat('before'));
      await redis.stop();
      for (let i = 0; i < 5; i++) {
        const started = Date.now();
        const res = await client.chat.completions.create(chat(`during ${i}`));
        expect(res.choices[0]!.message.content).toMatch(/mock answer/);
        expect(Date.now() - started).toBeLessThan(5_000); // hang detector, not a benchmark
      }
      await redis.start();
      await client.chat.completions.create(chat('after'));
      expect(gateway.kong.pluginServers.pid('ai-router')).toBe(pid);
    } finally {
      await gateway.close();
      await redis.destroy();
    }
  }, 40_000);
});
