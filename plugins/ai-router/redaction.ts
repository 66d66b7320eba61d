import type { Endpoint } from '../../lib/context/request-context';
import { parseSse, type SseEvent, serializeSse } from '../../lib/llm/sse';
import { findEntities, NATIONAL_ID_KINDS, replaceEntities } from '../../lib/log/pii';
import type { StreamStep, StreamTranslator } from '../../lib/relay/providers';
import { choicesChars } from '../../lib/relay/providers/openai/response';
import type { RouterConfig } from '../../schemas/ai-router';

export type RedactionConfig = NonNullable<RouterConfig['redaction']>;
type RedactedEntity = RedactionConfig['entities'][number];

/** Placeholder → original value, for one request. */
export type Vault = ReadonlyMap<string, string>;

/**
 * Placeholder labels. Square brackets, capitals and a number: models copy such tokens
 * verbatim, and JSON never escapes any of their characters.
 */
const LABELS: Record<RedactedEntity, string> = {
  email: 'EMAIL',
  phone: 'PHONE',
  credit_card: 'CARD',
  iban: 'IBAN',
  national_id: 'NATIONAL_ID',
  ip_address: 'IP',
  secret: 'SECRET',
};

/** Anything shaped like one of our placeholders, ours or not. */
const PLACEHOLDER = /\[(?:EMAIL|PHONE|CARD|IBAN|NATIONAL_ID|IP|SECRET)_\d+\]/g;

/** Nesting of tool-call arguments walked value by value; deeper ones are masked as raw text. */
const MAX_ARGUMENT_DEPTH = 64;

type Json = Record<string, unknown>;
type Chunk = Json & { choices: readonly unknown[] };

const isObject = (value: unknown): value is Json =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

/** The array with `f` applied to each element; the very array when nothing changed. */
function mapArray<T>(items: readonly T[], f: (item: T, index: number) => T): readonly T[] {
  let out: T[] | undefined;
  items.forEach((item, i) => {
    const next = f(item, i);
    if (next === item) return;
    out ??= [...items];
    out[i] = next;
  });
  return out ?? items;
}

/** The object with `key` set; the very object when the value is the same. */
function withField<T extends Json>(obj: T, key: string, value: unknown): T {
  return obj[key] === value ? obj : { ...obj, [key]: value };
}

/** Numbers the values found in one request: the same value always gets the same placeholder. */
class Masker {
  readonly vault = new Map<string, string>();
  private readonly byValue = new Map<string, string>();
  private readonly next = new Map<string, number>();

  constructor(
    private readonly kinds: ReadonlySet<string>,
    /** Placeholder-looking text already in the request: never handed out, so never restored. */
    private readonly taken: ReadonlySet<string>,
  ) {}

  text(text: string): string {
    return replaceEntities(text, findEntities(text, this.kinds), (e) =>
      this.placeholder(LABELS[entityOf(e.kind)], e.value),
    );
  }

  /** Tool-call arguments are JSON text: the strings inside are masked, then it is written back. */
  jsonText(text: string): string {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return this.text(text);
    }
    const masked = this.value(parsed, 0);
    if (masked === undefined) return this.text(text);
    return masked === parsed ? text : JSON.stringify(masked);
  }

  /** `value` with its strings masked; undefined when nested too deep to walk. */
  private value(value: unknown, depth: number): unknown {
    if (typeof value === 'string') return this.text(value);
    if (value === null || typeof value !== 'object') return value;
    if (depth > MAX_ARGUMENT_DEPTH) return undefined;
    let tooDeep = false;
    const walk = (v: unknown) => {
      const out = this.value(v, depth + 1);
      if (out === undefined && v !== undefined) tooDeep = true;
      return out;
    };
    const out = Array.isArray(value)
      ? mapArray(value, walk)
      : Object.entries(value).reduce<Json>((obj, [k, v]) => withField(obj, k, walk(v)), value as Json);
    return tooDeep ? undefined : out;
  }

  private placeholder(label: string, value: string): string {
    const key = `${label}\u0000${value}`;
    const known = this.byValue.get(key);
    if (known) return known;
    let n = this.next.get(label) ?? 1;
    while (this.taken.has(`[${label}_${n}]`)) n++;
    this.next.set(label, n + 1);
    const placeholder = `[${label}_${n}]`;
    this.byValue.set(key, placeholder);
    this.vault.set(placeholder, value);
    return placeholder;
  }
}

function entityOf(kind: string): RedactedEntity {
  return (NATIONAL_ID_KINDS as readonly string[]).includes(kind) ? 'national_id' : (kind as RedactedEntity);
}

