import { GatewayError } from '../../../lib/errors';
import { checkDeclaredSize, endpointOf, jsonDepth, parseRequestBody } from '../../../lib/llm/request';

const limits = { max_body_bytes: 1024, max_json_depth: 8 };
const bytes = (s: string) => new TextEncoder().encode(s);
const chat = (body: unknown) =>
  parseRequestBody('chat.completions', 'application/json', bytes(JSON.stringify(body)), limits);

function errorOf(fn: () => unknown): GatewayError {
  try {
    fn();
  } catch (err) {
    if (err instanceof GatewayError) return err;
    throw err;
  }
  throw new Error('expected a GatewayError');
}

describe('endpointOf', () => {
  it.each([
    ['POST', '/v1/chat/completions', 'chat.completions'],
    ['POST', '/ai/openai/v1/chat/completions/', 'chat.completions'],
    ['POST', '/v1/completions?x=1', 'completions'],
    ['POST', '/v1/embeddings', 'embeddings'],
    ['GET', '/v1/models', 'models'],
    ['GET', '/v1/models/gpt-4o', 'models'],
    ['POST', '/v1/feedback', 'feedback'],
    ['POST', '/ai/openai/v1/feedback/', 'feedback'],
  ])('%s %s → %s', (method, path, endpoint) => {
    expect(endpointOf(method, path)).toBe(endpoint);
  });

  it('refuses unknown paths with 404 and wrong methods with 405 + Allow', () => {
    expect(errorOf(() => endpointOf('POST', '/v1/images/generations'))).toMatchObject({ status: 404 });
    const wrong = errorOf(() => endpointOf('GET', '/v1/chat/completions'));
    expect(wrong).toMatchObject({ status: 405, code: 'AIGW_METHOD_NOT_ALLOWED', headers: { allow: 'POST' } });
    expect(errorOf(() => endpointOf('GET', '/v1/feedback'))).toMatchObject({ status: 405 });
  });
});

