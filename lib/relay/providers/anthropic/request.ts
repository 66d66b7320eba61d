import type { Endpoint, Target } from '../../../context/request-context';
import { GatewayError } from '../../../errors';
import type { UpstreamRequest } from '../index';
import { isObject } from '../openai/api';
import { unsupported } from '../refusal';

/** Anthropic requires `max_tokens`; OpenAI clients often send none. */
export const DEFAULT_MAX_TOKENS = 4096;

type Block = Record<string, unknown>;
interface AnthropicMessage {
  role: 'user' | 'assistant';
  content: Block[];
}

/**
 * OpenAI fields with no Anthropic counterpart that change nothing in the answer, dropped:
 * `model` (the target's is sent), `stream_options` (Anthropic streams always carry usage),
 * `seed` (OpenAI itself promises no determinism), `store` and `metadata` (OpenAI-side storage
 * of the completion), `service_tier` (OpenAI's billing tiers), `prompt_cache_key` (a routing
 * hint for OpenAI's prompt cache), `parallel_tool_calls: true` (Anthropic's default),
 * `modalities: ['text']`, and the no-op values of the fields refused below.
 */
const DROPPED = new Set([
  'model',
  'stream',
  'stream_options',
  'seed',
  'store',
  'metadata',
  'service_tier',
  'prompt_cache_key',
]);

/** Fields translated by `buildAnthropicRequest`. */
const TRANSLATED = new Set([
  'messages',
  'max_tokens',
  'max_completion_tokens',
  'temperature',
  'top_p',
  'stop',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'response_format',
  'user',
  'safety_identifier',
  'modalities',
  'n',
  'logprobs',
  'top_logprobs',
  'presence_penalty',
  'frequency_penalty',
  'logit_bias',
]);

const IMAGE_TYPES = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp']);

/**
 * An OpenAI chat completion request as a Messages API request (POST {base_url}/messages).
 * What Anthropic cannot do is refused (AIGW_UNSUPPORTED_FEATURE), never dropped silently;
 * the top-level fields dropped are listed in DROPPED.
 */
export function buildAnthropicRequest(
  endpoint: Endpoint,
  body: Record<string, unknown>,
  target: Target,
  opts: { stream: boolean },
): UpstreamRequest {
  const refuse = (feature: string, param?: string): GatewayError => unsupported(target, feature, param);
  if (endpoint !== 'chat.completions') throw refuse(`the ${endpoint} endpoint`);

  for (const field of Object.keys(body)) {
    if (body[field] === undefined || body[field] === null) continue;
    if (!DROPPED.has(field) && !TRANSLATED.has(field)) {
      const name = safeName(field) ?? 'an unknown field';
      throw refuse(name, safeName(field));
    }
  }
  if (typeof body.n === 'number' && body.n > 1) throw refuse('n > 1', 'n');
  if (body.logprobs === true) throw refuse('logprobs', 'logprobs');
  if (typeof body.top_logprobs === 'number' && body.top_logprobs > 0)
    throw refuse('top_logprobs', 'top_logprobs');
  for (const field of ['presence_penalty', 'frequency_penalty'] as const) {
    const value = body[field];
    if (value !== undefined && value !== null && value !== 0) throw refuse(field, field);
  }
  if (Array.isArray(body.modalities) && body.modalities.some((m) => m !== 'text')) {
    throw refuse('audio output', 'modalities');
  }
  if (isObject(body.logit_bias) && Object.keys(body.logit_bias).length > 0)
    throw refuse('logit_bias', 'logit_bias');

  const { system, messages } = translateMessages(body.messages, refuse);
  const jsonInstruction = responseFormatInstruction(body.response_format, refuse);
  const systemParts = jsonInstruction ? [...system, jsonInstruction] : system;

  const upstream: Record<string, unknown> = {
    model: target.model,
    max_tokens: maxTokens(body),
    messages,
  };
  if (systemParts.length > 0) upstream.system = systemParts.join('\n\n');
  for (const field of ['temperature', 'top_p'] as const) {
    if (typeof body[field] === 'number') upstream[field] = body[field];
  }
  const stop = typeof body.stop === 'string' ? [body.stop] : Array.isArray(body.stop) ? body.stop : [];
  if (stop.length > 0) upstream.stop_sequences = stop;
  Object.assign(upstream, translateTools(body, refuse));
  // Anthropic's one end-user id, for its abuse detection: OpenAI's newer field or the older one.
  const endUser = [body.safety_identifier, body.user].find((v) => typeof v === 'string' && v !== '');
  if (endUser !== undefined) upstream.metadata = { user_id: endUser };
  if (opts.stream) upstream.stream = true;

  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(target.headers)) headers[name.toLowerCase()] = value;
  headers['content-type'] = 'application/json';
  headers.accept = opts.stream ? 'text/event-stream' : 'application/json';
  headers['anthropic-version'] = target.api_version ?? '2023-06-01';
  if (target.api_key) headers['x-api-key'] = target.api_key;

  return {
    url: `${target.base_url.replace(/\/+$/, '')}/messages`,
    method: 'POST',
    headers,
    body: JSON.stringify(upstream),
  };
}