/**
 * Replaces personal data and secrets in a request for an untrusted target by placeholders
 * (`[EMAIL_1]`, `[PHONE_2]`...), and puts the originals back in the answer. Built once per
 * config; every method is pure and leaves its inputs as they were.
 *
 * In the relay, on each attempt at a target with `trusted: false`, before the adapter
 * translates the body:
 *   const masked = redactor.mask(endpoint, body);             // undefined: nothing to hide
 *   adapter.buildRequest(endpoint, masked?.body ?? body, ...);
 *   JSON answer:  redactor.restoreAnswer(parsed.body, masked.vault)
 *   stream:       redactor.restoringTranslator(adapter.streamTranslator(...), masked.vault)
 */
export class PromptRedactor {
  private readonly kinds: ReadonlySet<string>;
  /** Whether answers get the original values back (`restore`). */
  readonly restores: boolean;

  constructor(config: RedactionConfig) {
    const entities = config.enabled ? config.entities : [];
    this.kinds = new Set(
      entities.flatMap((e): readonly string[] => (e === 'national_id' ? NATIONAL_ID_KINDS : [e])),
    );
    this.restores = config.restore;
  }

  /**
   * The body with the chosen entities masked in message text (string content, text parts,
   * tool-call arguments, tool results), a completions `prompt` or an embeddings `input`.
   * Undefined when nothing was found (always, when redaction is not `enabled`).
   */
  mask(endpoint: Endpoint, body: Json): { body: Json; vault: Vault } | undefined {
    if (this.kinds.size === 0) return undefined;
    const masker = new Masker(this.kinds, new Set(JSON.stringify(body).match(PLACEHOLDER)));
    let out = body;
    if (endpoint === 'chat.completions' && Array.isArray(body.messages)) {
      out = withField(
        body,
        'messages',
        mapArray(body.messages, (m) => maskMessage(m, masker)),
      );
    } else if (endpoint === 'completions') {
      out = withField(body, 'prompt', maskPrompt(body.prompt, masker));
    } else if (endpoint === 'embeddings') {
      out = withField(body, 'input', maskPrompt(body.input, masker));
    }
    return masker.vault.size === 0 ? undefined : { body: out, vault: masker.vault };
  }

  /** `restoreAnswer`, when `restore` is on. */
  restoreAnswer(body: unknown, vault: Vault): unknown {
    return this.restores ? restoreAnswer(body, vault) : body;
  }

  /** `restoringTranslator`, when `restore` is on. */
  restoringTranslator(inner: StreamTranslator, vault: Vault): StreamTranslator {
    return this.restores ? restoringTranslator(inner, vault) : inner;
  }
}

function maskMessage(message: unknown, masker: Masker): unknown {
  if (!isObject(message)) return message;
  let out = message;
  if (typeof message.content === 'string') {
    out = withField(out, 'content', masker.text(message.content));
  } else if (Array.isArray(message.content)) {
    out = withField(
      out,
      'content',
      mapArray(message.content, (part) => maskPart(part, masker)),
    );
  }
  if (Array.isArray(message.tool_calls)) {
    out = withField(
      out,
      'tool_calls',
      mapArray(message.tool_calls, (call) => maskCall(call, masker)),
    );
  }
  // Legacy single function call.
  if (isObject(message.function_call)) out = maskCall(out, masker) as Json;
  return out;
}

/** A content part: `text` of text parts, `refusal` of an assistant's refusal parts. */
function maskPart(part: unknown, masker: Masker): unknown {
  if (!isObject(part)) return part;
  let out = part;
  for (const key of ['text', 'refusal']) {
    const value = part[key];
    if (typeof value === 'string') out = withField(out, key, masker.text(value));
  }
  return out;
}

/** `{function: {arguments}}` of a tool call, or `{function_call: {arguments}}` of a legacy message. */
function maskCall(holder: unknown, masker: Masker): unknown {
  if (!isObject(holder)) return holder;
  const key = isObject(holder.function) ? 'function' : 'function_call';
  const fn = holder[key];
  if (!isObject(fn) || typeof fn.arguments !== 'string') return holder;
  return withField(holder, key, withField(fn, 'arguments', masker.jsonText(fn.arguments)));
}

/** A prompt or input: a string, or an array of strings (token arrays are left alone). */
function maskPrompt(prompt: unknown, masker: Masker): unknown {
  if (typeof prompt === 'string') return masker.text(prompt);
  if (Array.isArray(prompt)) return mapArray(prompt, (p) => (typeof p === 'string' ? masker.text(p) : p));
  return prompt;
}

/**
 * `text` with the vault's placeholders replaced by their values; other placeholder-looking
 * text (not ours, or mangled by the model) stays. `json`: the text is JSON (tool-call
 * arguments), so values are written escaped.
 */
