import type { Endpoint } from '../../../context/request-context';
import type { ProviderAdapter } from '../index';
import { buildOpenAIRequest, OPENAI_PATHS } from './api';
import { parseOpenAIError } from './error';
import { parseOpenAIResponse } from './response';
import { openaiStreamTranslator } from './stream';

/**
 * OpenAI and every server with the same wire format (vLLM, Ollama, Mistral, Groq,
 * Together, LM Studio): only `base_url` and the key differ.
 */
export const openaiAdapter: ProviderAdapter = {
  supports: (endpoint: Endpoint) => OPENAI_PATHS[endpoint] !== undefined,
  buildRequest: buildOpenAIRequest,
  parseResponse: (endpoint, json) => parseOpenAIResponse(endpoint, json),
  streamTranslator: openaiStreamTranslator,
  parseError: parseOpenAIError,
};
