import type { Endpoint } from '../../../context/request-context';
import { GatewayError } from '../../../errors';
import { type SseEvent, serializeSse } from '../../../llm/sse';
import type { StreamOptions, StreamStep, StreamTranslator } from '../index';
import { isObject } from './api';
import { EXCEPTION_EVENT } from './decoder';
import { ANSWER_MODEL, bedrockUsage, completionId, finishReason, openaiUsageOf } from './response';

/**
 * ConverseStream events (from AwsEventStreamDecoder) as OpenAI chat.completion.chunk events:
 * messageStart opens with the role, text and tool-input deltas follow as they come, messageStop
 * carries the finish reason, and metadata (always last, with the usage) ends the stream with
 * the usage chunk (when the client asked for it) and `[DONE]`.
 */
export function bedrockStreamTranslator(_endpoint: Endpoint, opts: StreamOptions): StreamTranslator {
  const id = completionId();
  const model = opts.model ?? ANSWER_MODEL;
  const created = Math.floor(Date.now() / 1000);
  let roleSent = false;
  /** OpenAI tool call index of each Converse content block that is a tool use. */
  const toolIndex = new Map<number, number>();

  const chunk = (delta: Record<string, unknown>, finish: string | null = null): string => {
    // The first chunk carries the role, whatever event comes first.
    const withRole = roleSent ? delta : { role: 'assistant', ...delta };
    roleSent = true;
    return serializeSse({
      data: JSON.stringify({
        id,
        object: 'chat.completion.chunk',
        created,
        model,
        choices: [{ index: 0, delta: withRole, logprobs: null, finish_reason: finish }],
        // OpenAI sends `usage: null` on every chunk but the last when usage was asked for.
        ...(opts.clientWantsUsage ? { usage: null } : {}),
      }),
    });
  };

  return {
    onEvent(event: SseEvent): StreamStep {
      let payload: unknown;
      try {
        payload = JSON.parse(event.data);
      } catch {
        return { emit: [], error: unreadable(`a ${event.event ?? 'nameless'} event that is not JSON`) };
      }
      if (!isObject(payload))
        return { emit: [], error: unreadable(`a ${event.event} event that is not an object`) };

      switch (event.event) {
        case 'messageStart':
          return { emit: [chunk({ content: '', refusal: null })] };

        case 'contentBlockStart': {
          const start = isObject(payload.start) ? payload.start.toolUse : undefined;
          if (!isObject(start)) return { emit: [] };
          const index = toolIndex.size;
          toolIndex.set(blockIndex(payload), index);
          const call = {
            index,
            id: typeof start.toolUseId === 'string' ? start.toolUseId : '',
            type: 'function',
            function: { name: typeof start.name === 'string' ? start.name : '', arguments: '' },
          };
          return { emit: [chunk({ tool_calls: [call] })] };
        }

        case 'contentBlockDelta': {
          const delta = isObject(payload.delta) ? payload.delta : {};
          if (typeof delta.text === 'string') {
            return {
              emit: [chunk({ content: delta.text })],
              content: delta.text,
              contentChars: delta.text.length,
            };
          }
          const input = isObject(delta.toolUse) ? delta.toolUse.input : undefined;
          const index = toolIndex.get(blockIndex(payload));
          if (typeof input === 'string' && index !== undefined) {
            return {
              emit: [chunk({ tool_calls: [{ index, function: { arguments: input } }] })],
              contentChars: input.length,
            };
          }
          // Reasoning text and other deltas have no place in OpenAI's chat chunks.
          return { emit: [] };
        }

        case 'messageStop':
          return { emit: [chunk({}, finishReason(payload.stopReason))] };

        case 'metadata': {
          const usage = bedrockUsage(payload.usage);
          const emit: string[] = [];
          if (usage && opts.clientWantsUsage) {
            emit.push(
              serializeSse({
                data: JSON.stringify({
                  id,
                  object: 'chat.completion.chunk',
                  created,
                  model,
                  choices: [],
                  usage: openaiUsageOf(usage),
                }),
              }),
            );
          }
          emit.push(serializeSse({ data: '[DONE]' }));
          return { emit, usage, done: true };
        }

        case EXCEPTION_EVENT: {
          const type = typeof payload.type === 'string' ? payload.type : 'unknown';
          const message = typeof payload.message === 'string' ? payload.message : 'no message';
          return {
            emit: [],
            error: new GatewayError(
              'AIGW_STREAM_BROKEN',
              `the provider failed during the stream: ${type}: ${message}`,
            ),
          };
        }

        default:
          // contentBlockStop, and event types added later: nothing for the client.
          return { emit: [] };
      }
    },
  };
}

function blockIndex(payload: Record<string, unknown>): number {
  return typeof payload.contentBlockIndex === 'number' ? payload.contentBlockIndex : 0;
}

function unreadable(what: string): GatewayError {
  return new GatewayError('AIGW_STREAM_BROKEN', `the provider sent ${what}`);
}
