import type { Endpoint } from '../../../context/request-context';
import type { GatewayError } from '../../../errors';
import { errorJson, errorTypeForStatus, ProviderError, scrubProviderText } from '../../upstream-error';
import type { ProviderAdapter } from '../index';
import { buildOpenAIRequest } from '../openai/api';
import { parseOpenAIError } from '../openai/error';
import { parseOpenAIResponse } from '../openai/response';
import { openaiStreamTranslator } from '../openai/stream';
import { deepseek } from './deepseek';
import { groq } from './groq';
import { mistral } from './mistral';
import { ollama } from './ollama';
import type { CompatProfile } from './profile';
import { vllm } from './vllm';

/** Error types OpenAI clients know; a server's own (`BadRequestError`, `api_error`...) maps by status. */
const OPENAI_ERROR_TYPES = new Set([
  'invalid_request_error',
  'authentication_error',
  'permission_error',
  'not_found_error',
  'rate_limit_error',
  'server_error',
  'insufficient_quota',
  'requests',
  'tokens',
]);

// vLLM, DeepSeek: "This model's maximum context length is 4096 tokens"; Mistral: "too large
// for model with 32768 maximum context length"; llama.cpp: "exceeds the available context size".
const CONTEXT_OVERFLOW = /maximum context length|context length exceeded|exceeds the available context/i;

/**
 * An OpenAI-compatible server: the OpenAI adapter's wire format, with the profile's refusals,
 * renames, usage reading and error details.
 */
export function compatibleAdapter(profile: CompatProfile): ProviderAdapter {
  return {
    supports: (endpoint: Endpoint) => profile.endpoints.includes(endpoint),
    buildRequest(endpoint, body, target, opts) {
      return buildOpenAIRequest(
        endpoint,
        profile.prepare(endpoint, body, target),
        target,
        opts,
        profile.dialect,
      );
    },
    parseResponse: (endpoint, json) => parseOpenAIResponse(endpoint, json, profile.dialect),
    streamTranslator: (endpoint, opts) => openaiStreamTranslator(endpoint, opts, profile.dialect),
    parseError: (status, bodyText, headers) => compatibleError(profile, status, bodyText, headers),
  };
}

function compatibleError(
  profile: CompatProfile,
  status: number,
  bodyText: string,
  headers: Record<string, string | string[] | undefined>,
): GatewayError {
  const base = parseOpenAIError(status, bodyText, headers);
  if (!(base instanceof ProviderError)) return base;
  const json = errorJson(bodyText);
  const ownMessage = profile.errorMessage?.(json);
  const message = ownMessage === undefined ? base.message : scrubProviderText(ownMessage);
  const type = OPENAI_ERROR_TYPES.has(base.type) ? base.type : errorTypeForStatus(status);
  // The relay fails over to a larger model on this code, as it does for OpenAI's.
  const providerCode =
    status === 400 && CONTEXT_OVERFLOW.test(message) ? 'context_length_exceeded' : base.providerCode;
  return new ProviderError(status, message, {
    type,
    param: base.param ?? undefined,
    providerCode,
    headers: base.headers,
  });
}

export const mistralAdapter = compatibleAdapter(mistral);
export const groqAdapter = compatibleAdapter(groq);
export const deepseekAdapter = compatibleAdapter(deepseek);
export const vllmAdapter = compatibleAdapter(vllm);
export const ollamaAdapter = compatibleAdapter(ollama);
