/**
 * The end-to-end scenarios, as a user meets the gateway: the official `openai` client (and raw
 * HTTP for bad input) against a gateway that something started. The same scenarios run on
 *
 *   - the dev gateway (Kong emulator → real suite server process → relay → provider mock):
 *     spec/e2e/gateway.test.ts, part of `npm test`;
 *   - a real Kong 3.9.3 (the kong-lab build): spec/kong/scenarios.test.ts, `npm run test:kong`.
 *
 * Where real Kong answers differently from the emulator by Kong's documented behaviour, the
 * scenario accepts both and says so; each such difference is listed in docs/kong-compat.md.
 */
import OpenAI from 'openai';
import { type ProviderMock, rawRequest, startOpenAIMock } from '../support/providers';
import { startRedis } from '../support/redis';

export const KEY = 'sk-e2e-provider-key-0123456789';

/** A gateway some harness started: the emulator's dev gateway, or real Kong. */
export interface GatewayHandle {
  /** Proxy base URL, e.g. http://127.0.0.1:8000 (routes live under /a/v1 and /b/v1). */
  url: string;
  /** Who answers: the Kong emulator ('dev') or a real Kong ('kong'). */
  kind: 'dev' | 'kong';
  /** Pid of the suite server process Kong started (waits for one to be up). */
  suiteServerPid(): number | Promise<number>;
  /** Recent gateway logs, for failure messages. */
  diagnostics?(): string;
  close(): Promise<void>;
}

/** Declarative config (DB-less kong.yml) of the scenarios, for a relay on `relayPort`. */
export type ScenarioConfig = (relayPort: number) => Record<string, unknown>;

/**
 * Starts a gateway in front of `mock` with `config`; `env` holds AIGW_* settings for the suite
 * server (the harness adds AIGW_RELAY_PORT and whatever else it needs).
 */
export type StartGateway = (
  mock: ProviderMock,
  env: Record<string, string>,
  config: ScenarioConfig,
) => Promise<GatewayHandle>;

