import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Target } from '../../../../lib/context';
import { GatewayError } from '../../../../lib/errors';
import { parseSse } from '../../../../lib/llm/sse';
import { adapterFor, type StreamStep } from '../../../../lib/relay/providers';
import { openaiAdapter } from '../../../../lib/relay/providers/openai';
import { ProviderError } from '../../../../lib/relay/upstream-error';

const FIXTURES = join(__dirname, '../../../fixtures/providers/openai');
const fixture = (name: string) => readFileSync(join(FIXTURES, name), 'utf8');
const fixtureJson = (name: string): unknown => JSON.parse(fixture(name));

const KEY = 'sk-proj-RelayUnitTestKey0123456789abcd';

function target(overrides: Partial<Target> = {}): Target {
  return {
    name: 'openai-mini',
    provider: 'openai',
    model: 'gpt-4o-mini',
    base_url: 'https://api.openai.com/v1',
    api_key: KEY,
    headers: {},
    timeouts: { connect_ms: 1000, first_byte_ms: 1000, idle_ms: 1000, total_ms: 5000 },
    ...overrides,
  };
}

const chatBody = { model: 'fast', messages: [{ role: 'user', content: 'Hello' }], temperature: 0.2 };

describe('openai adapter: registry and endpoints', () => {
  it('is the adapter for provider openai', () => {
    expect(adapterFor('openai')).toBe(openaiAdapter);
    expect(adapterFor('bogus' as never)).toBeUndefined();
    expect(adapterFor('toString' as never)).toBeUndefined();
  });

  it('serves chat, completions and embeddings, not models', () => {
    expect(openaiAdapter.supports('chat.completions')).toBe(true);
    expect(openaiAdapter.supports('completions')).toBe(true);
    expect(openaiAdapter.supports('embeddings')).toBe(true);
    expect(openaiAdapter.supports('models')).toBe(false);
  });
});

