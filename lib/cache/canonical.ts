import { createHash } from 'node:crypto';

/**
 * JSON with object keys sorted at every level, `undefined` members left out (as JSON.stringify
 * does), so two bodies that mean the same give the same text whatever their key order.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value))
    return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const record = value as Record<string, unknown>;
  const members: string[] = [];
  for (const k of Object.keys(record).sort()) {
    const v = record[k];
    if (v === undefined || typeof v === 'function') continue;
    members.push(`${JSON.stringify(k)}:${canonicalJson(v)}`);
  }
  return `{${members.join(',')}}`;
}

/** SHA-256 of the text, base64url: 43 characters, safe in keys and URLs. */
export function digest(text: string): string {
  return createHash('sha256').update(text).digest('base64url');
}

/**
 * Body fields of a chat request that do not change the answer: how it is delivered
 * (`stream`, `stream_options`) and who asks or what is kept about it (`user`, `metadata`,
 * `store`, `service_tier`, `safety_identifier`, `prompt_cache_key`). Every other field shapes
 * the answer (model, temperature, top_p, seed, tools, tool_choice, response_format,
 * max_tokens, stop, penalties, logit_bias, n, reasoning_effort, ... and unknown ones, to be safe).
 */
export const DELIVERY_FIELDS: ReadonlySet<string> = new Set([
  'stream',
  'stream_options',
  'user',
  'metadata',
  'store',
  'service_tier',
  'safety_identifier',
  'prompt_cache_key',
]);

export interface Message {
  role?: unknown;
  content?: unknown;
  [k: string]: unknown;
}

export function messagesOf(body: Record<string, unknown>): Message[] {
  const messages = body.messages;
  return Array.isArray(messages)
    ? messages.filter((m): m is Message => typeof m === 'object' && m !== null)
    : [];
}

/** The answer-shaping fields of a chat request: all but `messages` and the delivery fields. */
export function answerShape(body: Record<string, unknown>): Record<string, unknown> {
  const shape: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(body)) {
    if (k !== 'messages' && !DELIVERY_FIELDS.has(k)) shape[k] = v;
  }
  return shape;
}

const isSystem = (m: Message) => m.role === 'system' || m.role === 'developer';

/**
 * The partition of a request: the hash of what must be equal for a semantic match to be
 * allowed: the route (the same model name may mean another model elsewhere), every
 * answer-shaping parameter, and the system prompt. Only the conversation itself is matched by
 * meaning.
 */
export function partitionOf(body: Record<string, unknown>, route: string): string {
  const system = messagesOf(body).filter(isSystem);
  return digest(canonicalJson({ route, shape: answerShape(body), system }));
}

/** The exact key of a request: the hash of everything that shapes the answer, messages included. */
export function exactIdOf(body: Record<string, unknown>, route: string): string {
  return digest(canonicalJson({ route, shape: answerShape(body), messages: messagesOf(body) }));
}

/** The text of a message's content: a string, or the text parts of a content array. */
export function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part) =>
      typeof part === 'object' && part !== null && (part as { type?: unknown }).type === 'text'
        ? String((part as { text?: unknown }).text ?? '')
        : '',
    )
    .filter((t) => t !== '')
    .join('\n');
}

/** Which part of the conversation the semantic tier embeds. */
export type ConversationScope = { mode: 'last_user' } | { mode: 'last_turns'; turns: number };

/**
 * The text the semantic tier embeds, or undefined when the request is not one it matches by
 * meaning: no user message last (a tool result, an assistant prefill), or a message with
 * non-text parts (images, audio: their meaning is not in the text).
 */
export function conversationText(
  body: Record<string, unknown>,
  scope: ConversationScope,
): string | undefined {
  const turns = messagesOf(body).filter((m) => !isSystem(m));
  const last = turns.at(-1);
  if (last?.role !== 'user') return undefined;
  const picked = scope.mode === 'last_user' ? [last] : turns.slice(-scope.turns);
  const lines: string[] = [];
  for (const m of picked) {
    if (Array.isArray(m.content) && m.content.some((p) => (p as { type?: unknown })?.type !== 'text')) {
      return undefined;
    }
    if (m.tool_calls !== undefined || m.role === 'tool' || m.role === 'function') return undefined;
    const text = textOf(m.content).trim();
    lines.push(scope.mode === 'last_user' ? text : `${String(m.role)}: ${text}`);
  }
  const text = lines.join('\n');
  return text === '' ? undefined : text;
}
