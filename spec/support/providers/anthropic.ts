/**
 * Loopback mock of the Anthropic Messages API: POST /v1/messages, JSON or SSE (`stream: true`).
 * Wire formats, headers and error bodies follow api.anthropic.com; see
 * spec/fixtures/providers/anthropic/ for reference transcripts.
 *
 * Checks like the real API: `x-api-key` (when the mock has an apiKey), `anthropic-version`,
 * required `model`, `messages`, `max_tokens`, no "system" role inside `messages` (the system
 * prompt is the top-level `system` field, a string or text blocks). Not modelled: tools,
 * thinking, stop_sequences, mid-stream `error` events.
 *
 * no_usage removes `usage` from the JSON answer and from message_start / message_delta.
 */
import {
  countTokens,
  defaultAnswer,
  type ErrorAnswer,
  type Exchange,
  header,
  isRecord,
  limitAnswer,
  type MockOptions,
  type ProviderMock,
  randomId,
  sendJson,
  sendSse,
  sseEvent,
  startMockServer,
  textOf,
} from './shared';

const KNOWN_VERSIONS = ['2023-06-01', '2023-01-01'];
const RATE_LIMITS = {
  requests: 4_000,
  tokens: 2_000_000,
  'input-tokens': 2_000_000,
  'output-tokens': 400_000,
};

interface AnthropicErrorBody {
  type: 'error';
  error: { type: string; message: string };
  request_id: string;
}

function anthropicError(type: string, message: string): AnthropicErrorBody {
  return { type: 'error', error: { type, message }, request_id: `req_${randomId(24)}` };
}

const invalid = (message: string) => anthropicError('invalid_request_error', message);

// Anthropic says per status whether a retry can help; its SDKs obey this header.
function shouldRetry(status: number): string {
  return String(status === 408 || status === 409 || status === 429 || status >= 500);
}