export function restoreText(text: string, vault: Vault, json = false): string {
  if (!text.includes('[')) return text;
  return text.replace(PLACEHOLDER, (placeholder) => {
    const value = vault.get(placeholder);
    if (value === undefined) return placeholder;
    return json ? JSON.stringify(value).slice(1, -1) : value;
  });
}

/**
 * An OpenAI-format JSON answer with the originals put back in each choice's message
 * (content, refusal, reasoning, tool-call and function-call arguments) or completion text.
 * The very body when nothing changed.
 */
export function restoreAnswer(body: unknown, vault: Vault): unknown {
  if (!isObject(body) || !Array.isArray(body.choices)) return body;
  return withField(
    body,
    'choices',
    mapArray(body.choices, (choice) => {
      if (!isObject(choice)) return choice;
      let out = choice;
      if (typeof choice.text === 'string') out = withField(out, 'text', restoreText(choice.text, vault));
      if (isObject(choice.message)) out = withField(out, 'message', restoreMessage(choice.message, vault));
      return out;
    }),
  );
}

function restoreMessage(message: Json, vault: Vault): Json {
  let out = message;
  for (const key of TEXT_FIELDS) {
    const value = message[key];
    if (typeof value === 'string') out = withField(out, key, restoreText(value, vault));
  }
  if (Array.isArray(message.content)) {
    const parts = mapArray(message.content, (part) =>
      isObject(part) && typeof part.text === 'string'
        ? withField(part, 'text', restoreText(part.text, vault))
        : part,
    );
    out = withField(out, 'content', parts);
  }
  const restoreCall = (holder: Json, key: string): Json => {
    const fn = holder[key];
    if (!isObject(fn) || typeof fn.arguments !== 'string') return holder;
    return withField(holder, key, withField(fn, 'arguments', restoreText(fn.arguments, vault, true)));
  };
  if (Array.isArray(message.tool_calls)) {
    const calls = mapArray(message.tool_calls, (call) =>
      isObject(call) ? restoreCall(call, 'function') : call,
    );
    out = withField(out, 'tool_calls', calls);
  }
  return restoreCall(out, 'function_call');
}

/** Text fields of a message or a stream delta. */
const TEXT_FIELDS = ['content', 'refusal', 'reasoning_content'] as const;

/**
 * Restores a stream: each OpenAI chunk `inner` emits is read, and the originals are put back
 * in `delta.content` (and refusal, reasoning), tool-call argument pieces and completion
 * `text`. A piece ending with what may be the start of a placeholder (`[EMA`) keeps that
 * tail until the next piece of the same choice and field; what is held goes out with the
 * choice's chunk carrying `finish_reason`, or before `[DONE]`. Text that cannot start one of
 * the vault's placeholders is never held. Chunks nothing changed go out as they came.
 */
