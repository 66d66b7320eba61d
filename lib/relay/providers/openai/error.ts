import type { GatewayError } from '../../../errors';
import { errorJson, ProviderError, scrubProviderText } from '../../upstream-error';
import { isObject } from './api';

/**
 * Error answers of OpenAI and the servers that copy its API. Shapes seen in the wild:
 * OpenAI, Groq, Together: `{"error": {"message", "type", "param", "code"}}`;
 * vLLM: `{"object": "error", "message", "type", "param", "code": 400}`;
 * Mistral: `{"message", "request_id"}` (or `{"object":"error", ...}`);
 * Ollama: `{"error": "model 'x' not found"}`.
 * The message is scrubbed: OpenAI's 401 echoes part of the key.
 */
export function parseOpenAIError(
  status: number,
  bodyText: string,
  headers: Record<string, string | string[] | undefined>,
): GatewayError {
  const json = errorJson(bodyText);
  const fields = isObject(json) ? (isObject(json.error) ? json.error : json) : {};
  const rawMessage =
    typeof fields.message === 'string'
      ? fields.message
      : isObject(json) && typeof json.error === 'string'
        ? json.error
        : undefined;

  const retryAfter = headerValue(headers['retry-after']);
  return new ProviderError(
    status,
    rawMessage ? scrubProviderText(rawMessage) : `the provider answered HTTP ${status}`,
    {
      type:
        typeof fields.type === 'string' && /^[A-Za-z_]{1,64}$/.test(fields.type) ? fields.type : undefined,
      param: typeof fields.param === 'string' ? fields.param : undefined,
      providerCode: typeof fields.code === 'string' ? fields.code : undefined,
      headers: retryAfter === undefined ? undefined : { 'retry-after': retryAfter },
    },
  );
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
