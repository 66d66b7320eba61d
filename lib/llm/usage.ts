import type { Endpoint, Usage } from '../context/request-context';

/**
 * Token counts for answers whose provider reported none (a stream cut before its usage
 * chunk, a server without `stream_options`, a local model).
 *
 * This is an approximation: about 4 characters per token, which holds for English text
 * on OpenAI's tokenizers and over-counts code and CJK less than it under-counts them.
 * Outcomes built from it say `usage_source: 'counted'`; the budget plugin brings an
 * exact tokenizer (tiktoken) where it needs one.
 */
export const CHARS_PER_TOKEN = 4;

export function approximateTokens(chars: number): number {
  return chars > 0 ? Math.ceil(chars / CHARS_PER_TOKEN) : 0;
}

/** Prompt tokens of an OpenAI-format request body: the text the model reads. */
export function approximatePromptTokens(
  endpoint: Endpoint,
  body: Record<string, unknown> | undefined,
): number {
  if (!body) return 0;
  switch (endpoint) {
    case 'chat.completions':
      return approximateTokens(messagesChars(body.messages));
    case 'completions':
      return inputTokens(body.prompt);
    case 'embeddings':
      return inputTokens(body.input);
    default:
      return 0;
  }
}

/** Usage for an exchange, counted from the request and the characters of the answer. */
export function countedUsage(
  endpoint: Endpoint,
  body: Record<string, unknown> | undefined,
  answerChars: number,
): Usage {
  const input = approximatePromptTokens(endpoint, body);
  const output = endpoint === 'embeddings' ? 0 : approximateTokens(answerChars);
  return { input_tokens: input, output_tokens: output, total_tokens: input + output };
}

function messagesChars(messages: unknown): number {
  if (!Array.isArray(messages)) return 0;
  let chars = 0;
  for (const m of messages) {
    if (m === null || typeof m !== 'object') continue;
    const { content, tool_calls } = m as { content?: unknown; tool_calls?: unknown };
    if (typeof content === 'string') chars += content.length;
    else if (Array.isArray(content)) {
      for (const part of content) {
        const text = (part as { text?: unknown } | null)?.text;
        if (typeof text === 'string') chars += text.length;
      }
    }
    if (Array.isArray(tool_calls)) {
      for (const call of tool_calls) {
        const args = (call as { function?: { arguments?: unknown } } | null)?.function?.arguments;
        if (typeof args === 'string') chars += args.length;
      }
    }
  }
  return chars;
}

/** `prompt` / `input`: a string, strings, token ids, or arrays of token ids. */
function inputTokens(input: unknown): number {
  if (typeof input === 'string') return approximateTokens(input.length);
  if (!Array.isArray(input)) return 0;
  let tokens = 0;
  let chars = 0;
  for (const item of input) {
    if (typeof item === 'string') chars += item.length;
    else if (typeof item === 'number') tokens += 1;
    else if (Array.isArray(item)) tokens += item.length;
  }
  return tokens + approximateTokens(chars);
}
