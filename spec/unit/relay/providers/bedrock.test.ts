import { createHash, createHmac } from 'node:crypto';
import { EventStreamCodec, type MessageHeaders } from '@smithy/eventstream-codec';
import { fromUtf8, toUtf8 } from '@smithy/util-utf8';
import type { Target } from '../../../../lib/context';
import { parseSse, type SseEvent } from '../../../../lib/llm/sse';
import { adapterFor, type StreamStep } from '../../../../lib/relay/providers';
import { bedrockAdapter } from '../../../../lib/relay/providers/bedrock';
import { AwsEventStreamDecoder } from '../../../../lib/relay/providers/bedrock/decoder';
import { signBedrockRequest } from '../../../../lib/relay/providers/bedrock/sign';
import { ProviderError } from '../../../../lib/relay/upstream-error';
import { adapterTarget, PNG, providerFixtures, refusal } from '../../../support/provider-fixtures';

const { fixture, fixtureJson } = providerFixtures<Json>('bedrock');
const codec = new EventStreamCodec(toUtf8, fromUtf8);

/** Parsed JSON as the tests read it: a wrong path fails the assertion that reads it. */
// biome-ignore lint/suspicious/noExplicitAny: parsed JSON, checked by the assertions
type Json = any;

const SECRET = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
const SESSION = 'IQoJb3JpZ2luX2VjEXAMPLEsessionTokenForUnitTests0123456789+/==';

function target(overrides: Partial<Target> = {}): Target {
  return adapterTarget(
    {
      name: 'claude-bedrock',
      provider: 'bedrock',
      model: 'anthropic.claude-3-haiku-20240307-v1:0',
      base_url: 'https://bedrock-runtime.us-east-1.amazonaws.com',
      aws: { region: 'us-east-1', access_key_id: 'AKIAIOSFODNN7EXAMPLE', secret_access_key: SECRET },
    },
    overrides,
  );
}

const hello = { model: 'claude', messages: [{ role: 'user', content: 'Hello' }] };
const build = (body: Record<string, unknown>, opts = { stream: false }, t = target()) =>
  bedrockAdapter.buildRequest('chat.completions', body, t, opts);
const sent = (body: Record<string, unknown>) => JSON.parse(build(body).body) as Record<string, Json>;

/** Event stream bytes of events given as `{headers, payload}` (the fixtures' form). */
function encode(events: { headers: Record<string, string>; payload: unknown }[]): Buffer {
  return Buffer.concat(
    events.map((e) => {
      const headers: MessageHeaders = {};
      for (const [name, value] of Object.entries(e.headers)) headers[name] = { type: 'string', value };
      return Buffer.from(codec.encode({ headers, body: fromUtf8(JSON.stringify(e.payload)) }));
    }),
  );
}

const recordedStream = () => Buffer.from(fixture('converse-stream.b64').replace(/\s+/g, ''), 'base64');

function translate(events: SseEvent[], clientWantsUsage = false): StreamStep[] {
  const translator = bedrockAdapter.streamTranslator('chat.completions', { clientWantsUsage });
  return events.map((e) => translator.onEvent(e));
}

/** The JSON chunks a list of steps emitted ([DONE] as the string). */
function chunks(steps: StreamStep[]): Json[] {
  return steps
    .flatMap((s) => s.emit)
    .flatMap((text) => parseSse(text))
    .map((e) => (e.data === '[DONE]' ? '[DONE]' : JSON.parse(e.data)));
}

describe('bedrock adapter: registry and endpoints', () => {
  it('is the adapter for provider bedrock and signs its requests', () => {
    expect(adapterFor('bedrock')).toBe(bedrockAdapter);
    expect(typeof bedrockAdapter.sign).toBe('function');
    expect(typeof bedrockAdapter.eventDecoder).toBe('function');
  });

  it('refuses completions and embeddings naming the target', () => {
    for (const endpoint of ['completions', 'embeddings'] as const) {
      const err = refusal(() =>
        bedrockAdapter.buildRequest(endpoint, { input: 'x' }, target(), { stream: false }),
      );
      expect(err.code).toBe('AIGW_UNSUPPORTED_FEATURE');
      expect(err.status).toBe(400);
      expect(err.message).toBe(
        `the ${endpoint} endpoint is not supported by target claude-bedrock (bedrock)`,
      );
    }
    expect(bedrockAdapter.supports('models')).toBe(false);
  });
});

