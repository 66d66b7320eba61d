import type { Target } from '../../../../lib/context';
import { GatewayError } from '../../../../lib/errors';
import { parseSse } from '../../../../lib/llm/sse';
import { adapterFor, type StreamStep } from '../../../../lib/relay/providers';
import { anthropicAdapter } from '../../../../lib/relay/providers/anthropic';
import { ProviderError } from '../../../../lib/relay/upstream-error';
import { adapterTarget, PNG, providerFixtures, refusal } from '../../../support/provider-fixtures';

const { fixture, fixtureJson } = providerFixtures('anthropic');

const KEY = 'sk-ant-api03-RelayUnitTestKey0123456789abcd';

function target(overrides: Partial<Target> = {}): Target {
  return adapterTarget(
    {
      name: 'claude',
      provider: 'anthropic',
      model: 'claude-sonnet-4-20250514',
      base_url: 'https://api.anthropic.com/v1',
      api_key: KEY,
      api_version: '2023-06-01',
    },
    overrides,
  );
}

const chat = (body: Record<string, unknown>, opts = { stream: false }, t = target()) =>
  anthropicAdapter.buildRequest('chat.completions', body, t, opts);
const sent = (body: Record<string, unknown>, opts = { stream: false }) =>
  JSON.parse(chat(body, opts).body) as Record<string, unknown>;
const hello = { model: 'claude', messages: [{ role: 'user', content: 'Hello' }] };

const chatRefusal = (body: Record<string, unknown>) => refusal(() => chat(body));

describe('anthropic adapter: registry and endpoints', () => {
  it('is the adapter for provider anthropic and serves chat only', () => {
    expect(adapterFor('anthropic')).toBe(anthropicAdapter);
    expect(anthropicAdapter.supports('chat.completions')).toBe(true);
    for (const endpoint of ['completions', 'embeddings', 'models'] as const) {
      expect(anthropicAdapter.supports(endpoint)).toBe(false);
    }
  });

  it('refuses another endpoint with AIGW_UNSUPPORTED_FEATURE naming it and the target', () => {
    expect(() =>
      anthropicAdapter.buildRequest('embeddings', { input: 'x' }, target(), { stream: false }),
    ).toThrow('the embeddings endpoint is not supported by target claude (anthropic)');
  });
});

