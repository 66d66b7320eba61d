import type { Endpoint } from '../../../context/request-context';
import type { ProviderAdapter } from '../index';
import { OPENAI_PATHS } from '../openai/api';
import { parseOpenAIResponse } from '../openai/response';
import { openaiStreamTranslator } from '../openai/stream';
import { buildAzureRequest } from './api';
import { parseAzureError } from './error';

/**
 * Azure OpenAI: OpenAI's wire format at another address and key header. Answers and streams
 * are OpenAI's, plus `prompt_filter_results` / `content_filter_results` (passed through), a
 * first stream chunk with empty `choices` (passed through), and finish reason
 * `content_filter` (the relay's content-filter trigger).
 */
export const azureAdapter: ProviderAdapter = {
  supports: (endpoint: Endpoint) => OPENAI_PATHS[endpoint] !== undefined,
  buildRequest: buildAzureRequest,
  parseResponse: (endpoint, json) => parseOpenAIResponse(endpoint, json),
  streamTranslator: openaiStreamTranslator,
  parseError: parseAzureError,
};
