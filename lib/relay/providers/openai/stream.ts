import type { Endpoint } from '../../../context/request-context';
import { GatewayError } from '../../../errors';
import { type SseEvent, serializeSse } from '../../../llm/sse';
import { scrubProviderText } from '../../upstream-error';
import type { StreamOptions, StreamStep, StreamTranslator } from '../index';
import { isObject } from './api';
import { choicesChars, openaiUsage } from './response';

/**
 * OpenAI chunks go to the client as the provider wrote them (no re-serialization), except
 * the usage-only chunk (`choices: []`) when the client did not ask for usage: the relay
 * asked for it to meter the stream, so it is recorded and not forwarded.
 */
export function openaiStreamTranslator(_endpoint: Endpoint, opts: StreamOptions): StreamTranslator {
  return {
    onEvent(event: SseEvent): StreamStep {
      if (event.data === '[DONE]') return { emit: [serializeSse({ data: '[DONE]' })], done: true };

      let chunk: unknown;
      try {
        chunk = JSON.parse(event.data);
      } catch {
        return {
          emit: [],
          error: new GatewayError('AIGW_STREAM_BROKEN', 'the provider sent a stream event that is not JSON'),
        };
      }
      if (!isObject(chunk)) {
        return {
          emit: [],
          error: new GatewayError('AIGW_STREAM_BROKEN', 'the provider sent an unexpected stream event'),
        };
      }
      if (chunk.error !== undefined) return { emit: [], error: streamError(chunk.error) };

      const usage = openaiUsage(chunk.usage);
      const usageOnly = usage !== undefined && Array.isArray(chunk.choices) && chunk.choices.length === 0;
      return {
        emit: usageOnly && !opts.clientWantsUsage ? [] : [serializeSse({ data: event.data })],
        usage,
        model: typeof chunk.model === 'string' ? chunk.model : undefined,
        contentChars: choicesChars(chunk.choices, 'delta'),
        content: firstDeltaContent(chunk.choices),
      };
    },
  };
}

function firstDeltaContent(choices: unknown): string | undefined {
  const first: unknown = Array.isArray(choices) ? choices[0] : undefined;
  const delta = isObject(first) ? first.delta : undefined;
  return isObject(delta) && typeof delta.content === 'string' ? delta.content : undefined;
}

/** An `{"error": ...}` event in the middle of a stream (OpenAI sends these on server faults). */
function streamError(raw: unknown): GatewayError {
  const message = isObject(raw) && typeof raw.message === 'string' ? raw.message : 'unknown error';
  return new GatewayError(
    'AIGW_STREAM_BROKEN',
    `the provider failed during the stream: ${scrubProviderText(message)}`,
  );
}
