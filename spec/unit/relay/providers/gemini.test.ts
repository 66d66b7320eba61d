import type { Target } from '../../../../lib/context';
import { parseSse } from '../../../../lib/llm/sse';
import { adapterFor, type StreamStep } from '../../../../lib/relay/providers';
import { geminiAdapter } from '../../../../lib/relay/providers/gemini';
import { ProviderError } from '../../../../lib/relay/upstream-error';
import { adapterTarget, PNG, providerFixtures, refusal } from '../../../support/provider-fixtures';

const { fixture, fixtureJson } = providerFixtures('gemini');

const KEY = 'AIzaSyRelayUnitTestKey0123456789abcdefgh';

function target(overrides: Partial<Target> = {}): Target {
  return adapterTarget(
    {
      name: 'gem',
      provider: 'gemini',
      model: 'gemini-2.0-flash',
      base_url: 'https://generativelanguage.googleapis.com/v1beta',
      api_key: KEY,
    },
    overrides,
  );
}

type Json = Record<string, unknown>;
const chat = (body: Json, opts = { stream: false }, t = target()) =>
  geminiAdapter.buildRequest('chat.completions', body, t, opts);
// biome-ignore lint/suspicious/noExplicitAny: tests read deep into the translated body
const sent = (body: Json, opts = { stream: false }): any => JSON.parse(chat(body, opts).body);
// biome-ignore lint/suspicious/noExplicitAny: tests read deep into the translated answer
const deep = (value: unknown): any => value;
const hello = { model: 'gem', messages: [{ role: 'user', content: 'Hello' }] };

const chatRefusal = (body: Json, opts = { stream: false }) => refusal(() => chat(body, opts));

describe('gemini adapter: registry and endpoints', () => {
  it('is the adapter for provider gemini; serves chat and embeddings only', () => {
    expect(adapterFor('gemini')).toBe(geminiAdapter);
    expect(geminiAdapter.supports('chat.completions')).toBe(true);
    expect(geminiAdapter.supports('embeddings')).toBe(true);
    expect(geminiAdapter.supports('completions')).toBe(false);
    expect(geminiAdapter.supports('models')).toBe(false);
  });

  it('refuses the completions endpoint naming it and the target', () => {
    const err = refusal(() =>
      geminiAdapter.buildRequest('completions', { prompt: 'x' }, target(), { stream: false }),
    );
    expect(err.code).toBe('AIGW_UNSUPPORTED_FEATURE');
    expect(err.status).toBe(400);
    expect(err.message).toBe('the completions endpoint is not supported by target gem (gemini)');
  });
});

