/**
 * End to end with Anthropic: the official `openai` client → the dev gateway (Kong emulator →
 * suite server → relay → Anthropic adapter) → the Anthropic Messages mock. Needs the build
 * (`npx tsc -p .`).
 */
import OpenAI from 'openai';
import { PNG } from '../support/provider-fixtures';
import { type AnthropicMock, startAnthropicMock } from '../support/providers';
import {
  failure,
  type ProviderGateway,
  startProviderGateway,
  streamedToolCall,
  TIMEOUT_MS,
  user,
  weatherTool,
} from './provider-gateway';

const KEY = 'sk-ant-e2e-key-0123456789abcdef';
const MODEL = 'claude-sonnet-4-20250514';

interface SentMessages {
  system?: string;
  messages: { role: string; content: { type: string; [key: string]: unknown }[] }[];
  [key: string]: unknown;
}

describe('e2e: Anthropic through the dev gateway', () => {
  let mock: AnthropicMock;
  let gateway: ProviderGateway;
  let client: OpenAI;
  const sent = (i = 0) => mock.requests[i]!.body as SentMessages;

  beforeAll(async () => {
    mock = await startAnthropicMock({ apiKey: KEY });
    gateway = await startProviderGateway([
      {
        name: 'anthropic',
        targets: [{ name: 'claude', provider: 'anthropic', model: MODEL, base_url: mock.url, api_key: KEY }],
      },
    ]);
    client = gateway.client('anthropic');
  }, TIMEOUT_MS);
  afterAll(async () => {
    await gateway?.close();
    await mock?.close();
  }, TIMEOUT_MS);
  beforeEach(() => mock.reset());

  it('answers a chat completion from the Messages API, with the key in x-api-key', async () => {
    const answer = await client.chat.completions.create({ model: 'claude', messages: [user('hello there')] });
    expect(answer.object).toBe('chat.completion');
    expect(answer.model).toBe(MODEL);
    expect(answer.choices[0]!.message).toMatchObject({
      role: 'assistant',
      content: expect.stringMatching(/mock answer/),
    });
    expect(answer.choices[0]!.finish_reason).toBe('stop');
    expect(answer.usage).toMatchObject({
      prompt_tokens: 2,
      completion_tokens: expect.any(Number),
      prompt_tokens_details: { cached_tokens: 0 },
    });

    const request = mock.requests[0]!;
    expect(request.path).toBe('/v1/messages');
    expect(request.headers['x-api-key']).toBe(KEY);
    expect(request.headers['anthropic-version']).toBe('2023-06-01');
    expect(request.headers.authorization).toBeUndefined();
    expect(JSON.stringify(request.headers)).not.toContain('client-key');
    expect(sent()).toEqual({
      model: MODEL,
      max_tokens: 4096,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hello there' }] }],
    });
  });

  it('sends the system prompt as system and every turn in order, with the limits asked', async () => {
    const answer = await client.chat.completions.create({
      model: 'claude',
      messages: [
        { role: 'system', content: 'You are terse.' },
        user('first question'),
        { role: 'assistant', content: 'first answer' },
        user('second question'),
      ],
      max_completion_tokens: 3,
      temperature: 0.5,
      stop: ['never'],
    });
    expect(answer.choices[0]!.finish_reason).toBe('length');
    expect(answer.usage!.completion_tokens).toBe(3);
    expect(sent()).toMatchObject({
      system: 'You are terse.',
      max_tokens: 3,
      temperature: 0.5,
      stop_sequences: ['never'],
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'first question' }] },
        { role: 'assistant', content: [{ type: 'text', text: 'first answer' }] },
        { role: 'user', content: [{ type: 'text', text: 'second question' }] },
      ],
    });
  });

  it('stops at a stop sequence with finish reason stop', async () => {
    mock.setAnswer('one two three four');
    const answer = await client.chat.completions.create({
      model: 'claude',
      messages: [user('count')],
      stop: ' three',
    });
    expect(answer.choices[0]!.message.content).toBe('one two');
    expect(answer.choices[0]!.finish_reason).toBe('stop');
  });

  it('streams chunk by chunk in OpenAI chunks, usage only when asked', async () => {
    const plain = await client.chat.completions.create({
      model: 'claude',
      messages: [user('stream this please')],
      stream: true,
    });
    const chunks = [];
    for await (const chunk of plain) chunks.push(chunk);
    expect(chunks[0]!.object).toBe('chat.completion.chunk');
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    expect(chunks.filter((c) => c.choices[0]?.delta.content).length).toBeGreaterThan(3);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toMatch(/mock answer/);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('stop');
    expect(chunks.some((c) => c.usage)).toBe(false);
    expect(sent().stream).toBe(true);

    const withUsage = await client.chat.completions.create({
      model: 'claude',
      messages: [user('stream this please')],
      stream: true,
      stream_options: { include_usage: true },
    });
    const all = [];
    for await (const chunk of withUsage) all.push(chunk);
    expect(all.at(-2)!.choices[0]!.finish_reason).toBe('stop');
    expect(all.at(-1)!.choices).toEqual([]);
    expect(all.at(-1)!.usage).toMatchObject({ prompt_tokens: 3, completion_tokens: expect.any(Number) });
    // Anthropic refuses OpenAI's stream_options: it is not sent.
    expect(sent(1)).not.toHaveProperty('stream_options');
  });

  const WEATHER_TOOL = weatherTool();

  it('returns a tool call, then answers with the tool result', async () => {
    const ask = [user('use get_weather for Paris')];
    const first = await client.chat.completions.create({
      model: 'claude',
      messages: ask,
      tools: [WEATHER_TOOL],
    });
    const message = first.choices[0]!.message;
    const call = message.tool_calls![0]!;
    if (call.type !== 'function') throw new Error(`a ${call.type} tool call`);
    expect(first.choices[0]!.finish_reason).toBe('tool_calls');
    expect(call.id).toMatch(/^toolu_/);
    expect(call.function.name).toBe('get_weather');
    expect(JSON.parse(call.function.arguments)).toEqual({ location: 'mock' });
    expect(message.content).toBe('I will call get_weather.');
    expect(sent().tools).toEqual([
      {
        name: 'get_weather',
        description: 'Weather of a city',
        input_schema: WEATHER_TOOL.function.parameters,
      },
    ]);

    const second = await client.chat.completions.create({
      model: 'claude',
      tools: [WEATHER_TOOL],
      messages: [...ask, message, { role: 'tool', tool_call_id: call.id, content: '{"temperature": 21}' }],
    });
    expect(second.choices[0]!.message.content).toMatch(/mock answer/);
    expect(second.choices[0]!.finish_reason).toBe('stop');
    expect(sent(1).messages.at(-1)).toEqual({
      role: 'user',
      content: [{ type: 'tool_result', tool_use_id: call.id, content: '{"temperature": 21}' }],
    });
  });

  it('forces a tool with tool_choice', async () => {
    const answer = await client.chat.completions.create({
      model: 'claude',
      messages: [user('hi')],
      tools: [WEATHER_TOOL],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
    });
    expect(answer.choices[0]!.message.tool_calls).toHaveLength(1);
    expect(sent().tool_choice).toEqual({ type: 'tool', name: 'get_weather' });
  });

  it('streams a tool call with its arguments in pieces', async () => {
    const stream = await client.chat.completions.create({
      model: 'claude',
      messages: [user('use get_weather please')],
      tools: [WEATHER_TOOL],
      stream: true,
    });
    const call = await streamedToolCall(stream);
    expect(call.indexes.every((i) => i === 0)).toBe(true);
    expect(call.text).toBe('I will call get_weather.');
    expect(call.id).toMatch(/^toolu_/);
    expect(call.name).toBe('get_weather');
    expect(JSON.parse(call.args)).toEqual({ location: 'mock' });
    expect(call.pieces).toBeGreaterThan(1);
    expect(call.finish).toBe('tool_calls');
  });

  it('sends image parts as base64 and url sources', async () => {
    const answer = await client.chat.completions.create({
      model: 'claude',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'what is in these images' },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } },
            { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg', detail: 'high' } },
          ],
        },
      ],
    });
    expect(answer.choices[0]!.message.content).toMatch(/mock answer/);
    expect(sent().messages[0]!.content).toEqual([
      { type: 'text', text: 'what is in these images' },
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } },
      { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
    ]);
  });

  it('asks for JSON in the system prompt for response_format json_object', async () => {
    mock.setAnswer('{"ok": true}');
    const answer = await client.chat.completions.create({
      model: 'claude',
      messages: [user('answer in JSON')],
      response_format: { type: 'json_object' },
    });
    expect(JSON.parse(answer.choices[0]!.message.content!)).toEqual({ ok: true });
    expect(sent().system).toMatch(/valid JSON object/);
  });

  it("gives Anthropic's errors in OpenAI's shape with Anthropic's status", async () => {
    const fail = () => failure(client.chat.completions.create({ model: 'claude', messages: [user('hi')] }));

    mock.nextFault({ kind: 'status', status: 401 });
    const denied = await fail();
    expect(denied).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(denied.type).toBe('authentication_error');
    expect(denied.message).toContain('invalid x-api-key');

    mock.nextFault({ kind: 'status', status: 429, headers: { 'retry-after': '3' } });
    const limited = await fail();
    expect(limited).toBeInstanceOf(OpenAI.RateLimitError);
    expect(limited.type).toBe('rate_limit_error');
    expect(limited.headers?.get('retry-after')).toBe('3');

    mock.nextFault({ kind: 'status', status: 529 });
    const overloaded = await fail();
    expect(overloaded.status).toBe(529);
    expect(overloaded.code).toBe('overloaded_error');
    expect(overloaded.error).toMatchObject({ message: 'Overloaded' });

    mock.nextFault({ kind: 'status', status: 500 });
    const broken = await fail();
    expect(broken).toBeInstanceOf(OpenAI.InternalServerError);
    expect(broken.code).toBe('api_error');
  });

  it('breaks the stream on an error event: the client sees an error, not a clean end', async () => {
    mock.nextStreamError({ afterEvents: 5 });
    const stream = await client.chat.completions.create({
      model: 'claude',
      messages: [user('stream this please')],
      stream: true,
    });
    let text = '';
    const read = async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    };
    await expect(read()).rejects.toThrow();
    expect(text.length).toBeGreaterThan(0);
  });

  it('refuses what Anthropic cannot do with 400 naming the feature and the target, sending nothing', async () => {
    const many = await failure(
      client.chat.completions.create({ model: 'claude', messages: [user('hi')], n: 2 }),
    );
    expect(many).toBeInstanceOf(OpenAI.BadRequestError);
    expect(many.code).toBe('AIGW_UNSUPPORTED_FEATURE');
    expect(many.error).toMatchObject({ message: 'n > 1 is not supported by target claude (anthropic)' });

    const logprobs = await failure(
      client.chat.completions.create({ model: 'claude', messages: [user('hi')], logprobs: true }),
    );
    expect(logprobs.error).toMatchObject({
      message: 'logprobs is not supported by target claude (anthropic)',
    });

    const audio = await failure(
      client.chat.completions.create({
        model: 'claude',
        messages: [
          { role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }] },
        ],
      }),
    );
    expect(audio.status).toBe(400);
    expect(audio.error).toMatchObject({
      message: 'audio input is not supported by target claude (anthropic)',
    });

    const embeddings = await failure(client.embeddings.create({ model: 'claude', input: 'hello' }));
    expect(embeddings).toBeInstanceOf(OpenAI.BadRequestError);
    expect(embeddings.code).toBe('AIGW_UNSUPPORTED_FEATURE');
    expect(embeddings.message).toContain('embeddings');

    const completions = await failure(client.completions.create({ model: 'claude', prompt: 'hello' }));
    expect(completions.status).toBe(400);
    expect(completions.message).toContain('completions');
    expect(mock.requests).toHaveLength(0);
  });
});