describe('openai adapter: buildRequest', () => {
  it('sends the client body with the target model, to base_url + path, with the key', () => {
    const req = openaiAdapter.buildRequest('chat.completions', chatBody, target(), { stream: false });
    expect(req.url).toBe('https://api.openai.com/v1/chat/completions');
    expect(req.method).toBe('POST');
    expect(JSON.parse(req.body)).toEqual({ ...chatBody, model: 'gpt-4o-mini' });
    expect(req.headers).toEqual({
      'content-type': 'application/json',
      accept: 'application/json',
      authorization: `Bearer ${KEY}`,
    });
  });

  it('maps each endpoint to its path and tolerates a trailing slash on base_url', () => {
    const t = target({ base_url: 'http://127.0.0.1:11434/v1/' });
    expect(openaiAdapter.buildRequest('completions', { prompt: 'x' }, t, { stream: false }).url).toBe(
      'http://127.0.0.1:11434/v1/completions',
    );
    expect(openaiAdapter.buildRequest('embeddings', { input: 'x' }, t, { stream: false }).url).toBe(
      'http://127.0.0.1:11434/v1/embeddings',
    );
  });

  it('sends no authorization header when the target has no key (local servers)', () => {
    const req = openaiAdapter.buildRequest('chat.completions', chatBody, target({ api_key: undefined }), {
      stream: false,
    });
    expect(Object.keys(req.headers)).not.toContain('authorization');
  });

  it('asks for usage on streams and keeps the client stream_options', () => {
    const body = { ...chatBody, stream: true, stream_options: { include_obfuscation: false } };
    const sent = JSON.parse(
      openaiAdapter.buildRequest('chat.completions', body, target(), { stream: true }).body,
    );
    expect(sent.stream).toBe(true);
    expect(sent.stream_options).toEqual({ include_obfuscation: false, include_usage: true });
    expect(body.stream_options).toEqual({ include_obfuscation: false }); // the context body is not mutated
  });

  it('leaves stream_options alone on non-stream requests', () => {
    const sent = JSON.parse(
      openaiAdapter.buildRequest('chat.completions', chatBody, target(), { stream: false }).body,
    );
    expect(sent).not.toHaveProperty('stream_options');
  });

  it('adds target headers, but never lets them replace content-type or the key', () => {
    const req = openaiAdapter.buildRequest(
      'chat.completions',
      chatBody,
      target({
        headers: {
          'OpenAI-Organization': 'org-x',
          'Content-Type': 'text/plain',
          Authorization: 'Bearer other',
        },
      }),
      { stream: false },
    );
    expect(req.headers['openai-organization']).toBe('org-x');
    expect(req.headers['content-type']).toBe('application/json');
    expect(req.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(Object.keys(req.headers).filter((h) => h.toLowerCase() === 'authorization')).toHaveLength(1);
  });

  it('uses a custom authorization from target headers only when no key is set', () => {
    const req = openaiAdapter.buildRequest(
      'chat.completions',
      chatBody,
      target({ api_key: undefined, headers: { Authorization: 'Basic dXNlcjpwYXNz' } }),
      { stream: false },
    );
    expect(req.headers.authorization).toBe('Basic dXNlcjpwYXNz');
  });
});

describe('openai adapter: parseResponse', () => {
  it('reads usage, model and answer length of a chat completion, body unchanged', () => {
    const json = fixtureJson('chat-completion.json');
    const parsed = openaiAdapter.parseResponse('chat.completions', json);
    expect(parsed.body).toBe(json);
    expect(parsed.model).toBe('gpt-4o-mini-2024-07-18');
    expect(parsed.usage).toEqual({
      input_tokens: 19,
      output_tokens: 10,
      total_tokens: 29,
      cached_input_tokens: 0,
    });
    expect(parsed.contentChars).toBe('Hello! How can I help you today?'.length);
  });

  it('reads a legacy completion', () => {
    const parsed = openaiAdapter.parseResponse('completions', fixtureJson('completion.json'));
    expect(parsed.usage).toEqual({ input_tokens: 5, output_tokens: 7, total_tokens: 12 });
    expect(parsed.contentChars).toBe('\n\nThis is indeed a test'.length);
  });

  it('reads embeddings usage with no completion tokens', () => {
    const parsed = openaiAdapter.parseResponse('embeddings', fixtureJson('embeddings.json'));
    expect(parsed.usage).toEqual({ input_tokens: 5, output_tokens: 0, total_tokens: 5 });
    expect(parsed.model).toBe('text-embedding-3-small');
    expect(parsed.contentChars).toBe(0);
  });

  it('counts tool-call arguments and reasoning as generated text', () => {
    const parsed = openaiAdapter.parseResponse('chat.completions', {
      choices: [
        {
          message: {
            content: null,
            reasoning_content: 'think',
            tool_calls: [{ type: 'function', function: { name: 'f', arguments: '{"a":1}' } }],
          },
        },
      ],
    });
    expect(parsed.contentChars).toBe('think'.length + '{"a":1}'.length);
    expect(parsed.usage).toBeUndefined();
  });

  it('reports no usage when the server sends none or garbage', () => {
    expect(openaiAdapter.parseResponse('chat.completions', { choices: [] }).usage).toBeUndefined();
    expect(
      openaiAdapter.parseResponse('chat.completions', { usage: { prompt_tokens: '9' } }).usage,
    ).toBeUndefined();
    expect(openaiAdapter.parseResponse('chat.completions', 'not an object').contentChars).toBe(0);
  });
});

function translate(endpoint: 'chat.completions' | 'completions', sse: string, clientWantsUsage: boolean) {
  const translator = openaiAdapter.streamTranslator(endpoint, { clientWantsUsage });
  return parseSse(sse).map((event) => translator.onEvent(event));
}

const emitted = (steps: StreamStep[]) => steps.flatMap((s) => s.emit).join('');

describe('openai adapter: stream translation', () => {
  const withUsage = fixture('chat-completion-stream-include-usage.sse');

  it('forwards every chunk byte for byte, one emit per event, when the client asked for usage', () => {
    const steps = translate('chat.completions', withUsage, true);
    expect(emitted(steps)).toBe(withUsage.replace(/\n\n\n$/, '\n\n'));
    expect(steps.every((s) => s.emit.length === 1)).toBe(true);
    expect(steps.at(-1)).toEqual({ emit: ['data: [DONE]\n\n'], done: true });
  });

  it('records the usage chunk but does not forward it when the client did not ask', () => {
    const steps = translate('chat.completions', withUsage, false);
    const usageStep = steps[4]!;
    expect(usageStep.emit).toEqual([]);
    expect(usageStep.usage).toEqual({
      input_tokens: 9,
      output_tokens: 2,
      total_tokens: 11,
      cached_input_tokens: 0,
    });
    expect(emitted(steps)).not.toContain('"choices":[]');
    expect(emitted(steps)).toContain('data: [DONE]');
    expect(steps.filter((s) => s.emit.length > 0)).toHaveLength(5);
  });

  it('reports model and generated characters per chunk', () => {
    const steps = translate('chat.completions', fixture('chat-completion-stream.sse'), false);
    expect(steps[0]!.model).toBe('gpt-4o-mini-2024-07-18');
    expect(steps.map((s) => s.contentChars ?? 0)).toEqual([0, 2, 6, 0, 0]);
    expect(steps.some((s) => s.usage)).toBe(false);
  });

  it('counts legacy completion text', () => {
    const sse =
      'data: {"id":"cmpl-1","object":"text_completion","created":1,"choices":[{"text":"Hi you","index":0,"logprobs":null,"finish_reason":null}],"model":"gpt-3.5-turbo-instruct"}\n\ndata: [DONE]\n\n';
    const steps = translate('completions', sse, false);
    expect(steps[0]!.contentChars).toBe(6);
    expect(steps[1]!.done).toBe(true);
  });

  it('turns an error event or a non-JSON event into AIGW_STREAM_BROKEN without forwarding it', () => {
    const [errorStep] = translate(
      'chat.completions',
      'data: {"error":{"message":"The server had an error while processing your request. Key sk-proj-abcdefghijklmnop","type":"server_error"}}\n\n',
      true,
    );
    expect(errorStep!.emit).toEqual([]);
    expect(errorStep!.error).toBeInstanceOf(GatewayError);
    expect(errorStep!.error!.code).toBe('AIGW_STREAM_BROKEN');
    expect(errorStep!.error!.message).toContain('The server had an error');
    expect(errorStep!.error!.message).not.toContain('sk-proj-abcdefghijklmnop');

    const [garbage] = translate('chat.completions', 'data: {"choices": [\n\n', true);
    expect(garbage!.error!.code).toBe('AIGW_STREAM_BROKEN');
    expect(garbage!.emit).toEqual([]);
  });
});

describe('openai adapter: parseError', () => {
  it('keeps status, message, type and param of an OpenAI error, with code AIGW_UPSTREAM_ERROR', () => {
    const err = openaiAdapter.parseError(400, fixture('error-400-bad-json.json'), {});
    expect(err).toBeInstanceOf(ProviderError);
    expect(err.status).toBe(400);
    expect(err.toJSON()).toEqual({
      error: {
        message: expect.stringContaining('We could not parse the JSON body of your request.'),
        type: 'invalid_request_error',
        code: 'AIGW_UPSTREAM_ERROR',
        param: null,
      },
    });
  });

  it('masks the part of the key that OpenAI echoes in a 401', () => {
    const err = openaiAdapter.parseError(401, fixture('error-401-invalid-api-key.json'), {});
    expect(err.status).toBe(401);
    expect(err.message).not.toMatch(/sk-abc|wxyz|\*\*\*/);
    expect(err.message).toContain('Incorrect API key provided: [REDACTED].');
    expect((err as ProviderError).providerCode).toBe('invalid_api_key');
  });

  it('masks whole keys and bearer tokens anywhere in a message', () => {
    const body = JSON.stringify({ error: { message: `bad key ${KEY} and Bearer abcdefghijklmnop` } });
    const err = openaiAdapter.parseError(401, body, {});
    expect(err.message).not.toContain(KEY);
    expect(err.message).not.toContain('abcdefghijklmnop');
  });

  it('keeps a 429 with its retry-after and provider code, and hides the organization', () => {
    const err = openaiAdapter.parseError(429, fixture('error-429-rate-limit.json'), { 'retry-after': '2' });
    expect(err.status).toBe(429);
    expect(err.headers).toEqual({ 'retry-after': '2' });
    expect(err.type).toBe('requests');
    expect((err as ProviderError).providerCode).toBe('rate_limit_exceeded');
    expect(err.message).toContain('Rate limit reached for gpt-4o-mini');
    expect(err.message).not.toContain('org-abc123');
  });

  it('reads the shapes of vLLM, Mistral and Ollama', () => {
    const vllm = openaiAdapter.parseError(
      400,
      '{"object":"error","message":"This model\'s maximum context length is 4096 tokens.","type":"BadRequestError","param":null,"code":400}',
      {},
    );
    expect(vllm.message).toBe("This model's maximum context length is 4096 tokens.");
    expect(vllm.type).toBe('BadRequestError');

    const mistral = openaiAdapter.parseError(401, '{"message":"Unauthorized","request_id":"abc"}', {});
    expect(mistral.message).toBe('Unauthorized');
    expect(mistral.type).toBe('authentication_error');

    const ollama = openaiAdapter.parseError(
      404,
      '{"error":"model \\"llama9\\" not found, try pulling it first"}',
      {},
    );
    expect(ollama.message).toBe('model "llama9" not found, try pulling it first');
    expect(ollama.type).toBe('not_found_error');
  });

  it('does not echo a body that is not JSON (an HTML error page)', () => {
    const err = openaiAdapter.parseError(
      502,
      '<html><body>Bad Gateway sk-proj-abcdefghijklmnop</body></html>',
      {},
    );
    expect(err.status).toBe(502);
    expect(err.message).toBe('the provider answered HTTP 502');
    expect(err.type).toBe('server_error');
  });

  it('bounds a very long message', () => {
    const err = openaiAdapter.parseError(400, JSON.stringify({ error: { message: 'x'.repeat(10_000) } }), {});
    expect(err.message.length).toBeLessThanOrEqual(1001);
  });
});
