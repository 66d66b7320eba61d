import type { GatewayError } from '../../../errors';
import { errorJson, ProviderError, scrubProviderText } from '../../upstream-error';
import { isObject } from './api';

/** OpenAI error types of the AWS errors whose status alone says too little. */
const ERROR_TYPES: Record<string, string> = {
  ThrottlingException: 'rate_limit_error',
  ServiceQuotaExceededException: 'rate_limit_error',
  ValidationException: 'invalid_request_error',
  AccessDeniedException: 'permission_error',
  ResourceNotFoundException: 'not_found_error',
  // AWS answers 403 when the credentials themselves are wrong.
  UnrecognizedClientException: 'authentication_error',
  InvalidSignatureException: 'authentication_error',
  MissingAuthenticationTokenException: 'authentication_error',
  IncompleteSignatureException: 'authentication_error',
  ExpiredTokenException: 'authentication_error',
  ModelTimeoutException: 'server_error',
  ModelNotReadyException: 'server_error',
  ModelErrorException: 'server_error',
  ServiceUnavailableException: 'server_error',
  InternalServerException: 'server_error',
};

// Secrets AWS text could carry: access key ids, 40-character secret keys, session tokens.
const AWS_SECRETS = [
  /\b(?:AKIA|ASIA)[A-Z0-9]{16}\b/g,
  /(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=])/g,
  /\b(?:IQoJb3JpZ2lu|FwoGZXIvYXdz)[A-Za-z0-9+/=]+/g,
];

/**
 * A Bedrock error answer: `{"message": ...}` (sometimes `Message`), the error's name in the
 * `x-amzn-errortype` header (`ValidationException:http://internal.amazon.com/...`) or the
 * body's `__type` (`com.amazonaws.bedrockruntime#ValidationException`). The status is kept;
 * the error name becomes the code, except prompts too long for the model, which get OpenAI's
 * `context_length_exceeded` so failover can tell them apart.
 */
export function parseBedrockError(
  status: number,
  bodyText: string,
  headers: Record<string, string | string[] | undefined>,
): GatewayError {
  const json = errorJson(bodyText);
  const fields = isObject(json) ? json : {};
  const rawMessage =
    typeof fields.message === 'string'
      ? fields.message
      : typeof fields.Message === 'string'
        ? fields.Message
        : undefined;
  const errorType = errorTypeName(
    headerValue(headers['x-amzn-errortype']) ?? stringOf(fields.__type ?? fields.code),
  );
  const message = rawMessage === undefined ? `the provider answered HTTP ${status}` : scrubAws(rawMessage);
  const retryAfter = headerValue(headers['retry-after']);
  const tooLong =
    errorType === 'ValidationException' &&
    /too long|context window|context length|maximum (context|input)|input length/i.test(message);
  return new ProviderError(status, errorType ? `${errorType}: ${message}` : message, {
    type: errorType ? ERROR_TYPES[errorType] : undefined,
    providerCode: tooLong ? 'context_length_exceeded' : errorType,
    headers: retryAfter === undefined ? undefined : { 'retry-after': retryAfter },
  });
}

/** `ValidationException` out of `ValidationException:http://...` or `com.amazonaws...#ValidationException`. */
function errorTypeName(raw: string | undefined): string | undefined {
  if (!raw) return undefined;
  const name = raw.split(':')[0]!.split('#').pop()!.trim();
  return /^[A-Za-z]{1,64}$/.test(name) ? name : undefined;
}

export function scrubAws(text: string): string {
  let out = text;
  for (const pattern of AWS_SECRETS) out = out.replace(pattern, '[REDACTED]');
  return scrubProviderText(out);
}

function stringOf(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