export async function startAnthropicMock(options: MockOptions = {}): Promise<ProviderMock> {
  let served = 0;

  function headers(ex: Exchange): Record<string, string> {
    served += 1;
    // Anthropic's reset headers are RFC 3339 instants, not durations.
    const reset = new Date(Math.ceil((Date.now() + 1000) / 1000) * 1000).toISOString().replace('.000Z', 'Z');
    const used = countTokens(JSON.stringify(ex.body ?? ''));
    const result: Record<string, string> = {
      'request-id': `req_${randomId(24)}`,
      'anthropic-organization-id': '00000000-0000-4000-8000-000000000000',
    };
    for (const [kind, limit] of Object.entries(RATE_LIMITS)) {
      const remaining = kind === 'requests' ? Math.max(0, limit - served) : Math.max(0, limit - used);
      result[`anthropic-ratelimit-${kind}-limit`] = String(limit);
      result[`anthropic-ratelimit-${kind}-remaining`] = String(remaining);
      result[`anthropic-ratelimit-${kind}-reset`] = reset;
    }
    return result;
  }

  function errorFor(status: number): ErrorAnswer {
    const retry = { 'x-should-retry': shouldRetry(status) };
    switch (status) {
      case 400:
        return { body: invalid('Invalid request.'), headers: retry };
      case 401:
        return { body: anthropicError('authentication_error', 'invalid x-api-key'), headers: retry };
      case 403:
        return {
          body: anthropicError(
            'permission_error',
            'Your API key does not have permission to use the specified resource.',
          ),
          headers: retry,
        };
      case 404:
        return { body: anthropicError('not_found_error', 'Not found'), headers: retry };
      case 413:
        return {
          body: anthropicError('request_too_large', 'Request exceeds the maximum allowed number of bytes.'),
          headers: retry,
        };
      case 429:
        return {
          body: anthropicError(
            'rate_limit_error',
            'This request would exceed the rate limit for your organization of 4,000 requests per minute. ' +
              'For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers ' +
              'for current usage. Please reduce the number of requests or try again later.',
          ),
          headers: {
            ...retry,
            'retry-after': '1',
            'anthropic-ratelimit-requests-remaining': '0',
          },
        };
      case 529:
        return { body: anthropicError('overloaded_error', 'Overloaded'), headers: retry };
      default:
        return {
          body:
            status >= 500
              ? anthropicError('api_error', 'Internal server error')
              : invalid('Invalid request.'),
          headers: retry,
        };
    }
  }

  function fail(ex: Exchange, status: number, body: AnthropicErrorBody): Promise<void> {
    return sendJson(ex, status, { ...headers(ex), 'x-should-retry': shouldRetry(status) }, body);
  }

  async function handle(ex: Exchange): Promise<void> {
    if (options.apiKey !== undefined) {
      const key = header(ex, 'x-api-key');
      if (key === undefined || key === '') {
        return fail(ex, 401, anthropicError('authentication_error', 'x-api-key header is required'));
      }
      if (key !== options.apiKey)
        return fail(ex, 401, anthropicError('authentication_error', 'invalid x-api-key'));
    }
    const version = header(ex, 'anthropic-version');
    if (version === undefined) return fail(ex, 400, invalid('anthropic-version: header is required'));
    if (!KNOWN_VERSIONS.includes(version)) {
      return fail(ex, 400, invalid(`anthropic-version: ${JSON.stringify(version)} is not a valid version`));
    }
    if (`${ex.method} ${ex.path}` !== 'POST /v1/messages') {
      return fail(ex, 404, anthropicError('not_found_error', 'Not Found'));
    }
    if (ex.bodyInvalid) return fail(ex, 400, invalid('The request body is not valid JSON.'));
    return messages(ex, isRecord(ex.body) ? ex.body : {});
  }

  async function messages(ex: Exchange, body: Record<string, unknown>): Promise<void> {
    const problem = validate(body);
    if (problem) return fail(ex, 400, invalid(problem));
    const msgs = body['messages'] as Record<string, unknown>[];
    const model = body['model'] as string;
    const inputTokens =
      countTokens(textOf(body['system'])) +
      msgs.reduce((sum, m) => sum + countTokens(textOf(m['content'])), 0);
    const lastUser = [...msgs].reverse().find((m) => m['role'] === 'user');
    const answer = limitAnswer(
      ex.answer ?? defaultAnswer(textOf(lastUser?.['content'])),
      body['max_tokens'] as number,
    );
    const stopReason = answer.truncated ? 'max_tokens' : 'end_turn';
    const outputTokens = answer.pieces.length;
    const usage = (output: number) => ({
      input_tokens: inputTokens,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
      output_tokens: output,
      service_tier: 'standard',
    });
    const message = { id: `msg_01${randomId(22)}`, type: 'message', role: 'assistant', model };
    const withUsage = (output: number) => (ex.plan.noUsage ? {} : { usage: usage(output) });

    if (body['stream'] !== true) {
      return sendJson(ex, 200, headers(ex), {
        ...message,
        content: [{ type: 'text', text: answer.text }],
        stop_reason: stopReason,
        stop_sequence: null,
        ...withUsage(outputTokens),
      });
    }
    const frames = [
      sseEvent('message_start', {
        type: 'message_start',
        message: { ...message, content: [], stop_reason: null, stop_sequence: null, ...withUsage(1) },
      }),
      sseEvent('content_block_start', {
        type: 'content_block_start',
        index: 0,
        content_block: { type: 'text', text: '' },
      }),
      sseEvent('ping', { type: 'ping' }),
      ...answer.pieces.map((text) =>
        sseEvent('content_block_delta', {
          type: 'content_block_delta',
          index: 0,
          delta: { type: 'text_delta', text },
        }),
      ),
      sseEvent('content_block_stop', { type: 'content_block_stop', index: 0 }),
      sseEvent('message_delta', {
        type: 'message_delta',
        delta: { stop_reason: stopReason, stop_sequence: null },
        ...(ex.plan.noUsage ? {} : { usage: { output_tokens: outputTokens } }),
      }),
    ];
    return sendSse(
      ex,
      { ...headers(ex), 'cache-control': 'no-cache' },
      frames,
      sseEvent('message_stop', { type: 'message_stop' }),
    );
  }

  return startMockServer({ headers, errorFor, handle }, options);
}

/** The first problem of a Messages request, worded like the real API; undefined when valid. */
function validate(body: Record<string, unknown>): string | undefined {
  for (const field of ['model', 'messages', 'max_tokens']) {
    if (body[field] === undefined) return `${field}: Field required`;
  }
  if (typeof body['model'] !== 'string') return 'model: Input should be a valid string';
  const maxTokens = body['max_tokens'];
  if (typeof maxTokens !== 'number' || !Number.isInteger(maxTokens))
    return 'max_tokens: Input should be a valid integer';
  if (maxTokens < 1) return 'max_tokens: Input should be greater than or equal to 1';
  const system = body['system'];
  if (system !== undefined && typeof system !== 'string' && !Array.isArray(system)) {
    return 'system: Input should be a valid list';
  }
  const msgs = body['messages'];
  if (!Array.isArray(msgs)) return 'messages: Input should be a valid list';
  if (msgs.length === 0) return 'messages: at least one message is required';
  for (const [i, m] of msgs.entries()) {
    if (!isRecord(m)) return `messages.${i}: Input should be a valid dictionary`;
    if (m['role'] === 'system') {
      return 'messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, not "system" as an input message role.';
    }
    if (m['role'] !== 'user' && m['role'] !== 'assistant')
      return `messages.${i}.role: Input should be 'user' or 'assistant'`;
    if (typeof m['content'] !== 'string' && !Array.isArray(m['content'])) {
      return `messages.${i}.content: Input should be a valid list`;
    }
  }
  return undefined;
}
