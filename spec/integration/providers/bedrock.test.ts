/**
 * The Bedrock mock on its socket, called with the adapter's own signed requests: signatures
 * verified like AWS, Converse and ConverseStream answers in the service's shapes (compared
 * with the recorded transcripts), tool calls, validation and faults.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Target } from '../../../lib/context';
import type { SseEvent } from '../../../lib/llm/sse';
import { bedrockAdapter } from '../../../lib/relay/providers/bedrock';
import { AwsEventStreamDecoder } from '../../../lib/relay/providers/bedrock/decoder';
import { signBedrockRequest } from '../../../lib/relay/providers/bedrock/sign';
import { type BedrockMock, defaultAnswer, startBedrockMock } from '../../support/providers';
import { type RawResponse, rawRequest } from '../../support/providers/raw-http';

const FIXTURES = join(__dirname, '../../fixtures/providers/bedrock');
const fixtureJson = (name: string) => JSON.parse(readFileSync(join(FIXTURES, name), 'utf8')) as unknown;

const CREDENTIALS = {
  accessKeyId: 'AKIAMOCKBEDROCK00001',
  secretAccessKey: 'mockSecretKey/0123456789abcdefghijklmnopqr',
  sessionToken: 'IQoJb3JpZ2luX2VjMockSessionToken0123456789',
};
const MODEL = 'anthropic.claude-3-haiku-20240307-v1:0';
const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather of a city',
    parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } } },
  },
};

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

/** Stream events as (event type, payload shape), repeats in a row collapsed. */
function streamShape(events: { event?: string; data: unknown }[]): unknown[] {
  const shapes = events.map((e) => JSON.stringify({ event: e.event, data: shape(e.data) }));
  return shapes.filter((s, i) => i === 0 || s !== shapes[i - 1]).map((s) => JSON.parse(s));
}

function decode(res: RawResponse): SseEvent[] {
  const decoder = new AwsEventStreamDecoder();
  return [...decoder.push(Buffer.concat(res.chunks.map((c) => c.data))), ...decoder.end()];
}