type Refuse = (feature: string, param?: string) => GatewayError;

function maxTokens(body: Record<string, unknown>): number {
  if (typeof body.max_completion_tokens === 'number') return body.max_completion_tokens;
  if (typeof body.max_tokens === 'number') return body.max_tokens;
  return DEFAULT_MAX_TOKENS;
}

function badRequest(param: string, message: string): GatewayError {
  return new GatewayError('AIGW_BAD_REQUEST', message, { param });
}

/**
 * System and developer messages become the top-level `system`; the rest become alternating
 * user/assistant turns: tool results go into a user turn, and consecutive turns of one role
 * are merged. A message's `name` (the speaker's label) has no counterpart and is dropped: the
 * turns and their text are unchanged.
 */
function translateMessages(raw: unknown, refuse: Refuse): { system: string[]; messages: AnthropicMessage[] } {
  if (!Array.isArray(raw)) throw badRequest('messages', "'messages' must be an array");
  const system: string[] = [];
  const messages: AnthropicMessage[] = [];
  const push = (role: 'user' | 'assistant', content: Block[]) => {
    if (content.length === 0) return;
    const last = messages.at(-1);
    if (last?.role === role) last.content.push(...content);
    else messages.push({ role, content });
  };

  raw.forEach((message: unknown, i) => {
    const at = `messages[${i}]`;
    if (!isObject(message)) throw badRequest(at, `'${at}' must be an object`);
    switch (message.role) {
      case 'system':
      case 'developer': {
        const text = textOnly(message.content, `${at}.content`, refuse);
        if (text !== '') system.push(text);
        break;
      }
      case 'user':
        push('user', userBlocks(message.content, `${at}.content`, refuse));
        break;
      case 'assistant':
        push('assistant', assistantBlocks(message, at, refuse));
        break;
      case 'tool': {
        if (typeof message.tool_call_id !== 'string') {
          throw badRequest(`${at}.tool_call_id`, `'${at}.tool_call_id' must be a string`);
        }
        const text = textOnly(message.content, `${at}.content`, refuse);
        push('user', [{ type: 'tool_result', tool_use_id: message.tool_call_id, content: text }]);
        break;
      }
      case 'function':
        throw refuse('the legacy function role', `${at}.role`);
      default:
        throw badRequest(`${at}.role`, `'${at}.role' is not a known role`);
    }
  });
  trimFinalAssistant(messages);
  return { system, messages };
}

/**
 * A last assistant turn is a prefill Anthropic continues (the relay sends one to resume a
 * broken stream); Anthropic refuses it when it ends with whitespace.
 */
function trimFinalAssistant(messages: AnthropicMessage[]): void {
  const last = messages.at(-1);
  if (last?.role !== 'assistant') return;
  const block = last.content.at(-1);
  if (block?.type !== 'text' || typeof block.text !== 'string') return;
  const text = block.text.trimEnd();
  if (text !== '') block.text = text;
  else last.content.pop();
  if (last.content.length === 0) messages.pop();
}

/** Content that may only hold text (system, developer, tool messages), as one string. */
function textOnly(content: unknown, at: string, refuse: Refuse): string {
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw badRequest(at, `'${at}' must be a string or an array of parts`);
  return content
    .map((part: unknown, j) => {
      if (isObject(part) && part.type === 'text' && typeof part.text === 'string') return part.text;
      throw refuse(`content part type ${partType(part)} in this message role`, `${at}[${j}]`);
    })
    .join('\n');
}

