/**
 * End to end with Azure OpenAI: the official `openai` client → the dev gateway (Kong emulator →
 * suite server → relay) → the Azure mock (deployments path, api-version, api-key, content
 * filters). Needs the build (`npx tsc -p .`).
 */
import OpenAI from 'openai';
import { type ProviderMock, rawRequest, startAzureMock } from '../support/providers';
import {
  failure,
  type ProviderGateway,
  startProviderGateway,
  streamedToolCall,
  TIMEOUT_MS,
  user,
  weatherTool,
} from './provider-gateway';

const KEY = 'azure-e2e-key-0123456789abcdef';

describe('e2e: Azure OpenAI through the dev gateway', () => {
  let mock: ProviderMock;
  let gateway: ProviderGateway;
  let client: OpenAI;

  beforeAll(async () => {
    mock = await startAzureMock({
      apiKey: KEY,
      deployments: { 'gpt4o-prod': 'gpt-4o-2024-08-06', 'embed-small': 'text-embedding-3-small' },
    });
    const target = (name: string, model: string, extra: Record<string, unknown> = {}) => ({
      name,
      provider: 'azure',
      model,
      base_url: mock.url,
      api_key: KEY,
      ...extra,
    });
    gateway = await startProviderGateway([
      {
        name: 'azure',
        targets: [
          target('azure-4o', 'gpt4o-prod'),
          target('azure-embed', 'embed-small'),
          target('azure-old', 'gpt4o-prod', { api_version: '2024-06-01' }),
          target('azure-gone', 'deleted-deployment'),
        ],
      },
    ]);
    client = gateway.client('azure');
  }, TIMEOUT_MS);
  afterAll(async () => {
    await gateway?.close();
    await mock?.close();
  }, TIMEOUT_MS);
  beforeEach(() => mock.reset());

  it('answers a chat completion through the deployment, with the key in api-key', async () => {
    const answer = await client.chat.completions.create({
      model: 'azure-4o',
      messages: [user('hello there')],
    });
    expect(answer.object).toBe('chat.completion');
    expect(answer.model).toBe('gpt-4o-2024-08-06');
    expect(answer.choices[0]!.message.content).toMatch(/mock answer/);
    expect(answer.choices[0]!.finish_reason).toBe('stop');
    expect(answer.usage).toMatchObject({ prompt_tokens: 2, completion_tokens: expect.any(Number) });
    // Azure's filter results reach the client.
    expect(answer).toHaveProperty('prompt_filter_results');
    expect(answer.choices[0]).toHaveProperty('content_filter_results');

    const sent = mock.requests[0]!;
    expect(sent.path).toBe('/openai/deployments/gpt4o-prod/chat/completions');
    expect(sent.headers['api-key']).toBe(KEY);
    expect(sent.headers.authorization).toBeUndefined();
    expect(JSON.stringify(sent.headers)).not.toContain('client-key');
  });

  it('sends the system prompt and every turn as given', async () => {
    const messages = [
      { role: 'system' as const, content: 'You are terse.' },
      user('first question'),
      { role: 'assistant' as const, content: 'first answer' },
      user('second question'),
    ];
    const answer = await client.chat.completions.create({ model: 'azure-4o', messages });
    expect(answer.choices[0]!.message.content).toMatch(/mock answer/);
    expect((mock.requests[0]!.body as { messages: unknown }).messages).toEqual(messages);
  });

  it('streams chunk by chunk, passing the prompt filter chunk, usage only when asked', async () => {
    const plain = await client.chat.completions.create({
      model: 'azure-4o',
      messages: [user('stream this please')],
      stream: true,
    });
    const chunks = [];
    for await (const chunk of plain) chunks.push(chunk);
    expect(chunks[0]!.choices).toEqual([]);
    expect(chunks[0]).toHaveProperty('prompt_filter_results');
    expect(chunks[1]!.choices[0]!.delta.role).toBe('assistant');
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toMatch(/mock answer/);
    expect(chunks.filter((c) => c.choices[0]?.delta.content).length).toBeGreaterThan(3);
    expect(chunks.some((c) => c.usage)).toBe(false);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('stop');
    // The gateway asked Azure for usage to meter the stream.
    expect((mock.requests[0]!.body as { stream_options: unknown }).stream_options).toEqual({
      include_usage: true,
    });

    const withUsage = await client.chat.completions.create({
      model: 'azure-4o',
      messages: [user('stream this please')],
      stream: true,
      stream_options: { include_usage: true },
    });
    const all = [];
    for await (const chunk of withUsage) all.push(chunk);
    expect(all.at(-1)!.choices).toEqual([]);
    expect(all.at(-1)!.usage).toMatchObject({ prompt_tokens: 3 });
  });

  const WEATHER_TOOL = weatherTool();

  it('returns a tool call, then answers with the tool result', async () => {
    const ask = [user('use the tool for Paris')];
    const first = await client.chat.completions.create({
      model: 'azure-4o',
      messages: ask,
      tools: [WEATHER_TOOL],
    });
    const call = first.choices[0]!.message.tool_calls![0]!;
    if (call.type !== 'function') throw new Error(`a ${call.type} tool call`);
    expect(first.choices[0]!.finish_reason).toBe('tool_calls');
    expect(call.type).toBe('function');
    expect(call.function.name).toBe('get_weather');
    expect(JSON.parse(call.function.arguments)).toEqual({ location: 'mock' });

    const second = await client.chat.completions.create({
      model: 'azure-4o',
      tools: [WEATHER_TOOL],
      messages: [
        ...ask,
        first.choices[0]!.message,
        { role: 'tool', tool_call_id: call.id, content: '{"temperature": 21}' },
      ],
    });
    expect(second.choices[0]!.message.content).toMatch(/mock answer/);
  });

  it('streams a tool call with its arguments in pieces', async () => {
    const stream = await client.chat.completions.create({
      model: 'azure-4o',
      messages: [user('use the tool please')],
      tools: [WEATHER_TOOL],
      stream: true,
    });
    const call = await streamedToolCall(stream);
    expect(call.indexes.every((i) => i === 0)).toBe(true);
    expect(call.name).toBe('get_weather');
    expect(JSON.parse(call.args)).toEqual({ location: 'mock' });
    expect(call.pieces).toBeGreaterThan(1);
    expect(call.finish).toBe('tool_calls');
  });

  it('accepts an image part and JSON mode', async () => {
    const vision = await client.chat.completions.create({
      model: 'azure-4o',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'what is in this image' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==' } },
          ],
        },
      ],
    });
    expect(vision.choices[0]!.message.content).toMatch(/mock answer/);
    const parts = (mock.requests[0]!.body as { messages: { content: { type: string }[] }[] }).messages[0]!
      .content;
    expect(parts.map((p) => p.type)).toEqual(['text', 'image_url']);

    const json = await client.chat.completions.create({
      model: 'azure-4o',
      messages: [user('answer in JSON')],
      response_format: { type: 'json_object' },
    });
    expect(json.choices[0]!.finish_reason).toBe('stop');
    expect((mock.requests[1]!.body as { response_format: unknown }).response_format).toEqual({
      type: 'json_object',
    });
  });

  it('embeds through the embeddings deployment', async () => {
    const result = await client.embeddings.create({
      model: 'azure-embed',
      input: ['one text', 'another text'],
    });
    expect(result.data).toHaveLength(2);
    expect(result.data[0]!.embedding.length).toBe(1536);
    expect(result.usage).toEqual({ prompt_tokens: 4, total_tokens: 4 });
    expect(mock.requests[0]!.path).toBe('/openai/deployments/embed-small/embeddings');
  });

  it("refuses a prompt Azure's filter blocks with 400 content_filter", async () => {
    const bad = await failure(
      client.chat.completions.create({ model: 'azure-4o', messages: [user('please [azure-filter] this')] }),
    );
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
    expect(bad.status).toBe(400);
    expect(bad.code).toBe('content_filter');
    expect(bad.message).toMatch(/content management policy.*\(filtered: violence\)/);
  });

  it('passes a filtered answer with finish reason content_filter', async () => {
    mock.nextFault({ kind: 'content_filter' });
    const answer = await client.chat.completions.create({
      model: 'azure-4o',
      messages: [user('tell a story')],
    });
    expect(answer.choices[0]!.finish_reason).toBe('content_filter');
    expect(answer.choices[0]).toMatchObject({ content_filter_results: { violence: { filtered: true } } });
  });

  it("gives Azure's errors in OpenAI's shape with Azure's status", async () => {
    const fail = (model = 'azure-4o') =>
      failure(client.chat.completions.create({ model, messages: [user('hi')] }));

    mock.nextFault({ kind: 'status', status: 401 });
    const denied = await fail();
    expect(denied).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(denied.code).toBe('invalid_api_key');
    expect(denied.message).toContain('Access denied');

    mock.nextFault({
      kind: 'status',
      status: 429,
      headers: { 'retry-after': '3', 'retry-after-ms': '2500' },
    });
    const limited = await fail();
    expect(limited).toBeInstanceOf(OpenAI.RateLimitError);
    expect(limited.code).toBe('rate_limit_exceeded');
    expect(limited.headers?.get('retry-after')).toBe('3');
    expect(limited.headers?.get('retry-after-ms')).toBe('2500');

    mock.nextFault({ kind: 'status', status: 500 });
    const broken = await fail();
    expect(broken).toBeInstanceOf(OpenAI.InternalServerError);
    expect(broken.status).toBe(500);
    expect(broken.code).toBe('InternalServerError');

    const gone = await fail('azure-gone');
    expect(gone).toBeInstanceOf(OpenAI.NotFoundError);
    expect(gone.code).toBe('model_not_found');
    expect(gone.message).toContain('API deployment for this resource does not exist');
  });

  it('refuses stream usage on an api-version without stream_options: 400 naming the feature and target', async () => {
    const error = await failure(
      client.chat.completions.create({
        model: 'azure-old',
        messages: [user('hi')],
        stream: true,
        stream_options: { include_usage: true },
      }),
    );
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error.code).toBe('AIGW_UNSUPPORTED_FEATURE');
    // The SDK puts the status before the gateway's message.
    expect(error.message).toBe(
      '400 stream_options.include_usage (api-version 2024-06-01) is not supported by target azure-old (azure)',
    );
    expect(mock.requests).toHaveLength(0);

    // Without the option, the old api-version streams (the gateway counts its usage).
    const stream = await client.chat.completions.create({
      model: 'azure-old',
      messages: [user('hi')],
      stream: true,
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toMatch(/mock answer/);
    expect(mock.requests[0]!.body).not.toHaveProperty('stream_options');
  });

  it('has a mock that refuses what Azure refuses: no api-version, an unknown one, no key', async () => {
    const url = (query: string) => `${mock.url}/openai/deployments/gpt4o-prod/chat/completions${query}`;
    const body = { messages: [user('hi')] };
    const json = (text: string) => JSON.parse(text) as unknown;

    const noVersion = await rawRequest(url(''), { method: 'POST', headers: { 'api-key': KEY }, body });
    expect(noVersion.status).toBe(404);
    expect(json(noVersion.text)).toEqual({ error: { code: '404', message: 'Resource not found' } });

    const unknown = await rawRequest(url('?api-version=2099-01-01'), {
      method: 'POST',
      headers: { 'api-key': KEY },
      body,
    });
    expect(unknown.status).toBe(400);
    expect(json(unknown.text)).toEqual({
      error: { code: 'BadRequest', message: 'API version not supported' },
    });

    const noKey = await rawRequest(url('?api-version=2024-10-21'), { method: 'POST', body });
    expect(noKey.status).toBe(401);
    const bearer = await rawRequest(url('?api-version=2024-10-21'), {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}` },
      body,
    });
    expect(bearer.status).toBe(401);

    const oldStreamOptions = await rawRequest(url('?api-version=2024-06-01'), {
      method: 'POST',
      headers: { 'api-key': KEY },
      body: { ...body, stream: true, stream_options: { include_usage: true } },
    });
    expect(oldStreamOptions.status).toBe(400);
    expect(oldStreamOptions.text).toContain('Unrecognized request argument supplied: stream_options');
  });
});
