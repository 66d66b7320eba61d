import type { Endpoint, ProviderKind, Target } from '../../../../lib/context';
import { parseSse } from '../../../../lib/llm/sse';
import {
  adapterFor,
  defaultBaseUrl,
  type ProviderAdapter,
  type StreamStep,
} from '../../../../lib/relay/providers';
import { openaiAdapter } from '../../../../lib/relay/providers/openai';
import {
  deepseekAdapter,
  groqAdapter,
  mistralAdapter,
  ollamaAdapter,
  vllmAdapter,
} from '../../../../lib/relay/providers/openai-compatible';
import type { ProviderError } from '../../../../lib/relay/upstream-error';
import { adapterTarget, providerFixture as fixture, refusal } from '../../../support/provider-fixtures';

function target(provider: ProviderKind, overrides: Partial<Target> = {}): Target {
  return adapterTarget(
    {
      name: `${provider}-main`,
      provider,
      model: 'some-model',
      base_url: defaultBaseUrl(provider)!,
      api_key: 'compat-test-key-0123456789',
    },
    overrides,
  );
}

const chat = { model: 'alias', messages: [{ role: 'user', content: 'Hello' }] };

function sent(
  adapter: ProviderAdapter,
  provider: ProviderKind,
  body: Record<string, unknown>,
  stream = false,
  endpoint: Endpoint = 'chat.completions',
) {
  const req = adapter.buildRequest(endpoint, body, target(provider), { stream });
  return { req, body: JSON.parse(req.body) as Record<string, unknown> };
}

const adapterRefusal = (adapter: ProviderAdapter, provider: ProviderKind, body: Record<string, unknown>) =>
  refusal(() => adapter.buildRequest('chat.completions', body, target(provider), { stream: false }));

function translate(adapter: ProviderAdapter, sse: string, clientWantsUsage: boolean): StreamStep[] {
  const translator = adapter.streamTranslator('chat.completions', { clientWantsUsage });
  return parseSse(sse).map((event) => translator.onEvent(event));
}

/** The client's view: the JSON chunks it receives, before [DONE]. */
function chunks(steps: StreamStep[]): Record<string, unknown>[] {
  return parseSse(steps.flatMap((s) => s.emit).join(''))
    .filter((e) => e.data !== '[DONE]')
    .map((e) => JSON.parse(e.data));
}

describe('openai-compatible providers: registry, base URLs and endpoints', () => {
  it('has one adapter per provider, each at its default base URL with a Bearer key', () => {
    const expected: [ProviderKind, ProviderAdapter, string][] = [
      ['mistral', mistralAdapter, 'https://api.mistral.ai/v1/chat/completions'],
      ['groq', groqAdapter, 'https://api.groq.com/openai/v1/chat/completions'],
      ['deepseek', deepseekAdapter, 'https://api.deepseek.com/v1/chat/completions'],
      ['vllm', vllmAdapter, 'http://127.0.0.1:8000/v1/chat/completions'],
      ['ollama', ollamaAdapter, 'http://127.0.0.1:11434/v1/chat/completions'],
    ];
    for (const [provider, adapter, url] of expected) {
      expect(adapterFor(provider)).toBe(adapter);
      const { req } = sent(adapter, provider, chat);
      expect(req.url).toBe(url);
      expect(req.headers.authorization).toBe('Bearer compat-test-key-0123456789');
    }
  });

  it('serves only the endpoints each provider has', () => {
    const serves = (adapter: ProviderAdapter) =>
      (['chat.completions', 'completions', 'embeddings', 'models'] as const).filter((e) =>
        adapter.supports(e),
      );
    expect(serves(mistralAdapter)).toEqual(['chat.completions', 'embeddings']);
    expect(serves(groqAdapter)).toEqual(['chat.completions']);
    expect(serves(deepseekAdapter)).toEqual(['chat.completions']);
    expect(serves(vllmAdapter)).toEqual(['chat.completions', 'completions', 'embeddings']);
    expect(serves(ollamaAdapter)).toEqual(['chat.completions', 'completions', 'embeddings']);
  });
});

