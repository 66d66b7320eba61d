import type { Endpoint, Usage } from '../../../context/request-context';
import { GatewayError } from '../../../errors';
import type { ParsedResponse } from '../index';
import { isObject } from '../openai/api';

/**
 * Anthropic's stop reasons as OpenAI finish reasons. `pause_turn` (a server tool paused a
 * long turn) ends the answer like `end_turn`; `refusal` is the safety classifier stopping it.
 */
export function finishReason(stopReason: unknown): string | null {
  switch (stopReason) {
    case 'end_turn':
    case 'stop_sequence':
    case 'pause_turn':
      return 'stop';
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'length';
    case 'tool_use':
      return 'tool_calls';
    case 'refusal':
      return 'content_filter';
    default:
      return stopReason === null || stopReason === undefined ? null : 'stop';
  }
}

/** Token counts as Anthropic reports them; later reports (message_delta) replace earlier ones. */
export interface AnthropicTokens {
  input: number;
  cacheRead: number;
  cacheCreation: number;
  output: number;
}

/** Reads the counts present in a `usage` object over `base`; undefined when there is none. */
export function readTokens(raw: unknown, base?: AnthropicTokens): AnthropicTokens | undefined {
  if (!isObject(raw)) return base;
  const num = (value: unknown, fallback: number) => (typeof value === 'number' ? value : fallback);
  if (!base && typeof raw.input_tokens !== 'number') return undefined;
  const from = base ?? { input: 0, cacheRead: 0, cacheCreation: 0, output: 0 };
  return {
    input: num(raw.input_tokens, from.input),
    cacheRead: num(raw.cache_read_input_tokens, from.cacheRead),
    cacheCreation: num(raw.cache_creation_input_tokens, from.cacheCreation),
    output: num(raw.output_tokens, from.output),
  };
}

/** Anthropic counts cached and cache-writing prompt tokens apart from `input_tokens`; OpenAI's prompt includes them. */
export function toUsage(tokens: AnthropicTokens): Usage {
  const input = tokens.input + tokens.cacheRead + tokens.cacheCreation;
  return {
    input_tokens: input,
    output_tokens: tokens.output,
    total_tokens: input + tokens.output,
    cached_input_tokens: tokens.cacheRead,
  };
}

/** The OpenAI `usage` object. */
export function openaiUsageBody(usage: Usage): Record<string, unknown> {
  return {
    prompt_tokens: usage.input_tokens,
    completion_tokens: usage.output_tokens,
    total_tokens: usage.total_tokens,
    prompt_tokens_details: { cached_tokens: usage.cached_input_tokens ?? 0 },
  };
}

/**
 * A Messages API answer as a `chat.completion`: text blocks joined as the content, tool_use
 * blocks as tool_calls. Thinking blocks are not asked for, so none are expected; any other
 * block type is left out of the client's answer.
 */
export function parseAnthropicResponse(_endpoint: Endpoint, json: unknown): ParsedResponse {
  if (!isObject(json) || json.type !== 'message' || !Array.isArray(json.content)) {
    throw new GatewayError('AIGW_UPSTREAM_PROTOCOL', 'the provider answered with an unexpected body');
  }
  let text = '';
  let argsChars = 0;
  const toolCalls: Record<string, unknown>[] = [];
  for (const block of json.content) {
    if (!isObject(block)) continue;
    if (block.type === 'text' && typeof block.text === 'string') text += block.text;
    else if (block.type === 'tool_use' && typeof block.id === 'string' && typeof block.name === 'string') {
      const args = JSON.stringify(block.input ?? {});
      argsChars += args.length;
      toolCalls.push({ id: block.id, type: 'function', function: { name: block.name, arguments: args } });
    }
  }

  const tokens = readTokens(json.usage);
  const usage = tokens ? toUsage(tokens) : undefined;
  const model = typeof json.model === 'string' ? json.model : undefined;
  const message: Record<string, unknown> = {
    role: 'assistant',
    content: text === '' && toolCalls.length > 0 ? null : text,
    refusal: null,
  };
  if (toolCalls.length > 0) message.tool_calls = toolCalls;
  const body: Record<string, unknown> = {
    id: typeof json.id === 'string' ? json.id : 'msg_unknown',
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: model ?? '',
    choices: [{ index: 0, message, logprobs: null, finish_reason: finishReason(json.stop_reason) ?? 'stop' }],
  };
  if (usage) body.usage = openaiUsageBody(usage);

  return { body, usage, model, contentChars: text.length + argsChars };
}
