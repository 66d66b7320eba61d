import { GatewayError } from '../../../errors';
import { isObject } from '../openai/api';

/** Makes the 400 for a feature the target cannot serve. */
export type Refuse = (feature: string, param: string) => GatewayError;

export interface GeminiContent {
  role: 'user' | 'model';
  parts: Record<string, unknown>[];
}

export interface Conversation {
  contents: GeminiContent[];
  systemInstruction?: { parts: { text: string }[] };
}

/**
 * OpenAI chat messages → Gemini `contents` and `systemInstruction`.
 *
 * - system and developer messages, wherever they are, become the one `systemInstruction`
 *   (Gemini has no system turns), in order;
 * - user → role `user`; assistant → role `model`, its tool_calls as `functionCall` parts
 *   (with the `thoughtSignature` Gemini gave, carried by the client in
 *   `extra_content.google.thought_signature`, as Google's own OpenAI endpoint does);
 * - tool → a `functionResponse` part in a `user` turn, named after the call it answers;
 * - consecutive turns of one role are merged: Gemini wants the answers to parallel calls in
 *   one turn.
 * Dropped as harmless: a message's `name` (Gemini has no speaker names), an image's `detail`,
 * an assistant turn with no content and no calls (Gemini refuses empty turns).
 */
export function toConversation(messages: unknown, refuse: Refuse): Conversation {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw badRequest('messages must be a non-empty array', 'messages');
  }
  const system: { text: string }[] = [];
  const contents: GeminiContent[] = [];
  const callNames = new Map<string, string>();
  const push = (role: GeminiContent['role'], parts: Record<string, unknown>[]) => {
    const last = contents.at(-1);
    if (last?.role === role) last.parts.push(...parts);
    else contents.push({ role, parts });
  };

  for (const [i, message] of messages.entries()) {
    const at = `messages[${i}]`;
    if (!isObject(message)) throw badRequest(`${at} must be an object`, at);
    switch (message.role) {
      case 'system':
      case 'developer':
        system.push(...textParts(message.content, `${at}.content`, refuse).map((text) => ({ text })));
        break;
      case 'user':
        push('user', userParts(message.content, `${at}.content`, refuse));
        break;
      case 'assistant': {
        const parts: Record<string, unknown>[] = textParts(message.content, `${at}.content`, refuse)
          .filter((text) => text !== '')
          .map((text) => ({ text }));
        parts.push(...callParts(message.tool_calls, `${at}.tool_calls`, callNames, refuse));
        if (message.function_call != null) throw refuse('assistant function_call (use tool_calls)', at);
        if (parts.length > 0) push('model', parts);
        break;
      }
      case 'tool':
        push('user', [responsePart(message, at, callNames, refuse)]);
        break;
      case 'function':
        throw refuse('the function role (use tool messages)', `${at}.role`);
      default:
        throw badRequest(`${at}.role must be system, developer, user, assistant or tool`, `${at}.role`);
    }
  }
  return system.length > 0 ? { contents, systemInstruction: { parts: system } } : { contents };
}

/** Text of a content that may only hold text (system, assistant, tool). */
function textParts(content: unknown, at: string, refuse: Refuse): string[] {
  if (content == null) return [];
  if (typeof content === 'string') return [content];
  if (!Array.isArray(content)) throw badRequest(`${at} must be a string or an array of parts`, at);
  return content.map((part, j) => {
    if (isObject(part) && (part.type === 'text' || part.type === 'refusal')) {
      const text = part.type === 'text' ? part.text : part.refusal;
      if (typeof text === 'string') return text;
    }
    if (isObject(part) && part.type === 'image_url') throw refuse('image parts outside user messages', at);
    throw badRequest(`${at}[${j}] must be a text part`, at);
  });
}

function userParts(content: unknown, at: string, refuse: Refuse): Record<string, unknown>[] {
  if (typeof content === 'string') return [{ text: content }];
  if (!Array.isArray(content)) throw badRequest(`${at} must be a string or an array of parts`, at);
  return content.map((part, j): Record<string, unknown> => {
    const where = `${at}[${j}]`;
    if (!isObject(part)) throw badRequest(`${where} must be an object`, where);
    switch (part.type) {
      case 'text':
        if (typeof part.text !== 'string') throw badRequest(`${where}.text must be a string`, where);
        return { text: part.text };
      case 'image_url': {
        const url = isObject(part.image_url) ? part.image_url.url : part.image_url;
        if (typeof url !== 'string') throw badRequest(`${where}.image_url.url must be a string`, where);
        return mediaPart(url, where, refuse);
      }
      case 'file': {
        const data = isObject(part.file) ? part.file.file_data : undefined;
        if (typeof data !== 'string') throw refuse('file parts without file_data (file ids)', where);
        return mediaPart(data, where, refuse);
      }
      case 'input_audio':
        throw refuse('audio input parts', where);
      default:
        throw refuse(`content parts of type ${partType(part.type)}`, where);
    }
  });
}

