import type { Endpoint, Usage } from '../context/request-context';

/**
 * Token counts for answers whose provider reported none (a stream cut before its usage
 * chunk, a server without `stream_options`, a local model). A streamed answer is counted
 * from its text (lib/llm/tokens.ts); a JSON answer from its characters, about 4 per token
 * (English on OpenAI's tokenizers; code and CJK count more). Outcomes built from them say
 * `usage_source: 'counted'`.
 */
export const CHARS_PER_TOKEN = 4;

export function approximateTokens(chars: number): number {
  return chars > 0 ? Math.ceil(chars / CHARS_PER_TOKEN) : 0;
}

/** Usage for an exchange whose provider reported none, from the counts the relay made. */
export function countedUsage(endpoint: Endpoint, promptTokens: number, answerTokens: number): Usage {
  const output = endpoint === 'embeddings' ? 0 : answerTokens;
  return { input_tokens: promptTokens, output_tokens: output, total_tokens: promptTokens + output };
}