function userBlocks(content: unknown, at: string, refuse: Refuse): Block[] {
  if (typeof content === 'string') return content === '' ? [] : [{ type: 'text', text: content }];
  if (!Array.isArray(content)) throw badRequest(at, `'${at}' must be a string or an array of parts`);
  return content.flatMap((part: unknown, j): Block[] => {
    const param = `${at}[${j}]`;
    if (!isObject(part)) throw badRequest(param, `'${param}' must be an object`);
    if (part.type === 'text' && typeof part.text === 'string') {
      // Anthropic refuses empty text blocks.
      return part.text === '' ? [] : [{ type: 'text', text: part.text }];
    }
    if (part.type === 'image_url') return [imageBlock(part.image_url, param, refuse)];
    if (part.type === 'input_audio') throw refuse('audio input', param);
    if (part.type === 'file') throw refuse('file input', param);
    throw refuse(`content part type ${partType(part)}`, param);
  });
}

/**
 * An image part: a base64 data URL becomes a base64 source, an http(s) URL a url source
 * (Anthropic fetches it). `detail` has no counterpart; Anthropic picks the resolution itself.
 */
function imageBlock(imageUrl: unknown, at: string, refuse: Refuse): Block {
  const url = isObject(imageUrl) ? imageUrl.url : undefined;
  if (typeof url !== 'string')
    throw badRequest(`${at}.image_url.url`, `'${at}.image_url.url' must be a string`);
  if (url.startsWith('data:')) {
    const match = /^data:([^;,]+);base64,(.*)$/s.exec(url);
    if (!match) throw badRequest(`${at}.image_url.url`, `'${at}.image_url.url' must be a base64 data URL`);
    const mediaType = match[1]!.toLowerCase();
    if (!IMAGE_TYPES.has(mediaType)) {
      const named = /^image\/[a-z0-9.+-]{1,40}$/.test(mediaType);
      throw refuse(named ? `image type ${mediaType}` : 'this image type', `${at}.image_url.url`);
    }
    return { type: 'image', source: { type: 'base64', media_type: mediaType, data: match[2] } };
  }
  if (/^https?:\/\//i.test(url)) return { type: 'image', source: { type: 'url', url } };
  throw badRequest(`${at}.image_url.url`, `'${at}.image_url.url' must be an http(s) or data URL`);
}

/** Text, then one tool_use block per tool call (their arguments must be a JSON object). */
function assistantBlocks(message: Record<string, unknown>, at: string, refuse: Refuse): Block[] {
  const blocks: Block[] = [];
  const content = message.content;
  if (typeof content === 'string') {
    if (content !== '') blocks.push({ type: 'text', text: content });
  } else if (Array.isArray(content)) {
    content.forEach((part: unknown, j) => {
      const param = `${at}.content[${j}]`;
      if (isObject(part) && part.type === 'text' && typeof part.text === 'string') {
        if (part.text !== '') blocks.push({ type: 'text', text: part.text });
      } else if (isObject(part) && part.type === 'refusal' && typeof part.refusal === 'string') {
        if (part.refusal !== '') blocks.push({ type: 'text', text: part.refusal });
      } else throw refuse(`content part type ${partType(part)} in assistant messages`, param);
    });
  } else if (content !== undefined && content !== null) {
    throw badRequest(`${at}.content`, `'${at}.content' must be a string or an array of parts`);
  }
  if (message.audio !== undefined && message.audio !== null) throw refuse('assistant audio', `${at}.audio`);
  if (message.function_call !== undefined && message.function_call !== null) {
    throw refuse('the legacy function_call', `${at}.function_call`);
  }

  const calls = message.tool_calls;
  if (calls === undefined || calls === null) return blocks;
  if (!Array.isArray(calls)) throw badRequest(`${at}.tool_calls`, `'${at}.tool_calls' must be an array`);
  calls.forEach((call: unknown, j) => {
    const param = `${at}.tool_calls[${j}]`;
    const fn = isObject(call) ? call.function : undefined;
    if (!isObject(call) || typeof call.id !== 'string' || !isObject(fn) || typeof fn.name !== 'string') {
      throw badRequest(param, `'${param}' must have an id and a function name`);
    }
    blocks.push({ type: 'tool_use', id: call.id, name: fn.name, input: toolInput(fn.arguments, param) });
  });
  return blocks;
}

function toolInput(args: unknown, at: string): Record<string, unknown> {
  if (args === undefined || args === null || args === '') return {};
  let input: unknown;
  try {
    input = typeof args === 'string' ? JSON.parse(args) : undefined;
  } catch {
    input = undefined;
  }
  if (!isObject(input)) {
    throw badRequest(`${at}.function.arguments`, `'${at}.function.arguments' must be a JSON object`);
  }
  return input;
}

/**
 * `tools[].function` → `{name, description, input_schema}`; `tool_choice` auto/none/required/
 * {function} → auto/none/any/tool; `parallel_tool_calls: false` → `disable_parallel_tool_use`.
 * A function's `strict` flag has no counterpart: Anthropic follows `input_schema` without a
 * guarantee, as OpenAI does without `strict`.
 */
function translateTools(body: Record<string, unknown>, refuse: Refuse): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const tools = body.tools;
  if (tools !== undefined && tools !== null) {
    if (!Array.isArray(tools)) throw badRequest('tools', "'tools' must be an array");
    out.tools = tools.map((tool: unknown, i) => {
      const param = `tools[${i}]`;
      if (!isObject(tool) || tool.type !== 'function')
        throw refuse(`tool type ${partType(tool)}`, `${param}.type`);
      const fn = tool.function;
      if (!isObject(fn) || typeof fn.name !== 'string') {
        throw badRequest(`${param}.function.name`, `'${param}.function.name' must be a string`);
      }
      const schema = isObject(fn.parameters) ? fn.parameters : { type: 'object', properties: {} };
      return {
        name: fn.name,
        ...(typeof fn.description === 'string' ? { description: fn.description } : {}),
        input_schema: schema,
      };
    });
  }

  const choice = body.tool_choice;
  let toolChoice: Record<string, unknown> | undefined;
  if (choice === 'auto') toolChoice = { type: 'auto' };
  else if (choice === 'none') toolChoice = { type: 'none' };
  else if (choice === 'required') toolChoice = { type: 'any' };
  else if (isObject(choice) && choice.type === 'function' && isObject(choice.function)) {
    if (typeof choice.function.name !== 'string') {
      throw badRequest('tool_choice.function.name', "'tool_choice.function.name' must be a string");
    }
    toolChoice = { type: 'tool', name: choice.function.name };
  } else if (choice !== undefined && choice !== null) throw refuse('this tool_choice', 'tool_choice');

  if (body.parallel_tool_calls === false && out.tools !== undefined) {
    toolChoice ??= { type: 'auto' };
    // Anthropic's `none` takes no such option: no tool is called at all.
    if (toolChoice.type !== 'none') toolChoice.disable_parallel_tool_use = true;
  }
  if (toolChoice) out.tool_choice = toolChoice;
  return out;
}