/** Two routes, each with its own ai-router config, and the other suite plugins on the service. */
export function scenarioConfig(mockUrl: string): ScenarioConfig {
  const target = (name: string) => ({ name, model: 'gpt-4o-mini', base_url: mockUrl, api_key: KEY });
  const router = (name: string) => ({ name: 'ai-router', config: { targets: [target(name)] } });
  return (relayPort) => ({
    _format_version: '3.0',
    services: [
      {
        name: 'relay',
        url: `http://127.0.0.1:${relayPort}`,
        routes: [
          { name: 'a', paths: ['/a/v1'], strip_path: false, plugins: [router('target-a')] },
          { name: 'b', paths: ['/b/v1'], strip_path: false, plugins: [router('target-b')] },
          {
            name: 'cached',
            paths: ['/cached/v1'],
            strip_path: false,
            plugins: [router('target-c'), { name: 'ai-semantic-cache', config: { scope: 'global' } }],
          },
        ],
        plugins: [
          { name: 'ai-metrics' },
          {
            name: 'ai-budget',
            config: {
              limits: [
                { name: 'e2e-daily', scope: 'global', window: 'day', unit: 'tokens', limit: 100_000_000 },
              ],
            },
          },
          { name: 'ai-fallback' },
          { name: 'ai-semantic-cache' },
        ],
      },
    ],
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const chat = (content: string) => ({
  model: 'target-a',
  messages: [{ role: 'user' as const, content }],
});

export interface ScenarioOptions {
  /** Limit for starting a gateway (the hooks and the tests that start their own), default 60 s. */
  timeoutMs?: number;
}

export function describeGatewayScenarios(
  title: string,
  start: StartGateway,
  options: ScenarioOptions = {},
): void {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const startGateway = (mock: ProviderMock, env: Record<string, string> = {}) =>
    start(mock, { AIGW_LOG_LEVEL: 'warn', ...env }, scenarioConfig(mock.url));

  describe(`${title}: the official openai client`, () => {
    let mock: ProviderMock;
    let gateway: GatewayHandle;
    let client: OpenAI;

    beforeAll(async () => {
      mock = await startOpenAIMock({ apiKey: KEY });
      gateway = await startGateway(mock, { AIGW_MAX_BODY_BYTES: String(256 * 1024) });
      client = new OpenAI({
        baseURL: `${gateway.url}/a/v1`,
        apiKey: 'client-key-not-forwarded',
        maxRetries: 0,
      });
    }, timeoutMs);
    afterAll(async () => {
      await gateway?.close();
      await mock?.close();
    }, timeoutMs);
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

    it('replays a cached answer as a stream the SDK reads like the provider’s', async () => {
      const cached = new OpenAI({ baseURL: `${gateway.url}/cached/v1`, apiKey: 'client-key', maxRetries: 0 });
      const ask = async () => {
        const { data, response } = await cached.chat.completions
          .create({
            model: 'target-c',
            messages: [{ role: 'user', content: 'cache this answer' }],
            stream: true,
            stream_options: { include_usage: true },
          })
          .withResponse();
        let text = '';
        const chunks = [];
        for await (const c of data) {
          chunks.push(c);
          text += c.choices[0]?.delta.content ?? '';
        }
        return { text, chunks, status: response.headers.get('x-cache-status') };
      };
      const first = await ask();
      expect(first.status).toBe('MISS');
      expect(first.text).toMatch(/mock answer/);
      let hit = await ask();
      for (let i = 0; i < 100 && hit.status !== 'HIT'; i++) {
        await sleep(50); // the answer is stored once it has left
        hit = await ask();
      }
      expect(hit.status).toBe('HIT');
      expect(hit.text).toBe(first.text);
      expect(hit.chunks.filter((c) => c.choices[0]?.delta.content).length).toBeGreaterThan(1);
      expect(hit.chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason).toBe('stop');
      expect(hit.chunks[hit.chunks.length - 1]!.usage).toEqual(first.chunks[first.chunks.length - 1]!.usage);
      const calls = mock.requests.length;
      await ask();
      expect(mock.requests.length).toBe(calls);
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

  describe(`${title}: faults of the suite server and of Redis`, () => {
    let mock: ProviderMock;
    beforeAll(async () => {
      mock = await startOpenAIMock({ apiKey: KEY });
    });
    afterAll(() => mock?.close());

    it(
      'kill -9 during traffic: in-flight requests fail visibly, Kong respawns the server, each route keeps its config',
      async () => {
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
          await sleep(100);
          mock.setFault({ kind: 'chunk_delay', ms: 150 });
          const streamOutcome = (async () => {
            const stream = await clientFor('a').chat.completions.create({
              ...chat('long answer'),
              stream: true,
            });
            let chunks = 0;
            try {
              for await (const _ of stream) chunks++;
              return { chunks, completed: true };
            } catch (err) {
              return { chunks, completed: false, err };
            }
          })();
          await sleep(400); // both are now inside the relay
          const pid = await gateway.suiteServerPid();
          process.kill(pid, 'SIGKILL');

          const stream = await streamOutcome;
          expect(stream.completed).toBe(false); // never a clean end after the kill
          const json = await jsonOutcome;
          expect(json.status === 200 && json.complete).toBe(false); // never a (partial) 200
          if (json.status !== 0) {
            // Kong answers the dead upstream itself: 502 with Kong's own body, not the OpenAI shape
            // (real Kong and the emulator alike; docs/kong-compat.md).
            expect(json.status).toBe(502);
            expect(JSON.parse(json.text)).toMatchObject({ message: expect.any(String) });
          }
          mock.setFault(undefined);

          // Kong respawns the server; later requests succeed with the right config.
          const deadline = Date.now() + 15_000;
          for (;;) {
            const res = await rawRequest(`${gateway.url}/b/v1/chat/completions`, {
              method: 'POST',
              body: { ...chat('back?'), model: 'target-b' },
            });
            if (res.status === 200) break;
            if (Date.now() > deadline) {
              const logs = gateway.diagnostics?.() ?? '';
              throw new Error(`server did not come back: last status ${res.status} ${res.text}\n${logs}`);
            }
            await sleep(250);
          }
          expect(await gateway.suiteServerPid()).not.toBe(pid);
          // Kong still holds the old server's instance ids; each must restart with its own route's config.
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
      },
      timeoutMs,
    );

    it(
      'Redis stopped mid-run: requests still answer and the server stays up',
      async () => {
        const redis = await startRedis();
        const gateway = await startGateway(mock, {
          AIGW_STORE: redis.url,
          AIGW_STORE_COMMAND_TIMEOUT_MS: '200',
        });
        try {
          const client = new OpenAI({ baseURL: `${gateway.url}/a/v1`, apiKey: 'x', maxRetries: 0 });
          const pid = await gateway.suiteServerPid();
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
          expect(await gateway.suiteServerPid()).toBe(pid);
        } finally {
          await gateway.close();
          await redis.destroy();
        }
      },
      timeoutMs,
    );
  });
}
