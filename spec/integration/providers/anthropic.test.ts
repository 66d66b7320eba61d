import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultAnswer, startAnthropicMock } from '../../support/providers';
import { type AnthropicMock, IMAGE_TOKENS } from '../../support/providers/anthropic';
import { parseSse, rawRequest } from '../../support/providers/raw-http';

const FIXTURES = join(__dirname, '../../fixtures/providers/anthropic');
const fixture = (name: string) => readFileSync(join(FIXTURES, name), 'utf8');

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

/** Event names and data shapes, repeats in a row collapsed. */
function streamShape(text: string): unknown[] {
  const shapes = parseSse(text).map((f) =>
    JSON.stringify({ event: f.event, data: shape(JSON.parse(f.data)) }),
  );
  return shapes.filter((s, i) => i === 0 || s !== shapes[i - 1]);
}

const API_KEY = 'sk-ant-test-0123456789';
const HEADERS = { 'x-api-key': API_KEY, 'anthropic-version': '2023-06-01' };
const REQUEST = {
  model: 'claude-sonnet-4-20250514',
  system: 'You are terse.',
  max_tokens: 64,
  messages: [{ role: 'user', content: 'Say hello to the world' }],
};

interface StreamEvent {
  type: string;
  index?: number;
  message?: unknown;
  delta?: { type?: string; text?: string };
  usage?: unknown;
}