describe('mistral', () => {
  it('sends seed, max_completion_tokens and dimensions under Mistral’s names and drops user', () => {
    const { body } = sent(mistralAdapter, 'mistral', {
      ...chat,
      seed: 7,
      max_completion_tokens: 50,
      user: 'u-1',
    });
    expect(body).toEqual({ ...chat, model: 'some-model', random_seed: 7, max_tokens: 50 });
    const emb = sent(
      mistralAdapter,
      'mistral',
      { input: 'x', dimensions: 256, user: 'u' },
      false,
      'embeddings',
    );
    expect(emb.body).toEqual({ input: 'x', model: 'some-model', output_dimension: 256 });
  });

  it('keeps the client’s max_tokens when both limits are given', () => {
    const { body } = sent(mistralAdapter, 'mistral', { ...chat, max_tokens: 10, max_completion_tokens: 50 });
    expect(body.max_tokens).toBe(10);
    expect(body).not.toHaveProperty('max_completion_tokens');
  });

  it('never sends stream_options (Mistral refuses it), even when the client set it', () => {
    const { body } = sent(
      mistralAdapter,
      'mistral',
      { ...chat, stream_options: { include_usage: true } },
      true,
    );
    expect(body.stream).toBe(true);
    expect(body).not.toHaveProperty('stream_options');
  });

  it('refuses logprobs, logit_bias and audio with 400 naming the feature and the target', () => {
    const err = adapterRefusal(mistralAdapter, 'mistral', { ...chat, logprobs: true });
    expect(err.code).toBe('AIGW_UNSUPPORTED_FEATURE');
    expect(err.status).toBe(400);
    expect(err.message).toBe('logprobs is not supported by target mistral-main (mistral)');
    expect(err.param).toBe('logprobs');
    expect(adapterRefusal(mistralAdapter, 'mistral', { ...chat, top_logprobs: 2 }).param).toBe(
      'top_logprobs',
    );
    expect(adapterRefusal(mistralAdapter, 'mistral', { ...chat, logit_bias: { '50256': -100 } }).param).toBe(
      'logit_bias',
    );
    expect(
      adapterRefusal(mistralAdapter, 'mistral', { ...chat, modalities: ['text', 'audio'] }).message,
    ).toMatch(/^audio output is not supported by target mistral-main/);
    // Harmless forms are not refused.
    expect(() => sent(mistralAdapter, 'mistral', { ...chat, logprobs: false, logit_bias: {} })).not.toThrow();
  });

  it('moves usage from the last content chunk to a usage chunk, only for a client that asked', () => {
    const sse = fixture('mistral', 'chat-completion-stream.sse');
    const asked = translate(mistralAdapter, sse, true);
    const out = chunks(asked);
    expect(out).toHaveLength(4);
    expect(out[2]).not.toHaveProperty('usage');
    expect((out[2]!.choices as { finish_reason: string }[])[0]!.finish_reason).toBe('stop');
    expect(out[3]).toEqual({
      id: 'cf79f7daaee244b1a0ae5c7b1444424a',
      object: 'chat.completion.chunk',
      created: 1733823000,
      model: 'mistral-small-latest',
      choices: [],
      usage: { prompt_tokens: 9, total_tokens: 11, completion_tokens: 2 },
    });
    expect(asked.at(-1)!.emit.at(-1)).toBe('data: [DONE]\n\n');
    expect(asked.at(-1)!.done).toBe(true);
    expect(asked.find((s) => s.usage)!.usage).toEqual({
      input_tokens: 9,
      output_tokens: 2,
      total_tokens: 11,
    });

    const notAsked = translate(mistralAdapter, sse, false);
    expect(chunks(notAsked)).toHaveLength(3);
    expect(chunks(notAsked).some((c) => 'usage' in c)).toBe(false);
    expect(notAsked.some((s) => s.usage)).toBe(true); // still metered
  });

  it('completes tool-call deltas with type and index, as OpenAI clients expect', () => {
    const out = chunks(
      translate(mistralAdapter, fixture('mistral', 'chat-completion-tool-calls-stream.sse'), false),
    );
    const delta = (out[1]!.choices as { delta: { tool_calls: unknown[] } }[])[0]!.delta;
    expect(delta.tool_calls).toEqual([
      {
        id: 'D681PevKs',
        type: 'function',
        index: 0,
        function: { name: 'get_weather', arguments: '{"location": "Paris"}' },
      },
    ]);
    const noIndex =
      'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"id":"a","function":{"name":"f","arguments":"{}"}},{"id":"b","function":{"name":"g","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}\n\n';
    const calls = (
      chunks(translate(mistralAdapter, noIndex, false))[0]!.choices as {
        delta: { tool_calls: { index: number; type: string }[] };
      }[]
    )[0]!.delta.tool_calls;
    expect(calls.map((c) => [c.index, c.type])).toEqual([
      [0, 'function'],
      [1, 'function'],
    ]);
  });

  it('reads the message of a validation error without echoing the client’s value', () => {
    const err = mistralAdapter.parseError(422, fixture('mistral', 'error-422-extra-forbidden.json'), {});
    expect(err.status).toBe(422);
    expect(err.message).toBe('stream_options.include_usage: Extra inputs are not permitted');
    expect(err.type).toBe('invalid_request_error');
    const stringified = JSON.stringify({
      object: 'error',
      message: JSON.stringify({
        detail: [
          {
            type: 'extra_forbidden',
            loc: ['body', 'user'],
            msg: 'Extra inputs are not permitted',
            input: 'secret-user',
          },
        ],
      }),
      type: 'internal_error_proxy',
      code: '1000',
    });
    const old = mistralAdapter.parseError(422, stringified, {});
    expect(old.message).toBe('user: Extra inputs are not permitted');
    expect(old.message).not.toContain('secret-user');
    expect(old.type).toBe('invalid_request_error'); // internal_error_proxy is no OpenAI type
    expect(mistralAdapter.parseError(401, fixture('mistral', 'error-401.json'), {}).message).toBe(
      'Unauthorized',
    );
  });

  it('marks a prompt over the context length as context_length_exceeded', () => {
    const err = mistralAdapter.parseError(
      400,
      '{"object":"error","message":"Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 maximum context length","type":"invalid_request_error","param":null,"code":"3051"}',
      {},
    );
    expect((err as ProviderError).providerCode).toBe('context_length_exceeded');
  });
});

