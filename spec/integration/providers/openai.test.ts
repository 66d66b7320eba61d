import OpenAI from 'openai';
import { countTokens, defaultAnswer, type ProviderMock, startOpenAIMock } from '../../support/providers';
import { parseSse, rawRequest, sseJson } from '../../support/providers/raw-http';

const API_KEY = 'sk-test-0123456789abcdef';

describe('OpenAI mock', () => {
  let mock: ProviderMock;
  let client: OpenAI;

  beforeAll(async () => {
    mock = await startOpenAIMock({ apiKey: API_KEY, chunkDelayMs: 1 });
    client = new OpenAI({ apiKey: API_KEY, baseURL: mock.url, maxRetries: 0 });
  });
  afterEach(() => mock.reset());
  afterAll(() => mock.close());

  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    rawRequest(`${mock.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}`, ...headers },
      body,
    });

  it('listens on loopback with the version path in its url', () => {
    expect(mock.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
  });

  describe('chat completions (JSON)', () => {
    it('answers in the chat.completion format with usage and real-looking headers', async () => {
      mock.setAnswer('Paris is the capital of France.');
      const { data, response } = await client.chat.completions
        .create({
          model: 'gpt-4o-mini',
          messages: [
            { role: 'system', content: 'Be brief.' },
            { role: 'user', content: 'What is the capital of France?' },
          ],
        })
        .withResponse();

      expect(data).toMatchObject({
        object: 'chat.completion',
        model: 'gpt-4o-mini',
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: 'Paris is the capital of France.', refusal: null },
            logprobs: null,
            finish_reason: 'stop',
          },
        ],
        usage: {
          prompt_tokens: 2 + 6,
          completion_tokens: 6,
          total_tokens: 14,
          prompt_tokens_details: { cached_tokens: 0 },
          completion_tokens_details: { reasoning_tokens: 0 },
        },
      });
      expect(data.id).toMatch(/^chatcmpl-\w+$/);
      expect(typeof data.system_fingerprint).toBe('string');
      expect(Math.abs(data.created - Date.now() / 1000)).toBeLessThan(5);

      expect(response.headers.get('content-type')).toBe('application/json');
      expect(response.headers.get('x-request-id')).toMatch(/^req_\w+$/);
      expect(response.headers.get('openai-processing-ms')).toMatch(/^\d+$/);
      expect(response.headers.get('x-ratelimit-limit-requests')).toMatch(/^\d+$/);
      expect(response.headers.get('x-ratelimit-limit-tokens')).toMatch(/^\d+$/);
      expect(response.headers.get('x-ratelimit-remaining-requests')).toMatch(/^\d+$/);
      expect(response.headers.get('x-ratelimit-remaining-tokens')).toMatch(/^\d+$/);
      expect(response.headers.get('x-ratelimit-reset-requests')).toMatch(/^(\d+m)?\d+(\.\d+)?m?s$/);
      expect(response.headers.get('x-ratelimit-reset-tokens')).toMatch(/^(\d+m)?\d+(\.\d+)?m?s$/);
    });

    it('records the request as received', async () => {
      await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });

      expect(mock.requests).toHaveLength(1);
      const [recorded] = mock.requests;
      expect(recorded).toMatchObject({
        method: 'POST',
        path: '/v1/chat/completions',
        body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] },
      });
      expect(recorded!.headers['authorization']).toBe(`Bearer ${API_KEY}`);
      expect(Math.abs(recorded!.receivedAt - Date.now())).toBeLessThan(5000);
    });

    it('derives a deterministic default answer from the last user message', async () => {
      const ask = (content: string) =>
        client.chat.completions.create({
          model: 'gpt-4o',
          messages: [
            { role: 'user', content: 'first question' },
            { role: 'assistant', content: 'an answer' },
            { role: 'user', content },
          ],
        });
      const a = await ask('what is two plus two');
      const b = await ask('what is two plus two');
      const c = await ask('what is three plus three');

      expect(a.choices[0]!.message.content).toBe(defaultAnswer('what is two plus two'));
      expect(b.choices[0]!.message.content).toBe(a.choices[0]!.message.content);
      expect(c.choices[0]!.message.content).not.toBe(a.choices[0]!.message.content);
      expect(a.choices[0]!.message.content).not.toContain('two plus two');
    });

    it.each([
      ['max_tokens', { max_tokens: 3 }],
      ['max_completion_tokens', { max_completion_tokens: 3 }],
    ])('truncates to %s and reports finish_reason length', async (_name, limit) => {
      mock.setAnswer('one two three four five');
      const res = await client.chat.completions.create({
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'count' }],
        ...limit,
      });

      expect(res.choices[0]!.message.content).toBe('one two three');
      expect(res.choices[0]!.finish_reason).toBe('length');
      expect(res.usage!.completion_tokens).toBe(3);
    });

    it('accepts content given as text parts', async () => {
      const res = await client.chat.completions.create({
        model: 'gpt-4o',
        messages: [{ role: 'user', content: [{ type: 'text', text: 'four words right here' }] }],
      });

      expect(res.usage!.prompt_tokens).toBe(4);
      expect(res.choices[0]!.message.content).toBe(defaultAnswer('four words right here'));
    });
  });

  describe('chat completions (stream)', () => {
    it('streams role chunk, one chunk per word, finish chunk, and no usage without include_usage', async () => {
      mock.setAnswer('Hello there friend');
      const stream = await client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'hi' }],
        stream: true,
      });
      const chunks = [];
      for await (const chunk of stream) chunks.push(chunk);

      expect(chunks.map((c) => c.choices[0]?.delta)).toEqual([
        { role: 'assistant', content: '', refusal: null },
        { content: 'Hello' },
        { content: ' there' },
        { content: ' friend' },
        {},
      ]);
      expect(chunks.map((c) => c.choices[0]?.finish_reason)).toEqual([null, null, null, null, 'stop']);
      expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
      for (const chunk of chunks) {
        expect(chunk.object).toBe('chat.completion.chunk');
        expect(chunk.model).toBe('gpt-4o-mini');
        expect('usage' in chunk).toBe(false);
      }
    });

    it('adds a choices:[] usage chunk last, and usage:null on the others, with include_usage', async () => {
      mock.setAnswer('a b c d');
      const stream = await client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'say four letters' }],
        stream: true,
        stream_options: { include_usage: true },
      });
      const chunks = [];
      for await (const chunk of stream) chunks.push(chunk);

      const last = chunks.at(-1)!;
      expect(last.choices).toEqual([]);
      expect(last.usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 });
      expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
      expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe('stop');
    });

    it('ends with finish_reason length when max_tokens cuts the answer', async () => {
      mock.setAnswer('one two three four');
      const res = await post('/chat/completions', {
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'x' }],
        stream: true,
        max_tokens: 2,
      });
      const chunks = sseJson(res.text) as {
        choices: { delta: { content?: string }; finish_reason: string | null }[];
      }[];

      expect(chunks.map((c) => c.choices[0]!.delta.content ?? '').join('')).toBe('one two');
      expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('length');
    });

    it('writes data frames in SSE format ending with [DONE] and the event-stream content type', async () => {
      mock.setAnswer('x y');
      const res = await post('/chat/completions', {
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'x' }],
        stream: true,
      });

      expect(res.status).toBe(200);
      expect(res.complete).toBe(true);
      expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
      expect(res.headers['x-request-id']).toMatch(/^req_/);
      expect(res.text).toMatch(/^data: \{.*\}\n\n/);
      expect(res.text.endsWith('data: [DONE]\n\n')).toBe(true);
      const frames = parseSse(res.text);
      expect(frames).toHaveLength(1 + 2 + 1 + 1);
      expect(frames.every((f) => f.event === undefined)).toBe(true);
    });
  });

  describe('chunk flushing', () => {
    it('sends each chunk on its own, so the first arrives long before the last is written', async () => {
      const slow = await startOpenAIMock({ chunkDelayMs: 40 });
      try {
        slow.setAnswer('one two three four');
        const res = await rawRequest(`${slow.url}/chat/completions`, {
          body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }], stream: true },
        });
        // role chunk, 4 words, finish chunk, [DONE]: 7 frames, 40 ms apart.
        const frameCount = parseSse(res.text).length;
        expect(frameCount).toBe(7);
        expect(res.chunks).toHaveLength(frameCount);
        expect(parseSse(res.chunks[0]!.data.toString())).toHaveLength(1);
        const spread = res.chunks.at(-1)!.at - res.chunks[0]!.at;
        expect(spread).toBeGreaterThanOrEqual(6 * 40 * 0.8);
      } finally {
        await slow.close();
      }
    });
  });

  describe('completions (legacy)', () => {
    it('answers in the text_completion format and honours max_tokens', async () => {
      mock.setAnswer('alpha beta gamma delta');
      const res = await client.completions.create({
        model: 'gpt-3.5-turbo-instruct',
        prompt: 'Say this is a test',
        max_tokens: 2,
      });

      expect(res).toMatchObject({
        object: 'text_completion',
        model: 'gpt-3.5-turbo-instruct',
        choices: [{ text: 'alpha beta', index: 0, logprobs: null, finish_reason: 'length' }],
        usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 },
      });
      expect(res.id).toMatch(/^cmpl-/);
    });

    it('defaults max_tokens to 16 like the real endpoint', async () => {
      mock.setAnswer(Array.from({ length: 20 }, (_, i) => `w${i}`).join(' '));
      const res = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'go' });

      expect(res.usage!.completion_tokens).toBe(16);
      expect(res.choices[0]!.finish_reason).toBe('length');
    });

    it('streams text chunks, a finish chunk and a usage chunk with include_usage', async () => {
      mock.setAnswer('a b');
      const stream = await client.completions.create({
        model: 'gpt-3.5-turbo-instruct',
        prompt: 'p',
        stream: true,
        stream_options: { include_usage: true },
      });
      const chunks = [];
      for await (const chunk of stream) chunks.push(chunk);

      expect(chunks.map((c) => c.choices[0]?.text)).toEqual(['a', ' b', '', undefined]);
      expect(chunks[2]!.choices[0]!.finish_reason).toBe('stop');
      expect(chunks[3]!.usage).toEqual({ prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 });
    });
  });

  describe('embeddings', () => {
    const cosine = (a: number[], b: number[]) => a.reduce((sum, v, i) => sum + v * b[i]!, 0);

    it('returns deterministic unit vectors of the model dimension, decoded by the client from base64', async () => {
      const res = await client.embeddings.create({
        model: 'text-embedding-3-small',
        input: 'The quick brown fox',
      });
      const again = await client.embeddings.create({
        model: 'text-embedding-3-small',
        input: 'The quick brown fox',
      });

      expect(mock.requests[0]!.body).toMatchObject({ encoding_format: 'base64' });
      expect(res).toMatchObject({
        object: 'list',
        model: 'text-embedding-3-small',
        usage: { prompt_tokens: 4, total_tokens: 4 },
      });
      const vector = res.data[0]!.embedding;
      expect(vector).toHaveLength(1536);
      expect(cosine(vector, vector)).toBeCloseTo(1, 5);
      expect(again.data[0]!.embedding).toEqual(vector);
    });

    it('gives the same numbers as floats and as base64', async () => {
      const asFloat = await client.embeddings.create({
        model: 'text-embedding-3-small',
        input: 'same text',
        encoding_format: 'float',
      });
      const asBase64 = await client.embeddings.create({
        model: 'text-embedding-3-small',
        input: 'same text',
      });

      expect(asBase64.data[0]!.embedding).toEqual(asFloat.data[0]!.embedding);
    });

    it('embeds each input of an array at its index and honours dimensions', async () => {
      const res = await client.embeddings.create({
        model: 'text-embedding-3-large',
        input: ['what is the capital of France', 'What is the capital of France?', 'how do I bake bread'],
        dimensions: 256,
        encoding_format: 'float',
      });

      expect(res.data.map((d) => d.index)).toEqual([0, 1, 2]);
      expect(res.data.every((d) => d.object === 'embedding' && d.embedding.length === 256)).toBe(true);
      const [a, b, c] = res.data.map((d) => d.embedding);
      expect(cosine(a!, b!)).toBeCloseTo(1, 5);
      expect(cosine(a!, c!)).toBeLessThan(0.5);
    });

    it('rates texts sharing words as more similar than unrelated texts', async () => {
      const res = await client.embeddings.create({
        model: 'text-embedding-3-small',
        input: ['capital of France', 'capital of Germany', 'chocolate cake recipe'],
        encoding_format: 'float',
      });
      const [france, germany, cake] = res.data.map((d) => d.embedding);

      expect(cosine(france!, germany!)).toBeGreaterThan(cosine(france!, cake!));
    });

    it('uses 3072 dimensions for text-embedding-3-large by default', async () => {
      const res = await client.embeddings.create({
        model: 'text-embedding-3-large',
        input: 'x',
        encoding_format: 'float',
      });
      expect(res.data[0]!.embedding).toHaveLength(3072);
    });

    it('rejects an empty input with 400', async () => {
      const res = await post('/embeddings', { model: 'text-embedding-3-small', input: '' });
      expect(res.status).toBe(400);
      expect(JSON.parse(res.text).error.type).toBe('invalid_request_error');
    });
  });

  describe('models', () => {
    it('lists models in the list format', async () => {
      const page = await client.models.list();
      const models = page.data;

      expect(models.length).toBeGreaterThan(0);
      expect(models.map((m) => m.id)).toContain('gpt-4o-mini');
      for (const model of models) {
        expect(model).toEqual({
          id: expect.any(String),
          object: 'model',
          created: expect.any(Number),
          owned_by: 'system',
        });
      }
    });

    it('retrieves one model and answers 404 model_not_found for an unknown one', async () => {
      await expect(client.models.retrieve('gpt-4o')).resolves.toMatchObject({
        id: 'gpt-4o',
        object: 'model',
      });
      await expect(client.models.retrieve('no-such-model')).rejects.toMatchObject({
        status: 404,
        code: 'model_not_found',
      });
    });
  });

  describe('auth and bad input', () => {
    it('answers 401 without an Authorization header', async () => {
      const res = await rawRequest(`${mock.url}/chat/completions`, {
        body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] },
      });

      expect(res.status).toBe(401);
      expect(JSON.parse(res.text)).toEqual({
        error: {
          message: expect.stringContaining("You didn't provide an API key"),
          type: 'invalid_request_error',
          param: null,
          code: null,
        },
      });
    });

    it('answers 401 invalid_api_key for a wrong key without echoing it', async () => {
      const wrongKey = 'sk-wrong-key-9876543210zyxw';
      const wrong = new OpenAI({ apiKey: wrongKey, baseURL: mock.url, maxRetries: 0 });
      const error = await wrong.chat.completions
        .create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] })
        .catch((e: unknown) => e);

      expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
      const apiError = error as InstanceType<typeof OpenAI.AuthenticationError>;
      expect(apiError.status).toBe(401);
      expect(apiError.code).toBe('invalid_api_key');
      expect(apiError.type).toBe('invalid_request_error');
      expect(apiError.message).toContain('Incorrect API key provided');
      expect(apiError.message).not.toContain(wrongKey);
      expect(apiError.message).toContain('zyxw');
    });

    it('answers 400 in the OpenAI shape for a body that is not JSON', async () => {
      const res = await post('/chat/completions', '{"model": "gpt-4o", "messages": [');

      expect(res.status).toBe(400);
      expect(res.headers['content-type']).toBe('application/json');
      expect(JSON.parse(res.text)).toEqual({
        error: {
          message: expect.stringContaining('We could not parse the JSON body of your request.'),
          type: 'invalid_request_error',
          param: null,
          code: null,
        },
      });
    });

    it('answers 400 missing_required_parameter without messages', async () => {
      const res = await post('/chat/completions', { model: 'gpt-4o' });

      expect(res.status).toBe(400);
      expect(JSON.parse(res.text).error).toMatchObject({
        type: 'invalid_request_error',
        param: 'messages',
        code: 'missing_required_parameter',
      });
    });

    it.each([
      ['no model', { messages: [{ role: 'user', content: 'x' }] }],
      ['empty messages', { model: 'gpt-4o', messages: [] }],
      ['messages not a list', { model: 'gpt-4o', messages: 'hello' }],
      ['max_tokens 0', { model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }], max_tokens: 0 }],
      [
        'stream_options without stream',
        {
          model: 'gpt-4o',
          messages: [{ role: 'user', content: 'x' }],
          stream_options: { include_usage: true },
        },
      ],
      ['a JSON array body', [1, 2, 3]],
    ])('answers 400 invalid_request_error for %s', async (_name, body) => {
      const res = await post('/chat/completions', body);

      expect(res.status).toBe(400);
      expect(JSON.parse(res.text).error.type).toBe('invalid_request_error');
    });

    it('answers 404 for an unknown path', async () => {
      const res = await post('/chat/completion', { model: 'gpt-4o', messages: [] });

      expect(res.status).toBe(404);
      expect(JSON.parse(res.text).error.message).toBe('Invalid URL (POST /v1/chat/completion)');
    });

    it('survives a request that is not HTTP and keeps serving', async () => {
      const { connect } = await import('node:net');
      const { port } = new URL(mock.url);
      await new Promise<void>((resolve) => {
        const socket = connect(Number(port), '127.0.0.1', () => socket.end('NOT HTTP AT ALL\r\n\r\n'));
        socket.on('close', () => resolve());
        socket.on('error', () => resolve());
        socket.resume();
      });

      const res = await client.chat.completions.create({
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'x' }],
      });
      expect(res.object).toBe('chat.completion');
    });
  });

  it('counts one token per whitespace-separated word', () => {
    expect(countTokens('  one two\nthree\tfour  ')).toBe(4);
    expect(countTokens('')).toBe(0);
  });
});
