import type { Endpoint } from '../../../context/request-context';
import type { ProviderAdapter } from '../index';
import { parseAnthropicError } from './error';
import { buildAnthropicRequest } from './request';
import { parseAnthropicResponse } from './response';
import { anthropicStreamTranslator } from './stream';

/**
 * Anthropic's Messages API (POST {base_url}/messages) for OpenAI-format chat clients.
 * Anthropic has no text completions or embeddings endpoint.
 */
export const anthropicAdapter: ProviderAdapter = {
  supports: (endpoint: Endpoint) => endpoint === 'chat.completions',
  buildRequest: buildAnthropicRequest,
  parseResponse: parseAnthropicResponse,
  streamTranslator: anthropicStreamTranslator,
  parseError: parseAnthropicError,
};