describe('Anthropic mock', () => {
  let mock: AnthropicMock;

  beforeAll(async () => {
    mock = await startAnthropicMock({ apiKey: API_KEY, chunkDelayMs: 1 });
  });
  afterEach(() => mock.reset());
  afterAll(() => mock.close());

  const messages = (body: unknown, headers: Record<string, string> = HEADERS) =>
    rawRequest(`${mock.url}/messages`, { method: 'POST', headers, body });

  describe('JSON answers', () => {
    it('answers in the Messages format with usage and Anthropic headers', async () => {
      const res = await messages(REQUEST);

      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toBe('application/json');
      expect(res.headers['request-id']).toMatch(/^req_\w+$/);
      for (const kind of ['requests', 'tokens', 'input-tokens', 'output-tokens']) {
        expect(res.headers[`anthropic-ratelimit-${kind}-limit`]).toMatch(/^\d+$/);
        expect(res.headers[`anthropic-ratelimit-${kind}-remaining`]).toMatch(/^\d+$/);
        expect(res.headers[`anthropic-ratelimit-${kind}-reset`]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      }
      const answer = defaultAnswer('Say hello to the world');
      expect(JSON.parse(res.text)).toEqual({
        id: expect.stringMatching(/^msg_\w+$/),
        type: 'message',
        role: 'assistant',
        model: 'claude-sonnet-4-20250514',
        content: [{ type: 'text', text: answer }],
        stop_reason: 'end_turn',
        stop_sequence: null,
        usage: {
          input_tokens: 3 + 5,
          output_tokens: answer.split(' ').length,
          cache_creation_input_tokens: 0,
          cache_read_input_tokens: 0,
          service_tier: 'standard',
        },
      });
    });

    it('records the request with its headers', async () => {
      await messages(REQUEST);

      expect(mock.requests).toHaveLength(1);
      expect(mock.requests[0]).toMatchObject({ method: 'POST', path: '/v1/messages', body: REQUEST });
      expect(mock.requests[0]!.headers['anthropic-version']).toBe('2023-06-01');
    });

    it('stops at max_tokens with stop_reason max_tokens', async () => {
      mock.setAnswer('one two three four');
      const res = await messages({ ...REQUEST, max_tokens: 2 });
      const body = JSON.parse(res.text);

      expect(body.content).toEqual([{ type: 'text', text: 'one two' }]);
      expect(body.stop_reason).toBe('max_tokens');
      expect(body.usage.output_tokens).toBe(2);
    });

    it('counts system text blocks and content blocks as input', async () => {
      const res = await messages({
        ...REQUEST,
        system: [{ type: 'text', text: 'two words' }],
        messages: [{ role: 'user', content: [{ type: 'text', text: 'three more words' }] }],
      });

      expect(JSON.parse(res.text).usage.input_tokens).toBe(5);
    });
  });

  describe('SSE answers', () => {
    it('streams the real event sequence with named events and matching data types', async () => {
      mock.setAnswer('Hello big world');
      const res = await messages({ ...REQUEST, stream: true });

      expect(res.status).toBe(200);
      expect(res.complete).toBe(true);
      expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
      const frames = parseSse(res.text);
      expect(frames.map((f) => f.event)).toEqual([
        'message_start',
        'content_block_start',
        'ping',
        'content_block_delta',
        'content_block_delta',
        'content_block_delta',
        'content_block_stop',
        'message_delta',
        'message_stop',
      ]);
      const events = frames.map((f) => JSON.parse(f.data) as StreamEvent);
      expect(events.map((event) => event.type)).toEqual(frames.map((f) => f.event));

      expect(events[0]!.message).toMatchObject({
        type: 'message',
        role: 'assistant',
        model: REQUEST.model,
        content: [],
        stop_reason: null,
        usage: { input_tokens: 8, output_tokens: 1 },
      });
      expect(events[1]).toEqual({
        type: 'content_block_start',
        index: 0,
        content_block: { type: 'text', text: '' },
      });
      const deltas = events.filter((e) => e.type === 'content_block_delta');
      expect(deltas.every((d) => d.index === 0 && d.delta?.type === 'text_delta')).toBe(true);
      expect(deltas.map((d) => d.delta?.text).join('')).toBe('Hello big world');
      expect(events[7]).toEqual({
        type: 'message_delta',
        delta: { stop_reason: 'end_turn', stop_sequence: null },
        usage: { output_tokens: 3 },
      });
    });

    it('reports max_tokens in message_delta when the answer is cut by max_tokens', async () => {
      mock.setAnswer('a b c d e');
      const res = await messages({ ...REQUEST, stream: true, max_tokens: 3 });
      const delta = parseSse(res.text).find((f) => f.event === 'message_delta')!;

      expect(JSON.parse(delta.data)).toMatchObject({
        delta: { stop_reason: 'max_tokens' },
        usage: { output_tokens: 3 },
      });
    });
  });

  describe('auth and bad input', () => {
    it('answers 401 authentication_error without x-api-key', async () => {
      const res = await messages(REQUEST, { 'anthropic-version': '2023-06-01' });

      expect(res.status).toBe(401);
      expect(JSON.parse(res.text)).toMatchObject({
        type: 'error',
        error: { type: 'authentication_error', message: 'x-api-key header is required' },
      });
    });

    it('answers 401 invalid x-api-key for a wrong key', async () => {
      const res = await messages(REQUEST, { ...HEADERS, 'x-api-key': 'sk-ant-wrong' });

      expect(res.status).toBe(401);
      expect(JSON.parse(res.text)).toEqual({
        type: 'error',
        error: { type: 'authentication_error', message: 'invalid x-api-key' },
        request_id: expect.stringMatching(/^req_/),
      });
      expect(res.headers['x-should-retry']).toBe('false');
    });

    it('answers 400 without anthropic-version', async () => {
      const res = await messages(REQUEST, { 'x-api-key': API_KEY });

      expect(res.status).toBe(400);
      expect(JSON.parse(res.text).error).toEqual({
        type: 'invalid_request_error',
        message: 'anthropic-version: header is required',
      });
    });

    it('answers 400 invalid_request_error for a body that is not JSON', async () => {
      const res = await messages('{"model": ');

      expect(res.status).toBe(400);
      expect(JSON.parse(res.text)).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    });

    it.each([
      ['max_tokens', 'max_tokens: Field required'],
      ['messages', 'messages: Field required'],
      ['model', 'model: Field required'],
    ])('answers 400 when %s is missing', async (field, message) => {
      const body: Record<string, unknown> = { ...REQUEST };
      delete body[field];
      const res = await messages(body);

      expect(res.status).toBe(400);
      expect(JSON.parse(res.text).error).toEqual({ type: 'invalid_request_error', message });
    });

    it('answers 400 for a system role inside messages, as the real API does', async () => {
      const res = await messages({
        ...REQUEST,
        messages: [
          { role: 'system', content: 'be nice' },
          { role: 'user', content: 'hi' },
        ],
      });

      expect(res.status).toBe(400);
      expect(JSON.parse(res.text).error.message).toContain('Unexpected role "system"');
    });

    it.each([
      ['empty messages', { ...REQUEST, messages: [] }],
      ['max_tokens 0', { ...REQUEST, max_tokens: 0 }],
      ['unknown role', { ...REQUEST, messages: [{ role: 'tool', content: 'x' }] }],
      ['system as a number', { ...REQUEST, system: 42 }],
    ])('answers 400 for %s', async (_name, body) => {
      const res = await messages(body);

      expect(res.status).toBe(400);
      expect(JSON.parse(res.text).error.type).toBe('invalid_request_error');
    });

    it('answers 404 not_found_error for an unknown path', async () => {
      const res = await rawRequest(`${mock.url}/complete`, {
        method: 'POST',
        headers: HEADERS,
        body: REQUEST,
      });

      expect(res.status).toBe(404);
      expect(JSON.parse(res.text).error.type).toBe('not_found_error');
    });
  });

  describe('tools', () => {
    const WEATHER = {
      name: 'get_weather',
      description: 'Get the current weather in a given location',
      input_schema: {
        type: 'object',
        properties: {
          location: { type: 'string' },
          days: { type: 'integer' },
          detailed: { type: 'boolean' },
        },
        required: ['location', 'days'],
      },
    };
    const ask = (content: string, extra: Record<string, unknown> = {}) => ({
      ...REQUEST,
      tools: [WEATHER],
      messages: [{ role: 'user', content }],
      ...extra,
    });

    it('calls the tool the prompt names, with its required properties, like the recorded answer', async () => {
      const res = await messages(ask('Please use get_weather for Paris'));
      const body = JSON.parse(res.text);

      expect(res.status).toBe(200);
      expect(shape(body)).toEqual(shape(JSON.parse(fixture('message-tool-use.json'))));
      expect(body.stop_reason).toBe('tool_use');
      expect(body.content).toEqual([
        { type: 'text', text: 'I will call get_weather.' },
        {
          type: 'tool_use',
          id: expect.stringMatching(/^toolu_01\w+$/),
          name: 'get_weather',
          input: { location: 'mock', days: 1 },
        },
      ]);
    });

    it('answers with text when no tool is named, or tool_choice is none', async () => {
      for (const body of [ask('What is up?'), ask('use get_weather', { tool_choice: { type: 'none' } })]) {
        const res = await messages(body);
        expect(JSON.parse(res.text).stop_reason).toBe('end_turn');
      }
    });

    it('calls the tool tool_choice forces', async () => {
      const other = { name: 'other', input_schema: { type: 'object' } };
      const forced = await messages(
        ask('hi', { tools: [WEATHER, other], tool_choice: { type: 'tool', name: 'other' } }),
      );
      expect(JSON.parse(forced.text).content[1]).toMatchObject({ name: 'other', input: {} });
      const any = await messages(ask('hi', { tool_choice: { type: 'any' } }));
      expect(JSON.parse(any.text).content[1]).toMatchObject({ name: 'get_weather' });
    });

    it('streams a tool call as content blocks with input_json_delta pieces, like the recorded stream', async () => {
      const res = await messages(ask('use get_weather', { stream: true }));
      expect(streamShape(res.text)).toEqual(streamShape(fixture('message-tool-use-stream.sse')));

      const events = parseSse(res.text).map((f) => JSON.parse(f.data));
      const json = events
        .filter((e) => e.delta?.type === 'input_json_delta')
        .map((e) => e.delta.partial_json)
        .join('');
      expect(JSON.parse(json)).toEqual({ location: 'mock', days: 1 });
      expect(events.find((e) => e.type === 'message_delta').delta.stop_reason).toBe('tool_use');
    });

    it('answers with text after the tool result, and counts tool input and results as input', async () => {
      const res = await messages({
        ...REQUEST,
        system: undefined,
        tools: [WEATHER],
        messages: [
          { role: 'user', content: 'use get_weather' },
          {
            role: 'assistant',
            content: [{ type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { location: 'Paris' } }],
          },
          {
            role: 'user',
            content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'sunny and warm' }],
          },
        ],
      });
      const body = JSON.parse(res.text);

      expect(body.stop_reason).toBe('end_turn');
      expect(body.usage.input_tokens).toBe(2 + 1 + 3);
    });

    it.each([
      [
        'a tool_use without its tool_result',
        [
          { role: 'user', content: 'x' },
          {
            role: 'assistant',
            content: [{ type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: {} }],
          },
          { role: 'user', content: 'y' },
        ],
        '`tool_use` ids were found without `tool_result` blocks immediately after: toolu_1',
      ],
      [
        'a tool_result without its tool_use',
        [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_9', content: 'x' }] }],
        'unexpected `tool_use_id` found in `tool_result` blocks: toolu_9',
      ],
      [
        'a tool_use from the user',
        [{ role: 'user', content: [{ type: 'tool_use', id: 'a', name: 'get_weather', input: {} }] }],
        'tool_use blocks can only be in assistant messages',
      ],
    ])('answers 400 for %s', async (_name, msgs, message) => {
      const res = await messages({ ...REQUEST, tools: [WEATHER], messages: msgs });
      expect(res.status).toBe(400);
      expect(JSON.parse(res.text).error.message).toContain(message);
    });

    it.each([
      [
        'a tool without input_schema',
        { tools: [{ name: 'f' }] },
        'tools.0.custom.input_schema: Field required',
      ],
      [
        'a bad tool name',
        { tools: [{ name: 'a b', input_schema: { type: 'object' } }] },
        'tools.0.custom.name',
      ],
      ['an OpenAI tool_choice', { tools: [WEATHER], tool_choice: 'auto' }, 'tool_choice'],
      [
        'a forced tool that is not declared',
        { tools: [WEATHER], tool_choice: { type: 'tool', name: 'x' } },
        "Tool 'x' not found",
      ],
    ])('answers 400 for %s', async (_name, extra, message) => {
      const res = await messages({ ...REQUEST, ...extra });
      expect(res.status).toBe(400);
      expect(JSON.parse(res.text).error.message).toContain(message);
    });
  });

  describe('images, stop sequences and request checks', () => {
    const PNG =
      'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
    const withImage = (source: unknown) => ({
      ...REQUEST,
      system: undefined,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is this?' },
            { type: 'image', source },
          ],
        },
      ],
    });

    it('accepts base64 and url images, each counted as IMAGE_TOKENS', async () => {
      for (const source of [
        { type: 'base64', media_type: 'image/png', data: PNG },
        { type: 'url', url: 'https://example.com/cat.jpg' },
      ]) {
        const res = await messages(withImage(source));
        expect(res.status).toBe(200);
        expect(JSON.parse(res.text).usage.input_tokens).toBe(3 + IMAGE_TOKENS);
      }
    });

    it.each([
      ['an unsupported media type', { type: 'base64', media_type: 'image/bmp', data: PNG }, 'media_type'],
      [
        'data that is not base64',
        { type: 'base64', media_type: 'image/png', data: 'not base64!' },
        'not valid base64',
      ],
      ['a file url', { type: 'url', url: 'file:///etc/passwd' }, 'Only HTTP and HTTPS URLs'],
    ])('answers 400 for an image with %s', async (_name, source, message) => {
      const res = await messages(withImage(source));
      expect(res.status).toBe(400);
      expect(JSON.parse(res.text).error.message).toContain(message);
    });

    it('cuts the answer before the first stop sequence, in JSON and in streams', async () => {
      mock.setAnswer('one two three four five');
      const res = await messages({ ...REQUEST, stop_sequences: ['four', ' three'] });
      expect(JSON.parse(res.text)).toMatchObject({
        content: [{ type: 'text', text: 'one two' }],
        stop_reason: 'stop_sequence',
        stop_sequence: ' three',
        usage: { output_tokens: 2 },
      });

      mock.setAnswer('one two three four five');
      const stream = await messages({ ...REQUEST, stream: true, stop_sequences: ['four'] });
      const delta = JSON.parse(parseSse(stream.text).find((f) => f.event === 'message_delta')!.data);
      expect(delta.delta).toEqual({ stop_reason: 'stop_sequence', stop_sequence: 'four' });
    });

    it.each([
      ['an OpenAI field', { n: 2 }, 'n: Extra inputs are not permitted'],
      ['temperature over 1', { temperature: 1.5 }, 'temperature: Input should be less than or equal to 1'],
      [
        'an empty text block',
        { messages: [{ role: 'user', content: [{ type: 'text', text: '' }] }] },
        'text content blocks must be non-empty',
      ],
      [
        'an OpenAI image part',
        { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] },
        "Input tag 'image_url'",
      ],
      [
        'a final assistant turn ending in whitespace',
        {
          messages: [
            { role: 'user', content: 'hi' },
            { role: 'assistant', content: 'Hello ' },
          ],
        },
        'final assistant content cannot end with trailing whitespace',
      ],
      ['a blank stop sequence', { stop_sequences: [' '] }, 'each stop sequence must contain non-whitespace'],
    ])('answers 400 for %s', async (_name, extra, message) => {
      const res = await messages({ ...REQUEST, ...extra });
      expect(res.status).toBe(400);
      expect(JSON.parse(res.text).error.message).toContain(message);
    });
  });

  describe('stream errors and refusals', () => {
    it('sends an error event mid-stream and ends without message_stop', async () => {
      mock.nextStreamError({ afterEvents: 4 });
      const res = await messages({ ...REQUEST, stream: true });
      const frames = parseSse(res.text);

      expect(res.status).toBe(200);
      expect(frames.map((f) => f.event)).toEqual([
        'message_start',
        'content_block_start',
        'ping',
        'content_block_delta',
        'error',
      ]);
      expect(JSON.parse(frames[4]!.data)).toEqual({
        type: 'error',
        error: { type: 'overloaded_error', message: 'Overloaded' },
      });
      expect(streamShape(res.text).slice(-1)).toEqual(
        streamShape(fixture('message-stream-error.sse')).slice(-1),
      );

      const next = await messages({ ...REQUEST, stream: true });
      expect(parseSse(next.text).at(-1)!.event).toBe('message_stop');
    });

    it('forgets a queued stream error on reset', async () => {
      mock.nextStreamError({ afterEvents: 1, type: 'api_error', message: 'Internal server error' });
      mock.reset();
      const res = await messages({ ...REQUEST, stream: true });
      expect(parseSse(res.text).some((f) => f.event === 'error')).toBe(false);
    });

    it('answers stop_reason refusal with no content under the content_filter fault', async () => {
      mock.nextFault({ kind: 'content_filter' });
      const body = JSON.parse((await messages(REQUEST)).text);
      expect(body).toMatchObject({ content: [], stop_reason: 'refusal', usage: { output_tokens: 0 } });
    });
  });
});