describe('gemini adapter: buildRequest (chat)', () => {
  it('posts to models/{model}:generateContent with the key in x-goog-api-key, never in the URL', () => {
    const req = chat(hello);
    expect(req.url).toBe(
      'https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent',
    );
    expect(req.url).not.toContain(KEY);
    expect(req.method).toBe('POST');
    expect(req.headers).toEqual({
      'content-type': 'application/json',
      accept: 'application/json',
      'x-goog-api-key': KEY,
    });
    expect(JSON.parse(req.body)).toEqual({ contents: [{ role: 'user', parts: [{ text: 'Hello' }] }] });
  });

  it('streams from :streamGenerateContent?alt=sse', () => {
    const req = chat({ ...hello, stream: true, stream_options: { include_usage: true } }, { stream: true });
    expect(req.url).toBe(
      'https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse',
    );
    expect(req.headers.accept).toBe('text/event-stream');
    expect(JSON.parse(req.body)).not.toHaveProperty('stream');
  });

  it('keeps a full model name, tolerates a trailing slash, and never lets target headers replace the key', () => {
    const req = chat(
      hello,
      { stream: false },
      target({
        model: 'tunedModels/my-model-1',
        base_url: 'http://127.0.0.1:9/v1beta/',
        headers: { 'X-Goog-Api-Key': 'other', 'X-Goog-User-Project': 'p1' },
      }),
    );
    expect(req.url).toBe('http://127.0.0.1:9/v1beta/tunedModels/my-model-1:generateContent');
    expect(req.headers['x-goog-api-key']).toBe(KEY);
    expect(req.headers['x-goog-user-project']).toBe('p1');
  });

  it('sends no key header when the target has none', () => {
    expect(Object.keys(chat(hello, { stream: false }, target({ api_key: undefined })).headers)).not.toContain(
      'x-goog-api-key',
    );
  });

  it('turns system and developer messages into systemInstruction and roles into user/model', () => {
    const body = sent({
      messages: [
        { role: 'system', content: 'Be terse.' },
        { role: 'developer', content: [{ type: 'text', text: 'Answer in French.' }] },
        { role: 'user', content: 'Hi', name: 'ann' },
        { role: 'assistant', content: 'Salut.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Again' },
            { type: 'text', text: 'please' },
          ],
        },
      ],
    });
    expect(body.systemInstruction).toEqual({ parts: [{ text: 'Be terse.' }, { text: 'Answer in French.' }] });
    expect(body.contents).toEqual([
      { role: 'user', parts: [{ text: 'Hi' }] },
      { role: 'model', parts: [{ text: 'Salut.' }] },
      { role: 'user', parts: [{ text: 'Again' }, { text: 'please' }] },
    ]);
  });

  it('maps generation parameters', () => {
    const body = sent({
      ...hello,
      max_tokens: 100,
      temperature: 0.3,
      top_p: 0.9,
      top_k: 40,
      stop: ['END', 'STOP'],
      n: 2,
      seed: 7,
      presence_penalty: 0.5,
      frequency_penalty: 0.25,
      user: 'u-1',
      parallel_tool_calls: false,
    });
    expect(body.generationConfig).toEqual({
      maxOutputTokens: 100,
      temperature: 0.3,
      topP: 0.9,
      topK: 40,
      stopSequences: ['END', 'STOP'],
      candidateCount: 2,
      seed: 7,
      presencePenalty: 0.5,
      frequencyPenalty: 0.25,
    });
    expect(sent({ ...hello, max_completion_tokens: 5, stop: 'X' }).generationConfig).toEqual({
      maxOutputTokens: 5,
      stopSequences: ['X'],
    });
  });

  it('treats null fields as absent (clients send them)', () => {
    expect(sent({ ...hello, temperature: null, stop: null, tools: null, logprobs: null })).toEqual({
      contents: [{ role: 'user', parts: [{ text: 'Hello' }] }],
    });
  });

  it('maps reasoning_effort to a thinking budget', () => {
    expect(sent({ ...hello, reasoning_effort: 'low' }).generationConfig).toEqual({
      thinkingConfig: { thinkingBudget: 1024 },
    });
    expect(chatRefusal({ ...hello, reasoning_effort: 'max' }).code).toBe('AIGW_BAD_REQUEST');
  });

  it('sends data: images inline and http(s) images by reference with a type from the extension', () => {
    const body = sent({
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is this?' },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}`, detail: 'low' } },
            { type: 'image_url', image_url: { url: 'https://example.com/cat.JPG?size=2' } },
            { type: 'file', file: { file_data: `data:application/pdf;base64,JVBERi0=`, filename: 'a.pdf' } },
          ],
        },
      ],
    });
    expect(body.contents[0].parts).toEqual([
      { text: 'What is this?' },
      { inlineData: { mimeType: 'image/png', data: PNG } },
      { fileData: { mimeType: 'image/jpeg', fileUri: 'https://example.com/cat.JPG?size=2' } },
      { inlineData: { mimeType: 'application/pdf', data: 'JVBERi0=' } },
    ]);
  });

  it('refuses an image URL whose type cannot be told from its extension', () => {
    const err = chatRefusal({
      messages: [
        { role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/img' } }] },
      ],
    });
    expect(err.code).toBe('AIGW_UNSUPPORTED_FEATURE');
    expect(err.message).toMatch(
      /^an image URL without a known extension .* is not supported by target gem \(gemini\)$/,
    );
  });

  it('rejects a data: URL that is not base64 and a URL of another scheme', () => {
    for (const url of ['data:image/png,rawbytes', 'ftp://example.com/a.png', 'not a url']) {
      const err = chatRefusal({
        messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url } }] }],
      });
      expect(err.code).toBe('AIGW_BAD_REQUEST');
      expect(err.message).not.toContain(url);
    }
  });

  it('translates tools with their schemas and tool_choice', () => {
    const tools = [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'Weather in a city',
          parameters: {
            $schema: 'http://json-schema.org/draft-07/schema#',
            type: 'object',
            properties: {
              city: { type: 'string', description: 'City name', format: 'hostname' },
              unit: { type: ['string', 'null'], enum: ['celsius', 'fahrenheit'] },
              days: { type: 'integer', minimum: 1, exclusiveMaximum: 15 },
              tags: { type: 'array', items: { type: 'string' }, uniqueItems: true },
              when: { type: 'string', format: 'date-time' },
            },
            required: ['city', 'ghost'],
            additionalProperties: false,
          },
          strict: true,
        },
      },
      { type: 'function', function: { name: 'now', parameters: { type: 'object', properties: {} } } },
    ];
    const body = sent({ ...hello, tools, tool_choice: 'required' });
    expect(body.tools).toEqual([
      {
        functionDeclarations: [
          {
            name: 'get_weather',
            description: 'Weather in a city',
            parameters: {
              type: 'OBJECT',
              properties: {
                city: { type: 'STRING', description: 'City name' },
                unit: { type: 'STRING', nullable: true, enum: ['celsius', 'fahrenheit'] },
                days: { type: 'INTEGER', minimum: 1 },
                tags: { type: 'ARRAY', items: { type: 'STRING' } },
                when: { type: 'STRING', format: 'date-time' },
              },
              required: ['city'],
            },
          },
          // Gemini refuses an OBJECT without properties.
          { name: 'now' },
        ],
      },
    ]);
    expect(body.toolConfig).toEqual({ functionCallingConfig: { mode: 'ANY' } });
    expect(sent({ ...hello, tools, tool_choice: 'auto' }).toolConfig).toEqual({
      functionCallingConfig: { mode: 'AUTO' },
    });
    expect(sent({ ...hello, tools, tool_choice: 'none' }).toolConfig).toEqual({
      functionCallingConfig: { mode: 'NONE' },
    });
    expect(
      sent({ ...hello, tools, tool_choice: { type: 'function', function: { name: 'now' } } }).toolConfig,
    ).toEqual({
      functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['now'] },
    });
  });

  it('inlines local $refs, turns const and oneOf into enum and anyOf, and refuses what would change the schema', () => {
    const parameters = {
      type: 'object',
      $defs: { Point: { type: 'object', properties: { x: { type: 'number' } } } },
      properties: {
        at: { $ref: '#/$defs/Point', description: 'where' },
        kind: { const: 'circle' },
        size: { oneOf: [{ type: 'number' }, { type: 'string' }] },
        id: { type: ['integer', 'string'] },
      },
    };
    const tool = (p: unknown) => ({
      ...hello,
      tools: [{ type: 'function', function: { name: 'f', parameters: p } }],
    });
    expect(sent(tool(parameters)).tools[0].functionDeclarations[0].parameters).toEqual({
      type: 'OBJECT',
      properties: {
        at: { type: 'OBJECT', description: 'where', properties: { x: { type: 'NUMBER' } } },
        kind: { type: 'STRING', enum: ['circle'] },
        size: { anyOf: [{ type: 'NUMBER' }, { type: 'STRING' }] },
        id: { anyOf: [{ type: 'INTEGER' }, { type: 'STRING' }] },
      },
    });
    const recursive = {
      type: 'object',
      $defs: { N: { type: 'object', properties: { next: { $ref: '#/$defs/N' } } } },
      properties: { n: { $ref: '#/$defs/N' } },
    };
    for (const p of [
      recursive,
      { type: 'object', properties: { a: { not: { type: 'string' } } } },
      { type: 'object', properties: { a: { $ref: 'https://example.com/s.json' } } },
      { type: 'object', properties: { a: { allOf: [{ type: 'string' }, { minLength: 1 }] } } },
    ]) {
      const err = chatRefusal(tool(p));
      expect(err.code).toBe('AIGW_UNSUPPORTED_FEATURE');
      expect(err.message).toMatch(/in tool parameters is not supported by target gem \(gemini\)$/);
    }
  });

  it('makes an anyOf with a null branch (an optional value) nullable', () => {
    const parameters = {
      type: 'object',
      properties: {
        note: { anyOf: [{ type: 'string' }, { type: 'null' }], description: 'optional note', default: null },
        id: { anyOf: [{ type: 'integer' }, { type: 'string' }, { type: 'null' }] },
      },
    };
    const body = sent({ ...hello, tools: [{ type: 'function', function: { name: 'f', parameters } }] });
    expect(body.tools[0].functionDeclarations[0].parameters.properties).toEqual({
      note: { type: 'STRING', nullable: true, description: 'optional note', default: null },
      id: { nullable: true, anyOf: [{ type: 'INTEGER' }, { type: 'STRING' }] },
    });
  });

  it('maps allowed_tools in mode required to ANY limited to them, and refuses mode auto', () => {
    const allowed = (mode: string) => ({
      ...hello,
      tools: [{ type: 'function', function: { name: 'f' } }],
      tool_choice: {
        type: 'allowed_tools',
        allowed_tools: { mode, tools: [{ type: 'function', function: { name: 'f' } }] },
      },
    });
    expect(sent(allowed('required')).toolConfig).toEqual({
      functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['f'] },
    });
    expect(chatRefusal(allowed('auto')).code).toBe('AIGW_UNSUPPORTED_FEATURE');
  });

  it('sends assistant tool_calls as functionCall parts and tool results as functionResponse parts in one turn', () => {
    const body = sent({
      messages: [
        { role: 'user', content: 'Weather and time in Paris?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'call_1',
              type: 'function',
              function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
              extra_content: { google: { thought_signature: 'c2ln' } },
            },
            { id: 'call_2', type: 'function', function: { name: 'get_time', arguments: '{"city":"Paris"}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: '{"temp":21}' },
        { role: 'tool', tool_call_id: 'call_2', content: '10:00' },
        { role: 'user', content: 'Thanks' },
      ],
    });
    expect(body.contents).toEqual([
      { role: 'user', parts: [{ text: 'Weather and time in Paris?' }] },
      {
        role: 'model',
        parts: [
          { functionCall: { name: 'get_weather', args: { city: 'Paris' } }, thoughtSignature: 'c2ln' },
          { functionCall: { name: 'get_time', args: { city: 'Paris' } } },
        ],
      },
      {
        role: 'user',
        parts: [
          { functionResponse: { name: 'get_weather', response: { temp: 21 } } },
          { functionResponse: { name: 'get_time', response: { output: '10:00' } } },
          { text: 'Thanks' },
        ],
      },
    ]);
  });

  it('rejects a tool message answering no known call, and arguments that are not a JSON object', () => {
    const orphan = chatRefusal({ messages: [{ role: 'tool', tool_call_id: 'call_x', content: 'r' }] });
    expect(orphan.code).toBe('AIGW_BAD_REQUEST');
    const call = (args: string) => ({
      messages: [
        {
          role: 'assistant',
          tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: args } }],
        },
      ],
    });
    expect(chatRefusal(call('{not json')).code).toBe('AIGW_BAD_REQUEST');
    expect(chatRefusal(call('[1,2]')).code).toBe('AIGW_BAD_REQUEST');
    expect(sent(call('')).contents[0].parts).toEqual([{ functionCall: { name: 'f', args: {} } }]);
  });

  it('maps response_format to JSON mode, with a schema where it translates', () => {
    expect(sent({ ...hello, response_format: { type: 'json_object' } }).generationConfig).toEqual({
      responseMimeType: 'application/json',
    });
    const schema = {
      type: 'object',
      properties: { name: { type: 'string' } },
      required: ['name'],
      additionalProperties: false,
    };
    expect(
      sent({
        ...hello,
        response_format: { type: 'json_schema', json_schema: { name: 'p', strict: true, schema } },
      }).generationConfig,
    ).toEqual({
      responseMimeType: 'application/json',
      responseSchema: { type: 'OBJECT', properties: { name: { type: 'STRING' } }, required: ['name'] },
    });
    expect(sent({ ...hello, response_format: { type: 'text' } })).not.toHaveProperty('generationConfig');
  });

  it.each([
    ['logprobs', { logprobs: true }, 'logprobs'],
    ['top_logprobs', { top_logprobs: 2 }, 'top_logprobs'],
    ['audio output', { modalities: ['text', 'audio'] }, 'modalities'],
    ['audio', { audio: { voice: 'x', format: 'mp3' } }, 'audio'],
    ['logit_bias', { logit_bias: { '50256': -100 } }, 'logit_bias'],
    ['legacy functions', { functions: [{ name: 'f' }] }, 'functions'],
    ['web_search_options', { web_search_options: {} }, 'web_search_options'],
  ])('refuses %s with a 400 naming the feature and the target', (_name, extra, param) => {
    const err = chatRefusal({ ...hello, ...extra });
    expect(err.code).toBe('AIGW_UNSUPPORTED_FEATURE');
    expect(err.status).toBe(400);
    expect(err.param).toBe(param);
    expect(err.message).toMatch(/ is not supported by target gem \(gemini\)$/);
  });

  it('refuses n > 1 with stream, but not n > 1 alone', () => {
    const err = chatRefusal({ ...hello, n: 2, stream: true }, { stream: true });
    expect(err.message).toBe('n > 1 with stream is not supported by target gem (gemini)');
    expect(err.param).toBe('n');
    expect(sent({ ...hello, n: 2 }).generationConfig.candidateCount).toBe(2);
  });

  it('refuses audio parts and names no client text for an unknown part type', () => {
    const audio = chatRefusal({
      messages: [
        { role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }] },
      ],
    });
    expect(audio.message).toBe('audio input parts is not supported by target gem (gemini)');
    const odd = chatRefusal({ messages: [{ role: 'user', content: [{ type: 'Secret Text!', x: 1 }] }] });
    expect(odd.message).not.toContain('Secret');
    const field = chatRefusal({ ...hello, 'Secret Field!': 1 });
    expect(field.message).not.toContain('Secret');
  });

  it('rejects malformed input with AIGW_BAD_REQUEST', () => {
    for (const body of [
      { messages: [] },
      { messages: 'hi' },
      { messages: [{ role: 'robot', content: 'x' }] },
      { messages: [{ role: 'user', content: 42 }] },
      { ...hello, temperature: 'hot' },
      { ...hello, max_tokens: 1.5 },
      { ...hello, stop: [1] },
      { ...hello, tool_choice: 'sometimes' },
    ]) {
      expect(chatRefusal(body).code).toBe('AIGW_BAD_REQUEST');
    }
  });

  it('does not mutate the client body', () => {
    const body = { ...hello, messages: [{ role: 'user', content: 'Hello' }], temperature: 0.1 };
    const copy = structuredClone(body);
    chat(body, { stream: true });
    expect(body).toEqual(copy);
  });
});

