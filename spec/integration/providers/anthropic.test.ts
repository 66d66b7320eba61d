import { defaultAnswer, type ProviderMock, startAnthropicMock } from '../../support/providers';
import { parseSse, rawRequest } from '../../support/providers/raw-http';

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
  let mock: ProviderMock;

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
});
