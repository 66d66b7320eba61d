/**
 * The mocks must answer in the same shapes as the providers' real wire formats, kept as
 * transcripts in spec/fixtures/providers/<provider>/. Values differ (ids, text, counts); key
 * sets, nesting, value types and the order of stream events must not.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type ProviderMock, startAnthropicMock, startOpenAIMock } from '../../support/providers';
import { parseSse, rawRequest } from '../../support/providers/raw-http';

const FIXTURES = join(__dirname, '../../fixtures/providers');
const fixture = (name: string) => readFileSync(join(FIXTURES, name), 'utf8');
const fixtureJson = (name: string) => JSON.parse(fixture(name)) as unknown;

/** Keys, nesting and types of a JSON value; arrays by their first element. */
function shape(value: unknown): unknown {
  if (value === null) return 'null';
  if (Array.isArray(value)) return value.length === 0 ? [] : [shape(value[0])];
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b));
    return Object.fromEntries(entries.map(([key, v]) => [key, shape(v)]));
  }
  return typeof value;
}

/** Stream shapes, with repeats of the same shape in a row (content deltas) collapsed. */
function streamShape(text: string): unknown[] {
  const shapes = parseSse(text).map((frame) => ({
    event: frame.event ?? null,
    data: frame.data === '[DONE]' ? '[DONE]' : shape(JSON.parse(frame.data)),
  }));
  return shapes.filter((s, i) => i === 0 || JSON.stringify(s) !== JSON.stringify(shapes[i - 1]));
}

describe('OpenAI mock matches the real wire format', () => {
  let mock: ProviderMock;
  beforeAll(async () => {
    mock = await startOpenAIMock({ chunkDelayMs: 0 });
  });
  afterAll(() => mock.close());

  const post = (path: string, body: unknown) =>
    rawRequest(`${mock.url}${path}`, { method: 'POST', headers: { authorization: 'Bearer sk-x' }, body });
  const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello there' }] };

  it('chat completion', async () => {
    const res = await post('/chat/completions', chat);
    expect(shape(JSON.parse(res.text))).toEqual(shape(fixtureJson('openai/chat-completion.json')));
  });

  it('chat completion stream', async () => {
    const res = await post('/chat/completions', { ...chat, stream: true });
    expect(streamShape(res.text)).toEqual(streamShape(fixture('openai/chat-completion-stream.sse')));
  });

  it('chat completion stream with include_usage', async () => {
    const res = await post('/chat/completions', {
      ...chat,
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(streamShape(res.text)).toEqual(
      streamShape(fixture('openai/chat-completion-stream-include-usage.sse')),
    );
  });

  it('legacy completion', async () => {
    const res = await post('/completions', { model: 'gpt-3.5-turbo-instruct', prompt: 'Say this is a test' });
    expect(shape(JSON.parse(res.text))).toEqual(shape(fixtureJson('openai/completion.json')));
  });

  it('embeddings', async () => {
    const res = await post('/embeddings', {
      model: 'text-embedding-3-small',
      input: 'hello',
      encoding_format: 'float',
    });
    expect(shape(JSON.parse(res.text))).toEqual(shape(fixtureJson('openai/embeddings.json')));
  });

  it('models', async () => {
    const res = await rawRequest(`${mock.url}/models`);
    expect(shape(JSON.parse(res.text))).toEqual(shape(fixtureJson('openai/models.json')));
  });

  it.each([
    ['error-401-invalid-api-key.json', { kind: 'status', status: 401 } as const],
    ['error-429-rate-limit.json', { kind: 'status', status: 429 } as const],
  ])('%s', async (name, fault) => {
    mock.nextFault(fault);
    const res = await post('/chat/completions', chat);
    expect(JSON.parse(res.text)).toEqual({
      error: { ...(fixtureJson(`openai/${name}`) as { error: object }).error, message: expect.any(String) },
    });
  });

  it('error-400-bad-json.json', async () => {
    const res = await post('/chat/completions', '{');
    expect(JSON.parse(res.text)).toEqual(fixtureJson('openai/error-400-bad-json.json'));
  });
});

describe('Anthropic mock matches the real wire format', () => {
  let mock: ProviderMock;
  beforeAll(async () => {
    mock = await startAnthropicMock({ chunkDelayMs: 0 });
  });
  afterAll(() => mock.close());

  const post = (body: unknown) =>
    rawRequest(`${mock.url}/messages`, {
      method: 'POST',
      headers: { 'x-api-key': 'sk-ant-x', 'anthropic-version': '2023-06-01' },
      body,
    });
  const request = {
    model: 'claude-sonnet-4-20250514',
    max_tokens: 100,
    messages: [{ role: 'user', content: 'Hello' }],
  };

  it('message', async () => {
    const res = await post(request);
    expect(shape(JSON.parse(res.text))).toEqual(shape(fixtureJson('anthropic/message.json')));
  });

  it('message stream', async () => {
    const res = await post({ ...request, stream: true });
    expect(streamShape(res.text)).toEqual(streamShape(fixture('anthropic/message-stream.sse')));
  });

  it.each([
    ['error-529-overloaded.json', 529],
    ['error-401-authentication.json', 401],
  ])('%s', async (name, status) => {
    mock.nextFault({ kind: 'status', status });
    const res = await post(request);
    expect(JSON.parse(res.text)).toEqual({
      ...(fixtureJson(`anthropic/${name}`) as object),
      request_id: expect.stringMatching(/^req_/),
    });
  });
});