/**
 * Anthropic has no JSON mode. `json_object` and `json_schema` are asked for in the system
 * prompt, and the answer comes back as the message text (as OpenAI's JSON mode does); the
 * schema is followed by instruction, not enforced as OpenAI's strict mode would.
 */
function responseFormatInstruction(format: unknown, refuse: Refuse): string | undefined {
  if (format === undefined || format === null) return undefined;
  if (!isObject(format)) throw badRequest('response_format', "'response_format' must be an object");
  switch (format.type) {
    case 'text':
      return undefined;
    case 'json_object':
      return 'Respond with a single valid JSON object and nothing else: no prose, no Markdown code fences.';
    case 'json_schema': {
      const spec = isObject(format.json_schema) ? format.json_schema : {};
      const schema = isObject(spec.schema) ? spec.schema : {};
      return (
        'Respond with a single valid JSON value and nothing else (no prose, no Markdown code fences) ' +
        `that conforms to this JSON Schema:\n${JSON.stringify(schema)}`
      );
    }
    default:
      throw refuse(`response_format ${safeName(format.type) ?? 'of this type'}`, 'response_format');
  }
}

function partType(part: unknown): string {
  return safeName(isObject(part) ? part.type : undefined) ?? 'unknown';
}

/** A client-chosen name, shown in an error only when it looks like a field or type name. */
function safeName(value: unknown): string | undefined {
  return typeof value === 'string' && /^[a-z][a-z0-9_]{0,39}$/.test(value) ? value : undefined;
}