// Types Gemini reads from a URL, by extension; anything else must come as a data: URL.
const MIME_BY_EXTENSION: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  heic: 'image/heic',
  heif: 'image/heif',
  pdf: 'application/pdf',
};

/** An image or file: `data:` URLs inline, http(s) URLs by reference with a type from the extension. */
function mediaPart(url: string, at: string, refuse: Refuse): Record<string, unknown> {
  if (url.startsWith('data:')) {
    const match = /^data:([\w.+-]+\/[\w.+-]+)(?:;[^,;]*)*;base64,/i.exec(url.slice(0, 256));
    if (!match) throw badRequest(`${at} must be a base64 data: URL`, at);
    return { inlineData: { mimeType: match[1]!.toLowerCase(), data: url.slice(match[0].length) } };
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw badRequest(`${at} must hold a data: or http(s) URL`, at);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw badRequest(`${at} must hold a data: or http(s) URL`, at);
  }
  const extension = /\.([a-z0-9]+)$/i.exec(parsed.pathname)?.[1]?.toLowerCase();
  const mimeType = extension ? MIME_BY_EXTENSION[extension] : undefined;
  if (!mimeType) {
    throw refuse(
      'an image URL without a known extension (png, jpg, jpeg, webp, heic, heif, pdf; send a data: URL)',
      at,
    );
  }
  return { fileData: { mimeType, fileUri: url } };
}

function callParts(
  toolCalls: unknown,
  at: string,
  callNames: Map<string, string>,
  refuse: Refuse,
): Record<string, unknown>[] {
  if (toolCalls == null) return [];
  if (!Array.isArray(toolCalls)) throw badRequest(`${at} must be an array`, at);
  return toolCalls.map((call, j) => {
    const where = `${at}[${j}]`;
    if (!isObject(call)) throw badRequest(`${where} must be an object`, where);
    if (call.type !== undefined && call.type !== 'function')
      throw refuse('tool calls that are not functions', where);
    const fn = isObject(call.function) ? call.function : {};
    if (typeof fn.name !== 'string' || fn.name === '') {
      throw badRequest(`${where}.function.name must be a string`, where);
    }
    if (typeof call.id === 'string') callNames.set(call.id, fn.name);
    const part: Record<string, unknown> = {
      functionCall: { name: fn.name, args: parseArguments(fn.arguments, where) },
    };
    const signature = thoughtSignature(call);
    if (signature) part.thoughtSignature = signature;
    return part;
  });
}

/** Gemini's `args` is a JSON object; OpenAI's `arguments` is that object as a string. */
function parseArguments(args: unknown, at: string): Record<string, unknown> {
  if (args == null || args === '') return {};
  let value: unknown = args;
  if (typeof args === 'string') {
    try {
      value = JSON.parse(args);
    } catch {
      throw badRequest(`${at}.function.arguments must be a JSON object`, at);
    }
  }
  if (!isObject(value)) throw badRequest(`${at}.function.arguments must be a JSON object`, at);
  return value;
}

function thoughtSignature(call: Record<string, unknown>): string | undefined {
  const google = isObject(call.extra_content) ? call.extra_content.google : undefined;
  const signature = isObject(google) ? google.thought_signature : undefined;
  return typeof signature === 'string' && signature !== '' ? signature : undefined;
}

/**
 * A tool result. Gemini's `response` is a JSON object: a result that is one is sent as is,
 * anything else under `output` (the key Gemini documents for a function's output).
 */
function responsePart(
  message: Record<string, unknown>,
  at: string,
  callNames: Map<string, string>,
  refuse: Refuse,
): Record<string, unknown> {
  const name = typeof message.tool_call_id === 'string' ? callNames.get(message.tool_call_id) : undefined;
  if (name === undefined) {
    throw badRequest(`${at}.tool_call_id must name a tool call of an earlier assistant message`, at);
  }
  const text = textParts(message.content, `${at}.content`, refuse).join('');
  let value: unknown = text;
  try {
    value = JSON.parse(text);
  } catch {
    // Plain text: sent as the output string.
  }
  return { functionResponse: { name, response: isObject(value) ? value : { output: value } } };
}

/** A part type named in an error only when it looks like one, so client text is never echoed. */
function partType(type: unknown): string {
  return typeof type === 'string' && /^[a-z_]{1,32}$/.test(type) ? type : '(unknown)';
}

export function badRequest(message: string, param: string): GatewayError {
  return new GatewayError('AIGW_BAD_REQUEST', message, { param });
}