describe('bedrock adapter: buildRequest', () => {
  it('posts to /model/{escaped model id}/converse, or converse-stream when streaming', () => {
    const json = build(hello);
    expect(json.method).toBe('POST');
    expect(json.url).toBe(
      'https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse',
    );
    expect(json.headers).toEqual({ 'content-type': 'application/json', accept: 'application/json' });
    const stream = build({ ...hello, stream: true }, { stream: true });
    expect(stream.url).toMatch(/\/converse-stream$/);
    expect(stream.headers.accept).toBe('application/vnd.amazon.eventstream');
  });

  it('escapes an inference profile ARN into one path segment', () => {
    const arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2(c)!'*";
    const url = build(hello, { stream: false }, target({ model: arn })).url;
    expect(url).toBe(
      'https://bedrock-runtime.us-east-1.amazonaws.com/model/' +
        'arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fa1b2%28c%29%21%27%2A/converse',
    );
  });

  it('sends target headers lowercased but keeps its own content-type', () => {
    const req = build(
      hello,
      { stream: false },
      target({ headers: { 'X-Team': 'a', 'Content-Type': 'text/plain' } }),
    );
    expect(req.headers['x-team']).toBe('a');
    expect(req.headers['content-type']).toBe('application/json');
  });

  it('moves system and developer messages to system, keeps user and assistant turns', () => {
    const body = sent({
      messages: [
        { role: 'system', content: 'Be terse.' },
        { role: 'developer', content: [{ type: 'text', text: 'Answer in French.' }] },
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Bonjour' },
        { role: 'user', content: [{ type: 'text', text: 'Capital of Italy?' }] },
      ],
    });
    expect(body).toEqual({
      system: [{ text: 'Be terse.' }, { text: 'Answer in French.' }],
      messages: [
        { role: 'user', content: [{ text: 'Hi' }] },
        { role: 'assistant', content: [{ text: 'Bonjour' }] },
        { role: 'user', content: [{ text: 'Capital of Italy?' }] },
      ],
    });
  });

  it('merges consecutive turns of one role, as Converse wants them alternating', () => {
    const body = sent({
      messages: [
        { role: 'user', content: 'one' },
        { role: 'user', content: 'two' },
      ],
    });
    expect(body.messages).toEqual([{ role: 'user', content: [{ text: 'one' }, { text: 'two' }] }]);
  });

  it('maps max_tokens, temperature, top_p and stop to inferenceConfig', () => {
    expect(
      sent({ ...hello, max_tokens: 64, temperature: 0.2, top_p: 0.9, stop: 'END' }).inferenceConfig,
    ).toEqual({
      maxTokens: 64,
      temperature: 0.2,
      topP: 0.9,
      stopSequences: ['END'],
    });
    expect(sent({ ...hello, max_completion_tokens: 32, stop: ['a', 'b'] }).inferenceConfig).toEqual({
      maxTokens: 32,
      stopSequences: ['a', 'b'],
    });
    expect(sent(hello)).not.toHaveProperty('inferenceConfig');
  });

  it('sends a data: URL image as base64 bytes with its format', () => {
    const body = sent({
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is this?' },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}`, detail: 'low' } },
            { type: 'image_url', image_url: { url: `data:image/jpg;base64,${PNG}` } },
          ],
        },
      ],
    });
    expect(body.messages[0].content).toEqual([
      { text: 'What is this?' },
      { image: { format: 'png', source: { bytes: PNG } } },
      { image: { format: 'jpeg', source: { bytes: PNG } } },
    ]);
  });

  it('refuses an image by http(s) URL clearly, and other image types', () => {
    const byUrl = refusal(() =>
      build({
        messages: [
          { role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://x.test/cat.png' } }] },
        ],
      }),
    );
    expect(byUrl.code).toBe('AIGW_UNSUPPORTED_FEATURE');
    expect(byUrl.message).toBe(
      'images by http(s) URL (send the image as a data: URL) is not supported by target claude-bedrock (bedrock)',
    );
    const tiff = refusal(() =>
      build({
        messages: [
          {
            role: 'user',
            content: [{ type: 'image_url', image_url: { url: 'data:image/tiff;base64,AAAA' } }],
          },
        ],
      }),
    );
    expect(tiff.code).toBe('AIGW_UNSUPPORTED_FEATURE');
  });

  it('translates tools and each tool_choice', () => {
    const tools = [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'Weather of a city',
          parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
        },
      },
      { type: 'function', function: { name: 'now' } },
    ];
    const spec = [
      {
        toolSpec: {
          name: 'get_weather',
          description: 'Weather of a city',
          inputSchema: {
            json: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
          },
        },
      },
      { toolSpec: { name: 'now', inputSchema: { json: { type: 'object', properties: {} } } } },
    ];
    expect(sent({ ...hello, tools }).toolConfig).toEqual({ tools: spec });
    expect(sent({ ...hello, tools, tool_choice: 'auto' }).toolConfig.toolChoice).toEqual({ auto: {} });
    expect(sent({ ...hello, tools, tool_choice: 'required' }).toolConfig.toolChoice).toEqual({ any: {} });
    expect(
      sent({ ...hello, tools, tool_choice: { type: 'function', function: { name: 'now' } } }).toolConfig
        .toolChoice,
    ).toEqual({ tool: { name: 'now' } });
    expect(sent({ ...hello, tools, tool_choice: 'none' })).not.toHaveProperty('toolConfig');
  });

  it('turns assistant tool_calls into toolUse and tool messages into toolResult of one user turn', () => {
    const body = sent({
      messages: [
        { role: 'user', content: 'Weather in Paris and Rome?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'tooluse_1',
              type: 'function',
              function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
            },
            {
              id: 'tooluse_2',
              type: 'function',
              function: { name: 'get_weather', arguments: '{"city":"Rome"}' },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'tooluse_1', content: '18 C' },
        { role: 'tool', tool_call_id: 'tooluse_2', content: [{ type: 'text', text: '24 C' }] },
      ],
      tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }],
    });
    expect(body.messages).toEqual([
      { role: 'user', content: [{ text: 'Weather in Paris and Rome?' }] },
      {
        role: 'assistant',
        content: [
          { toolUse: { toolUseId: 'tooluse_1', name: 'get_weather', input: { city: 'Paris' } } },
          { toolUse: { toolUseId: 'tooluse_2', name: 'get_weather', input: { city: 'Rome' } } },
        ],
      },
      {
        role: 'user',
        content: [
          { toolResult: { toolUseId: 'tooluse_1', content: [{ text: '18 C' }] } },
          { toolResult: { toolUseId: 'tooluse_2', content: [{ text: '24 C' }] } },
        ],
      },
    ]);
  });

  it('answers 400 for tool call arguments that are not JSON', () => {
    const err = refusal(() =>
      build({
        messages: [
          { role: 'user', content: 'x' },
          {
            role: 'assistant',
            tool_calls: [{ id: 't', type: 'function', function: { name: 'f', arguments: '{' } }],
          },
        ],
      }),
    );
    expect(err.code).toBe('AIGW_BAD_REQUEST');
    expect(err.status).toBe(400);
  });

  it('drops only the documented harmless fields', () => {
    expect(
      sent({ ...hello, user: 'u-1', seed: 7, metadata: { a: 'b' }, store: false, n: 1, logprobs: false }),
    ).toEqual({
      messages: [{ role: 'user', content: [{ text: 'Hello' }] }],
    });
  });

  it.each([
    [{ n: 2 }, 'n > 1', 'n'],
    [{ logprobs: true }, 'logprobs', 'logprobs'],
    [{ top_logprobs: 3 }, 'logprobs', 'logprobs'],
    [{ response_format: { type: 'json_object' } }, 'response_format json_object', 'response_format'],
    [
      { response_format: { type: 'json_schema', json_schema: { name: 'x' } } },
      'response_format json_schema',
      'response_format',
    ],
    [{ modalities: ['text', 'audio'] }, 'audio output', 'modalities'],
    [{ audio: { voice: 'alloy', format: 'wav' } }, 'audio', 'audio'],
    [{ frequency_penalty: 0.5 }, 'frequency_penalty', 'frequency_penalty'],
    [{ parallel_tool_calls: false }, 'parallel_tool_calls: false', 'parallel_tool_calls'],
    [{ reasoning_effort: 'high' }, 'reasoning_effort', 'reasoning_effort'],
    [
      { tools: [{ type: 'function', function: { name: 'f', strict: true, parameters: {} } }] },
      'strict function schemas',
      'tools',
    ],
  ])('refuses %j naming the feature and the target', (extra, feature, param) => {
    const err = refusal(() => build({ ...hello, ...extra }));
    expect(err.code).toBe('AIGW_UNSUPPORTED_FEATURE');
    expect(err.message).toBe(`${feature} is not supported by target claude-bedrock (bedrock)`);
    expect(err.param).toBe(param);
  });

  it('refuses audio input parts', () => {
    const err = refusal(() =>
      build({
        messages: [
          { role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }] },
        ],
      }),
    );
    expect(err.message).toBe('audio input is not supported by target claude-bedrock (bedrock)');
  });

  it('answers 400 for messages that are missing or malformed', () => {
    expect(refusal(() => build({ messages: [] })).code).toBe('AIGW_BAD_REQUEST');
    expect(refusal(() => build({})).code).toBe('AIGW_BAD_REQUEST');
    expect(refusal(() => build({ messages: [{ role: 'robot', content: 'x' }] })).code).toBe(
      'AIGW_BAD_REQUEST',
    );
    expect(refusal(() => build({ messages: [{ role: 'tool', content: 'x' }] })).code).toBe(
      'AIGW_BAD_REQUEST',
    );
  });

  it('does not change the client body', () => {
    const body = { ...hello, stop: 'x', tools: [{ type: 'function', function: { name: 'f' } }] };
    const copy = structuredClone(body);
    build(body);
    expect(body).toEqual(copy);
  });
});

