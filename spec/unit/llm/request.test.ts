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
  ])('%s %s → %s', (method, path, endpoint) => {
    expect(endpointOf(method, path)).toBe(endpoint);
  });

  it('refuses unknown paths with 404 and wrong methods with 405 + Allow', () => {
    expect(errorOf(() => endpointOf('POST', '/v1/images/generations'))).toMatchObject({ status: 404 });
    const wrong = errorOf(() => endpointOf('GET', '/v1/chat/completions'));
    expect(wrong).toMatchObject({ status: 405, code: 'AIGW_METHOD_NOT_ALLOWED', headers: { allow: 'POST' } });
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
