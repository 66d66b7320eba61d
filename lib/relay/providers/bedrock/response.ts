import { randomUUID } from 'node:crypto';
import type { Endpoint, Usage } from '../../../context/request-context';
import { GatewayError } from '../../../errors';
import type { ParsedResponse, ResponseOptions } from '../index';
import { isObject } from './api';

/**
 * What the answers say in `model`: Converse answers do not name the model, and the adapter
 * contract gives `parseResponse` and `streamTranslator` no target to take it from.
 */
/** Model named in answers when the relay does not say which (Converse answers name none). */
export const ANSWER_MODEL = 'bedrock';

/** Converse's stopReason as OpenAI's finish_reason. */
export function finishReason(stopReason: unknown): string {
  switch (stopReason) {
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'length';
    case 'tool_use':
      return 'tool_calls';
    case 'guardrail_intervened':
    case 'content_filtered':
      return 'content_filter';
    default:
      // end_turn, stop_sequence, and reasons added later: the answer ended normally.
      return 'stop';
  }
}

/**
 * Converse's usage in the suite's terms. Like Anthropic's, Bedrock's `inputTokens` leave out
 * prompt tokens read from or written to the prompt cache; OpenAI's prompt_tokens count them.
 */
export function bedrockUsage(raw: unknown): Usage | undefined {
  if (!isObject(raw) || typeof raw.inputTokens !== 'number' || typeof raw.outputTokens !== 'number') {
    return undefined;
  }
  const cacheRead = typeof raw.cacheReadInputTokens === 'number' ? raw.cacheReadInputTokens : 0;
  const cacheWrite = typeof raw.cacheWriteInputTokens === 'number' ? raw.cacheWriteInputTokens : 0;
  const input = raw.inputTokens + cacheRead + cacheWrite;
  const usage: Usage = {
    input_tokens: input,
    output_tokens: raw.outputTokens,
    total_tokens: typeof raw.totalTokens === 'number' ? raw.totalTokens : input + raw.outputTokens,
  };
  if (typeof raw.cacheReadInputTokens === 'number') usage.cached_input_tokens = cacheRead;
  return usage;
}

/** The usage object of an OpenAI answer. */
export function openaiUsageOf(usage: Usage): Record<string, unknown> {
  return {
    prompt_tokens: usage.input_tokens,
    completion_tokens: usage.output_tokens,
    total_tokens: usage.total_tokens,
    ...(usage.cached_input_tokens !== undefined
      ? { prompt_tokens_details: { cached_tokens: usage.cached_input_tokens } }
      : {}),
  };
}

export function completionId(): string {
  return `chatcmpl-${randomUUID().replaceAll('-', '')}`;
}

/** A Converse answer as an OpenAI chat.completion. */
export function parseBedrockResponse(
  _endpoint: Endpoint,
  json: unknown,
  opts?: ResponseOptions,
): ParsedResponse {
  const message = isObject(json) && isObject(json.output) ? json.output.message : undefined;
  if (!isObject(json) || !isObject(message) || !Array.isArray(message.content)) {
    throw new GatewayError('AIGW_UPSTREAM_PROTOCOL', 'the provider answered without output.message.content');
  }
  let text = '';
  let hasText = false;
  const toolCalls: Record<string, unknown>[] = [];
  for (const block of message.content) {
    if (!isObject(block)) continue;
    if (typeof block.text === 'string') {
      text += block.text;
      hasText = true;
    } else if (isObject(block.toolUse)) {
      const use = block.toolUse;
      toolCalls.push({
        id: typeof use.toolUseId === 'string' ? use.toolUseId : '',
        type: 'function',
        function: {
          name: typeof use.name === 'string' ? use.name : '',
          arguments: JSON.stringify(use.input ?? {}),
        },
      });
    }
    // reasoningContent and other blocks have no place in OpenAI's chat answer.
  }
  const usage = bedrockUsage(json.usage);
  const body = {
    id: completionId(),
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: opts?.model ?? ANSWER_MODEL,
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: hasText || toolCalls.length === 0 ? text : null,
          refusal: null,
          ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
        },
        logprobs: null,
        finish_reason: finishReason(json.stopReason),
      },
    ],
    ...(usage ? { usage: openaiUsageOf(usage) } : {}),
  };
  const argsChars = toolCalls.reduce(
    (sum, call) => sum + ((call.function as { arguments: string }).arguments.length ?? 0),
    0,
  );
  return { body, usage, contentChars: text.length + argsChars };
}