export function restoringTranslator(inner: StreamTranslator, vault: Vault): StreamTranslator {
  let longest = 0;
  for (const placeholder of vault.keys()) longest = Math.max(longest, placeholder.length);
  /** Held tails by `<choice>/<field>`, field being a text field, `text` or `tool/<index>`. */
  const held = new Map<string, string>();
  /** `id`, `object`, `created`, `model` of the last chunk: the envelope of a chunk made at `[DONE]`. */
  let envelope: Json = {};

  /** The piece with what was held before it, restored, minus a tail that may start a placeholder. */
  const release = (key: string, piece: string, final: boolean, json: boolean): string => {
    const text = (held.get(key) ?? '') + piece;
    held.delete(key);
    let ready = text;
    if (!final) {
      const cut = placeholderStart(text, vault, longest);
      if (cut < text.length) held.set(key, text.slice(cut));
      ready = text.slice(0, cut);
    }
    return restoreText(ready, vault, json);
  };

  const restoreChoice = (choice: Json, position: number): Json => {
    const index = typeof choice.index === 'number' ? choice.index : position;
    const final = typeof choice.finish_reason === 'string';
    let out = choice;
    if (typeof choice.text === 'string' || (final && held.has(`${index}/text`))) {
      out = withField(out, 'text', release(`${index}/text`, stringOr(choice.text), final, false));
    }
    const delta = isObject(choice.delta) ? choice.delta : {};
    let restored = delta;
    for (const field of TEXT_FIELDS) {
      const key = `${index}/${field}`;
      if (typeof delta[field] === 'string' || (final && held.has(key))) {
        restored = withField(restored, field, release(key, stringOr(delta[field]), final, false));
      }
    }
    const seen = new Set<number>();
    if (Array.isArray(delta.tool_calls)) {
      const calls = mapArray(delta.tool_calls, (call, i) => {
        if (!isObject(call) || !isObject(call.function) || typeof call.function.arguments !== 'string')
          return call;
        const at = typeof call.index === 'number' ? call.index : i;
        seen.add(at);
        const args = release(`${index}/tool/${at}`, call.function.arguments, final, true);
        return withField(call, 'function', withField(call.function, 'arguments', args));
      });
      restored = withField(restored, 'tool_calls', calls);
    }
    if (final) {
      // Argument tails of tool calls this last chunk does not mention.
      const extra: Json[] = [];
      for (const key of [...held.keys()]) {
        const m = key.match(/^(\d+)\/tool\/(\d+)$/);
        if (!m || Number(m[1]) !== index || seen.has(Number(m[2]))) continue;
        extra.push({ index: Number(m[2]), function: { arguments: release(key, '', true, true) } });
      }
      if (extra.length > 0) {
        const calls = Array.isArray(restored.tool_calls) ? restored.tool_calls : [];
        restored = withField(restored, 'tool_calls', [...calls, ...extra]);
      }
    }
    return restored === delta ? out : withField(out, 'delta', restored);
  };

  /** Chunks for what is still held at the end of the stream. */
  const flushAll = (): Chunk[] => {
    const chunks: Chunk[] = [];
    for (const key of [...held.keys()]) {
      const [index, field, tool] = key.split('/');
      const json = field === 'tool';
      const value = release(key, '', true, json);
      const choice: Json = { index: Number(index), finish_reason: null };
      if (field === 'text') choice.text = value;
      else if (json) choice.delta = { tool_calls: [{ index: Number(tool), function: { arguments: value } }] };
      else choice.delta = { [field]: value };
      chunks.push({ ...envelope, choices: [choice] });
    }
    return chunks;
  };

  return {
    onEvent(event: SseEvent): StreamStep {
      const step = inner.onEvent(event);
      if (vault.size === 0 || step.error) return step;
      let changed = false;
      const emit: string[] = [];
      const chunks: Chunk[] = [];
      const flush = (out: string[]) => {
        for (const chunk of flushAll()) {
          out.push(serializeSse({ data: JSON.stringify(chunk) }));
          chunks.push(chunk);
          changed = true;
        }
      };
      for (const text of step.emit) {
        const out: string[] = [];
        const before: boolean = changed;
        for (const ev of parseSse(text)) {
          if (ev.data === '[DONE]') flush(out);
          const chunk = parseChunk(ev.data);
          if (!chunk) {
            out.push(serializeSse(ev));
            continue;
          }
          envelope = pick(chunk, ['id', 'object', 'created', 'model', 'system_fingerprint']);
          const choices = mapArray(chunk.choices, (c, i) => (isObject(c) ? restoreChoice(c, i) : c));
          const restored = withField(chunk, 'choices', choices);
          chunks.push(restored);
          if (restored !== chunk) changed = true;
          out.push(
            restored === chunk ? serializeSse(ev) : serializeSse({ ...ev, data: JSON.stringify(restored) }),
          );
        }
        // Untouched events go out as the provider's bytes.
        if (changed === before) emit.push(text);
        else emit.push(...out);
      }
      if (step.done) flush(emit);
      if (!changed) return step;
      // What the client now gets: restored values, held tails counted when they go out.
      const content = chunks.map(firstChoiceContent).filter((c) => c !== undefined);
      return {
        ...step,
        emit,
        contentChars: chunks.reduce((n, c) => n + choicesChars(c.choices, 'delta'), 0),
        content: content.length > 0 ? content.join('') : undefined,
      };
    },
  };
}

/**
 * Where the tail that may be the start of one of the vault's placeholders begins; the text's
 * length when there is none. A placeholder holds no `[` but its first, so only the text from
 * the last `[` can be one.
 */
function placeholderStart(text: string, vault: Vault, longest: number): number {
  const at = text.lastIndexOf('[');
  if (at < 0 || text.length - at >= longest) return text.length;
  const tail = text.slice(at);
  for (const placeholder of vault.keys()) {
    if (placeholder.length > tail.length && placeholder.startsWith(tail)) return at;
  }
  return text.length;
}

/** `delta.content` of the chunk's choice 0. */
function firstChoiceContent(chunk: Chunk): string | undefined {
  const first = chunk.choices.find((c, i) => isObject(c) && (c.index ?? i) === 0);
  return isObject(first) && isObject(first.delta) && typeof first.delta.content === 'string'
    ? first.delta.content
    : undefined;
}

function parseChunk(data: string): Chunk | undefined {
  if (data === '[DONE]') return undefined;
  try {
    const chunk: unknown = JSON.parse(data);
    return isObject(chunk) && Array.isArray(chunk.choices) ? (chunk as Chunk) : undefined;
  } catch {
    return undefined;
  }
}

function pick(obj: Json, keys: readonly string[]): Json {
  const out: Json = {};
  for (const key of keys) if (obj[key] !== undefined) out[key] = obj[key];
  return out;
}

const stringOr = (value: unknown): string => (typeof value === 'string' ? value : '');
