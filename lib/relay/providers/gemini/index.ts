import type { Endpoint } from '../../../context/request-context';
import type { ProviderAdapter } from '../index';
import { buildGeminiRequest } from './api';
import { parseGeminiError } from './error';
import { parseGeminiResponse } from './response';
import { geminiStreamTranslator } from './stream';

/**
 * Google's Gemini API (Generative Language API, `generativelanguage.googleapis.com/v1beta`):
 * chat completions over generateContent / streamGenerateContent, embeddings over
 * batchEmbedContents. Legacy completions have no Gemini counterpart.
 */
export const geminiAdapter: ProviderAdapter = {
  supports: (endpoint: Endpoint) => endpoint === 'chat.completions' || endpoint === 'embeddings',
  buildRequest: buildGeminiRequest,
  parseResponse: parseGeminiResponse,
  streamTranslator: geminiStreamTranslator,
  parseError: parseGeminiError,
};
