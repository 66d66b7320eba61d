import type { Target } from '../../../../lib/context';
import { GatewayError } from '../../../../lib/errors';
import { parseSse } from '../../../../lib/llm/sse';
import { adapterFor, type StreamStep } from '../../../../lib/relay/providers';
import { azureAdapter } from '../../../../lib/relay/providers/azure';
import { ProviderError } from '../../../../lib/relay/upstream-error';
import { adapterTarget, providerFixtures } from '../../../support/provider-fixtures';

const { fixture, fixtureJson } = providerFixtures('azure');

const KEY = '0123456789abcdef0123456789abcdef';

function target(overrides: Partial<Target> = {}): Target {
  return adapterTarget(
    {
      name: 'azure-4o',
      provider: 'azure',
      model: 'gpt4o-prod',
      base_url: 'https://contoso.openai.azure.com',
      api_key: KEY,
      api_version: '2024-10-21',
    },
    overrides,
  );
}

const chatBody = { model: 'fast', messages: [{ role: 'user', content: 'Hello' }] };

function translate(sse: string, clientWantsUsage: boolean): StreamStep[] {
  const translator = azureAdapter.streamTranslator('chat.completions', { clientWantsUsage });
  return parseSse(sse).map((event) => translator.onEvent(event));
}
const emitted = (steps: StreamStep[]) => steps.flatMap((s) => s.emit).join('');

