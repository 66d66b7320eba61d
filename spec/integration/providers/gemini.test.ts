import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultAnswer, type ProviderMock, startGeminiMock } from '../../support/providers';
import { parseSse, rawRequest } from '../../support/providers/raw-http';

const API_KEY = 'AIzaSyMockTestKey0123456789abcdefghijkl';
const HEADERS = { 'x-goog-api-key': API_KEY };
const REQUEST = {
  systemInstruction: { parts: [{ text: 'You are terse.' }] },
  contents: [{ role: 'user', parts: [{ text: 'Say hello to the world' }] }],
};
const FIXTURES = join(__dirname, '../../fixtures/providers/gemini');

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
const fixtureJson = (name: string): unknown => JSON.parse(readFileSync(join(FIXTURES, name), 'utf8'));

// biome-ignore lint/suspicious/noExplicitAny: answers are read field by field
type Any = any;

describe('Gemini mock', () => {
  let mock: ProviderMock;

  beforeAll(async () => {
    mock = await startGeminiMock({ apiKey: API_KEY, chunkDelayMs: 1 });
  });
  afterEach(() => mock.reset());
  afterAll(() => mock.close());

  const call = (
    method: string,
    body: unknown,
    headers: Record<string, string> = HEADERS,
    model = 'gemini-2.0-flash',
  ) => rawRequest(`${mock.url}/models/${model}:${method}`, { method: 'POST', headers, body });

  it('serves under /v1beta', () => {
    expect(mock.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1beta$/);
  });

  describe('generateContent', () => {
    it('answers a GenerateContentResponse with usage, shaped like the real one', async () => {
      const res = await call('generateContent', REQUEST);

      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toBe('application/json; charset=UTF-8');
      const body: Any = JSON.parse(res.text);
      const answer = defaultAnswer('Say hello to the world');
      expect(body.candidates).toEqual([
        { content: { parts: [{ text: answer }], role: 'model' }, finishReason: 'STOP', index: 0 },
      ]);
      expect(body.usageMetadata).toEqual({
        promptTokenCount: 3 + 5,
        candidatesTokenCount: answer.split(' ').length,
        totalTokenCount: 8 + answer.split(' ').length,
        promptTokensDetails: [{ modality: 'TEXT', tokenCount: 8 }],
      });
      expect(body.modelVersion).toBe('gemini-2.0-flash');
      expect(body.responseId).toMatch(/^\w+$/);
      expect(shape(body)).toEqual(shape(stripOptional(fixtureJson('generate-content-thinking-cached.json'))));
    });

    it('records the request', async () => {
      await call('generateContent', REQUEST);

      expect(mock.requests).toHaveLength(1);
      expect(mock.requests[0]).toMatchObject({
        method: 'POST',
        path: '/v1beta/models/gemini-2.0-flash:generateContent',
        body: REQUEST,
      });
    });

    it('stops at maxOutputTokens with MAX_TOKENS, and gives candidateCount candidates', async () => {
      mock.setAnswer('one two three four');
      const res = await call('generateContent', {
        ...REQUEST,
        generationConfig: { maxOutputTokens: 2, candidateCount: 2 },
      });
      const body: Any = JSON.parse(res.text);

      expect(body.candidates.map((c: Any) => [c.index, c.content.parts[0].text, c.finishReason])).toEqual([
        [0, 'one two', 'MAX_TOKENS'],
        [1, 'one two', 'MAX_TOKENS'],
      ]);
      expect(body.usageMetadata.candidatesTokenCount).toBe(4);
    });

    it('counts 258 tokens per image and answers JSON in JSON mode', async () => {
      const res = await call('generateContent', {
        contents: [
          {
            role: 'user',
            parts: [{ text: 'two words' }, { inlineData: { mimeType: 'image/png', data: 'AAAA' } }],
          },
        ],
        generationConfig: { responseMimeType: 'application/json' },
      });
      const body: Any = JSON.parse(res.text);

      expect(body.usageMetadata.promptTokenCount).toBe(2 + 258);
      expect(JSON.parse(body.candidates[0].content.parts[0].text)).toEqual({
        answer: defaultAnswer('two words'),
      });
    });

    it('calls a declared function named in the prompt, with a thought signature', async () => {
      const tools = [
        {
          functionDeclarations: [
            {
              name: 'get_weather',
              parameters: {
                type: 'OBJECT',
                properties: { city: { type: 'STRING' }, days: { type: 'INTEGER' } },
                required: ['city'],
              },
            },
          ],
        },
      ];
      const res = await call('generateContent', {
        contents: [{ role: 'user', parts: [{ text: 'use get_weather for Paris' }] }],
        tools,
      });
      const body: Any = JSON.parse(res.text);

      expect(body.candidates[0].finishReason).toBe('STOP');
      expect(body.candidates[0].content.parts).toEqual([
        {
          functionCall: { name: 'get_weather', args: { city: 'mock' } },
          thoughtSignature: expect.any(String),
        },
      ]);
      const real = (fixtureJson('generate-content-tool-call.json') as Any).candidates[0].content;
      expect(Object.keys(body.candidates[0].content).sort()).toEqual(Object.keys(real).sort());
      expect(Object.keys(body.candidates[0].content.parts[0]).sort()).toEqual(
        Object.keys(real.parts[0]).sort(),
      );

      // No call when the prompt does not name it, or mode NONE, or the last turn answers a call.
      const plain = await call('generateContent', {
        contents: [{ role: 'user', parts: [{ text: 'hi' }] }],
        tools,
      });
      expect(JSON.parse(plain.text).candidates[0].content.parts[0].text).toBe(defaultAnswer('hi'));
      const none = await call('generateContent', {
        contents: [{ role: 'user', parts: [{ text: 'get_weather' }] }],
        tools,
        toolConfig: { functionCallingConfig: { mode: 'NONE' } },
      });
      expect(JSON.parse(none.text).candidates[0].content.parts[0].text).toEqual(expect.any(String));
      const answered = await call('generateContent', {
        contents: [
          { role: 'user', parts: [{ text: 'get_weather' }] },
          { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'x' } } }] },
          { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { temp: 1 } } }] },
        ],
        tools,
      });
      expect(JSON.parse(answered.text).candidates[0].content.parts[0].text).toEqual(expect.any(String));
    });

    it('calls the first allowed function in mode ANY', async () => {
      const res = await call('generateContent', {
        contents: [{ role: 'user', parts: [{ text: 'anything' }] }],
        tools: [{ functionDeclarations: [{ name: 'a' }, { name: 'b' }] }],
        toolConfig: { functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['b'] } },
      });

      expect(JSON.parse(res.text).candidates[0].content.parts[0].functionCall).toEqual({
        name: 'b',
        args: {},
      });
    });

    it('answers a SAFETY candidate under the content_filter fault', async () => {
      mock.nextFault({ kind: 'content_filter' });
      const body: Any = JSON.parse((await call('generateContent', REQUEST)).text);

      expect(body.candidates[0]).toMatchObject({ finishReason: 'SAFETY', index: 0 });
      expect(body.candidates[0]).not.toHaveProperty('content');
    });
  });

  describe('streamGenerateContent', () => {
    it('streams one GenerateContentResponse per event; the last carries finishReason and usage', async () => {
      mock.setAnswer('Hello big world');
      const res = await call('streamGenerateContent?alt=sse', REQUEST);

      expect(res.status).toBe(200);
      expect(res.complete).toBe(true);
      expect(res.headers['content-type']).toBe('text/event-stream');
      expect(res.text).toContain('\r\n\r\n');
      const events: Any[] = parseSse(res.text).map((f) => JSON.parse(f.data));
      expect(events.map((e) => e.candidates[0].content.parts[0].text).join('')).toBe('Hello big world');
      expect(events.map((e) => e.candidates[0].finishReason)).toEqual([undefined, undefined, 'STOP']);
      expect(events[0].usageMetadata).toEqual({
        promptTokenCount: 8,
        totalTokenCount: 8,
        promptTokensDetails: [{ modality: 'TEXT', tokenCount: 8 }],
      });
      expect(events[2].usageMetadata).toMatchObject({ candidatesTokenCount: 3, totalTokenCount: 11 });
      expect(new Set(events.map((e) => e.responseId)).size).toBe(1);
      expect(res.text).not.toContain('[DONE]');
    });

    it('answers one JSON array without alt=sse', async () => {
      mock.setAnswer('a b');
      const res = await call('streamGenerateContent', REQUEST);
      const body: Any = JSON.parse(res.text);

      expect(Array.isArray(body)).toBe(true);
      expect(body).toHaveLength(2);
    });

    it('cut_stream never sends the finishReason event', async () => {
      mock.setAnswer('a b c d');
      mock.nextFault({ kind: 'cut_stream', afterChunks: 2 });
      const res = await call('streamGenerateContent?alt=sse', REQUEST);

      expect(res.complete).toBe(false);
      expect(res.text).not.toContain('finishReason');
    });

    it('no_usage leaves usageMetadata out', async () => {
      mock.nextFault({ kind: 'no_usage' });
      const res = await call('streamGenerateContent?alt=sse', REQUEST);

      expect(res.text).not.toContain('usageMetadata');
    });
  });

  describe('embeddings', () => {
    it('answers batchEmbedContents with one vector per request, of the asked dimension', async () => {
      const requests = ['a b', 'c'].map((text) => ({
        model: 'models/text-embedding-004',
        content: { parts: [{ text }] },
        outputDimensionality: 8,
      }));
      const res = await call('batchEmbedContents', { requests }, HEADERS, 'text-embedding-004');
      const body: Any = JSON.parse(res.text);

      expect(res.status).toBe(200);
      expect(body.embeddings).toHaveLength(2);
      expect(body.embeddings[0].values).toHaveLength(8);
      expect(shape(body)).toEqual(shape(fixtureJson('batch-embed-contents.json')));
    });

    it('refuses a request for another model than the URL', async () => {
      const res = await call(
        'batchEmbedContents',
        { requests: [{ model: 'models/other', content: { parts: [{ text: 'x' }] } }] },
        HEADERS,
        'text-embedding-004',
      );
      expect(res.status).toBe(400);
    });
  });

  describe('auth, paths and bad input', () => {
    it('answers 403 PERMISSION_DENIED without a key and 400 API_KEY_INVALID with a wrong one', async () => {
      const none = await call('generateContent', REQUEST, {});
      expect(none.status).toBe(403);
      expect(JSON.parse(none.text).error).toMatchObject({ code: 403, status: 'PERMISSION_DENIED' });

      const wrong = await call('generateContent', REQUEST, { 'x-goog-api-key': 'AIzaWrong' });
      expect(wrong.status).toBe(400);
      expect(shape(JSON.parse(wrong.text))).toEqual(shape(fixtureJson('error-400-api-key-invalid.json')));
      expect(JSON.parse(wrong.text).error.details[0].reason).toBe('API_KEY_INVALID');
    });

    it('also takes the key as ?key= like the real API', async () => {
      const res = await rawRequest(`${mock.url}/models/gemini-2.0-flash:generateContent?key=${API_KEY}`, {
        method: 'POST',
        body: REQUEST,
      });
      expect(res.status).toBe(200);
    });

    it('answers 404 NOT_FOUND for an unknown model or path', async () => {
      const model = await call('generateContent', REQUEST, HEADERS, 'gpt-4o');
      expect(model.status).toBe(404);
      expect(shape(JSON.parse(model.text))).toEqual(shape(fixtureJson('error-404-not-found.json')));
      const path = await rawRequest(`${mock.url}/chat/completions`, {
        method: 'POST',
        headers: HEADERS,
        body: {},
      });
      expect(path.status).toBe(404);
    });

    it.each([
      ['an unknown field', { ...REQUEST, messages: [] }, 'Unknown name "messages"'],
      [
        'an unknown generationConfig field',
        { ...REQUEST, generationConfig: { max_tokens: 1 } },
        'Unknown name "max_tokens"',
      ],
      ['no contents', { systemInstruction: REQUEST.systemInstruction }, 'contents is not specified'],
      ['a bad role', { contents: [{ role: 'assistant', parts: [{ text: 'x' }] }] }, 'valid role'],
      ['empty parts', { contents: [{ role: 'user', parts: [] }] }, 'must not be empty'],
      [
        'an OBJECT without properties',
        {
          ...REQUEST,
          tools: [{ functionDeclarations: [{ name: 'f', parameters: { type: 'OBJECT', properties: {} } }] }],
        },
        'should be non-empty for OBJECT type',
      ],
      ['a body that is not JSON', '{"contents": ', 'Invalid JSON payload'],
    ])('answers 400 INVALID_ARGUMENT for %s', async (_name, body, message) => {
      const res = await call('generateContent', body);

      expect(res.status).toBe(400);
      const error = JSON.parse(res.text).error;
      expect(error).toMatchObject({ code: 400, status: 'INVALID_ARGUMENT' });
      expect(error.message).toContain(message);
    });

    it.each([
      [429, 'error-429-resource-exhausted.json'],
      [500, 'error-500-internal.json'],
      [503, 'error-503-unavailable.json'],
      [401, 'error-401-unauthenticated.json'],
    ])('a %i status fault answers the real error shape', async (status, name) => {
      mock.nextFault({ kind: 'status', status });
      const res = await call('generateContent', REQUEST);

      expect(res.status).toBe(status);
      const body: Any = JSON.parse(res.text);
      expect(body.error.code).toBe(status);
      expect(Object.keys(body.error).sort()).toEqual(Object.keys((fixtureJson(name) as Any).error).sort());
    });
  });
});

/** The optional fields a real answer may have that the mock's plain answer leaves out. */
function stripOptional(value: unknown): unknown {
  const copy: Any = structuredClone(value);
  delete copy.usageMetadata.cachedContentTokenCount;
  delete copy.usageMetadata.cacheTokensDetails;
  delete copy.usageMetadata.thoughtsTokenCount;
  return copy;
}