describe('gemini adapter: buildRequest (embeddings)', () => {
  const embed = (body: Json, t = target({ model: 'text-embedding-004' })) =>
    geminiAdapter.buildRequest('embeddings', body, t, { stream: false });

  it('sends one batchEmbedContents request per input, with dimensions', () => {
    const req = embed({
      model: 'e',
      input: ['a', 'b'],
      dimensions: 256,
      encoding_format: 'float',
      user: 'u',
    });
    expect(req.url).toBe(
      'https://generativelanguage.googleapis.com/v1beta/models/text-embedding-004:batchEmbedContents',
    );
    expect(req.headers['x-goog-api-key']).toBe(KEY);
    expect(JSON.parse(req.body)).toEqual({
      requests: [
        {
          model: 'models/text-embedding-004',
          content: { parts: [{ text: 'a' }] },
          outputDimensionality: 256,
        },
        {
          model: 'models/text-embedding-004',
          content: { parts: [{ text: 'b' }] },
          outputDimensionality: 256,
        },
      ],
    });
    expect(JSON.parse(embed({ input: 'one' }).body).requests).toHaveLength(1);
  });

  it('refuses token-id input and rejects bad input', () => {
    expect(refusal(() => embed({ input: 'a', encoding_format: 'utf8' })).code).toBe('AIGW_BAD_REQUEST');
    expect(refusal(() => embed({ input: [1, 2, 3] })).code).toBe('AIGW_UNSUPPORTED_FEATURE');
    expect(refusal(() => embed({ input: [] })).code).toBe('AIGW_BAD_REQUEST');
    expect(refusal(() => embed({ input: 'a', dimensions: 0 })).code).toBe('AIGW_BAD_REQUEST');
  });
});