describe('Bedrock mock', () => {
  let mock: BedrockMock;
  let target: Target;

  beforeAll(async () => {
    mock = await startBedrockMock({ credentials: CREDENTIALS, region: 'us-west-2', chunkDelayMs: 1 });
    target = {
      name: 'claude-bedrock',
      provider: 'bedrock',
      model: MODEL,
      base_url: mock.url,
      aws: {
        region: 'us-west-2',
        access_key_id: CREDENTIALS.accessKeyId,
        secret_access_key: CREDENTIALS.secretAccessKey,
        session_token: CREDENTIALS.sessionToken,
      },
      headers: {},
      timeouts: { connect_ms: 1000, first_byte_ms: 1000, idle_ms: 1000, total_ms: 5000 },
    };
  });
  afterEach(() => mock.reset());
  afterAll(() => mock.close());

  /** The adapter's request for an OpenAI body, signed, sent to the mock. */
  async function call(body: Record<string, unknown>, opts: { stream?: boolean; target?: Target } = {}) {
    const t = opts.target ?? target;
    const stream = opts.stream ?? false;
    const request = await signBedrockRequest(
      bedrockAdapter.buildRequest('chat.completions', body, t, { stream }),
      t,
    );
    return rawRequest(request.url, { method: 'POST', headers: request.headers, body: request.body });
  }
  const chat = (content: string) => ({ model: 'x', messages: [{ role: 'user', content }] });
  const errorOf = (res: RawResponse) => ({
    status: res.status,
    type: String(res.headers['x-amzn-errortype']).split(':')[0],
    message: (JSON.parse(res.text) as { message: string }).message,
  });

  describe('signatures', () => {
    it('accepts the adapter signature and records the escaped model path', async () => {
      const res = await call(chat('Say hello to the world'));
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toBe('application/json');
      expect(res.headers['x-amzn-requestid']).toMatch(/^[0-9a-f-]{36}$/);
      expect(mock.requests[0]!.path).toBe('/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse');
      expect(mock.requests[0]!.headers.authorization).toMatch(
        /^AWS4-HMAC-SHA256 Credential=AKIAMOCKBEDROCK00001\//,
      );
    });

    it('answers a wrong secret key with 403 InvalidSignatureException', async () => {
      const res = await call(chat('hi'), {
        target: {
          ...target,
          aws: { ...target.aws!, secret_access_key: 'wrongSecretKey/0123456789abcdefghijklmnop' },
        },
      });
      expect(errorOf(res)).toEqual({
        status: 403,
        type: 'InvalidSignatureException',
        message: expect.stringMatching(/^The request signature we calculated does not match/),
      });
    });

    it('answers an unknown key id or session token with 403 UnrecognizedClientException', async () => {
      for (const aws of [
        { ...target.aws!, access_key_id: 'AKIAUNKNOWNKEY000001' },
        { ...target.aws!, session_token: 'IQoJb3JpZ2luX2VjSomeOtherToken' },
      ]) {
        const res = await call(chat('hi'), { target: { ...target, aws } });
        expect(errorOf(res)).toEqual({
          status: 403,
          type: 'UnrecognizedClientException',
          message: 'The security token included in the request is invalid.',
        });
      }
    });

    it('answers a signature for another region with 403 InvalidSignatureException', async () => {
      const res = await call(chat('hi'), {
        target: { ...target, aws: { ...target.aws!, region: 'eu-west-1' } },
      });
      expect(errorOf(res).type).toBe('InvalidSignatureException');
    });

    it('answers a body changed after signing with 403 InvalidSignatureException', async () => {
      const request = await signBedrockRequest(
        bedrockAdapter.buildRequest('chat.completions', chat('hi'), target, { stream: false }),
        target,
      );
      const res = await rawRequest(request.url, {
        method: 'POST',
        headers: request.headers,
        body: request.body.replace('hi', 'ho'),
      });
      expect(errorOf(res).type).toBe('InvalidSignatureException');
    });

    it('answers an unsigned request with 403 MissingAuthenticationTokenException', async () => {
      const res = await rawRequest(`${mock.url}/model/${encodeURIComponent(MODEL)}/converse`, {
        method: 'POST',
        body: { messages: [{ role: 'user', content: [{ text: 'hi' }] }] },
      });
      expect(errorOf(res)).toEqual({
        status: 403,
        type: 'MissingAuthenticationTokenException',
        message: 'Missing Authentication Token',
      });
    });
  });

  describe('Converse', () => {
    it('answers in the recorded shape, with usage counted in words', async () => {
      const res = await call({
        model: 'x',
        messages: [
          { role: 'system', content: 'You are terse.' },
          { role: 'user', content: 'Say hello to the world' },
        ],
      });
      const body = JSON.parse(res.text);
      expect(shape(body)).toEqual(shape(fixtureJson('converse.json')));
      const answer = defaultAnswer('Say hello to the world');
      expect(body.output.message.content).toEqual([{ text: answer }]);
      expect(body.usage).toEqual({
        inputTokens: 3 + 5,
        outputTokens: answer.split(' ').length,
        totalTokens: 8 + answer.split(' ').length,
      });
      const parsed = bedrockAdapter.parseResponse('chat.completions', body);
      expect(
        (parsed.body as { choices: { message: { content: string } }[] }).choices[0]!.message.content,
      ).toBe(answer);
    });

    it('stops at maxTokens and at a stop sequence', async () => {
      mock.setAnswer('one two three END four');
      const cut = JSON.parse((await call({ ...chat('x'), max_tokens: 2 })).text);
      expect(cut.output.message.content).toEqual([{ text: 'one two' }]);
      expect(cut.stopReason).toBe('max_tokens');
      const stopped = JSON.parse((await call({ ...chat('x'), stop: ['END'] })).text);
      expect(stopped.output.message.content).toEqual([{ text: 'one two three ' }]);
      expect(stopped.stopReason).toBe('stop_sequence');
    });

    it('calls a tool the prompt names, in the recorded shape, then answers its result', async () => {
      const res = await call({ ...chat('What is the get_weather for Paris?'), tools: [WEATHER_TOOL] });
      const body = JSON.parse(res.text);
      expect(body.stopReason).toBe('tool_use');
      const use = body.output.message.content[0].toolUse;
      expect(use).toEqual({
        toolUseId: expect.stringMatching(/^tooluse_/),
        name: 'get_weather',
        input: { city: 'mock', days: 1 },
      });
      const recorded = (
        fixtureJson('converse-tool-use.json') as { output: { message: { content: { toolUse?: object }[] } } }
      ).output.message.content[1]!.toolUse;
      expect(shape({ ...use, input: {} })).toEqual(shape({ ...recorded, input: {} }));

      const next = await call({
        model: 'x',
        tools: [WEATHER_TOOL],
        messages: [
          { role: 'user', content: 'What is the get_weather for Paris?' },
          {
            role: 'assistant',
            content: null,
            tool_calls: [
              {
                id: use.toolUseId,
                type: 'function',
                function: { name: 'get_weather', arguments: JSON.stringify(use.input) },
              },
            ],
          },
          { role: 'tool', tool_call_id: use.toolUseId, content: 'sunny, 21 C' },
        ],
      });
      const answer = JSON.parse(next.text);
      expect(answer.stopReason).toBe('end_turn');
      expect(answer.output.message.content[0].text).toBe(defaultAnswer('sunny, 21 C'));
    });

    it('calls the first tool when toolChoice is any, and no tool without a reason', async () => {
      const forced = JSON.parse(
        (await call({ ...chat('hello'), tools: [WEATHER_TOOL], tool_choice: 'required' })).text,
      );
      expect(forced.output.message.content[0].toolUse.name).toBe('get_weather');
      const free = JSON.parse((await call({ ...chat('hello'), tools: [WEATHER_TOOL] })).text);
      expect(free.stopReason).toBe('end_turn');
    });

    it('accepts an image sent as base64 bytes', async () => {
      const png =
        'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
      const res = await call({
        model: 'x',
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'What is in this image?' },
              { type: 'image_url', image_url: { url: `data:image/png;base64,${png}` } },
            ],
          },
        ],
      });
      expect(res.status).toBe(200);
      const sent = mock.requests[0]!.body as { messages: { content: unknown[] }[] };
      expect(sent.messages[0]!.content[1]).toEqual({ image: { format: 'png', source: { bytes: png } } });
    });

    it('refuses what Converse refuses, in its words', async () => {
      const res = await call({
        model: 'x',
        messages: [
          { role: 'assistant', content: 'I start' },
          { role: 'user', content: 'hi' },
        ],
      });
      expect(errorOf(res)).toEqual({
        status: 400,
        type: 'ValidationException',
        message:
          'A conversation must start with a user message. Try again with a conversation that starts with a user message.',
      });
      const blank = await call(chat('   '));
      expect(errorOf(blank).message).toMatch(
        /^The text field in the ContentBlock object at messages\.0\.content\.0 is blank/,
      );
      const unknownModel = await call(chat('hi'), { target: { ...target, model: 'nosuchmodel' } });
      expect(errorOf(unknownModel)).toMatchObject({
        status: 400,
        message: 'The provided model identifier is invalid.',
      });
    });
  });

  describe('ConverseStream', () => {
    it('streams AWS event stream messages in the recorded order and shapes, one word per delta', async () => {
      mock.setAnswer('Hello there, friend.');
      const res = await call(chat('hi'), { stream: true });
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toBe('application/vnd.amazon.eventstream');
      const events = decode(res).map((e) => ({ event: e.event, data: JSON.parse(e.data) }));
      const recorded = (
        fixtureJson('converse-stream-events.json') as { headers: Record<string, string>; payload: unknown }[]
      ).map((e) => ({ event: e.headers[':event-type'], data: e.payload }));
      // The recorded stream has no contentBlockStart for text, like Bedrock's.
      expect(streamShape(events)).toEqual(streamShape(recorded));
      expect(events.filter((e) => e.event === 'contentBlockDelta').map((e) => e.data.delta.text)).toEqual([
        'Hello',
        ' there,',
        ' friend.',
      ]);
      expect(events.every((e) => typeof e.data.p === 'string')).toBe(true);
      expect(events.at(-1)!.data.usage).toEqual({ inputTokens: 1, outputTokens: 3, totalTokens: 4 });
      expect(res.chunks.length).toBeGreaterThan(1);
    });

    it('streams a tool call: a start with id and name, then its input in pieces', async () => {
      const res = await call({ ...chat('get_weather please'), tools: [WEATHER_TOOL] }, { stream: true });
      const events = decode(res).map((e) => ({ event: e.event, data: JSON.parse(e.data) }));
      const start = events.find((e) => e.event === 'contentBlockStart')!;
      expect(start.data.start.toolUse).toEqual({
        toolUseId: expect.stringMatching(/^tooluse_/),
        name: 'get_weather',
      });
      const input = events
        .filter((e) => e.event === 'contentBlockDelta')
        .map((e) => e.data.delta.toolUse.input)
        .join('');
      expect(JSON.parse(input)).toEqual({ city: 'mock', days: 1 });
      expect(events.find((e) => e.event === 'messageStop')!.data.stopReason).toBe('tool_use');

      const translator = bedrockAdapter.streamTranslator('chat.completions', { clientWantsUsage: false });
      const steps = decode(res).map((e) => translator.onEvent(e));
      expect(steps.at(-1)!.done).toBe(true);
    });

    it('ends with an exception message when asked, which the adapter reports', async () => {
      mock.nextStreamException(2, 'throttlingException', 'Too many tokens, please wait before trying again.');
      const events = decode(await call(chat('hi'), { stream: true }));
      expect(events.map((e) => e.event)).toEqual(['messageStart', 'contentBlockDelta', 'exception']);
      const translator = bedrockAdapter.streamTranslator('chat.completions', { clientWantsUsage: false });
      expect(translator.onEvent(events[2]!).error?.message).toBe(
        'the provider failed during the stream: throttlingException: Too many tokens, please wait before trying again.',
      );
    });

    it('cut_stream drops the connection after N messages, which the decoder sees', async () => {
      mock.nextFault({ kind: 'cut_stream', afterChunks: 2 });
      const res = await call(chat('hi'), { stream: true });
      const decoder = new AwsEventStreamDecoder();
      expect(decoder.push(Buffer.concat(res.chunks.map((c) => c.data)))).toHaveLength(2);
      expect(res.complete).toBe(false);
    });
  });

  describe('faults', () => {
    it('answers a status fault with the service error and its errortype header', async () => {
      mock.nextFault({ kind: 'status', status: 429, headers: { 'retry-after': '2' } });
      const res = await call(chat('hi'));
      expect(errorOf(res)).toEqual({
        status: 429,
        type: 'ThrottlingException',
        message: 'Too many requests, please wait before trying again.',
      });
      expect(res.headers['retry-after']).toBe('2');
      const err = bedrockAdapter.parseError(res.status, res.text, res.headers);
      expect(err).toMatchObject({ status: 429, type: 'rate_limit_error', headers: { 'retry-after': '2' } });
    });

    it('content_filter answers stopReason content_filtered; no_usage drops usage', async () => {
      mock.nextFault({ kind: 'content_filter' });
      const filtered = JSON.parse((await call(chat('hi'))).text);
      expect(filtered.stopReason).toBe('content_filtered');
      expect(filtered.output.message.content).toEqual([]);
      mock.nextFault({ kind: 'no_usage' });
      expect(JSON.parse((await call(chat('hi'))).text)).not.toHaveProperty('usage');
    });
  });
});
