import type { GatewayError } from '../../../errors';
import { errorJson, ProviderError, scrubProviderText } from '../../upstream-error';
import { isObject } from '../openai/api';

/** Anthropic's error types as OpenAI's; the ones OpenAI shares keep their name. */
const OPENAI_TYPES: Record<string, string> = {
  invalid_request_error: 'invalid_request_error',
  authentication_error: 'authentication_error',
  permission_error: 'permission_error',
  not_found_error: 'not_found_error',
  request_too_large: 'invalid_request_error',
  rate_limit_error: 'rate_limit_error',
  api_error: 'server_error',
  overloaded_error: 'server_error',
  timeout_error: 'server_error',
  billing_error: 'permission_error',
};

// "prompt is too long: 208310 tokens > 200000 maximum"; "input length and `max_tokens` exceed context limit: ...".
const CONTEXT_TOO_LONG = /prompt is too long|exceed context limit/i;

/**
 * `{"type":"error","error":{"type","message"},"request_id"}` with the provider's status kept
 * (529 overloaded included). The Anthropic type is the error's `code`, so clients can tell an
 * overload from an outage; a prompt over the context window is `context_length_exceeded`, as
 * OpenAI names it, so the relay can fail over to a larger model.
 */
export function parseAnthropicError(
  status: number,
  bodyText: string,
  headers: Record<string, string | string[] | undefined>,
): GatewayError {
  const json = errorJson(bodyText);
  const error = isObject(json) && isObject(json.error) ? json.error : {};
  const message = typeof error.message === 'string' ? error.message : undefined;
  const anthropicType =
    typeof error.type === 'string' && /^[a-z_]{1,64}$/.test(error.type) ? error.type : undefined;
  const retryAfter = Array.isArray(headers['retry-after'])
    ? headers['retry-after'][0]
    : headers['retry-after'];

  return new ProviderError(
    status,
    message ? scrubProviderText(message) : `the provider answered HTTP ${status}`,
    {
      type: anthropicType ? OPENAI_TYPES[anthropicType] : undefined,
      providerCode: message && CONTEXT_TOO_LONG.test(message) ? 'context_length_exceeded' : anthropicType,
      headers: retryAfter === undefined ? undefined : { 'retry-after': retryAfter },
    },
  );
}