describe('gemini adapter: parseResponse', () => {
  it('answers embeddings as base64 float32 when the client asked for base64, naming the model sent to', () => {
    const json = { embeddings: [{ values: [0.5, -1.25, 3] }] };
    const parsed = geminiAdapter.parseResponse('embeddings', json, {
      model: 'text-embedding-004',
      base64Embeddings: true,
    });
    const body = parsed.body as { model: string; data: Array<{ embedding: string }> };
    expect(body.model).toBe('text-embedding-004');
    const bytes = Buffer.from(body.data[0]!.embedding, 'base64');
    expect([...new Float32Array(bytes.buffer, bytes.byteOffset, 3)]).toEqual([0.5, -1.25, 3]);
  });

  it('translates a text answer with usage', () => {
    const parsed = geminiAdapter.parseResponse('chat.completions', fixtureJson('generate-content.json'));
    const text = 'The sky looks blue because air scatters blue sunlight more than red.';
    expect(parsed.body).toEqual({
      id: 'chatcmpl-3cVjaKD1Lc2nz7IPhMTJwQ8',
      object: 'chat.completion',
      created: expect.any(Number),
      model: 'gemini-2.0-flash',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: text, refusal: null },
          logprobs: null,
          finish_reason: 'stop',
        },
      ],
      usage: { prompt_tokens: 9, completion_tokens: 14, total_tokens: 23 },
    });
    expect(parsed.usage).toEqual({ input_tokens: 9, output_tokens: 14, total_tokens: 23 });
    expect(parsed.model).toBe('gemini-2.0-flash');
    expect(parsed.contentChars).toBe(text.length);
  });

  it('counts thinking as completion tokens and reports cached prompt tokens', () => {
    const parsed = geminiAdapter.parseResponse(
      'chat.completions',
      fixtureJson('generate-content-thinking-cached.json'),
    );
    expect((parsed.body as Json).usage).toEqual({
      prompt_tokens: 2105,
      completion_tokens: 45,
      total_tokens: 2150,
      prompt_tokens_details: { cached_tokens: 2048 },
      completion_tokens_details: { reasoning_tokens: 43 },
    });
    expect(parsed.usage).toEqual({
      input_tokens: 2105,
      output_tokens: 45,
      total_tokens: 2150,
      cached_input_tokens: 2048,
    });
  });

  it('turns functionCall parts into tool_calls with made-up ids and the thought signature', () => {
    const parsed = geminiAdapter.parseResponse(
      'chat.completions',
      fixtureJson('generate-content-tool-call.json'),
    );
    const choice = deep(parsed.body).choices[0];
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBeNull();
    expect(choice.message.tool_calls).toEqual([
      {
        id: expect.stringMatching(/^call_[\w-]{16}$/),
        type: 'function',
        function: { name: 'get_weather', arguments: '{"city":"Paris","unit":"celsius"}' },
        extra_content: {
          google: { thought_signature: 'CiQB0e2Kb7ZlY3u8h3oQn3cFqJ0cXWk2Zb9ZcR3pY1p5V1rXH0UKXwHR7Yp' },
        },
      },
      {
        id: expect.stringMatching(/^call_/),
        type: 'function',
        function: { name: 'get_time', arguments: '{"city":"Paris"}' },
      },
    ]);
    expect(choice.message.tool_calls[0].id).not.toBe(choice.message.tool_calls[1].id);
    expect(parsed.usage).toEqual({ input_tokens: 71, output_tokens: 95, total_tokens: 166 });
  });

  it('round-trips: a tool call answer sent back as history names the function and keeps the signature', () => {
    const parsed = geminiAdapter.parseResponse(
      'chat.completions',
      fixtureJson('generate-content-tool-call.json'),
    );
    const message = deep(parsed.body).choices[0].message;
    const body = sent({
      messages: [
        { role: 'user', content: 'Paris?' },
        message,
        { role: 'tool', tool_call_id: message.tool_calls[1].id, content: '{"time":"10:00"}' },
        { role: 'tool', tool_call_id: message.tool_calls[0].id, content: '{"temp":21}' },
      ],
    });
    expect(body.contents[1].parts[0].thoughtSignature).toBe(
      'CiQB0e2Kb7ZlY3u8h3oQn3cFqJ0cXWk2Zb9ZcR3pY1p5V1rXH0UKXwHR7Yp',
    );
    expect(body.contents[2].parts.map((p: Json) => (p.functionResponse as Json).name)).toEqual([
      'get_time',
      'get_weather',
    ]);
  });

  it('maps finish reasons: MAX_TOKENS → length, SAFETY → content_filter; each candidate is a choice', () => {
    const two = deep(
      geminiAdapter.parseResponse(
        'chat.completions',
        fixtureJson('generate-content-max-tokens-two-candidates.json'),
      ).body,
    );
    expect(two.choices.map((c: Json) => [c.index, (c.message as Json).content, c.finish_reason])).toEqual([
      [0, 'Once upon a', 'length'],
      [1, 'There was a', 'length'],
    ]);
    const safety = deep(
      geminiAdapter.parseResponse('chat.completions', fixtureJson('generate-content-safety.json')).body,
    );
    expect(safety.choices).toEqual([
      {
        index: 0,
        message: { role: 'assistant', content: null, refusal: null },
        logprobs: null,
        finish_reason: 'content_filter',
      },
    ]);
  });

  it.each(['RECITATION', 'BLOCKLIST', 'PROHIBITED_CONTENT', 'SPII'])(
    'maps %s to content_filter',
    (reason) => {
      const json = {
        candidates: [{ content: { parts: [{ text: 'x' }], role: 'model' }, finishReason: reason }],
      };
      expect(deep(geminiAdapter.parseResponse('chat.completions', json).body).choices[0].finish_reason).toBe(
        'content_filter',
      );
    },
  );

  it('answers a blocked prompt with an empty content_filter choice and the prompt usage', () => {
    const parsed = geminiAdapter.parseResponse(
      'chat.completions',
      fixtureJson('generate-content-blocked-prompt.json'),
    );
    const body = deep(parsed.body);
    expect(body.choices).toEqual([
      {
        index: 0,
        message: { role: 'assistant', content: null, refusal: null },
        logprobs: null,
        finish_reason: 'content_filter',
      },
    ]);
    expect(parsed.usage).toEqual({ input_tokens: 12, output_tokens: 0, total_tokens: 12 });
    expect(parsed.contentChars).toBe(0);
  });

  it('leaves thought summaries out of the content', () => {
    const json = {
      candidates: [
        {
          content: { parts: [{ text: 'thinking...', thought: true }, { text: 'Answer' }] },
          finishReason: 'STOP',
        },
      ],
    };
    expect(deep(geminiAdapter.parseResponse('chat.completions', json).body).choices[0].message.content).toBe(
      'Answer',
    );
  });

  it('survives an answer without usage or candidates, and one that is not an object', () => {
    const parsed = geminiAdapter.parseResponse('chat.completions', {});
    expect(parsed.usage).toBeUndefined();
    expect((parsed.body as Json).choices).toEqual([]);
    expect(geminiAdapter.parseResponse('chat.completions', 'x')).toEqual({ body: 'x', contentChars: 0 });
  });

  it('translates batchEmbedContents to an OpenAI embeddings list', () => {
    const parsed = geminiAdapter.parseResponse('embeddings', fixtureJson('batch-embed-contents.json'));
    expect(parsed.body).toEqual({
      object: 'list',
      data: [
        {
          object: 'embedding',
          index: 0,
          embedding: [0.013168523, -0.008711934, -0.046782676, 0.00069968984, -0.009518873, -0.008720178],
        },
        {
          object: 'embedding',
          index: 1,
          embedding: [0.0056470804, 0.00057069015, -0.06262963, -0.007713219, 0.012430837, 0.040108364],
        },
      ],
      model: 'gemini',
      usage: { prompt_tokens: 0, total_tokens: 0 },
    });
    expect(parsed.usage).toBeUndefined();
  });
});