describe('anthropic adapter: buildRequest', () => {
  it('posts to base_url/messages with the key, the version and the target model', () => {
    const req = chat(hello);
    expect(req.url).toBe('https://api.anthropic.com/v1/messages');
    expect(req.method).toBe('POST');
    expect(req.headers).toEqual({
      'content-type': 'application/json',
      accept: 'application/json',
      'anthropic-version': '2023-06-01',
      'x-api-key': KEY,
    });
    expect(JSON.parse(req.body)).toEqual({
      model: 'claude-sonnet-4-20250514',
      max_tokens: 4096,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Hello' }] }],
    });
  });

  it('sends the configured API version, extra headers, and never lets them replace the key', () => {
    const req = chat(
      hello,
      { stream: true },
      target({
        api_version: '2023-01-01',
        base_url: 'http://127.0.0.1:9/v1/',
        headers: { 'anthropic-beta': 'prompt-caching-2024-07-31', 'X-Api-Key': 'other' },
      }),
    );
    expect(req.url).toBe('http://127.0.0.1:9/v1/messages');
    expect(req.headers['anthropic-version']).toBe('2023-01-01');
    expect(req.headers['anthropic-beta']).toBe('prompt-caching-2024-07-31');
    expect(req.headers['x-api-key']).toBe(KEY);
    expect(req.headers.accept).toBe('text/event-stream');
    expect(JSON.parse(req.body).stream).toBe(true);
  });

  it('takes max_completion_tokens over max_tokens', () => {
    expect(sent({ ...hello, max_tokens: 10 }).max_tokens).toBe(10);
    expect(sent({ ...hello, max_tokens: 10, max_completion_tokens: 20 }).max_tokens).toBe(20);
  });

  it('translates a conversation with images, tool calls and tool results into the recorded request', () => {
    const body = {
      model: 'weather',
      messages: [
        { role: 'system', content: 'You are a weather assistant.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is the weather where this photo was taken?' },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}`, detail: 'low' } },
            {
              type: 'image_url',
              image_url: {
                url: 'https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg',
              },
            },
          ],
        },
        {
          role: 'assistant',
          content: 'Let me check the weather in Paris.',
          tool_calls: [
            {
              id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6',
              type: 'function',
              function: { name: 'get_weather', arguments: '{"location":"Paris, France"}' },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6', content: '18°C, light rain' },
        { role: 'user', content: 'Should I take an umbrella?' },
      ],
      max_tokens: 1024,
      temperature: 0.3,
      stop: '\n\nHuman:',
      tools: [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            description: 'Get the current weather in a given location',
            parameters: {
              type: 'object',
              properties: {
                location: { type: 'string', description: 'The city and state, e.g. San Francisco, CA' },
              },
              required: ['location'],
            },
          },
        },
      ],
      tool_choice: 'auto',
      parallel_tool_calls: false,
      user: 'user-1234',
      seed: 7,
    };
    expect(sent(body)).toEqual(fixtureJson('request-tools-image.json'));
  });

  it('joins system and developer messages into the top-level system, wherever they are', () => {
    const out = sent({
      messages: [
        { role: 'system', content: 'Be terse.' },
        { role: 'user', content: 'Hi' },
        { role: 'developer', content: [{ type: 'text', text: 'Answer in French.' }] },
      ],
    });
    expect(out.system).toBe('Be terse.\n\nAnswer in French.');
    expect(out.messages).toEqual([{ role: 'user', content: [{ type: 'text', text: 'Hi' }] }]);
  });

  it('merges consecutive turns of one role and parallel tool results into one user turn', () => {
    const out = sent({
      messages: [
        { role: 'user', content: 'one' },
        { role: 'user', content: 'two' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'a', type: 'function', function: { name: 'f', arguments: '{}' } },
            { id: 'b', type: 'function', function: { name: 'g', arguments: '' } },
          ],
        },
        { role: 'tool', tool_call_id: 'a', content: [{ type: 'text', text: 'A' }] },
        { role: 'tool', tool_call_id: 'b', content: 'B' },
      ],
    });
    expect(out.messages).toEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'one' },
          { type: 'text', text: 'two' },
        ],
      },
      {
        role: 'assistant',
        content: [
          { type: 'tool_use', id: 'a', name: 'f', input: {} },
          { type: 'tool_use', id: 'b', name: 'g', input: {} },
        ],
      },
      {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: 'a', content: 'A' },
          { type: 'tool_result', tool_use_id: 'b', content: 'B' },
        ],
      },
    ]);
  });

  it('trims a final assistant turn (a prefill), which Anthropic refuses with trailing whitespace', () => {
    const out = sent({
      messages: [
        { role: 'user', content: 'Count' },
        { role: 'assistant', content: 'one two ' },
      ],
    });
    expect(out.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'Count' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'one two' }] },
    ]);
  });

  it.each([
    ['auto', { type: 'auto' }],
    ['none', { type: 'none' }],
    ['required', { type: 'any' }],
    [
      { type: 'function', function: { name: 'f' } },
      { type: 'tool', name: 'f' },
    ],
  ])('maps tool_choice %j', (choice, expected) => {
    const tools = [{ type: 'function', function: { name: 'f' } }];
    const out = sent({ ...hello, tools, tool_choice: choice });
    expect(out.tool_choice).toEqual(expected);
    expect(out.tools).toEqual([{ name: 'f', input_schema: { type: 'object', properties: {} } }]);
  });

  it('sends stop as stop_sequences and passes top_p', () => {
    const out = sent({ ...hello, stop: ['END', 'STOP'], top_p: 0.9 });
    expect(out.stop_sequences).toEqual(['END', 'STOP']);
    expect(out.top_p).toBe(0.9);
    expect(sent({ ...hello, stop: null })).not.toHaveProperty('stop_sequences');
  });

  it('asks for JSON in the system prompt for json_object and json_schema (no native JSON mode)', () => {
    const json = sent({
      ...hello,
      messages: [{ role: 'system', content: 'Be terse.' }, ...hello.messages],
      response_format: { type: 'json_object' },
    });
    expect(json.system).toMatch(/^Be terse\.\n\nRespond with a single valid JSON object/);

    const schema = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] };
    const out = sent({
      ...hello,
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema } },
    });
    expect(out.system).toContain(JSON.stringify(schema));
    expect(sent({ ...hello, response_format: { type: 'text' } })).not.toHaveProperty('system');
  });

  it('accepts the no-op values of fields it cannot serve', () => {
    expect(() =>
      chat({
        ...hello,
        n: 1,
        logprobs: false,
        top_logprobs: 0,
        presence_penalty: 0,
        frequency_penalty: 0,
        logit_bias: {},
        parallel_tool_calls: true,
        stream_options: { include_usage: true },
        store: false,
        service_tier: 'auto',
        prompt_cache_key: 'k',
        modalities: ['text'],
      }),
    ).not.toThrow();
  });

  it('sends the end-user id as metadata.user_id, safety_identifier first', () => {
    expect(sent({ ...hello, user: 'u1' }).metadata).toEqual({ user_id: 'u1' });
    expect(sent({ ...hello, user: 'u1', safety_identifier: 's1' }).metadata).toEqual({ user_id: 's1' });
    expect(sent({ ...hello, user: '' })).not.toHaveProperty('metadata');
  });

  it.each([
    ['n > 1', { n: 2 }, 'n'],
    ['logprobs', { logprobs: true }, 'logprobs'],
    ['top_logprobs', { top_logprobs: 3 }, 'top_logprobs'],
    ['presence_penalty', { presence_penalty: 0.5 }, 'presence_penalty'],
    ['logit_bias', { logit_bias: { '50256': -100 } }, 'logit_bias'],
    ['audio', { audio: { voice: 'alloy', format: 'mp3' } }, 'audio'],
    ['audio output', { modalities: ['text', 'audio'] }, 'modalities'],
    ['reasoning_effort', { reasoning_effort: 'high' }, 'reasoning_effort'],
    ['functions', { functions: [{ name: 'f' }] }, 'functions'],
    ['response_format json_mode', { response_format: { type: 'json_mode' } }, 'response_format'],
  ])('refuses %s with 400 naming the feature and the target', (feature, extra, param) => {
    const err = chatRefusal({ ...hello, ...extra });
    expect(err.code).toBe('AIGW_UNSUPPORTED_FEATURE');
    expect(err.status).toBe(400);
    expect(err.message).toBe(`${feature} is not supported by target claude (anthropic)`);
    expect(err.param).toBe(param);
  });

  it('refuses audio and file parts', () => {
    const audio = chatRefusal({
      messages: [
        { role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }] },
      ],
    });
    expect(audio.message).toBe('audio input is not supported by target claude (anthropic)');
    expect(audio.param).toBe('messages[0].content[0]');
    const file = chatRefusal({
      messages: [{ role: 'user', content: [{ type: 'file', file: { file_id: 'f' } }] }],
    });
    expect(file.message).toBe('file input is not supported by target claude (anthropic)');
    const system = chatRefusal({
      messages: [
        { role: 'system', content: [{ type: 'image_url', image_url: { url: 'https://x.test/a.png' } }] },
      ],
    });
    expect(system.message).toBe(
      'content part type image_url in this message role is not supported by target claude (anthropic)',
    );
  });

  it('refuses image types Anthropic cannot read, without echoing the data', () => {
    const err = chatRefusal({
      messages: [
        { role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/bmp;base64,Qk0=' } }] },
      ],
    });
    expect(err.message).toBe('image type image/bmp is not supported by target claude (anthropic)');
    const odd = chatRefusal({
      messages: [
        { role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:<b>sk-x;base64,AA' } }] },
      ],
    });
    expect(odd.message).toBe('this image type is not supported by target claude (anthropic)');
  });

  it('does not echo an unknown field name that is not a plain name', () => {
    const err = chatRefusal({ ...hello, 'sk-ant-secret-<b>': 1 });
    expect(err.code).toBe('AIGW_UNSUPPORTED_FEATURE');
    expect(err.message).not.toContain('secret');
  });

  it.each([
    [
      'a tool call with arguments that are not a JSON object',
      [
        { role: 'user', content: 'x' },
        {
          role: 'assistant',
          tool_calls: [{ id: 'a', type: 'function', function: { name: 'f', arguments: '[1' } }],
        },
      ],
      'messages[1].tool_calls[0].function.arguments',
    ],
    ['a tool message without tool_call_id', [{ role: 'tool', content: 'x' }], 'messages[0].tool_call_id'],
    ['an unknown role', [{ role: 'robot', content: 'x' }], 'messages[0].role'],
    [
      'a data URL that is not base64',
      [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png,abc' } }] }],
      'messages[0].content[0].image_url.url',
    ],
    [
      'an image URL of another scheme',
      [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'file:///etc/passwd' } }] }],
      'messages[0].content[0].image_url.url',
    ],
  ])('answers 400 AIGW_BAD_REQUEST for %s', (_name, messages, param) => {
    const err = chatRefusal({ messages });
    expect(err.code).toBe('AIGW_BAD_REQUEST');
    expect(err.param).toBe(param);
  });
});

describe('anthropic adapter: parseResponse', () => {
  it('turns a text message into a chat.completion with usage', () => {
    const parsed = anthropicAdapter.parseResponse('chat.completions', fixtureJson('message.json'));
    expect(parsed.body).toEqual({
      id: 'msg_01XFDUDYJgAACzvnptvVoYEL',
      object: 'chat.completion',
      created: expect.any(Number),
      model: 'claude-sonnet-4-20250514',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'Hello! How can I help you today?', refusal: null },
          logprobs: null,
          finish_reason: 'stop',
        },
      ],
      usage: {
        prompt_tokens: 12,
        completion_tokens: 12,
        total_tokens: 24,
        prompt_tokens_details: { cached_tokens: 0 },
      },
    });
    expect(parsed.usage).toEqual({
      input_tokens: 12,
      output_tokens: 12,
      total_tokens: 24,
      cached_input_tokens: 0,
    });
    expect(parsed.model).toBe('claude-sonnet-4-20250514');
    expect(parsed.contentChars).toBe('Hello! How can I help you today?'.length);
  });

  it('turns tool_use blocks into tool_calls, and counts cached prompt tokens', () => {
    const parsed = anthropicAdapter.parseResponse('chat.completions', fixtureJson('message-tool-use.json'));
    const body = parsed.body as { choices: { message: unknown; finish_reason: string }[]; usage: unknown };
    const args = '{"location":"Paris, France","unit":"celsius"}';
    expect(body.choices[0]).toMatchObject({
      finish_reason: 'tool_calls',
      message: {
        role: 'assistant',
        content: "I'll check the current weather in Paris for you.",
        tool_calls: [
          {
            id: 'toolu_01A09q90qw90lq917835lq9',
            type: 'function',
            function: { name: 'get_weather', arguments: args },
          },
        ],
      },
    });
    expect(body.usage).toEqual({
      prompt_tokens: 398 + 1024,
      completion_tokens: 71,
      total_tokens: 398 + 1024 + 71,
      prompt_tokens_details: { cached_tokens: 1024 },
    });
    expect(parsed.usage).toEqual({
      input_tokens: 1422,
      output_tokens: 71,
      total_tokens: 1493,
      cached_input_tokens: 1024,
    });
    expect(parsed.contentChars).toBe("I'll check the current weather in Paris for you.".length + args.length);
  });

  it('gives content null when the answer is only tool calls, and counts cache writes as prompt', () => {
    const parsed = anthropicAdapter.parseResponse('chat.completions', {
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      model: 'm',
      content: [{ type: 'tool_use', id: 't', name: 'f', input: {} }],
      stop_reason: 'tool_use',
      usage: {
        input_tokens: 5,
        cache_creation_input_tokens: 100,
        cache_read_input_tokens: 0,
        output_tokens: 3,
      },
    });
    const body = parsed.body as { choices: { message: { content: unknown } }[] };
    expect(body.choices[0]!.message.content).toBeNull();
    expect(parsed.usage).toEqual({
      input_tokens: 105,
      output_tokens: 3,
      total_tokens: 108,
      cached_input_tokens: 0,
    });
  });

  it.each([
    ['end_turn', 'stop'],
    ['stop_sequence', 'stop'],
    ['max_tokens', 'length'],
    ['tool_use', 'tool_calls'],
    ['refusal', 'content_filter'],
  ])('maps stop_reason %s to finish_reason %s', (stopReason, finish) => {
    const json = { ...(fixtureJson('message.json') as object), stop_reason: stopReason };
    const body = anthropicAdapter.parseResponse('chat.completions', json).body as {
      choices: { finish_reason: string }[];
    };
    expect(body.choices[0]!.finish_reason).toBe(finish);
  });

  it('refuses a body that is not a message as a protocol error, and reports no usage when there is none', () => {
    expect(() => anthropicAdapter.parseResponse('chat.completions', { hello: 1 })).toThrow(
      expect.objectContaining({ code: 'AIGW_UPSTREAM_PROTOCOL' }),
    );
    expect(() => anthropicAdapter.parseResponse('chat.completions', 'text')).toThrow(GatewayError);
    const { usage, ...json } = fixtureJson('message.json') as Record<string, unknown>;
    const parsed = anthropicAdapter.parseResponse('chat.completions', json);
    expect(parsed.usage).toBeUndefined();
    expect(parsed.body).not.toHaveProperty('usage');
    expect(usage).toBeDefined();
  });
});

function translate(sse: string, clientWantsUsage: boolean) {
  const translator = anthropicAdapter.streamTranslator('chat.completions', { clientWantsUsage });
  return parseSse(sse).map((event) => translator.onEvent(event));
}

const chunks = (steps: StreamStep[]) =>
  steps
    .flatMap((s) => s.emit)
    .map((e) => e.replace(/^data: /, '').trim())
    .filter((d) => d !== '[DONE]')
    .map((d) => JSON.parse(d) as Chunk);

interface ToolCallDelta {
  index: number;
  id?: string;
  type?: string;
  function: { name?: string; arguments: string };
}
interface Chunk {
  id: string;
  choices: { delta: { content?: string; tool_calls?: ToolCallDelta[] }; finish_reason: string | null }[];
  usage?: unknown;
}

describe('anthropic adapter: stream translation', () => {
  it('streams text as OpenAI chunks: role first, one chunk per delta, finish, then [DONE]', () => {
    const steps = translate(fixture('message-stream.sse'), false);
    const out = chunks(steps);
    expect(out.map((c) => c.choices[0]?.delta)).toEqual([
      { role: 'assistant', content: '', refusal: null },
      { content: 'Hello' },
      { content: '!' },
      {},
    ]);
    expect(out.at(-1)!.choices[0].finish_reason).toBe('stop');
    for (const c of out) {
      expect(c).toMatchObject({
        id: 'msg_01Ux8Wd2nJq5Tb7Rv3Kc9Lm4',
        object: 'chat.completion.chunk',
        created: expect.any(Number),
        model: 'claude-sonnet-4-20250514',
      });
      expect(c).not.toHaveProperty('usage');
    }
    expect(steps.at(-1)).toEqual({ emit: ['data: [DONE]\n\n'], done: true });
    expect(steps.filter((s) => s.done)).toHaveLength(1);
    expect(steps.map((s) => s.content ?? '').join('')).toBe('Hello!');
    expect(steps.reduce((n, s) => n + (s.contentChars ?? 0), 0)).toBe(6);
    expect(steps[0]!.model).toBe('claude-sonnet-4-20250514');
    // The opening chunk carries no text and no usage: the relay drops it when it continues a
    // broken stream on this target, so the client does not get a second role chunk.
    expect(steps[0]!.content).toBeUndefined();
    expect(steps[0]!.usage).toBeUndefined();
  });

  it('records usage always, and sends the usage chunk only when the client asked', () => {
    const quiet = translate(fixture('message-stream.sse'), false);
    const finalUsage = { input_tokens: 12, output_tokens: 2, total_tokens: 14, cached_input_tokens: 0 };
    expect(quiet.filter((s) => s.usage).at(-1)!.usage).toEqual(finalUsage);

    const asked = translate(fixture('message-stream.sse'), true);
    expect(asked.filter((s) => s.usage).at(-1)!.usage).toEqual(finalUsage);
    const out = chunks(asked);
    expect(out.at(-1)).toMatchObject({
      choices: [],
      usage: {
        prompt_tokens: 12,
        completion_tokens: 2,
        total_tokens: 14,
        prompt_tokens_details: { cached_tokens: 0 },
      },
    });
    expect(out.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    expect(out.at(-2)!.choices[0].finish_reason).toBe('stop');
  });

  it('counts cache reads and writes in the prompt, and takes the counts message_delta repeats', () => {
    // Newer API versions repeat input and cache counts in message_delta.
    const sse = [
      'data: {"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":10,"cache_creation_input_tokens":5,"cache_read_input_tokens":100,"output_tokens":1}}}',
      'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":10,"cache_creation_input_tokens":5,"cache_read_input_tokens":200,"output_tokens":7}}',
    ].join('\n\n');
    const steps = translate(`${sse}\n\n`, true);
    expect(steps[0]!.usage).toBeUndefined();
    expect(steps[1]!.usage).toEqual({
      input_tokens: 215,
      output_tokens: 7,
      total_tokens: 222,
      cached_input_tokens: 200,
    });
    expect(chunks(steps).at(-1)!.usage).toEqual({
      prompt_tokens: 215,
      completion_tokens: 7,
      total_tokens: 222,
      prompt_tokens_details: { cached_tokens: 200 },
    });
  });

  it('streams a tool call: id and name first, then the arguments in pieces', () => {
    const steps = translate(fixture('message-tool-use-stream.sse'), false);
    const out = chunks(steps);
    const calls = out.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    expect(calls).toEqual([
      {
        index: 0,
        id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6',
        type: 'function',
        function: { name: 'get_weather', arguments: '' },
      },
      { index: 0, function: { arguments: '{"location":' } },
      { index: 0, function: { arguments: ' "Paris, France"}' } },
    ]);
    expect(out.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Let me check the weather.');
    expect(out.at(-1)!.choices[0].finish_reason).toBe('tool_calls');
    expect(steps.filter((s) => s.usage).at(-1)!.usage).toMatchObject({
      input_tokens: 472,
      output_tokens: 89,
    });
    expect(steps.at(-1)!.done).toBe(true);
  });

  it('numbers tool calls from 0 whatever the block index', () => {
    const sse = [
      'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":1,"output_tokens":1}}}',
      'event: content_block_start\ndata: {"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"a","name":"f","input":{}}}',
      'event: content_block_start\ndata: {"type":"content_block_start","index":5,"content_block":{"type":"tool_use","id":"b","name":"g","input":{}}}',
      'event: content_block_delta\ndata: {"type":"content_block_delta","index":5,"delta":{"type":"input_json_delta","partial_json":"{}"}}',
    ].join('\n\n');
    const calls = chunks(translate(`${sse}\n\n`, false)).flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    expect(calls.map((c) => [c.index, c.id])).toEqual([
      [0, 'a'],
      [1, 'b'],
      [1, undefined],
    ]);
  });

  it('ignores ping, unknown events and thinking deltas', () => {
    const steps = translate(
      'event: ping\ndata: {"type": "ping"}\n\nevent: future\ndata: {"type":"future_event"}\n\n' +
        'data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}\n\n',
      true,
    );
    expect(steps).toEqual([{ emit: [] }, { emit: [] }, { emit: [] }]);
  });

  it('turns an error event into AIGW_STREAM_BROKEN after the text already sent, without [DONE]', () => {
    const steps = translate(fixture('message-stream-error.sse'), true);
    const last = steps.at(-1)!;
    expect(last.emit).toEqual([]);
    expect(last.error).toBeInstanceOf(GatewayError);
    expect(last.error!.code).toBe('AIGW_STREAM_BROKEN');
    expect(last.error!.message).toBe('the provider failed during the stream (overloaded_error): Overloaded');
    expect(steps.some((s) => s.done)).toBe(false);
    expect(steps.flatMap((s) => s.emit).join('')).not.toContain('[DONE]');
  });

  it('scrubs keys from a stream error, and breaks on unreadable events', () => {
    const [err] = translate(
      `event: error\ndata: {"type":"error","error":{"type":"api_error","message":"bad ${KEY}"}}\n\n`,
      false,
    );
    expect(err!.error!.message).not.toContain(KEY);

    for (const sse of [
      'data: {"type": \n\n',
      'data: [1,2]\n\n',
      'data: {"type":"content_block_delta","index":9,"delta":{"type":"input_json_delta","partial_json":"{"}}\n\n',
      'data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","input":{}}}\n\n',
    ]) {
      const [step] = translate(sse, false);
      expect(step!.error!.code).toBe('AIGW_STREAM_BROKEN');
      expect(step!.emit).toEqual([]);
    }
  });
});

describe('anthropic adapter: parseError', () => {
  it('keeps a 529 overload with its status, as a server error coded overloaded_error', () => {
    const err = anthropicAdapter.parseError(529, fixture('error-529-overloaded.json'), {});
    expect(err).toBeInstanceOf(ProviderError);
    expect(err.status).toBe(529);
    expect(err.toJSON()).toEqual({
      error: { message: 'Overloaded', type: 'server_error', code: 'overloaded_error', param: null },
    });
  });

  it('keeps a 429 with retry-after as a rate_limit_error', () => {
    const err = anthropicAdapter.parseError(429, fixture('error-429-rate-limit.json'), {
      'retry-after': ['7'],
    });
    expect(err.status).toBe(429);
    expect(err.type).toBe('rate_limit_error');
    expect(err.headers).toEqual({ 'retry-after': '7' });
    expect(err.message).toContain('would exceed the rate limit');
  });

  it('maps a 401 to authentication_error', () => {
    const err = anthropicAdapter.parseError(401, fixture('error-401-authentication.json'), {});
    expect(err.status).toBe(401);
    expect(err.type).toBe('authentication_error');
    expect(err.message).toBe('invalid x-api-key');
  });

  it('codes a prompt over the context window context_length_exceeded, for failover', () => {
    const err = anthropicAdapter.parseError(
      400,
      fixture('error-400-prompt-too-long.json'),
      {},
    ) as ProviderError;
    expect(err.providerCode).toBe('context_length_exceeded');
    expect(err.type).toBe('invalid_request_error');
  });

  it('scrubs keys, and does not echo a body that is not JSON', () => {
    const echoed = JSON.stringify({
      type: 'error',
      error: { type: 'authentication_error', message: `bad ${KEY}` },
    });
    expect(anthropicAdapter.parseError(401, echoed, {}).message).not.toContain(KEY);
    const html = anthropicAdapter.parseError(502, `<html>${KEY}</html>`, {});
    expect(html.message).toBe('the provider answered HTTP 502');
    expect(html.type).toBe('server_error');
  });
});