describe('groq', () => {
  it('refuses n > 1, logprobs, logit_bias and messages[].name', () => {
    expect(adapterRefusal(groqAdapter, 'groq', { ...chat, n: 2 }).message).toBe(
      'n > 1 (several choices) is not supported by target groq-main (groq)',
    );
    expect(adapterRefusal(groqAdapter, 'groq', { ...chat, logprobs: true }).param).toBe('logprobs');
    expect(adapterRefusal(groqAdapter, 'groq', { ...chat, logit_bias: { '1': 5 } }).param).toBe('logit_bias');
    const named = { model: 'x', messages: [{ role: 'user', name: 'ann', content: 'hi' }] };
    expect(adapterRefusal(groqAdapter, 'groq', named).message).toBe(
      'messages[].name is not supported by target groq-main (groq)',
    );
    expect(() => sent(groqAdapter, 'groq', { ...chat, n: 1 })).not.toThrow();
  });

  it('asks for usage on streams and reads x_groq.usage from the last chunk', () => {
    expect(sent(groqAdapter, 'groq', chat, true).body.stream_options).toEqual({ include_usage: true });
    const steps = translate(groqAdapter, fixture('groq', 'chat-completion-stream.sse'), true);
    expect(steps.filter((s) => s.usage)).toHaveLength(1);
    expect(steps[3]!.usage).toEqual({ input_tokens: 9, output_tokens: 2, total_tokens: 11 });
    // No usage chunk came from Groq: one is made for the client that asked.
    const out = chunks(steps);
    expect(out.at(-1)).toMatchObject({
      object: 'chat.completion.chunk',
      model: 'llama-3.1-8b-instant',
      choices: [],
      usage: { prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 },
    });
    expect(chunks(translate(groqAdapter, fixture('groq', 'chat-completion-stream.sse'), false))).toHaveLength(
      4,
    );
  });

  it('does not send two usage chunks when Groq sends x_groq.usage and its usage chunk', () => {
    const sse = fixture('groq', 'chat-completion-stream.sse').replace(
      'data: [DONE]',
      'data: {"id":"chatcmpl-8f6a3c2e-5b7d-4e1f-9a0b-c1d2e3f4a5b6","object":"chat.completion.chunk","created":1729180000,"model":"llama-3.1-8b-instant","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}\n\ndata: [DONE]',
    );
    const out = chunks(translate(groqAdapter, sse, true));
    expect(out.filter((c) => (c.choices as unknown[]).length === 0)).toHaveLength(1);
  });

  it('keeps Groq’s context_length_exceeded code', () => {
    const err = groqAdapter.parseError(400, fixture('groq', 'error-400-context-length.json'), {});
    expect((err as ProviderError).providerCode).toBe('context_length_exceeded');
    expect(err.param).toBe('messages');
  });
});