function runStream(sse: string, clientWantsUsage: boolean): StreamStep[] {
  const translator = geminiAdapter.streamTranslator('chat.completions', { clientWantsUsage });
  return parseSse(sse).map((event) => translator.onEvent(event));
}

// biome-ignore lint/suspicious/noExplicitAny: chunks are read field by field
const chunksOf = (steps: StreamStep[]): any[] =>
  steps
    .flatMap((s) => s.emit)
    .flatMap((text) => parseSse(text))
    .map((e) => (e.data === '[DONE]' ? '[DONE]' : JSON.parse(e.data)));

describe('gemini adapter: stream translation', () => {
  it('emits OpenAI chunks: role first, text deltas, finish_reason, [DONE]; done on the finishReason event', () => {
    const steps = runStream(fixture('generate-content-stream.sse'), false);
    expect(steps.map((s) => s.done === true)).toEqual([false, false, true]);
    const chunks = chunksOf(steps);
    expect(chunks.at(-1)).toBe('[DONE]');
    const objects = chunks.slice(0, -1);
    for (const c of objects) {
      expect(c).toMatchObject({
        id: 'chatcmpl-UddjaMi0FpWxz7IP1KXn2Qs',
        object: 'chat.completion.chunk',
        model: 'gemini-2.0-flash',
        created: objects[0].created,
      });
      expect(c).not.toHaveProperty('usage');
    }
    expect(objects.map((c) => c.choices[0])).toEqual([
      {
        index: 0,
        delta: { role: 'assistant', content: '', refusal: null },
        logprobs: null,
        finish_reason: null,
      },
      { index: 0, delta: { content: 'The' }, logprobs: null, finish_reason: null },
      {
        index: 0,
        delta: { content: ' sky looks blue because air scatters blue' },
        logprobs: null,
        finish_reason: null,
      },
      { index: 0, delta: { content: ' sunlight more than red.' }, logprobs: null, finish_reason: null },
      { index: 0, delta: {}, logprobs: null, finish_reason: 'stop' },
    ]);
    expect(steps.map((s) => s.content ?? '').join('')).toBe(
      'The sky looks blue because air scatters blue sunlight more than red.',
    );
    expect(steps.reduce((n, s) => n + (s.contentChars ?? 0), 0)).toBe(68);
    // Only the last event's usage counts: earlier ones have no answer tokens yet.
    expect(steps.map((s) => s.usage)).toEqual([
      undefined,
      undefined,
      { input_tokens: 9, output_tokens: 14, total_tokens: 23 },
    ]);
  });

  it('emits the usage chunk, and usage: null on the others, when the client asked for usage', () => {
    const chunks = chunksOf(runStream(fixture('generate-content-stream.sse'), true));
    expect(chunks.at(-1)).toBe('[DONE]');
    const usageChunk = chunks.at(-2);
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage).toEqual({ prompt_tokens: 9, completion_tokens: 14, total_tokens: 23 });
    for (const c of chunks.slice(0, -2)) expect(c.usage).toBeNull();
  });

  it('streams a function call as a tool_calls delta: id and name, then arguments; finish_reason tool_calls', () => {
    const steps = runStream(fixture('generate-content-stream-tool-call.sse'), true);
    expect(steps).toHaveLength(1);
    expect(steps[0]!.done).toBe(true);
    const chunks = chunksOf(steps);
    expect(chunks.map((c) => (c === '[DONE]' ? c : (c.choices[0] ?? 'usage')))).toEqual([
      {
        index: 0,
        delta: { role: 'assistant', content: '', refusal: null },
        logprobs: null,
        finish_reason: null,
      },
      {
        index: 0,
        delta: {
          tool_calls: [
            {
              index: 0,
              id: expect.stringMatching(/^call_/),
              type: 'function',
              function: { name: 'get_weather', arguments: '' },
              extra_content: {
                google: { thought_signature: 'CiQB0e2Kb1nT8q0aFzq9Qm3i7y8cH2sK8xZ0vE4uW6pY3bT1nM8KYgHR7Yp' },
              },
            },
          ],
        },
        logprobs: null,
        finish_reason: null,
      },
      {
        index: 0,
        delta: { tool_calls: [{ index: 0, function: { arguments: '{"city":"Paris"}' } }] },
        logprobs: null,
        finish_reason: null,
      },
      { index: 0, delta: {}, logprobs: null, finish_reason: 'tool_calls' },
      'usage',
      '[DONE]',
    ]);
    expect(chunks.at(-2).usage).toEqual({
      prompt_tokens: 54,
      completion_tokens: 67,
      total_tokens: 121,
      completion_tokens_details: { reasoning_tokens: 52 },
    });
    expect(steps[0]!.contentChars).toBe('{"city":"Paris"}'.length);
  });

  it('ends a blocked prompt with content_filter and [DONE]', () => {
    const steps = runStream(fixture('generate-content-stream-blocked-prompt.sse'), false);
    expect(steps[0]!.done).toBe(true);
    expect(steps[0]!.usage).toEqual({ input_tokens: 12, output_tokens: 0, total_tokens: 12 });
    const chunks = chunksOf(steps);
    expect(chunks.map((c) => (c === '[DONE]' ? c : c.choices[0].finish_reason))).toEqual([
      null,
      'content_filter',
      '[DONE]',
    ]);
  });

  it('maps MAX_TOKENS to length', () => {
    const sse =
      'data: {"candidates": [{"content": {"parts": [{"text": "a b"}],"role": "model"},"finishReason": "MAX_TOKENS"}]}\r\n\r\n';
    const chunks = chunksOf(runStream(sse, false));
    expect(chunks.at(-2).choices[0].finish_reason).toBe('length');
  });

  it('a stream cut before the finishReason event is never done', () => {
    const events =
      fixture('generate-content-stream.sse').split('\r\n\r\n').slice(0, 2).join('\r\n\r\n') + '\r\n\r\n';
    const steps = runStream(events, true);
    expect(steps).toHaveLength(2);
    expect(steps.some((s) => s.done)).toBe(false);
    expect(chunksOf(steps)).not.toContain('[DONE]');
  });

  it('reports an error event and an unreadable event as AIGW_STREAM_BROKEN, scrubbing keys', () => {
    const translator = geminiAdapter.streamTranslator('chat.completions', { clientWantsUsage: false });
    const step = translator.onEvent({
      data: JSON.stringify({ error: { code: 500, message: `failed for key ${KEY}`, status: 'INTERNAL' } }),
    });
    expect(step.error?.code).toBe('AIGW_STREAM_BROKEN');
    expect(step.error?.message).toContain('the provider failed during the stream');
    expect(step.error?.message).not.toContain(KEY);
    expect(step.emit).toEqual([]);
    expect(translator.onEvent({ data: '{"candidates": [' }).error?.code).toBe('AIGW_STREAM_BROKEN');
    expect(translator.onEvent({ data: '42' }).error?.code).toBe('AIGW_STREAM_BROKEN');
  });
});