/** SigV4 computed independently from AWS's documented algorithm, for the signed request. */
function expectedSignature(
  req: { url: string; headers: Record<string, string>; body: string },
  signed: string[],
  secret: string,
  region: string,
): string {
  const url = new URL(req.url);
  const hex = (data: string) => createHash('sha256').update(data).digest('hex');
  const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data).digest();
  // Non-S3 services: each path segment is URI-encoded twice.
  const path = url.pathname
    .split('/')
    .map((s) => encodeURIComponent(s))
    .join('/');
  const canonical = [
    'POST',
    path,
    '',
    ...signed.map((h) => `${h}:${req.headers[h]!.trim()}`),
    '',
    signed.join(';'),
    hex(req.body),
  ].join('\n');
  const date = req.headers['x-amz-date']!;
  const scope = `${date.slice(0, 8)}/${region}/bedrock/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', date, scope, hex(canonical)].join('\n');
  let key = hmac(`AWS4${secret}`, date.slice(0, 8));
  for (const part of [region, 'bedrock', 'aws4_request']) key = hmac(key, part);
  return createHmac('sha256', key).update(toSign).digest('hex');
}

describe('bedrock adapter: SigV4 signing', () => {
  const at = new Date('2024-05-01T12:34:56Z');

  it('signs host, content type, date and payload hash with the target credentials', async () => {
    const req = build(hello);
    const signed = await signBedrockRequest(req, target(), at);
    expect(signed.url).toBe(req.url);
    expect(signed.body).toBe(req.body);
    expect(signed.headers['x-amz-date']).toBe('20240501T123456Z');
    expect(signed.headers.host).toBe('bedrock-runtime.us-east-1.amazonaws.com');
    expect(signed.headers['x-amz-content-sha256']).toBe(createHash('sha256').update(req.body).digest('hex'));
    const auth =
      /^AWS4-HMAC-SHA256 Credential=([^,]+), SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/.exec(
        signed.headers.authorization!,
      );
    expect(auth?.[1]).toBe('AKIAIOSFODNN7EXAMPLE/20240501/us-east-1/bedrock/aws4_request');
    const headers = auth![2]!.split(';');
    expect(headers).toEqual(['accept', 'content-type', 'host', 'x-amz-content-sha256', 'x-amz-date']);
    expect(auth![3]).toBe(expectedSignature(signed, headers, SECRET, 'us-east-1'));
  });

  it('adds and signs the session token of temporary credentials', async () => {
    const t = target({
      aws: {
        region: 'eu-west-3',
        access_key_id: 'ASIAIOSFODNN7EXAMPLE',
        secret_access_key: SECRET,
        session_token: SESSION,
      },
    });
    const signed = await signBedrockRequest(build(hello, { stream: true }, t), t, at);
    expect(signed.headers['x-amz-security-token']).toBe(SESSION);
    const headers = /SignedHeaders=([^,]+)/.exec(signed.headers.authorization!)![1]!.split(';');
    expect(headers).toContain('x-amz-security-token');
    const signature = /Signature=([0-9a-f]{64})$/.exec(signed.headers.authorization!)![1];
    expect(signature).toBe(expectedSignature(signed, headers, SECRET, 'eu-west-3'));
  });

  it('keeps the port of a base URL in the signed host', async () => {
    const t = target({ base_url: 'http://127.0.0.1:4599' });
    const signed = await signBedrockRequest(build(hello, { stream: false }, t), t, at);
    expect(signed.headers.host).toBe('127.0.0.1:4599');
  });

  it('fails as a config error for a target without AWS credentials', async () => {
    const t = target({ aws: undefined });
    await expect(signBedrockRequest(build(hello, { stream: false }, t), t)).rejects.toMatchObject({
      code: 'AIGW_CONFIG_INVALID',
    });
  });
});

describe('bedrock adapter: parseResponse', () => {
  it('translates a text answer into a chat.completion', () => {
    const parsed = bedrockAdapter.parseResponse('chat.completions', fixtureJson('converse.json'));
    expect(parsed.body).toEqual({
      id: expect.stringMatching(/^chatcmpl-[0-9a-f]{32}$/),
      object: 'chat.completion',
      created: expect.any(Number),
      model: 'bedrock',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'Hello! The capital of France is Paris.', refusal: null },
          logprobs: null,
          finish_reason: 'stop',
        },
      ],
      usage: { prompt_tokens: 21, completion_tokens: 12, total_tokens: 33 },
    });
    expect(parsed.usage).toEqual({ input_tokens: 21, output_tokens: 12, total_tokens: 33 });
    expect(parsed.contentChars).toBe('Hello! The capital of France is Paris.'.length);
    expect(parsed.model).toBeUndefined();
  });

  it('translates toolUse blocks into tool_calls with JSON arguments', () => {
    const parsed = bedrockAdapter.parseResponse('chat.completions', fixtureJson('converse-tool-use.json'));
    const choice = (parsed.body as Json).choices[0];
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message).toEqual({
      role: 'assistant',
      content: "I'll look up the current weather in Paris for you.",
      refusal: null,
      tool_calls: [
        {
          id: 'tooluse_kZJMlvQmRJ6eAyJE5GIl7Q',
          type: 'function',
          function: { name: 'get_weather', arguments: '{"city":"Paris","unit":"celsius"}' },
        },
      ],
    });
  });

  it('gives null content for an answer of tool calls only', () => {
    const json = fixtureJson('converse-tool-use.json');
    json.output.message.content.shift();
    expect(
      (bedrockAdapter.parseResponse('chat.completions', json).body as Json).choices[0].message.content,
    ).toBeNull();
  });

  it('counts cached prompt tokens in prompt_tokens and reports max_tokens as length', () => {
    const parsed = bedrockAdapter.parseResponse(
      'chat.completions',
      fixtureJson('converse-cached-max-tokens.json'),
    );
    expect((parsed.body as Json).choices[0].finish_reason).toBe('length');
    expect((parsed.body as Json).usage).toEqual({
      prompt_tokens: 1550,
      completion_tokens: 10,
      total_tokens: 1560,
      prompt_tokens_details: { cached_tokens: 1536 },
    });
    expect(parsed.usage).toEqual({
      input_tokens: 1550,
      output_tokens: 10,
      total_tokens: 1560,
      cached_input_tokens: 1536,
    });
  });

  it.each([
    ['end_turn', 'stop'],
    ['stop_sequence', 'stop'],
    ['max_tokens', 'length'],
    ['tool_use', 'tool_calls'],
    ['guardrail_intervened', 'content_filter'],
    ['content_filtered', 'content_filter'],
  ])('maps stopReason %s to finish_reason %s', (stopReason, finish) => {
    const json = { ...fixtureJson('converse.json'), stopReason };
    expect(
      (bedrockAdapter.parseResponse('chat.completions', json).body as Json).choices[0].finish_reason,
    ).toBe(finish);
  });

  it('reports a guardrail intervention as content_filter', () => {
    const parsed = bedrockAdapter.parseResponse('chat.completions', fixtureJson('converse-guardrail.json'));
    expect((parsed.body as Json).choices[0].finish_reason).toBe('content_filter');
  });

  it('fails as a protocol error on an answer without output.message', () => {
    for (const json of [null, [], {}, { output: {} }, { output: { message: { content: 'x' } } }]) {
      expect(refusal(() => bedrockAdapter.parseResponse('chat.completions', json)).code).toBe(
        'AIGW_UPSTREAM_PROTOCOL',
      );
    }
  });
});

describe('bedrock adapter: event stream decoder', () => {
  const expected = fixtureJson('converse-stream-events.json').map((e: Json) => ({
    event: e.headers[':event-type'],
    data: JSON.stringify(e.payload),
  }));

  it('decodes the recorded stream into one event per message', () => {
    const decoder = new AwsEventStreamDecoder();
    expect(decoder.push(recordedStream())).toEqual(expected);
    expect(decoder.pendingLength).toBe(0);
    expect(decoder.end()).toEqual([]);
  });

  it('gives the same events however the bytes are split, holding the unfinished message', () => {
    const bytes = recordedStream();
    // Where each message ends.
    const ends: number[] = [];
    for (let at = 0; at < bytes.length; at += bytes.readUInt32BE(at)) ends.push(at + bytes.readUInt32BE(at));
    for (let cut = 1; cut < bytes.length; cut++) {
      const decoder = new AwsEventStreamDecoder();
      const first = decoder.push(bytes.subarray(0, cut));
      const whole = ends.filter((end) => end <= cut);
      expect(first).toHaveLength(whole.length);
      expect(decoder.pendingLength).toBe(cut - (whole.at(-1) ?? 0));
      expect([...first, ...decoder.push(bytes.subarray(cut))]).toEqual(expected);
      expect(decoder.pendingLength).toBe(0);
    }
  });

  it('decodes a stream fed one byte at a time', () => {
    const decoder = new AwsEventStreamDecoder();
    const events: SseEvent[] = [];
    for (const byte of recordedStream()) events.push(...decoder.push(Uint8Array.of(byte)));
    expect(events).toEqual(expected);
  });

  it('reports pendingLength as the bytes of the unfinished message', () => {
    const bytes = recordedStream();
    const firstLength = bytes.readUInt32BE(0);
    const decoder = new AwsEventStreamDecoder();
    expect(decoder.push(bytes.subarray(0, firstLength + 10))).toHaveLength(1);
    expect(decoder.pendingLength).toBe(10);
  });

  it('breaks the stream on a checksum failure', () => {
    const bytes = Buffer.from(recordedStream());
    bytes[20] ^= 0xff; // inside the first message's headers
    const err = refusal(() => new AwsEventStreamDecoder().push(bytes));
    expect(err.code).toBe('AIGW_STREAM_BROKEN');
    expect(err.message).toMatch(/checksum/i);
  });

  it('breaks the stream on a corrupt prelude length', () => {
    const bytes = Buffer.from(recordedStream());
    bytes.writeUInt32BE(8, 0);
    expect(refusal(() => new AwsEventStreamDecoder().push(bytes)).code).toBe('AIGW_STREAM_BROKEN');
  });

  it('breaks the stream when it ends inside a message', () => {
    const decoder = new AwsEventStreamDecoder();
    decoder.push(recordedStream().subarray(0, 30));
    const err = refusal(() => decoder.end());
    expect(err.code).toBe('AIGW_STREAM_BROKEN');
    expect(err.message).toMatch(/ended inside a message \(30 bytes\)/);
  });

  it('turns an exception message into an exception event naming its type', () => {
    const events = new AwsEventStreamDecoder().push(
      encode(fixtureJson('converse-stream-exception-events.json')),
    );
    expect(events.map((e) => e.event)).toEqual(['messageStart', 'contentBlockDelta', 'exception']);
    expect(JSON.parse(events[2]!.data)).toEqual({
      type: 'modelStreamErrorException',
      message: 'Model stream error: the model stopped producing output.',
    });
  });

  it('turns an error message (:error-code) into an exception event', () => {
    const bytes = codec.encode({
      headers: {
        ':message-type': { type: 'string', value: 'error' },
        ':error-code': { type: 'string', value: 'InternalFailure' },
        ':error-message': { type: 'string', value: 'An internal error occurred' },
      },
      body: new Uint8Array(0),
    });
    const [event] = new AwsEventStreamDecoder().push(bytes);
    expect(JSON.parse(event!.data)).toEqual({
      type: 'InternalFailure',
      message: 'An internal error occurred',
    });
  });

  it('scrubs AWS secrets from exception messages', () => {
    const bytes = encode([
      {
        headers: { ':message-type': 'exception', ':exception-type': 'validationException' },
        payload: { message: `bad key AKIAIOSFODNN7EXAMPLE secret ${SECRET} token ${SESSION}` },
      },
    ]);
    const data = new AwsEventStreamDecoder().push(bytes)[0]!.data;
    expect(data).not.toContain('AKIAIOSFODNN7EXAMPLE');
    expect(data).not.toContain(SECRET);
    expect(data).not.toContain(SESSION);
  });

  it('breaks the stream on a message of an unknown type or an event without a name', () => {
    const odd = encode([{ headers: { ':message-type': 'surprise' }, payload: {} }]);
    expect(refusal(() => new AwsEventStreamDecoder().push(odd)).code).toBe('AIGW_STREAM_BROKEN');
    const nameless = encode([{ headers: { ':message-type': 'event' }, payload: {} }]);
    expect(refusal(() => new AwsEventStreamDecoder().push(nameless)).code).toBe('AIGW_STREAM_BROKEN');
  });
});

describe('bedrock adapter: stream translation', () => {
  const decode = (name: string) => new AwsEventStreamDecoder().push(encode(fixtureJson(name)));

  it('streams text as OpenAI chunks: role first, deltas, finish_reason, then [DONE]', () => {
    const steps = translate(new AwsEventStreamDecoder().push(recordedStream()));
    const out = chunks(steps);
    expect(out.at(-1)).toBe('[DONE]');
    const [first, ...rest] = out.slice(0, -1);
    expect(first).toEqual({
      id: expect.stringMatching(/^chatcmpl-/),
      object: 'chat.completion.chunk',
      created: expect.any(Number),
      model: 'bedrock',
      choices: [
        {
          index: 0,
          delta: { role: 'assistant', content: '', refusal: null },
          logprobs: null,
          finish_reason: null,
        },
      ],
    });
    expect(rest.map((c) => c.choices[0].delta)).toEqual([
      { content: 'Hello' },
      { content: '! The capital' },
      { content: ' of France is' },
      { content: ' Paris.' },
      {},
    ]);
    expect(rest.at(-1).choices[0].finish_reason).toBe('stop');
    expect(new Set(out.slice(0, -1).map((c) => c.id)).size).toBe(1);
    expect(steps.at(-1)).toMatchObject({
      done: true,
      usage: { input_tokens: 21, output_tokens: 12, total_tokens: 33 },
    });
    expect(steps.map((s) => s.content ?? '').join('')).toBe('Hello! The capital of France is Paris.');
    expect(steps.reduce((n, s) => n + (s.contentChars ?? 0), 0)).toBe(38);
  });

  it('adds the usage chunk and usage: null on the others only when the client asked', () => {
    const events = new AwsEventStreamDecoder().push(recordedStream());
    const withUsage = chunks(translate(events, true));
    expect(withUsage.at(-2)).toEqual({
      id: expect.any(String),
      object: 'chat.completion.chunk',
      created: expect.any(Number),
      model: 'bedrock',
      choices: [],
      usage: { prompt_tokens: 21, completion_tokens: 12, total_tokens: 33 },
    });
    expect(withUsage.slice(0, -2).every((c) => c.usage === null)).toBe(true);
    const without = chunks(translate(events, false));
    expect(without.some((c) => c !== '[DONE]' && 'usage' in c)).toBe(false);
    expect(without).toHaveLength(withUsage.length - 1);
  });

  it('streams a tool call: id and name first, then the arguments in pieces, finish_reason tool_calls', () => {
    const out = chunks(translate(decode('converse-stream-tool-use-events.json'))).slice(0, -1);
    const toolDeltas = out.map((c) => c.choices[0].delta.tool_calls).filter(Boolean);
    expect(toolDeltas[0]).toEqual([
      {
        index: 0,
        id: 'tooluse_kZJMlvQmRJ6eAyJE5GIl7Q',
        type: 'function',
        function: { name: 'get_weather', arguments: '' },
      },
    ]);
    const args = toolDeltas
      .slice(1)
      .map((d: Json) => {
        expect(d).toEqual([{ index: 0, function: { arguments: expect.any(String) } }]);
        return d[0].function.arguments;
      })
      .join('');
    expect(JSON.parse(args)).toEqual({ city: 'Paris', unit: 'celsius' });
    expect(out.map((c) => c.choices[0].delta.content).filter((c) => c)).toEqual([
      "I'll look up",
      ' the weather in Paris.',
    ]);
    expect(out.at(-1).choices[0].finish_reason).toBe('tool_calls');
  });

  it('numbers several tool calls by their order', () => {
    const events = [
      { event: 'messageStart', data: '{"role":"assistant"}' },
      {
        event: 'contentBlockStart',
        data: '{"contentBlockIndex":0,"start":{"toolUse":{"toolUseId":"a","name":"f"}}}',
      },
      { event: 'contentBlockDelta', data: '{"contentBlockIndex":0,"delta":{"toolUse":{"input":"{}"}}}' },
      {
        event: 'contentBlockStart',
        data: '{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"b","name":"g"}}}',
      },
      { event: 'contentBlockDelta', data: '{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{}"}}}' },
    ];
    const indexes = chunks(translate(events))
      .flatMap((c) => c.choices[0].delta.tool_calls ?? [])
      .map((t: Json) => t.index);
    expect(indexes).toEqual([0, 0, 1, 1]);
  });

  it('puts the role on the first chunk even without messageStart', () => {
    const out = chunks(
      translate([{ event: 'contentBlockDelta', data: '{"contentBlockIndex":0,"delta":{"text":"Hi"}}' }]),
    );
    expect(out[0].choices[0].delta).toEqual({ role: 'assistant', content: 'Hi' });
  });

  it('emits nothing for contentBlockStop, reasoning deltas and unknown events', () => {
    const steps = translate([
      { event: 'contentBlockStop', data: '{"contentBlockIndex":0}' },
      {
        event: 'contentBlockDelta',
        data: '{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"hmm"}}}',
      },
      { event: 'somethingNew', data: '{}' },
    ]);
    expect(steps.every((s) => s.emit.length === 0 && !s.error && !s.done)).toBe(true);
  });

  it('reports a mid-stream exception as a broken stream naming the exception', () => {
    const steps = translate(decode('converse-stream-exception-events.json'));
    expect(steps[1]!.content).toBe('Once upon');
    const error = steps[2]!.error!;
    expect(error.code).toBe('AIGW_STREAM_BROKEN');
    expect(error.message).toBe(
      'the provider failed during the stream: modelStreamErrorException: Model stream error: the model stopped producing output.',
    );
    expect(steps.some((s) => s.done)).toBe(false);
  });

  it('reports an unreadable payload as a broken stream', () => {
    for (const data of ['{not json', '[1,2]']) {
      const [step] = translate([{ event: 'contentBlockDelta', data }]);
      expect(step!.error?.code).toBe('AIGW_STREAM_BROKEN');
    }
  });

  it('ends with [DONE] even when metadata has no usage', () => {
    const [step] = translate([{ event: 'metadata', data: '{"metrics":{"latencyMs":5}}' }], true);
    expect(step).toEqual({ emit: ['data: [DONE]\n\n'], usage: undefined, done: true });
  });
});

describe('bedrock adapter: parseError', () => {
  const parse = (name: string) => {
    const f = fixtureJson(name);
    return bedrockAdapter.parseError(f.status, JSON.stringify(f.body), f.headers) as ProviderError;
  };

  it.each([
    ['error-400-validation.json', 400, 'invalid_request_error', 'ValidationException'],
    ['error-403-access-denied.json', 403, 'permission_error', 'AccessDeniedException'],
    ['error-403-invalid-signature.json', 403, 'authentication_error', 'InvalidSignatureException'],
    ['error-403-unrecognized-client.json', 403, 'authentication_error', 'UnrecognizedClientException'],
    ['error-429-throttling.json', 429, 'rate_limit_error', 'ThrottlingException'],
    ['error-503-service-unavailable.json', 503, 'server_error', 'ServiceUnavailableException'],
  ])('%s keeps status %d, type %s and names %s', (name, status, type, code) => {
    const err = parse(name);
    expect(err).toBeInstanceOf(ProviderError);
    expect(err.status).toBe(status);
    expect(err.type).toBe(type);
    expect(err.providerCode).toBe(code);
    expect(err.message).toBe(`${code}: ${fixtureJson(name).body.message}`);
    expect(err.toJSON().error).toMatchObject({ type, code });
  });

  it('marks a prompt too long for the model as context_length_exceeded', () => {
    expect(parse('error-400-input-too-long.json').providerCode).toBe('context_length_exceeded');
  });

  it.each([
    ['ModelTimeoutException', 408],
    ['ModelNotReadyException', 429],
    ['InternalServerException', 500],
  ])('maps %s (%d) to server_error', (name, status) => {
    const err = bedrockAdapter.parseError(status, '{"message":"x"}', { 'x-amzn-errortype': name });
    expect(err.status).toBe(status);
    expect(err.type).toBe('server_error');
  });

  it('reads the error name from __type when the header is missing', () => {
    const err = bedrockAdapter.parseError(
      400,
      '{"__type":"com.amazonaws.bedrockruntime#ValidationException","Message":"bad"}',
      {},
    ) as ProviderError;
    expect(err.providerCode).toBe('ValidationException');
    expect(err.message).toBe('ValidationException: bad');
  });

  it('keeps retry-after', () => {
    const f = fixtureJson('error-429-throttling.json');
    const err = bedrockAdapter.parseError(429, JSON.stringify(f.body), { ...f.headers, 'retry-after': '3' });
    expect(err.headers).toEqual({ 'retry-after': '3' });
  });

  it('scrubs key ids, secret keys and session tokens from the message', () => {
    const err = bedrockAdapter.parseError(
      403,
      JSON.stringify({
        message: `key AKIAIOSFODNN7EXAMPLE / ASIAIOSFODNN7EXAMPLE secret ${SECRET} token ${SESSION}`,
      }),
      { 'x-amzn-errortype': 'UnrecognizedClientException' },
    );
    for (const secret of ['AKIAIOSFODNN7EXAMPLE', 'ASIAIOSFODNN7EXAMPLE', SECRET, SESSION]) {
      expect(err.message).not.toContain(secret);
    }
  });

  it('answers with the status when the body is not JSON or has no message', () => {
    expect(bedrockAdapter.parseError(502, '<html>Bad Gateway</html>', {}).message).toBe(
      'the provider answered HTTP 502',
    );
    const err = bedrockAdapter.parseError(500, '{}', {}) as ProviderError;
    expect(err.type).toBe('server_error');
    expect(err.providerCode).toBeUndefined();
  });
});