describe('parseRequestBody', () => {
  it('parses a valid chat body', () => {
    expect(chat({ model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: true })).toEqual({
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
  });

  it('refuses a declared size over the limit before reading', () => {
    expect(errorOf(() => checkDeclaredSize('1025', limits))).toMatchObject({ status: 413 });
    expect(() => checkDeclaredSize('1024', limits)).not.toThrow();
    expect(() => checkDeclaredSize(undefined, limits)).not.toThrow();
  });

  it.each([
    ['malformed JSON', 'application/json', bytes('{"model": '), 400, 'AIGW_INVALID_JSON'],
    ['a JSON array', 'application/json', bytes('[1,2]'), 400, 'AIGW_BAD_REQUEST'],
    ['JSON null', 'application/json', bytes('null'), 400, 'AIGW_BAD_REQUEST'],
    ['a number', 'application/json', bytes('42'), 400, 'AIGW_BAD_REQUEST'],
    ['an empty body', 'application/json', bytes(''), 400, 'AIGW_BAD_REQUEST'],
    [
      'invalid UTF-8',
      'application/json',
      Uint8Array.of(0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d),
      400,
      'AIGW_INVALID_UTF8',
    ],
    ['a form body', 'application/x-www-form-urlencoded', bytes('a=1'), 415, 'AIGW_UNSUPPORTED_MEDIA_TYPE'],
    ['no content type', undefined, bytes('{}'), 415, 'AIGW_UNSUPPORTED_MEDIA_TYPE'],
    [
      'a body over the limit',
      'application/json',
      bytes(`{"x":"${'a'.repeat(2000)}"}`),
      413,
      'AIGW_BODY_TOO_LARGE',
    ],
  ])('refuses %s', (_name, contentType, raw, status, code) => {
    const err = errorOf(() => parseRequestBody('chat.completions', contentType, raw, limits));
    expect(err).toMatchObject({ status, code });
    expect(err.toJSON().error).toMatchObject({ code, type: expect.any(String), message: expect.any(String) });
  });

  it('accepts a charset parameter on the content type', () => {
    const body = parseRequestBody(
      'embeddings',
      'Application/JSON; charset=utf-8',
      bytes('{"input":"x"}'),
      limits,
    );
    expect(body).toEqual({ input: 'x' });
  });

  it('refuses nesting deeper than the limit without recursion', () => {
    const deep = `${'['.repeat(20)}${']'.repeat(20)}`;
    const err = errorOf(() =>
      parseRequestBody('chat.completions', 'application/json', bytes(`{"messages":${deep}}`), limits),
    );
    expect(err).toMatchObject({ status: 400, message: expect.stringMatching(/nests deeper/) });
    expect(jsonDepth(JSON.parse(`${'['.repeat(5000)}${']'.repeat(5000)}`))).toBe(5000);
  });

  it.each([
    [{ model: 'm' }, 'messages'],
    [{ model: 'm', messages: [] }, 'messages'],
    [{ model: 'm', messages: 'hi' }, 'messages'],
    [{ model: 'm', messages: [{ content: 'no role' }] }, 'messages[0]'],
    [{ model: 7, messages: [{ role: 'user' }] }, 'model'],
    [{ model: 'm', messages: [{ role: 'user' }], stream: 'yes' }, 'stream'],
    [{ model: 'm', messages: [{ role: 'user' }], max_tokens: -1 }, 'max_tokens'],
    [{ model: 'm', messages: [{ role: 'user' }], max_tokens: 1.5 }, 'max_tokens'],
    [{ model: 'm', messages: [{ role: 'user' }], max_completion_tokens: 1e12 }, 'max_completion_tokens'],
  ])('refuses a chat body %j naming %s', (body, param) => {
    const err = errorOf(() => chat(body));
    expect(err).toMatchObject({ status: 400, param });
  });

  it('never echoes the offending value', () => {
    const secret = 'sk-live-should-not-come-back';
    const err = errorOf(() => chat({ model: 'm', messages: [{ role: 'user' }], max_tokens: secret }));
    expect(JSON.stringify(err.toJSON())).not.toContain(secret);
  });

  it('checks completions and embeddings shapes', () => {
    expect(
      errorOf(() => parseRequestBody('completions', 'application/json', bytes('{"model":"m"}'), limits)),
    ).toMatchObject({
      param: 'prompt',
    });
    expect(
      errorOf(() =>
        parseRequestBody('embeddings', 'application/json', bytes('{"input":"x","stream":true}'), limits),
      ),
    ).toMatchObject({ param: 'stream' });
  });
});

describe('parseRequestBody: feedback', () => {
  const roomy = { max_body_bytes: 64 * 1024, max_json_depth: 8 };
  const feedback = (body: unknown) =>
    parseRequestBody('feedback', 'application/json', bytes(JSON.stringify(body)), roomy);

  it.each([
    [{ request_id: 'AbC_-123', score: 0 }],
    [{ request_id: 'AbC_-123', score: 1 }],
    [{ request_id: 'AbC_-123', score: 0.25 }],
    [{ request_id: 'AbC_-123', label: 'good' }],
    [{ request_id: 'req:1.2', label: 'bad', comment: 'too long-winded' }],
    [{ request_id: 'AbC_-123', score: 0.5, comment: 'é'.repeat(2000) }],
  ])('accepts %j', (body) => {
    expect(feedback(body)).toEqual(body);
  });

  it.each([
    ['no request_id', { score: 1 }, 'request_id'],
    ['an empty request_id', { request_id: '', score: 1 }, 'request_id'],
    ['a numeric request_id', { request_id: 42, score: 1 }, 'request_id'],
    ['a request_id with spaces', { request_id: 'a b', score: 1 }, 'request_id'],
    ['a request_id over 128 characters', { request_id: 'a'.repeat(129), score: 1 }, 'request_id'],
    ['neither score nor label', { request_id: 'abc' }, 'score'],
    ['both score and label', { request_id: 'abc', score: 1, label: 'good' }, 'score'],
    ['a score above 1', { request_id: 'abc', score: 1.01 }, 'score'],
    ['a negative score', { request_id: 'abc', score: -0.1 }, 'score'],
    ['a score as a string', { request_id: 'abc', score: '1' }, 'score'],
    ['a null score', { request_id: 'abc', score: null }, 'score'],
    ['an unknown label', { request_id: 'abc', label: 'meh' }, 'label'],
    ['a label in capitals', { request_id: 'abc', label: 'GOOD' }, 'label'],
    ['a comment that is not a string', { request_id: 'abc', label: 'bad', comment: 5 }, 'comment'],
    [
      'a comment over 2 000 characters',
      { request_id: 'abc', label: 'bad', comment: 'x'.repeat(2001) },
      'comment',
    ],
  ])('refuses %s with a 400 naming the field', (_name, body, param) => {
    const err = errorOf(() => feedback(body));
    expect(err).toMatchObject({ status: 400, code: 'AIGW_BAD_REQUEST', param });
    expect(err.message).toContain(param);
  });

  it('refuses any other field, without echoing its name', () => {
    const err = errorOf(() => feedback({ request_id: 'abc', score: 1, 'sk-live-should-not-come-back': 1 }));
    expect(err).toMatchObject({ status: 400, code: 'AIGW_BAD_REQUEST' });
    expect(JSON.stringify(err.toJSON())).not.toContain('sk-live');
    expect(errorOf(() => feedback({ request_id: 'abc', score: 1, model: 'gpt-4o' }))).toMatchObject({
      status: 400,
    });
  });

  it('never echoes a bad value', () => {
    const secret = 'sk-live-should-not-come-back';
    for (const body of [
      { request_id: secret.replace(/-/g, ' '), score: 1 },
      { request_id: 'abc', label: secret },
      { request_id: 'abc', score: secret },
    ]) {
      expect(JSON.stringify(errorOf(() => feedback(body)).toJSON())).not.toContain('should-not');
    }
  });

  it('applies the common checks first: media type and JSON', () => {
    expect(
      errorOf(() => parseRequestBody('feedback', 'text/plain', bytes('{"request_id":"a","score":1}'), roomy)),
    ).toMatchObject({ status: 415 });
    expect(
      errorOf(() => parseRequestBody('feedback', 'application/json', bytes('{"request_id":'), roomy)),
    ).toMatchObject({ status: 400, code: 'AIGW_INVALID_JSON' });
    expect(errorOf(() => parseRequestBody('feedback', 'application/json', bytes('[]'), roomy))).toMatchObject(
      { status: 400 },
    );
  });
});