describe('deepseek', () => {
  it('reads prompt_cache_hit_tokens as cached input and counts reasoning as generated text', () => {
    const parsed = deepseekAdapter.parseResponse(
      'chat.completions',
      JSON.parse(fixture('deepseek', 'chat-completion.json')),
    );
    expect(parsed.usage).toEqual({
      input_tokens: 76,
      output_tokens: 30,
      total_tokens: 106,
      cached_input_tokens: 64,
    });
    expect(parsed.contentChars).toBe('Hello! How can I help?'.length + 'The user greets me.'.length);
    expect(parsed.model).toBe('deepseek-reasoner');
  });

  it('prefers prompt_tokens_details.cached_tokens when DeepSeek sends both', () => {
    const parsed = deepseekAdapter.parseResponse('chat.completions', {
      usage: {
        prompt_tokens: 10,
        completion_tokens: 1,
        total_tokens: 11,
        prompt_tokens_details: { cached_tokens: 8 },
        prompt_cache_hit_tokens: 8,
      },
    });
    expect(parsed.usage?.cached_input_tokens).toBe(8);
  });

  it('streams reasoning_content through and reads the usage chunk', () => {
    const sse = fixture('deepseek', 'chat-completion-stream.sse');
    const steps = translate(deepseekAdapter, sse, true);
    expect(steps.flatMap((s) => s.emit).join('')).toBe(sse);
    expect(steps.map((s) => s.content ?? '').join('')).toBe('Hi!');
    expect(steps.reduce((n, s) => n + (s.contentChars ?? 0), 0)).toBe('A greeting.'.length + 'Hi!'.length);
    expect(steps.find((s) => s.usage)!.usage).toEqual({
      input_tokens: 70,
      output_tokens: 8,
      total_tokens: 78,
      cached_input_tokens: 64,
    });
  });

  it('refuses n > 1 and images, and sends max_completion_tokens as max_tokens', () => {
    expect(adapterRefusal(deepseekAdapter, 'deepseek', { ...chat, n: 3 }).param).toBe('n');
    const vision = {
      model: 'x',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'what is it' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
          ],
        },
      ],
    };
    expect(adapterRefusal(deepseekAdapter, 'deepseek', vision).message).toBe(
      'image input is not supported by target deepseek-main (deepseek)',
    );
    expect(sent(deepseekAdapter, 'deepseek', { ...chat, max_completion_tokens: 9 }).body).toEqual({
      ...chat,
      model: 'some-model',
      max_tokens: 9,
    });
  });
});

