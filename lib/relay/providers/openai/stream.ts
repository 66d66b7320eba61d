import type { Endpoint, Usage } from '../../../context/request-context';
import { GatewayError } from '../../../errors';
import { type SseEvent, serializeSse } from '../../../llm/sse';
import { scrubProviderText } from '../../upstream-error';
import type { StreamOptions, StreamStep, StreamTranslator } from '../index';
import { isObject, type OpenAIDialect } from './api';
import { choicesChars, modelOf, openaiUsage } from './response';

/**
 * OpenAI chunks go to the client as the provider wrote them (no re-serialization), except:
 * - the usage-only chunk (`choices: []`) when the client did not ask for usage: the relay
 *   asked for it to meter the stream, so it is recorded and not forwarded;
 * - servers that put `usage` on a content chunk (Mistral, vLLM's continuous stats) or
 *   elsewhere (Groq's `x_groq.usage`): the chunk goes out without it, and the usage in a
 *   chunk of its own before `[DONE]`, only when the client asked, as OpenAI does;
 * - tool-call deltas without `index` or `type` (Mistral) get them, as OpenAI clients expect.
 * Chunks with empty `choices` and no usage (Azure's `prompt_filter_results`) pass as they are.
 */
export function openaiStreamTranslator(
  endpoint: Endpoint,
  opts: StreamOptions,
  dialect: OpenAIDialect = {},
): StreamTranslator {
  const readUsage = dialect.usage ?? ((chunk: Record<string, unknown>) => openaiUsage(chunk.usage));
  let usage: { parsed: Usage; raw: unknown } | undefined;
  let usageChunkSeen = false;
  const last: { id?: string; object?: string; created?: number; model?: string } = {};

  return {
    onEvent(event: SseEvent): StreamStep {
      if (event.data === '[DONE]') {
        const emit: string[] = [];
        if (opts.clientWantsUsage && usage && !usageChunkSeen) {
          emit.push(serializeSse({ data: JSON.stringify(usageChunk(endpoint, last, usage)) }));
        }
        emit.push(serializeSse({ data: '[DONE]' }));
        return { emit, done: true };
      }

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

      remember(last, chunk);
      const stepUsage = readUsage(chunk);
      if (stepUsage) usage = { parsed: stepUsage, raw: chunk.usage };
      const usageOnly = stepUsage !== undefined && Array.isArray(chunk.choices) && chunk.choices.length === 0;
      if (usageOnly) usageChunkSeen = true;
      const step: StreamStep = {
        emit: [],
        usage: stepUsage,
        model: modelOf(chunk),
        contentChars: choicesChars(chunk.choices, 'delta'),
        content: firstDeltaContent(chunk.choices),
      };
      if (usageOnly && !opts.clientWantsUsage) return step;
      const normalized = usageOnly ? undefined : normalizeChunk(chunk);
      step.emit.push(serializeSse({ data: normalized ? JSON.stringify(normalized) : event.data }));
      return step;
    },
  };
}

function remember(
  last: { id?: string; object?: string; created?: number; model?: string },
  chunk: Record<string, unknown>,
) {
  // Azure's first chunk has empty id, object and model: keep the real ones.
  if (typeof chunk.id === 'string' && chunk.id !== '') last.id = chunk.id;
  if (typeof chunk.object === 'string' && chunk.object !== '') last.object = chunk.object;
  if (typeof chunk.created === 'number' && chunk.created > 0) last.created = chunk.created;
  const model = modelOf(chunk);
  if (model) last.model = model;
}

/** The chunk made OpenAI-shaped, or undefined when it already is (then its bytes go out unchanged). */
function normalizeChunk(chunk: Record<string, unknown>): Record<string, unknown> | undefined {
  let out: Record<string, unknown> | undefined;
  if (isObject(chunk.usage)) {
    // Usage on a content chunk: it gets a chunk of its own before [DONE].
    const { usage: _moved, ...rest } = chunk;
    out = rest;
  }
  if (Array.isArray(chunk.choices) && chunk.choices.some(needsToolCallFix)) {
    out = { ...(out ?? chunk), choices: chunk.choices.map(fixToolCalls) };
  }
  return out;
}

function toolCallsOf(choice: unknown): unknown[] | undefined {
  const delta = isObject(choice) ? choice.delta : undefined;
  return isObject(delta) && Array.isArray(delta.tool_calls) ? delta.tool_calls : undefined;
}

function needsToolCallFix(choice: unknown): boolean {
  return (
    toolCallsOf(choice)?.some(
      (call) =>
        isObject(call) &&
        (typeof call.index !== 'number' || (call.id !== undefined && call.type === undefined)),
    ) ?? false
  );
}

function fixToolCalls(choice: unknown): unknown {
  const calls = toolCallsOf(choice);
  if (!calls || !isObject(choice) || !isObject(choice.delta)) return choice;
  const fixed = calls.map((call, i) => {
    if (!isObject(call)) return call;
    return {
      ...call,
      index: typeof call.index === 'number' ? call.index : i,
      ...(call.id !== undefined && call.type === undefined ? { type: 'function' } : {}),
    };
  });
  return { ...choice, delta: { ...choice.delta, tool_calls: fixed } };
}

/** OpenAI's usage chunk, for a server that reported usage elsewhere. */
function usageChunk(
  endpoint: Endpoint,
  last: { id?: string; object?: string; created?: number; model?: string },
  usage: { parsed: Usage; raw: unknown },
): Record<string, unknown> {
  const u = usage.parsed;
  const raw = isObject(usage.raw)
    ? usage.raw
    : {
        prompt_tokens: u.input_tokens,
        completion_tokens: u.output_tokens,
        total_tokens: u.total_tokens,
        ...(u.cached_input_tokens !== undefined
          ? { prompt_tokens_details: { cached_tokens: u.cached_input_tokens } }
          : {}),
      };
  return {
    id: last.id ?? '',
    object: last.object ?? (endpoint === 'completions' ? 'text_completion' : 'chat.completion.chunk'),
    created: last.created ?? Math.floor(Date.now() / 1000),
    model: last.model ?? '',
    choices: [],
    usage: raw,
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
