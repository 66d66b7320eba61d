import type { GatewayError } from '../../../errors';
import { errorJson, ProviderError, scrubProviderText } from '../../upstream-error';
import { isObject } from '../openai/api';

/** Google's canonical error statuses as OpenAI error types. */
const TYPES: Record<string, string> = {
  INVALID_ARGUMENT: 'invalid_request_error',
  FAILED_PRECONDITION: 'invalid_request_error',
  OUT_OF_RANGE: 'invalid_request_error',
  UNAUTHENTICATED: 'authentication_error',
  PERMISSION_DENIED: 'permission_error',
  NOT_FOUND: 'not_found_error',
  RESOURCE_EXHAUSTED: 'rate_limit_error',
  INTERNAL: 'server_error',
  UNAVAILABLE: 'server_error',
  DEADLINE_EXCEEDED: 'server_error',
};

/**
 * Gemini's error answer, `{"error": {"code", "message", "status", "details"}}` (a one-element
 * array of it on the non-SSE stream), keeping the provider's HTTP status. The client gets
 * OpenAI's codes where one fits (`invalid_api_key`, `rate_limit_exceeded`,
 * `context_length_exceeded`), else Google's status in lower case. A 429's `RetryInfo`
 * becomes `retry-after` when Google sent no such header. The message is scrubbed: an API
 * key in it (Google's start with `AIza`) is masked.
 */
export function parseGeminiError(
  status: number,
  bodyText: string,
  headers: Record<string, string | string[] | undefined>,
): GatewayError {
  let json = errorJson(bodyText);
  if (Array.isArray(json)) json = json[0];
  const error = isObject(json) && isObject(json.error) ? json.error : {};
  const message = typeof error.message === 'string' ? error.message : undefined;
  const googleStatus = typeof error.status === 'string' ? error.status : undefined;
  const details = Array.isArray(error.details) ? error.details.filter(isObject) : [];
  const reason = details.map((d) => d.reason).find((r): r is string => typeof r === 'string');

  let type = googleStatus ? TYPES[googleStatus] : undefined;
  let code = googleStatus && /^[A-Z_]{1,64}$/.test(googleStatus) ? googleStatus.toLowerCase() : undefined;
  if (reason === 'API_KEY_INVALID') {
    // Google answers a bad key with 400 INVALID_ARGUMENT; it is the gateway's key, not the request.
    type = 'authentication_error';
    code = 'invalid_api_key';
  } else if (googleStatus === 'RESOURCE_EXHAUSTED') code = 'rate_limit_exceeded';
  else if (message && /input token count.*exceeds the maximum/i.test(message))
    code = 'context_length_exceeded';

  const retryAfter = headerValue(headers['retry-after']) ?? retryDelay(details);
  return new ProviderError(
    status,
    message ? scrubProviderText(message) : `the provider answered HTTP ${status}`,
    {
      type,
      providerCode: code,
      headers: retryAfter === undefined ? undefined : { 'retry-after': retryAfter },
    },
  );
}

/** Seconds from a `google.rpc.RetryInfo` detail (`"retryDelay": "37s"`), rounded up. */
function retryDelay(details: Record<string, unknown>[]): string | undefined {
  for (const detail of details) {
    if (detail['@type'] !== 'type.googleapis.com/google.rpc.RetryInfo') continue;
    const match = typeof detail.retryDelay === 'string' ? /^(\d+(?:\.\d+)?)s$/.exec(detail.retryDelay) : null;
    if (match) return String(Math.ceil(Number(match[1])));
  }
  return undefined;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
