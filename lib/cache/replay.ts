import { randomBytes } from 'node:crypto';
import { serializeSse } from '../llm/sse';

type Json = Record<string, unknown>;

/** Most content chunks one choice is replayed in: a word each for short answers, longer chunks for long ones. */
const MAX_CONTENT_CHUNKS = 64;
const MIN_CHUNK_CHARS = 1;

export interface ReplayOptions {
  /** Epoch seconds for `created`. */
  created: number;
  /** Id of the replayed answer (a fresh one per hit, as a provider gives). */
  id?: string;
}

export function completionId(): string {
  return `chatcmpl-${randomBytes(15).toString('base64url')}`;
}

/** A cached `chat.completion` as a non-stream answer: the same choices and usage, a fresh id and time. */
export function jsonAnswer(answer: Json, options: ReplayOptions): Json {
  return { ...answer, id: options.id ?? completionId(), object: 'chat.completion', created: options.created };
}

/**
 * A cached `chat.completion` as the stream a provider would have sent: per choice a role
 * chunk, the content in several chunks (cut at spaces), tool calls and refusal, then a chunk
 * with the finish reason; with `includeUsage` every chunk carries `usage: null` and a last
 * chunk (no choices) the usage; then `data: [DONE]`.
 */
export function sseAnswer(answer: Json, options: ReplayOptions & { includeUsage: boolean }): string {
  const head: Json = {
    id: options.id ?? completionId(),
    object: 'chat.completion.chunk',
    created: options.created,
    model: answer.model,
    ...(answer.system_fingerprint !== undefined ? { system_fingerprint: answer.system_fingerprint } : {}),
  };
  const events: string[] = [];
  const chunk = (choices: Json[], extra: Json = {}) =>
    events.push(
      serializeSse({
        data: JSON.stringify({
          ...head,
          choices,
          ...(options.includeUsage ? { usage: null } : {}),
          ...extra,
        }),
      }),
    );
  const choices = Array.isArray(answer.choices) ? (answer.choices as Json[]) : [];
  for (const [i, choice] of choices.entries()) {
    const index = typeof choice.index === 'number' ? choice.index : i;
    const message = (choice.message ?? {}) as Json;
    const delta = (d: Json, finish: unknown = null) => ({
      index,
      delta: d,
      logprobs: null,
      finish_reason: finish,
    });
    chunk([delta({ role: typeof message.role === 'string' ? message.role : 'assistant', content: '' })]);
    if (typeof message.content === 'string') {
      for (const piece of splitContent(message.content)) chunk([delta({ content: piece })]);
    }
    if (typeof message.refusal === 'string') chunk([delta({ refusal: message.refusal })]);
    if (Array.isArray(message.tool_calls)) {
      for (const [at, call] of (message.tool_calls as Json[]).entries()) {
        chunk([delta({ tool_calls: [{ index: at, ...call }] })]);
      }
    }
    chunk([delta({}, choice.finish_reason ?? 'stop')]);
  }
  if (options.includeUsage && answer.usage !== undefined) {
    events.push(serializeSse({ data: JSON.stringify({ ...head, choices: [], usage: answer.usage }) }));
  }
  events.push(serializeSse({ data: '[DONE]' }));
  return events.join('');
}

/** Pieces of the text in order, cut after whitespace, at most MAX_CONTENT_CHUNKS of them. */
export function splitContent(text: string): string[] {
  if (text === '') return [];
  const target = Math.max(MIN_CHUNK_CHARS, Math.ceil(text.length / MAX_CONTENT_CHUNKS));
  const pieces: string[] = [];
  let start = 0;
  while (start < text.length) {
    let end = Math.min(text.length, start + target);
    if (end < text.length) {
      // To the next space (the rest, when none), unless that makes the piece too long.
      const limit = Math.max(target * 2, 32);
      const space = text.indexOf(' ', end);
      const wordEnd = space < 0 ? text.length : space + 1;
      if (wordEnd - start <= limit) end = wordEnd;
      // Never cut a surrogate pair.
      const code = text.charCodeAt(end - 1);
      if (code >= 0xd800 && code <= 0xdbff) end++;
    }
    pieces.push(text.slice(start, end));
    start = end;
  }
  return pieces;
}
