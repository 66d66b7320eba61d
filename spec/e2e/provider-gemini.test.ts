/**
 * End to end with Gemini: the official `openai` client → the dev gateway (Kong emulator →
 * suite server → relay → Gemini adapter) → the Gemini API mock. Needs the build
 * (`npx tsc -p .`).
 */
import type OpenAI from 'openai';
import type { ChatCompletionChunk, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { PNG } from '../support/provider-fixtures';
import { type ProviderMock, startGeminiMock } from '../support/providers';
import {
  failure,
  messageOf,
  type ProviderGateway,
  startProviderGateway,
  TIMEOUT_MS,
  user,
  weatherTool,
} from './provider-gateway';

const KEY = 'AIzaSyE2eGeminiKey0123456789abcdefghijkl';
const MODEL = 'gemini-2.0-flash';

// biome-ignore lint/suspicious/noExplicitAny: the recorded Gemini request is read field by field
type Any = any;

const WEATHER_TOOL = weatherTool(
  {
    type: 'object',
    properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
    required: ['city'],
    additionalProperties: false,
  },
  'Current weather in a city',
);

describe('e2e: Gemini through the dev gateway', () => {
  let mock: ProviderMock;
  let gateway: ProviderGateway;
  let client: OpenAI;
  const sent = (i = 0): Any => mock.requests[i]!.body;

  beforeAll(async () => {
    mock = await startGeminiMock({ apiKey: KEY });
    const target = (name: string, model: string, apiKey = KEY) => ({
      name,
      provider: 'gemini',
      model,
      base_url: mock.url,
      api_key: apiKey,
    });
    gateway = await startProviderGateway([
      {
        name: 'gemini',
        targets: [
          target('gem', MODEL),
          target('gem-embed', 'text-embedding-004'),
          target('gem-badkey', MODEL, 'AIzaSyWrongKey000000000000000000000000'),
        ],
      },
    ]);
    client = gateway.client('gemini');
  }, TIMEOUT_MS);
  afterAll(async () => {
    await gateway?.close();
    await mock?.close();
  }, TIMEOUT_MS);
  beforeEach(() => mock.reset());

  it('answers a chat completion from generateContent, with the key in x-goog-api-key only', async () => {
    const answer = await client.chat.completions.create({ model: 'gem', messages: [user('hello there')] });
    expect(answer.object).toBe('chat.completion');
    expect(answer.model).toBe(MODEL);
    expect(answer.id).toMatch(/^chatcmpl-/);
    expect(answer.choices[0]!.message).toMatchObject({
      role: 'assistant',
      content: expect.stringMatching(/mock answer/),
    });
    expect(answer.choices[0]!.finish_reason).toBe('stop');
    expect(answer.usage).toMatchObject({ prompt_tokens: 2, completion_tokens: expect.any(Number) });
    expect(answer.usage!.total_tokens).toBe(answer.usage!.prompt_tokens + answer.usage!.completion_tokens);

    const request = mock.requests[0]!;
    expect(request.path).toBe(`/v1beta/models/${MODEL}:generateContent`);
    expect(request.headers['x-goog-api-key']).toBe(KEY);
    expect(request.headers.authorization).toBeUndefined();
    expect(JSON.stringify(request.headers)).not.toContain('client-key');
    expect(sent()).toEqual({ contents: [{ role: 'user', parts: [{ text: 'hello there' }] }] });
  });

  it('sends the system prompt as systemInstruction and every turn in order, with the limits asked', async () => {
    mock.setAnswer('one two three four');
    const answer = await client.chat.completions.create({
      model: 'gem',
      messages: [
        { role: 'system', content: 'You are terse.' },
        user('first question'),
        { role: 'assistant', content: 'first answer' },
        user('second question'),
      ],
      max_completion_tokens: 3,
      temperature: 0.5,
      top_p: 0.9,
      stop: ['never'],
      seed: 42,
    });
    expect(answer.choices[0]!.finish_reason).toBe('length');
    expect(answer.choices[0]!.message.content).toBe('one two three');
    expect(answer.usage!.completion_tokens).toBe(3);
    expect(sent()).toEqual({
      systemInstruction: { parts: [{ text: 'You are terse.' }] },
      contents: [
        { role: 'user', parts: [{ text: 'first question' }] },
        { role: 'model', parts: [{ text: 'first answer' }] },
        { role: 'user', parts: [{ text: 'second question' }] },
      ],
      generationConfig: {
        maxOutputTokens: 3,
        temperature: 0.5,
        topP: 0.9,
        stopSequences: ['never'],
        seed: 42,
      },
    });
  });

  it('gives n candidates as n choices', async () => {
    const answer = await client.chat.completions.create({ model: 'gem', messages: [user('hi')], n: 2 });
    expect(answer.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(sent().generationConfig).toEqual({ candidateCount: 2 });
  });

  it('streams chunk by chunk from streamGenerateContent?alt=sse, with usage only when asked', async () => {
    mock.setAnswer('Hello big wide world');
    const plain = await client.chat.completions.create({
      model: 'gem',
      messages: [user('hi')],
      stream: true,
    });
    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of plain) chunks.push(chunk);
    expect(mock.requests[0]!.path).toBe(`/v1beta/models/${MODEL}:streamGenerateContent`);
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    // One chunk per word the mock sent, then the finish.
    const deltas = chunks.map((c) => c.choices[0]?.delta.content).filter((t) => t);
    expect(deltas).toEqual(['Hello', ' big', ' wide', ' world']);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('stop');
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === MODEL)).toBe(true);
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(chunks.some((c) => c.usage)).toBe(false);

    const withUsage = await client.chat.completions.create({
      model: 'gem',
      messages: [user('hi')],
      stream: true,
      stream_options: { include_usage: true },
    });
    const all: ChatCompletionChunk[] = [];
    for await (const chunk of withUsage) all.push(chunk);
    const last = all.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual({ prompt_tokens: 1, completion_tokens: 4, total_tokens: 5 });
  });

  it('calls a tool, then answers from its result, keeping the thought signature (JSON)', async () => {
    const messages: ChatCompletionMessageParam[] = [user('use get_weather for Paris')];
    const first = await client.chat.completions.create({
      model: 'gem',
      messages,
      tools: [WEATHER_TOOL],
      tool_choice: 'auto',
    });
    const choice = first.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBeNull();
    expect(choice.message.tool_calls).toEqual([
      {
        id: expect.stringMatching(/^call_/),
        type: 'function',
        function: { name: 'get_weather', arguments: '{"city":"mock"}' },
        extra_content: { google: { thought_signature: expect.any(String) } },
      },
    ]);
    expect(sent().tools).toEqual([
      {
        functionDeclarations: [
          {
            name: 'get_weather',
            description: 'Current weather in a city',
            parameters: {
              type: 'OBJECT',
              properties: {
                city: { type: 'STRING' },
                unit: { type: 'STRING', enum: ['celsius', 'fahrenheit'] },
              },
              required: ['city'],
            },
          },
        ],
      },
    ]);
    expect(sent().toolConfig).toEqual({ functionCallingConfig: { mode: 'AUTO' } });

    const call = choice.message.tool_calls![0]!;
    messages.push(choice.message, { role: 'tool', tool_call_id: call.id, content: '{"temp_c":21}' });
    const second = await client.chat.completions.create({ model: 'gem', messages, tools: [WEATHER_TOOL] });
    expect(second.choices[0]!.finish_reason).toBe('stop');
    expect(second.choices[0]!.message.content).toMatch(/mock answer/);
    const signature = (call as Any).extra_content.google.thought_signature;
    expect(sent(1).contents).toEqual([
      { role: 'user', parts: [{ text: 'use get_weather for Paris' }] },
      {
        role: 'model',
        parts: [
          { functionCall: { name: 'get_weather', args: { city: 'mock' } }, thoughtSignature: signature },
        ],
      },
      { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { temp_c: 21 } } }] },
    ]);
  });

  it('streams a tool call: id and name first, then the arguments, finish reason tool_calls', async () => {
    const stream = await client.chat.completions.create({
      model: 'gem',
      messages: [user('anything at all')],
      tools: [WEATHER_TOOL],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      stream: true,
    });
    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    const calls = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    expect(calls[0]).toMatchObject({ index: 0, id: expect.stringMatching(/^call_/), type: 'function' });
    expect(calls[0]!.function!.name).toBe('get_weather');
    expect(calls.map((c) => c.function?.arguments ?? '').join('')).toBe('{"city":"mock"}');
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('tool_calls');
    expect(sent().toolConfig).toEqual({
      functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['get_weather'] },
    });
  });

  it('sends an image part inline, and a URL image by reference', async () => {
    const answer = await client.chat.completions.create({
      model: 'gem',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'what is this' },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } },
            { type: 'image_url', image_url: { url: 'https://example.com/cat.webp' } },
          ],
        },
      ],
    });
    expect(answer.choices[0]!.message.content).toMatch(/mock answer/);
    // Three words and two images at 258 tokens each.
    expect(answer.usage!.prompt_tokens).toBe(3 + 2 * 258);
    expect(sent().contents[0].parts).toEqual([
      { text: 'what is this' },
      { inlineData: { mimeType: 'image/png', data: PNG } },
      { fileData: { mimeType: 'image/webp', fileUri: 'https://example.com/cat.webp' } },
    ]);
  });

  it('answers JSON in JSON mode, and sends a json_schema as responseSchema', async () => {
    const answer = await client.chat.completions.create({
      model: 'gem',
      messages: [user('give me json')],
      response_format: { type: 'json_object' },
    });
    expect(JSON.parse(answer.choices[0]!.message.content!)).toEqual({ answer: expect.any(String) });
    expect(sent().generationConfig).toEqual({ responseMimeType: 'application/json' });

    await client.chat.completions.create({
      model: 'gem',
      messages: [user('give me json')],
      response_format: {
        type: 'json_schema',
        json_schema: {
          name: 'a',
          strict: true,
          schema: { type: 'object', properties: { answer: { type: 'string' } } },
        },
      },
    });
    expect(sent(1).generationConfig).toEqual({
      responseMimeType: 'application/json',
      responseSchema: { type: 'OBJECT', properties: { answer: { type: 'STRING' } } },
    });
  });

  it("gives Gemini's errors in OpenAI's shape with Gemini's status", async () => {
    mock.nextFault({ kind: 'status', status: 401 });
    const unauthorized = await failure(
      client.chat.completions.create({ model: 'gem', messages: [user('x')] }),
    );
    expect(unauthorized.status).toBe(401);
    expect(unauthorized.type).toBe('authentication_error');
    expect(unauthorized.message).toContain('invalid authentication credentials');

    mock.nextFault({ kind: 'status', status: 429 });
    const limited = await failure(client.chat.completions.create({ model: 'gem', messages: [user('x')] }));
    expect(limited.status).toBe(429);
    expect(limited.type).toBe('rate_limit_error');
    expect(limited.code).toBe('rate_limit_exceeded');
    // Gemini says when to retry in its RetryInfo detail (2s), not in a header.
    expect(limited.headers?.get('retry-after')).toBe('2');

    mock.nextFault({ kind: 'status', status: 429, headers: { 'retry-after': '7' } });
    const withHeader = await failure(client.chat.completions.create({ model: 'gem', messages: [user('x')] }));
    expect(withHeader.headers?.get('retry-after')).toBe('7');

    for (const status of [500, 503]) {
      mock.nextFault({ kind: 'status', status });
      const failed = await failure(client.chat.completions.create({ model: 'gem', messages: [user('x')] }));
      expect(failed.status).toBe(status);
      expect(failed.type).toBe('server_error');
    }
  });

  it('says a wrong key is an authentication error, without echoing any key', async () => {
    const err = await failure(client.chat.completions.create({ model: 'gem-badkey', messages: [user('x')] }));
    expect(err.status).toBe(400);
    expect(err.type).toBe('authentication_error');
    expect(err.code).toBe('invalid_api_key');
    expect(JSON.stringify(err.error)).not.toContain('AIzaSy');
  });

  it('ends a filtered answer with finish reason content_filter', async () => {
    mock.nextFault({ kind: 'content_filter' });
    const answer = await client.chat.completions.create({ model: 'gem', messages: [user('x')] });
    expect(answer.choices[0]!.finish_reason).toBe('content_filter');
    expect(answer.choices[0]!.message.content).toBeNull();
  });

  it('a stream cut before its finishReason event fails; it never ends as a clean answer', async () => {
    mock.setAnswer('a b c d e f');
    mock.nextFault({ kind: 'cut_stream', afterChunks: 2 });
    const stream = await client.chat.completions.create({
      model: 'gem',
      messages: [user('x')],
      stream: true,
    });
    let text = '';
    let finish: string | null | undefined;
    await expect(
      (async () => {
        for await (const chunk of stream) {
          text += chunk.choices[0]?.delta.content ?? '';
          finish ??= chunk.choices[0]?.finish_reason;
        }
      })(),
    ).rejects.toThrow();
    expect(text).toBe('a b');
    expect(finish).toBeFalsy();
  });

  it('refuses what Gemini cannot do with a 400 naming the feature and the target', async () => {
    const logprobs = await failure(
      client.chat.completions.create({ model: 'gem', messages: [user('x')], logprobs: true }),
    );
    expect(logprobs.status).toBe(400);
    expect(messageOf(logprobs)).toBe('logprobs is not supported by target gem (gemini)');

    const streamedN = await failure(
      client.chat.completions.create({ model: 'gem', messages: [user('x')], n: 2, stream: true }),
    );
    expect(streamedN.status).toBe(400);
    expect(messageOf(streamedN)).toBe('n > 1 with stream is not supported by target gem (gemini)');

    const audio = await failure(
      client.chat.completions.create({
        model: 'gem',
        messages: [
          { role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }] },
        ],
      }),
    );
    expect(audio.status).toBe(400);
    expect(messageOf(audio)).toBe('audio input parts is not supported by target gem (gemini)');

    const completions = await failure(client.completions.create({ model: 'gem', prompt: 'x' }));
    expect(completions.status).toBe(400);
    expect(completions.message).toContain('completions');
    expect(completions.message).toContain('gemini');
    expect(mock.requests).toHaveLength(0);
  });

  it('answers embeddings from batchEmbedContents, with dimensions', async () => {
    const result = await client.embeddings.create({
      model: 'gem-embed',
      input: ['first text', 'second text'],
      dimensions: 16,
      encoding_format: 'float',
    });
    expect(result.object).toBe('list');
    expect(result.data.map((d) => [d.object, d.index, d.embedding.length])).toEqual([
      ['embedding', 0, 16],
      ['embedding', 1, 16],
    ]);
    expect(mock.requests[0]!.path).toBe('/v1beta/models/text-embedding-004:batchEmbedContents');
    expect(sent().requests[0]).toEqual({
      model: 'models/text-embedding-004',
      content: { parts: [{ text: 'first text' }] },
      outputDimensionality: 16,
    });
  });

  it("answers base64 embeddings (the openai client's default), decoded by the client to the same floats", async () => {
    const base64 = await client.embeddings.create({ model: 'gem-embed', input: 'same text', dimensions: 8 });
    const floats = await client.embeddings.create({
      model: 'gem-embed',
      input: 'same text',
      dimensions: 8,
      encoding_format: 'float',
    });
    expect(base64.data[0]!.embedding).toHaveLength(8);
    base64.data[0]!.embedding.forEach((v, i) => {
      expect(v).toBeCloseTo(floats.data[0]!.embedding[i]!, 6);
    });
    expect(base64.model).toBe('text-embedding-004');
  });
});
