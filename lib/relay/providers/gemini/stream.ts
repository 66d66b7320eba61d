import type { Endpoint } from '../../../context/request-context';
import { GatewayError } from '../../../errors';
import { type SseEvent, serializeSse } from '../../../llm/sse';
import { scrubProviderText } from '../../upstream-error';
import type { StreamOptions, StreamStep, StreamTranslator } from '../index';
import { isObject } from '../openai/api';
import {
  blockedPrompt,
  candidateParts,
  completionId,
  finishReason,
  geminiUsage,
  openaiUsage,
} from './response';

/**
 * `streamGenerateContent?alt=sse` → OpenAI `chat.completion.chunk`s. Each event is a whole
 * GenerateContentResponse holding the next piece of text or whole function calls. Gemini sends
 * no end marker: the event with a finishReason (and the final usageMetadata) ends the answer,
 * or one saying the prompt was blocked; then the usage chunk (when the client asked) and
 * `[DONE]` go out. A stream that stops before that event is broken, never completed here.
 */
export function geminiStreamTranslator(_endpoint: Endpoint, opts: StreamOptions): StreamTranslator {
  let id: string | undefined;
  const created = Math.floor(Date.now() / 1000);
  let model = opts.model ?? 'gemini';
  // Per choice index: the role chunk went out, and how many tool calls it has made.
  const started = new Set<number>();
  const calls = new Map<number, number>();

  const chunk = (choices: unknown[], usage?: unknown) =>
    serializeSse({
      data: JSON.stringify({
        id,
        object: 'chat.completion.chunk',
        created,
        model,
        choices,
        // OpenAI puts `usage: null` on every chunk of a stream that asked for usage.
        ...(opts.clientWantsUsage ? { usage: usage ?? null } : {}),
      }),
    });
  const delta = (index: number, d: Record<string, unknown>, finish: string | null = null) =>
    chunk([{ index, delta: d, logprobs: null, finish_reason: finish }]);
  const open = (index: number, emit: string[]) => {
    if (started.has(index)) return;
    started.add(index);
    emit.push(delta(index, { role: 'assistant', content: '', refusal: null }));
  };

  return {
    onEvent(event: SseEvent): StreamStep {
      let json: unknown;
      try {
        json = JSON.parse(event.data);
      } catch {
        return { emit: [], error: broken('the provider sent a stream event that is not JSON') };
      }
      if (!isObject(json)) return { emit: [], error: broken('the provider sent an unexpected stream event') };
      if (json.error !== undefined) {
        const message =
          isObject(json.error) && typeof json.error.message === 'string'
            ? json.error.message
            : 'unknown error';
        return {
          emit: [],
          error: broken(`the provider failed during the stream: ${scrubProviderText(message)}`),
        };
      }
      id ??= completionId(json.responseId);
      if (typeof json.modelVersion === 'string') model = json.modelVersion;

      const emit: string[] = [];
      let contentChars = 0;
      let content: string | undefined;
      let done = false;
      const candidates = Array.isArray(json.candidates) ? json.candidates.filter(isObject) : [];
      for (const [i, candidate] of candidates.entries()) {
        const index = typeof candidate.index === 'number' ? candidate.index : i;
        const { text, toolCalls } = candidateParts(candidate);
        if (text !== null && text !== '') {
          open(index, emit);
          emit.push(delta(index, { content: text }));
          contentChars += text.length;
          if (index === 0) content = text;
        }
        for (const call of toolCalls) {
          open(index, emit);
          const n = calls.get(index) ?? 0;
          calls.set(index, n + 1);
          const { arguments: args, ...fn } = call.function;
          // OpenAI's shape: the call's id and name first, then its arguments.
          emit.push(
            delta(index, {
              tool_calls: [
                {
                  index: n,
                  id: call.id,
                  type: 'function',
                  function: { ...fn, arguments: '' },
                  ...extra(call),
                },
              ],
            }),
            delta(index, { tool_calls: [{ index: n, function: { arguments: args } }] }),
          );
          contentChars += args.length;
        }
        const finish = finishReason(candidate.finishReason, (calls.get(index) ?? 0) > 0);
        if (finish !== null) {
          open(index, emit);
          emit.push(delta(index, {}, finish));
          done = true;
        }
      }
      if (candidates.length === 0 && blockedPrompt(json)) {
        open(0, emit);
        emit.push(delta(0, {}, 'content_filter'));
        done = true;
      }
      if (!done) return { emit, model, contentChars, content };

      const usage = geminiUsage(json.usageMetadata);
      if (usage && opts.clientWantsUsage) {
        emit.push(chunk([], openaiUsage(json.usageMetadata as Record<string, unknown>)));
      }
      emit.push(serializeSse({ data: '[DONE]' }));
      return { emit, usage, model, contentChars, content, done: true };
    },
  };
}

function extra(call: { extra_content?: unknown }): Record<string, unknown> {
  return call.extra_content ? { extra_content: call.extra_content } : {};
}

function broken(message: string): GatewayError {
  return new GatewayError('AIGW_STREAM_BROKEN', message);
}
