import type { Endpoint, Usage } from '../../../context/request-context';
import type { ParsedResponse } from '../index';
import { isObject, type OpenAIDialect } from './api';

/**
 * An OpenAI-format JSON answer. It is already in the client's format, so the body is
 * returned as is (the relay then forwards the provider's bytes unchanged).
 */
export function parseOpenAIResponse(
  endpoint: Endpoint,
  json: unknown,
  dialect: OpenAIDialect = {},
): ParsedResponse {
  if (!isObject(json)) return { body: json, contentChars: 0 };
  return {
    body: json,
    usage: dialect.usage ? dialect.usage(json) : openaiUsage(json.usage),
    model: modelOf(json),
    contentChars: endpoint === 'embeddings' ? 0 : choicesChars(json.choices, 'message'),
  };
}

/** The answering model; Azure's first stream chunk says `""`, which names nobody. */
export function modelOf(json: Record<string, unknown>): string | undefined {
  return typeof json.model === 'string' && json.model !== '' ? json.model : undefined;
}

/** OpenAI's `usage` object in the suite's terms; undefined when absent or malformed. */
export function openaiUsage(raw: unknown): Usage | undefined {
  if (!isObject(raw) || typeof raw.prompt_tokens !== 'number') return undefined;
  const input = raw.prompt_tokens;
  // Embeddings report no completion tokens.
  const output = typeof raw.completion_tokens === 'number' ? raw.completion_tokens : 0;
  const usage: Usage = {
    input_tokens: input,
    output_tokens: output,
    total_tokens: typeof raw.total_tokens === 'number' ? raw.total_tokens : input + output,
  };
  const cached = isObject(raw.prompt_tokens_details) ? raw.prompt_tokens_details.cached_tokens : undefined;
  if (typeof cached === 'number') usage.cached_input_tokens = cached;
  return usage;
}

/**
 * Characters of generated text in `choices`: message/delta content, refusals, reasoning
 * (vLLM, DeepSeek), tool-call arguments, and legacy completions' `text`.
 */
export function choicesChars(choices: unknown, field: 'message' | 'delta'): number {
  if (!Array.isArray(choices)) return 0;
  let chars = 0;
  for (const choice of choices) {
    if (!isObject(choice)) continue;
    if (typeof choice.text === 'string') chars += choice.text.length;
    const part = choice[field];
    if (!isObject(part)) continue;
    for (const key of ['content', 'refusal', 'reasoning_content'] as const) {
      const value = part[key];
      if (typeof value === 'string') chars += value.length;
    }
    if (Array.isArray(part.tool_calls)) {
      for (const call of part.tool_calls) {
        const args = isObject(call) && isObject(call.function) ? call.function.arguments : undefined;
        if (typeof args === 'string') chars += args.length;
      }
    }
  }
  return chars;
}
