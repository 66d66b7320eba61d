import type { RecordedAnswer } from '../context';
import { SseParser } from '../llm/sse';

type Json = Record<string, unknown>;

interface ChoiceParts {
  index: number;
  role?: string;
  content: string;
  /** A `text_completion` choice (`text` in its chunks). */
  text?: string;
  refusal?: string;
  toolCalls: Map<number, { id?: string; type?: string; name: string; arguments: string }>;
  finishReason: unknown;
  sawContent: boolean;
}

/**
 * Keeps the answer the client gets, for whoever asked for it after the exchange (the cache's
 * fill): a JSON body as is, or a stream's chunks assembled into the equivalent non-stream
 * object. Bounded: past `maxBytes` of answer it stops and keeps nothing.
 */
export class AnswerRecorder {
  private bytes = 0;
  private overflow = false;
  private body?: Json;
  private parser?: SseParser;
  private head: Json = {};
  private object?: string;
  private usage?: unknown;
  private readonly choices = new Map<number, ChoiceParts>();

  constructor(private readonly maxBytes: number) {}

  /** A whole JSON answer, `size` bytes on the wire. */
  json(body: unknown, size: number): void {
    this.bytes = size;
    if (size > this.maxBytes) this.overflow = true;
    else if (isObject(body)) this.body = body;
  }

  /** Serialized SSE events as written to the client. */
  stream(text: string): void {
    if (this.overflow) return;
    this.bytes += Buffer.byteLength(text);
    if (this.bytes > this.maxBytes) {
      this.overflow = true;
      this.choices.clear();
      return;
    }
    this.parser ??= new SseParser();
    for (const event of this.parser.push(text)) {
      if (event.data === '[DONE]') continue;
      let chunk: unknown;
      try {
        chunk = JSON.parse(event.data);
      } catch {
        continue;
      }
      if (isObject(chunk)) this.chunk(chunk);
    }
  }

  /** What was recorded; undefined past the size limit or when nothing was. */
  result(): RecordedAnswer | undefined {
    if (this.overflow) return undefined;
    if (this.body) return { body: this.body, bytes: this.bytes };
    if (!this.parser || this.choices.size === 0) return undefined;
    const chat = this.object !== 'text_completion';
    const choices = [...this.choices.values()]
      .sort((a, b) => a.index - b.index)
      .map((c) =>
        chat
          ? chatChoice(c)
          : { index: c.index, text: c.text ?? '', logprobs: null, finish_reason: c.finishReason ?? null },
      );
    const body: Json = {
      ...this.head,
      object: chat ? 'chat.completion' : 'text_completion',
      choices,
      ...(this.usage !== undefined && this.usage !== null ? { usage: this.usage } : {}),
    };
    return { body, bytes: this.bytes };
  }

  private chunk(chunk: Json): void {
    for (const field of ['id', 'created', 'model', 'system_fingerprint', 'service_tier']) {
      if (this.head[field] === undefined && chunk[field] !== undefined && chunk[field] !== null) {
        this.head[field] = chunk[field];
      }
    }
    if (this.object === undefined && typeof chunk.object === 'string') this.object = chunk.object;
    if (chunk.usage !== undefined && chunk.usage !== null) this.usage = chunk.usage;
    if (!Array.isArray(chunk.choices)) return;
    for (const raw of chunk.choices) {
      if (!isObject(raw)) continue;
      const index = typeof raw.index === 'number' ? raw.index : 0;
      let parts = this.choices.get(index);
      if (!parts) {
        parts = { index, content: '', toolCalls: new Map(), finishReason: null, sawContent: false };
        this.choices.set(index, parts);
      }
      if (raw.finish_reason !== undefined && raw.finish_reason !== null)
        parts.finishReason = raw.finish_reason;
      if (typeof raw.text === 'string') parts.text = (parts.text ?? '') + raw.text;
      const delta = raw.delta;
      if (!isObject(delta)) continue;
      if (typeof delta.role === 'string') parts.role = delta.role;
      if (typeof delta.content === 'string') {
        parts.content += delta.content;
        parts.sawContent = true;
      }
      if (typeof delta.refusal === 'string') parts.refusal = (parts.refusal ?? '') + delta.refusal;
      if (Array.isArray(delta.tool_calls)) {
        for (const call of delta.tool_calls) {
          if (!isObject(call)) continue;
          const at = typeof call.index === 'number' ? call.index : parts.toolCalls.size;
          const known = parts.toolCalls.get(at) ?? { name: '', arguments: '' };
          if (typeof call.id === 'string') known.id = call.id;
          if (typeof call.type === 'string') known.type = call.type;
          const fn = call.function;
          if (isObject(fn)) {
            if (typeof fn.name === 'string') known.name += fn.name;
            if (typeof fn.arguments === 'string') known.arguments += fn.arguments;
          }
          parts.toolCalls.set(at, known);
        }
      }
    }
  }
}

function chatChoice(c: ChoiceParts): Json {
  const message: Json = {
    role: c.role ?? 'assistant',
    content: c.sawContent || c.toolCalls.size === 0 ? c.content : null,
  };
  if (c.refusal !== undefined) message.refusal = c.refusal;
  if (c.toolCalls.size > 0) {
    message.tool_calls = [...c.toolCalls.entries()]
      .sort(([a], [b]) => a - b)
      .map(([, call]) => ({
        id: call.id,
        type: call.type ?? 'function',
        function: { name: call.name, arguments: call.arguments },
      }));
  }
  return { index: c.index, message, logprobs: null, finish_reason: c.finishReason ?? null };
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