describe('gemini adapter: parseError', () => {
  const parse = (status: number, name: string, headers: Record<string, string> = {}) =>
    geminiAdapter.parseError(status, fixture(name), headers) as ProviderError;

  it('keeps the status and maps Google statuses to OpenAI types and codes', () => {
    const cases: Array<[number, string, string, string]> = [
      [401, 'error-401-unauthenticated.json', 'authentication_error', 'unauthenticated'],
      [403, 'error-403-permission-denied.json', 'permission_error', 'permission_denied'],
      [404, 'error-404-not-found.json', 'not_found_error', 'not_found'],
      [400, 'error-400-invalid-argument.json', 'invalid_request_error', 'invalid_argument'],
      [500, 'error-500-internal.json', 'server_error', 'internal'],
      [503, 'error-503-unavailable.json', 'server_error', 'unavailable'],
    ];
    for (const [status, name, type, code] of cases) {
      const err = parse(status, name);
      expect(err).toBeInstanceOf(ProviderError);
      expect(err.status).toBe(status);
      expect(err.toJSON().error).toMatchObject({ type, code });
      expect(err.message).toBe((fixtureJson(name) as { error: { message: string } }).error.message);
    }
  });

  it('says a bad key is an authentication error (Google answers it with 400)', () => {
    const err = parse(400, 'error-400-api-key-invalid.json');
    expect(err.status).toBe(400);
    expect(err.toJSON().error).toMatchObject({ type: 'authentication_error', code: 'invalid_api_key' });
  });

  it('turns a 429 RetryInfo into retry-after, and keeps a retry-after header over it', () => {
    const err = parse(429, 'error-429-resource-exhausted.json');
    expect(err.status).toBe(429);
    expect(err.toJSON().error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded' });
    expect(err.headers).toEqual({ 'retry-after': '37' });
    expect(parse(429, 'error-429-resource-exhausted.json', { 'retry-after': '5' }).headers).toEqual({
      'retry-after': '5',
    });
  });

  it('recognises a prompt over the context window', () => {
    expect(parse(400, 'error-400-context-length.json').providerCode).toBe('context_length_exceeded');
  });

  it('scrubs an API key echoed in the message', () => {
    const body = JSON.stringify({
      error: { code: 400, message: `API key ${KEY} not valid.`, status: 'INVALID_ARGUMENT' },
    });
    const err = geminiAdapter.parseError(400, body, {});
    expect(err.message).not.toContain(KEY);
    expect(JSON.stringify(err.toJSON())).not.toContain(KEY);
  });

  it('reads the array form, and survives a body that is not JSON', () => {
    const array = JSON.stringify([
      { error: { code: 503, message: 'The model is overloaded.', status: 'UNAVAILABLE' } },
    ]);
    expect(geminiAdapter.parseError(503, array, {}).message).toBe('The model is overloaded.');
    const html = geminiAdapter.parseError(502, '<html>Bad Gateway</html>', {});
    expect(html.status).toBe(502);
    expect(html.message).toBe('the provider answered HTTP 502');
    expect(html.type).toBe('server_error');
  });
});
