import { Agent, request } from 'node:http';
import OpenAI from 'openai';
import { type ProviderMock, startAnthropicMock, startOpenAIMock } from '../../support/providers';
import { parseSse, rawRequest } from '../../support/providers/raw-http';

interface Provider {
  name: string;
  start(options: { chunkDelayMs?: number }): Promise<ProviderMock>;
  path: string;
  headers: Record<string, string>;
  body(stream: boolean): Record<string, unknown>;
  /** The frame that ends a clean stream. */
  terminator: RegExp;
  /** The error body's type field for a status. */
  errorType(body: unknown): string;
  usageIn(text: string): boolean;
}

const providers: Provider[] = [
  {
    name: 'OpenAI',
    start: startOpenAIMock,
    path: '/chat/completions',
    headers: { authorization: 'Bearer sk-any' },
    body: (stream) => ({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hello' }],
      ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
    }),
    terminator: /data: \[DONE\]\n\n$/,
    errorType: (body) => (body as { error: { type: string } }).error.type,
    usageIn: (text) => /"usage":\{/.test(text),
  },
  {
    name: 'Anthropic',
    start: startAnthropicMock,
    path: '/messages',
    headers: { 'x-api-key': 'sk-ant-any', 'anthropic-version': '2023-06-01' },
    body: (stream) => ({
      model: 'claude-3-5-haiku-latest',
      max_tokens: 100,
      messages: [{ role: 'user', content: 'hello' }],
      ...(stream ? { stream: true } : {}),
    }),
    terminator: /event: message_stop\ndata: \{"type":"message_stop"\}\n\n$/,
    errorType: (body) => (body as { type: string; error: { type: string } }).error.type,
    usageIn: (text) => /"usage":\{/.test(text),
  },
];

describe.each(providers)('$name mock faults', (provider) => {
  let mock: ProviderMock;

  beforeAll(async () => {
    mock = await provider.start({ chunkDelayMs: 1 });
  });
  afterEach(() => mock.reset());
  afterAll(() => mock.close());

  const call = (stream = false) =>
    rawRequest(`${mock.url}${provider.path}`, {
      method: 'POST',
      headers: provider.headers,
      body: provider.body(stream),
    });

  describe('status', () => {
    it('answers 429 with the given headers and the provider error body by default', async () => {
      mock.nextFault({
        kind: 'status',
        status: 429,
        headers: { 'retry-after': '7', 'x-ratelimit-remaining-tokens': '0' },
      });
      const res = await call();

      expect(res.status).toBe(429);
      expect(res.headers['retry-after']).toBe('7');
      expect(res.headers['x-ratelimit-remaining-tokens']).toBe('0');
      expect(res.headers['content-type']).toBe('application/json');
      expect(provider.errorType(JSON.parse(res.text))).toBe(
        provider.name === 'OpenAI' ? 'requests' : 'rate_limit_error',
      );
    });

    it.each([
      [500, { OpenAI: 'server_error', Anthropic: 'api_error' }],
      [503, { OpenAI: 'server_error', Anthropic: 'api_error' }],
      [529, { OpenAI: 'server_error', Anthropic: 'overloaded_error' }],
      [401, { OpenAI: 'invalid_request_error', Anthropic: 'authentication_error' }],
    ])('gives %i the provider error type', async (status, types) => {
      mock.nextFault({ kind: 'status', status });
      const res = await call();

      expect(res.status).toBe(status);
      expect(provider.errorType(JSON.parse(res.text))).toBe(types[provider.name as keyof typeof types]);
    });

    it('sends a given body as is', async () => {
      mock.nextFault({ kind: 'status', status: 502, body: '<html>bad gateway</html>' });
      const res = await call();

      expect(res.status).toBe(502);
      expect(res.text).toBe('<html>bad gateway</html>');
      expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
    });

    it('answers normally with extra headers for a 2xx status without body', async () => {
      mock.setFault({ kind: 'status', status: 200, headers: { 'x-extra': 'yes' } });
      const json = await call();
      const sse = await call(true);

      expect(json.status).toBe(200);
      expect(json.headers['x-extra']).toBe('yes');
      expect(provider.usageIn(json.text)).toBe(true);
      expect(sse.headers['x-extra']).toBe('yes');
      expect(sse.text).toMatch(provider.terminator);
    });
  });

  describe('queueing', () => {
    it('applies queued faults to the next requests in order, then answers normally', async () => {
      mock.nextFault({ kind: 'status', status: 500 });
      mock.nextFault({ kind: 'status', status: 503 });
      const statuses = [];
      for (let i = 0; i < 3; i++) statuses.push((await call()).status);

      expect(statuses).toEqual([500, 503, 200]);
      expect(mock.requests).toHaveLength(3);
    });

    it('applies a standing fault to every request until cleared', async () => {
      mock.setFault({ kind: 'status', status: 503 });
      const first = await call();
      const second = await call();
      mock.setFault(undefined);
      const third = await call();

      expect([first.status, second.status, third.status]).toEqual([503, 503, 200]);
    });

    it('lets a queued fault win over a standing one for its request', async () => {
      mock.setFault({ kind: 'status', status: 503 });
      mock.nextFault({ kind: 'status', status: 429 });

      expect((await call()).status).toBe(429);
      expect((await call()).status).toBe(503);
    });

    it('forgets faults, answer and requests on reset', async () => {
      mock.setFault({ kind: 'status', status: 503 });
      mock.nextFault({ kind: 'reset' });
      mock.setAnswer('fixed');
      await call();
      mock.reset();

      expect(mock.requests).toEqual([]);
      const res = await call();
      expect(res.status).toBe(200);
      expect(res.text).not.toContain('"fixed"');
    });
  });

  describe('reset', () => {
    it('destroys the connection before any response byte', async () => {
      mock.nextFault({ kind: 'reset' });
      const res = await call();

      expect(res.status).toBe(0);
      expect(res.chunks).toEqual([]);
      expect(res.error?.code).toBe('ECONNRESET');
      expect(mock.requests).toHaveLength(1);
    });
  });

  describe('timing', () => {
    it('latency delays the response headers', async () => {
      mock.nextFault({ kind: 'latency', ms: 150 });
      const res = await call();

      expect(res.status).toBe(200);
      expect(res.headersAt - res.sentAt).toBeGreaterThanOrEqual(140);
    });

    it.each([false, true])(
      'slow_first_byte sends headers at once and the body later (stream: %s)',
      async (stream) => {
        mock.nextFault({ kind: 'slow_first_byte', ms: 200 });
        const res = await call(stream);

        expect(res.status).toBe(200);
        expect(res.headersAt - res.sentAt).toBeLessThan(100);
        expect(res.chunks[0]!.at - res.sentAt).toBeGreaterThanOrEqual(190);
        expect(res.complete).toBe(true);
      },
    );

    it('chunk_delay spaces the SSE chunks', async () => {
      mock.nextFault({ kind: 'chunk_delay', ms: 60 });
      const res = await call(true);
      const frames = parseSse(res.text).length;
      const spread = res.chunks.at(-1)!.at - res.chunks[0]!.at;

      expect(frames).toBeGreaterThan(3);
      expect(spread).toBeGreaterThanOrEqual((frames - 1) * 60 * 0.8);
    });
  });

  describe('cut_stream', () => {
    it('sends N chunks then drops the connection without the terminator', async () => {
      mock.nextFault({ kind: 'cut_stream', afterChunks: 2 });
      const res = await call(true);

      expect(res.status).toBe(200);
      expect(res.complete).toBe(false);
      expect(parseSse(res.text)).toHaveLength(2);
      expect(res.text).not.toMatch(provider.terminator);
      expect(res.text).not.toContain('[DONE]');
      expect(res.text).not.toContain('message_stop');
    });

    it('never sends the terminator even when N covers every chunk', async () => {
      mock.nextFault({ kind: 'cut_stream', afterChunks: 1000 });
      const res = await call(true);

      expect(res.complete).toBe(false);
      expect(res.text).not.toMatch(provider.terminator);
    });

    it('sends half of a JSON answer then drops the connection', async () => {
      mock.nextFault({ kind: 'cut_stream', afterChunks: 0 });
      const res = await call();

      expect(res.status).toBe(200);
      expect(res.complete).toBe(false);
      const length = Number(res.headers['content-length']);
      expect(Buffer.byteLength(res.text)).toBe(Math.floor(length / 2));
      expect(() => JSON.parse(res.text)).toThrow();
    });
  });

  describe('no_usage', () => {
    it('omits usage from a JSON answer', async () => {
      mock.nextFault({ kind: 'no_usage' });
      const res = await call();

      expect(res.status).toBe(200);
      expect(JSON.parse(res.text)).not.toHaveProperty('usage');
    });

    it('omits usage from a stream that still ends cleanly', async () => {
      const normal = await call(true);
      mock.nextFault({ kind: 'no_usage' });
      const res = await call(true);

      expect(provider.usageIn(normal.text)).toBe(true);
      expect(provider.usageIn(res.text)).toBe(false);
      expect(res.complete).toBe(true);
      expect(res.text).toMatch(provider.terminator);
    });
  });

  it('combines a standing fault with a queued fault of another kind', async () => {
    mock.setFault({ kind: 'no_usage' });
    mock.nextFault({ kind: 'cut_stream', afterChunks: 1000 });
    const res = await call(true);

    expect(provider.usageIn(res.text)).toBe(false);
    expect(res.complete).toBe(false);
  });
});

describe('OpenAI mock faults seen through the official client', () => {
  let mock: ProviderMock;
  let client: OpenAI;

  beforeAll(async () => {
    mock = await startOpenAIMock({ chunkDelayMs: 1 });
    client = new OpenAI({ apiKey: 'sk-any', baseURL: mock.url, maxRetries: 0 });
  });
  afterEach(() => mock.reset());
  afterAll(() => mock.close());

  const ask = () =>
    client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

  it('surfaces 429 as RateLimitError with the retry headers', async () => {
    mock.nextFault({
      kind: 'status',
      status: 429,
      headers: {
        'retry-after': '2',
        'x-ratelimit-remaining-requests': '0',
        'x-ratelimit-reset-requests': '2s',
      },
    });
    const error = await ask().catch((e: unknown) => e);

    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    const rateLimit = error as InstanceType<typeof OpenAI.RateLimitError>;
    expect(rateLimit.code).toBe('rate_limit_exceeded');
    expect(rateLimit.headers.get('retry-after')).toBe('2');
    expect(rateLimit.headers.get('x-ratelimit-remaining-requests')).toBe('0');
  });

  it('surfaces a reset as a connection error', async () => {
    mock.nextFault({ kind: 'reset' });
    await expect(ask()).rejects.toBeInstanceOf(OpenAI.APIConnectionError);
  });

  it('lets the client see a cut stream fail after the chunks it got', async () => {
    mock.nextFault({ kind: 'cut_stream', afterChunks: 3 });
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    const received: unknown[] = [];
    const consume = async () => {
      for await (const chunk of stream) received.push(chunk);
    };

    await expect(consume()).rejects.toThrow();
    expect(received).toHaveLength(3);
  });
});

describe('closing', () => {
  it('closes promptly with a stream in flight and an idle keep-alive connection', async () => {
    const mock = await startOpenAIMock({ chunkDelayMs: 10_000 });
    const idleAgent = new Agent({ keepAlive: true });
    // A finished request whose keep-alive connection stays open: server.close() alone would wait for it.
    await new Promise<void>((resolve) => {
      request(`${mock.url}/models`, { agent: idleAgent }, (res) => res.resume().on('end', resolve)).end();
    });
    // A stream that would take a minute to finish; close the mock once it has started.
    const streamEnded = new Promise<boolean>((resolve) => {
      const req = request(
        `${mock.url}/chat/completions`,
        { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } },
        (res) => {
          res.once('data', () => void mock.close());
          res.on('end', () => resolve(true));
          res.on('error', () => resolve(false));
          res.on('close', () => resolve(false));
        },
      );
      req.on('error', () => resolve(false));
      req.end(JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }], stream: true }));
    });

    const started = Date.now();
    const completedCleanly = await streamEnded;
    await mock.close();

    expect(completedCleanly).toBe(false);
    expect(Date.now() - started).toBeLessThan(2000);
    idleAgent.destroy();
  });

  it('can be closed twice', async () => {
    const mock = await startAnthropicMock();
    await mock.close();
    await expect(mock.close()).resolves.toBeUndefined();
  });
});