describe('azure adapter: buildRequest', () => {
  it('is the adapter for provider azure and serves chat, completions and embeddings', () => {
    expect(adapterFor('azure')).toBe(azureAdapter);
    expect(azureAdapter.supports('chat.completions')).toBe(true);
    expect(azureAdapter.supports('completions')).toBe(true);
    expect(azureAdapter.supports('embeddings')).toBe(true);
    expect(azureAdapter.supports('models')).toBe(false);
  });

  it('posts to the deployment with api-version, the key in api-key and no Authorization', () => {
    const req = azureAdapter.buildRequest('chat.completions', chatBody, target(), { stream: false });
    expect(req.url).toBe(
      'https://contoso.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21',
    );
    expect(req.headers).toEqual({
      'content-type': 'application/json',
      accept: 'application/json',
      'api-key': KEY,
    });
    expect(JSON.parse(req.body)).toEqual({ ...chatBody, model: 'gpt4o-prod' });
  });

  it('maps completions and embeddings, encodes the deployment, and tolerates a base_url ending in /openai', () => {
    const t = target({ base_url: 'https://contoso.openai.azure.com/openai/', model: 'emb small' });
    expect(azureAdapter.buildRequest('embeddings', { input: 'x' }, t, { stream: false }).url).toBe(
      'https://contoso.openai.azure.com/openai/deployments/emb%20small/embeddings?api-version=2024-10-21',
    );
    expect(azureAdapter.buildRequest('completions', { prompt: 'x' }, t, { stream: false }).url).toBe(
      'https://contoso.openai.azure.com/openai/deployments/emb%20small/completions?api-version=2024-10-21',
    );
  });

  it('asks for usage on streams from api-version 2024-09-01 on', () => {
    const req = azureAdapter.buildRequest('chat.completions', { ...chatBody, stream: true }, target(), {
      stream: true,
    });
    expect(req.headers.accept).toBe('text/event-stream');
    expect(JSON.parse(req.body).stream_options).toEqual({ include_usage: true });
  });

  it('sends no stream_options to an older api-version, and refuses a client that asks for usage there', () => {
    const old = target({ api_version: '2024-06-01' });
    const sent = JSON.parse(
      azureAdapter.buildRequest('chat.completions', { ...chatBody, stream: true }, old, { stream: true })
        .body,
    );
    expect(sent.stream).toBe(true);
    expect(sent).not.toHaveProperty('stream_options');

    const asking = { ...chatBody, stream: true, stream_options: { include_usage: true } };
    let error: unknown;
    try {
      azureAdapter.buildRequest('chat.completions', asking, old, { stream: true });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(GatewayError);
    expect((error as GatewayError).code).toBe('AIGW_UNSUPPORTED_FEATURE');
    expect((error as GatewayError).status).toBe(400);
    expect((error as GatewayError).message).toBe(
      'stream_options.include_usage (api-version 2024-06-01) is not supported by target azure-4o (azure)',
    );
  });

  it('passes an Entra ID token from the target headers when there is no key', () => {
    const req = azureAdapter.buildRequest(
      'chat.completions',
      chatBody,
      target({ api_key: undefined, headers: { Authorization: 'Bearer entra-token' } }),
      { stream: false },
    );
    expect(req.headers.authorization).toBe('Bearer entra-token');
    expect(req.headers).not.toHaveProperty('api-key');
  });

  it('does not let target headers replace the key', () => {
    const req = azureAdapter.buildRequest(
      'chat.completions',
      chatBody,
      target({ headers: { 'API-Key': 'other' } }),
      { stream: false },
    );
    expect(req.headers['api-key']).toBe(KEY);
  });
});

describe('azure adapter: parseResponse', () => {
  it('reads usage and model and keeps the content filter fields (body unchanged)', () => {
    const json = fixtureJson('chat-completion.json');
    const parsed = azureAdapter.parseResponse('chat.completions', json);
    expect(parsed.body).toBe(json);
    expect(parsed.body).toHaveProperty('prompt_filter_results');
    expect(parsed.model).toBe('gpt-4o-2024-08-06');
    expect(parsed.usage).toEqual({
      input_tokens: 18,
      output_tokens: 9,
      total_tokens: 27,
      cached_input_tokens: 0,
    });
    expect(parsed.contentChars).toBe('Hello! How can I assist you today?'.length);
  });

  it('reads tool calls, a filtered answer and embeddings', () => {
    expect(
      azureAdapter.parseResponse('chat.completions', fixtureJson('chat-completion-tool-calls.json'))
        .contentChars,
    ).toBe('{"location":"Paris"}'.length);
    const filtered = azureAdapter.parseResponse(
      'chat.completions',
      fixtureJson('chat-completion-content-filter.json'),
    );
    expect((filtered.body as { choices: { finish_reason: string }[] }).choices[0]!.finish_reason).toBe(
      'content_filter',
    );
    expect(filtered.usage?.output_tokens).toBe(5);
    const embeddings = azureAdapter.parseResponse('embeddings', fixtureJson('embeddings.json'));
    expect(embeddings.usage).toEqual({ input_tokens: 5, output_tokens: 0, total_tokens: 5 });
    expect(embeddings.contentChars).toBe(0);
  });
});

describe('azure adapter: stream translation', () => {
  it('passes the first chunk (empty choices, prompt_filter_results) without usage or a model', () => {
    const steps = translate(fixture('chat-completion-stream.sse'), true);
    const first = steps[0]!;
    expect(first.error).toBeUndefined();
    expect(first.usage).toBeUndefined();
    expect(first.model).toBeUndefined();
    expect(first.contentChars).toBe(0);
    expect(first.emit).toHaveLength(1);
    expect(first.emit[0]).toContain('"prompt_filter_results"');
    expect(steps[1]!.model).toBe('gpt-4o-2024-08-06');
  });

  it('forwards every chunk unchanged when the client asked for usage, and reads the usage chunk', () => {
    const sse = fixture('chat-completion-stream.sse');
    const steps = translate(sse, true);
    expect(emitted(steps)).toBe(sse);
    expect(steps.filter((s) => s.usage)).toHaveLength(1);
    expect(steps.find((s) => s.usage)!.usage).toEqual({
      input_tokens: 9,
      output_tokens: 2,
      total_tokens: 11,
      cached_input_tokens: 0,
    });
    expect(steps.map((s) => s.content ?? '').join('')).toBe('Hello!');
    expect(steps.at(-1)).toEqual({ emit: ['data: [DONE]\n\n'], done: true });
  });

  it('hides only the usage chunk from a client that did not ask, keeping the filter chunk', () => {
    const steps = translate(fixture('chat-completion-stream.sse'), false);
    const out = emitted(steps);
    expect(out).toContain('"prompt_filter_results"');
    expect(out).not.toContain('"usage"');
    expect(steps.some((s) => s.usage)).toBe(true); // still metered
  });

  it('passes streamed tool calls and a content_filter finish as Azure sent them', () => {
    const tools = fixture('chat-completion-tool-calls-stream.sse');
    const toolSteps = translate(tools, false);
    expect(emitted(toolSteps)).toBe(tools);
    expect(toolSteps.reduce((n, s) => n + (s.contentChars ?? 0), 0)).toBe('{"location":"Paris"}'.length);

    const filtered = fixture('chat-completion-content-filter-stream.sse');
    const steps = translate(filtered, false);
    expect(emitted(steps)).toBe(filtered);
    expect(emitted(steps)).toContain('"finish_reason":"content_filter"');
    expect(steps.at(-1)!.done).toBe(true);
  });

  it('turns an error event into AIGW_STREAM_BROKEN', () => {
    const [step] = translate('data: {"error":{"code":"500","message":"The server had an error"}}\n\n', true);
    expect(step!.error!.code).toBe('AIGW_STREAM_BROKEN');
    expect(step!.emit).toEqual([]);
  });
});

describe('azure adapter: parseError', () => {
  it("keeps the prompt filter's 400 as content_filter and names the filtered categories", () => {
    const err = azureAdapter.parseError(400, fixture('error-400-content-filter.json'), {});
    expect(err).toBeInstanceOf(ProviderError);
    expect(err.status).toBe(400);
    expect((err as ProviderError).providerCode).toBe('content_filter');
    expect(err.toJSON()).toEqual({
      error: {
        message: expect.stringMatching(
          /^The response was filtered due to the prompt .* \(filtered: violence\)$/,
        ),
        type: 'invalid_request_error',
        code: 'content_filter',
        param: 'prompt',
      },
    });
  });

  it('maps a 429 to rate_limit_exceeded and gives retry-after from retry-after-ms', () => {
    const err = azureAdapter.parseError(429, fixture('error-429-rate-limit.json'), {
      'retry-after-ms': '5500',
    });
    expect(err.status).toBe(429);
    expect(err.type).toBe('rate_limit_error');
    expect((err as ProviderError).providerCode).toBe('rate_limit_exceeded');
    expect(err.headers).toEqual({ 'retry-after': '6', 'retry-after-ms': '5500' });
    expect(err.message).toContain('exceeded token rate limit');

    const both = azureAdapter.parseError(429, fixture('error-429-rate-limit.json'), {
      'retry-after': '7',
      'retry-after-ms': 'soon',
    });
    expect(both.headers).toEqual({ 'retry-after': '7' });
  });

  it('maps DeploymentNotFound to model_not_found and a 401 to invalid_api_key', () => {
    const missing = azureAdapter.parseError(404, fixture('error-404-deployment-not-found.json'), {});
    expect(missing.status).toBe(404);
    expect(missing.type).toBe('not_found_error');
    expect((missing as ProviderError).providerCode).toBe('model_not_found');

    const denied = azureAdapter.parseError(401, fixture('error-401-invalid-key.json'), {});
    expect(denied.status).toBe(401);
    expect(denied.type).toBe('authentication_error');
    expect((denied as ProviderError).providerCode).toBe('invalid_api_key');
  });

  it("drops numeric codes that only repeat the status, keeps Azure's word codes", () => {
    const noVersion = azureAdapter.parseError(404, fixture('error-404-missing-api-version.json'), {});
    expect(noVersion.toJSON().error.code).toBe('AIGW_UPSTREAM_ERROR');
    expect(noVersion.message).toBe('Resource not found');
    const badVersion = azureAdapter.parseError(400, fixture('error-400-api-version-not-supported.json'), {});
    expect((badVersion as ProviderError).providerCode).toBe('BadRequest');
    expect(badVersion.type).toBe('invalid_request_error');
  });

  it("reads Entra ID's shape, scrubs keys, and does not echo a non-JSON body", () => {
    const entra = azureAdapter.parseError(
      401,
      '{"statusCode":401,"message":"Unauthorized. Access token is missing, invalid, audience is incorrect (https://cognitiveservices.azure.com), or have expired."}',
      {},
    );
    expect(entra.message).toMatch(/^Unauthorized\. Access token is missing/);
    const echo = azureAdapter.parseError(
      401,
      JSON.stringify({ error: { code: '401', message: `key sk-${KEY}` } }),
      {},
    );
    expect(echo.message).not.toContain(KEY);
    const html = azureAdapter.parseError(502, '<html>Bad Gateway</html>', {});
    expect(html.message).toBe('the provider answered HTTP 502');
    expect(html.type).toBe('server_error');
  });
});
