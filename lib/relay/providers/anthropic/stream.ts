import type { Endpoint } from '../../../context/request-context';
import { GatewayError } from '../../../errors';
import { type SseEvent, serializeSse } from '../../../llm/sse';
import { scrubProviderText } from '../../upstream-error';
import type { StreamOptions, StreamStep, StreamTranslator } from '../index';
import { isObject } from '../openai/api';
import { type AnthropicTokens, finishReason, openaiUsageBody, readTokens, toUsage } from './response';

/**
 * Anthropic's stream events as OpenAI `chat.completion.chunk`s:
 *   message_start             → the first chunk, `delta: {role: 'assistant', content: ''}`
 *   content_block_start       → tool_use: a tool call's id and name (`arguments: ''`); text: nothing
 *   content_block_delta       → text_delta: `delta.content`; input_json_delta: a piece of `arguments`
 *   message_delta             → the chunk with `finish_reason`, then the usage chunk when asked for
 *   message_stop              → `data: [DONE]`
 *   error                     → AIGW_STREAM_BROKEN
 * `ping`, `content_block_stop` and event types Anthropic may add later send nothing (its
 * versioning policy asks clients to ignore unknown events).
 */
export function anthropicStreamTranslator(_endpoint: Endpoint, opts: StreamOptions): StreamTranslator {
  let id = 'msg_unknown';
  let model = '';
  let created = Math.floor(Date.now() / 1000);
  let tokens: AnthropicTokens | undefined;
  // Anthropic numbers every content block; OpenAI numbers tool calls only.
  const toolIndex = new Map<number, number>();

  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => {
    const body: Record<string, unknown> = {
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      choices,
      ...extra,
    };
    // With include_usage OpenAI sends `usage: null` on every chunk but the usage one.
    if (opts.clientWantsUsage && !('usage' in body)) body.usage = null;
    return serializeSse({ data: JSON.stringify(body) });
  };
  const delta = (d: Record<string, unknown>, finish: string | null = null) =>
    chunk([{ index: 0, delta: d, logprobs: null, finish_reason: finish }]);

  return {
    onEvent(event: SseEvent): StreamStep {
      let data: unknown;
      try {
        data = JSON.parse(event.data);
      } catch {
        return broken('the provider sent a stream event that is not JSON');
      }
      if (!isObject(data)) return broken('the provider sent an unexpected stream event');

      switch (data.type) {
        case 'message_start': {
          const message = isObject(data.message) ? data.message : {};
          if (typeof message.id === 'string') id = message.id;
          if (typeof message.model === 'string') model = message.model;
          created = Math.floor(Date.now() / 1000);
          // Usage is reported with message_delta, as OpenAI reports it at the end: a step
          // with usage here would not be taken for the opening chunk the relay skips when it
          // continues a broken stream.
          tokens = readTokens(message.usage);
          return {
            emit: [delta({ role: 'assistant', content: '', refusal: null })],
            model: model || undefined,
          };
        }
        case 'content_block_start': {
          const block = isObject(data.content_block) ? data.content_block : {};
          if (block.type === 'tool_use' && typeof data.index === 'number') {
            if (typeof block.id !== 'string' || typeof block.name !== 'string') {
              return broken('the provider sent a tool call without id or name');
            }
            const index = toolIndex.size;
            toolIndex.set(data.index, index);
            const call = {
              index,
              id: block.id,
              type: 'function',
              function: { name: block.name, arguments: '' },
            };
            return { emit: [delta({ tool_calls: [call] })] };
          }
          if (block.type === 'text' && typeof block.text === 'string' && block.text !== '') {
            return textStep(block.text);
          }
          return { emit: [] };
        }
        case 'content_block_delta': {
          const d = isObject(data.delta) ? data.delta : {};
          if (d.type === 'text_delta' && typeof d.text === 'string') return textStep(d.text);
          if (d.type === 'input_json_delta' && typeof d.partial_json === 'string') {
            const index = typeof data.index === 'number' ? toolIndex.get(data.index) : undefined;
            if (index === undefined) return broken('the provider sent tool input for no tool call');
            if (d.partial_json === '') return { emit: [] };
            const call = { index, function: { arguments: d.partial_json } };
            return { emit: [delta({ tool_calls: [call] })], contentChars: d.partial_json.length };
          }
          // thinking, signature and citations deltas: not asked for, nothing for the client.
          return { emit: [] };
        }
        case 'message_delta': {
          tokens = readTokens(data.usage, tokens);
          const usage = tokens ? toUsage(tokens) : undefined;
          const d = isObject(data.delta) ? data.delta : {};
          const emit = [delta({}, finishReason(d.stop_reason) ?? 'stop')];
          if (usage && opts.clientWantsUsage) emit.push(chunk([], { usage: openaiUsageBody(usage) }));
          return { emit, usage };
        }
        case 'message_stop':
          return { emit: [serializeSse({ data: '[DONE]' })], done: true };
        case 'error':
          return { emit: [], error: streamError(data.error) };
        default:
          return { emit: [] };
      }

      function textStep(text: string): StreamStep {
        return { emit: [delta({ content: text })], content: text, contentChars: text.length };
      }
    },
  };
}

function broken(message: string): StreamStep {
  return { emit: [], error: new GatewayError('AIGW_STREAM_BROKEN', message) };
}

/** An `error` event (`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`). */
function streamError(raw: unknown): GatewayError {
  const message = isObject(raw) && typeof raw.message === 'string' ? raw.message : 'unknown error';
  const type =
    isObject(raw) && typeof raw.type === 'string' && /^[a-z_]{1,64}$/.test(raw.type) ? raw.type : undefined;
  return new GatewayError(
    'AIGW_STREAM_BROKEN',
    `the provider failed during the stream${type ? ` (${type})` : ''}: ${scrubProviderText(message)}`,
  );
}