describe('vllm', () => {
  it('sends the body as OpenAI does, n and logprobs included', () => {
    const body = { ...chat, n: 2, logprobs: true, top_logprobs: 3, seed: 1 };
    expect(sent(vllmAdapter, 'vllm', body).body).toEqual({ ...body, model: 'some-model' });
    expect(sent(vllmAdapter, 'vllm', chat, true).body.stream_options).toEqual({ include_usage: true });
  });

  it('maps its error types to OpenAI’s and marks context overflow', () => {
    const ctx = vllmAdapter.parseError(400, fixture('vllm', 'error-400-context-length.json'), {});
    expect(ctx.type).toBe('invalid_request_error');
    expect((ctx as ProviderError).providerCode).toBe('context_length_exceeded');
    expect(ctx.toJSON().error.code).toBe('context_length_exceeded');
    const missing = vllmAdapter.parseError(404, fixture('vllm', 'error-404-model.json'), {});
    expect(missing.type).toBe('not_found_error');
    expect(missing.message).toBe('The model `llama-9` does not exist.');
    // The plain OpenAI adapter keeps the server's own type.
    expect(openaiAdapter.parseError(404, fixture('vllm', 'error-404-model.json'), {}).type).toBe(
      'NotFoundError',
    );
  });
});

describe('ollama', () => {
  it('works without a key, and sends max_completion_tokens as max_tokens', () => {
    const req = ollamaAdapter.buildRequest(
      'chat.completions',
      { ...chat, max_completion_tokens: 20 },
      target('ollama', { api_key: undefined }),
      { stream: false },
    );
    expect(req.headers).not.toHaveProperty('authorization');
    expect(JSON.parse(req.body)).toEqual({ ...chat, model: 'some-model', max_tokens: 20 });
  });

  it('refuses n > 1 and logit_bias, which it would ignore', () => {
    expect(adapterRefusal(ollamaAdapter, 'ollama', { ...chat, n: 2 }).param).toBe('n');
    expect(adapterRefusal(ollamaAdapter, 'ollama', { ...chat, logit_bias: { '5': 1 } }).message).toBe(
      'logit_bias is not supported by target ollama-main (ollama)',
    );
  });

  it('forwards its stream, hiding the usage chunk from a client that did not ask', () => {
    const sse = fixture('ollama', 'chat-completion-stream.sse');
    expect(
      translate(ollamaAdapter, sse, true)
        .flatMap((s) => s.emit)
        .join(''),
    ).toBe(sse);
    const steps = translate(ollamaAdapter, sse, false);
    expect(chunks(steps)).toHaveLength(3);
    expect(steps.find((s) => s.usage)!.usage).toEqual({
      input_tokens: 26,
      output_tokens: 2,
      total_tokens: 28,
    });
  });

  it('maps its api_error type by status', () => {
    const err = ollamaAdapter.parseError(404, fixture('ollama', 'error-404-model.json'), {});
    expect(err.type).toBe('not_found_error');
    expect(err.message).toBe('model "llama9" not found, try pulling it first');
  });
});

describe('openai-compatible: stream faults', () => {
  it('turns an error event or garbage into AIGW_STREAM_BROKEN for every provider', () => {
    for (const adapter of [mistralAdapter, groqAdapter, deepseekAdapter, vllmAdapter, ollamaAdapter]) {
      const [err] = translate(adapter, 'data: {"error":{"message":"overloaded"}}\n\n', true);
      expect(err!.error!.code).toBe('AIGW_STREAM_BROKEN');
      const [bad] = translate(adapter, 'data: not json\n\n', true);
      expect(bad!.error!.code).toBe('AIGW_STREAM_BROKEN');
      expect(bad!.emit).toEqual([]);
    }
  });

  it('makes no usage chunk when the server reported no usage at all', () => {
    const sse =
      'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n';
    const steps = translate(vllmAdapter, sse, true);
    expect(steps.flatMap((s) => s.emit).join('')).toBe(sse);
    expect(steps.some((s) => s.usage)).toBe(false);
  });
});
