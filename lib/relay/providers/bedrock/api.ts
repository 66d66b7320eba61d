import type { Endpoint, Target } from '../../../context/request-context';
import { GatewayError } from '../../../errors';
import type { UpstreamRequest } from '../index';
import { unsupported } from '../refusal';

/** A Converse content block, as the REST JSON wire format has it (blobs in base64). */
export type ConverseBlock = Record<string, unknown>;

export interface ConverseMessage {
  role: 'user' | 'assistant';
  content: ConverseBlock[];
}

/** Image formats Converse takes, by the media type of a data: URL. */
const IMAGE_FORMATS: Record<string, string> = {
  'image/png': 'png',
  'image/jpeg': 'jpeg',
  'image/jpg': 'jpeg',
  'image/gif': 'gif',
  'image/webp': 'webp',
};

/**
 * OpenAI fields with nothing to translate to that are dropped because they do not change the
 * answer: `user` and `metadata` only label the request, `store` asks OpenAI to keep it,
 * `service_tier` picks OpenAI's capacity, `seed` is best effort at OpenAI too.
 */
const HARMLESS = new Set(['user', 'metadata', 'store', 'service_tier', 'seed']);

/** Fields the translation reads. */
const TRANSLATED = new Set([
  'model',
  'messages',
  'stream',
  'stream_options',
  'max_tokens',
  'max_completion_tokens',
  'temperature',
  'top_p',
  'stop',
  'tools',
  'tool_choice',
  'n',
  'logprobs',
  'top_logprobs',
  'response_format',
  'parallel_tool_calls',
  'frequency_penalty',
  'presence_penalty',
  'modalities',
]);

/**
 * The Converse (or ConverseStream) request for an OpenAI chat request. Unsigned: the
 * adapter's `sign` adds the SigV4 headers. Anything Converse cannot do is refused naming the
 * field, never dropped, except the fields in HARMLESS.
 */
export function buildBedrockRequest(
  endpoint: Endpoint,
  body: Record<string, unknown>,
  target: Target,
  opts: { stream: boolean },
): UpstreamRequest {
  const refuse: Refuse = (feature, param) => unsupported(target, feature, param);
  if (endpoint !== 'chat.completions') throw refuse(`the ${endpoint} endpoint`, endpoint);

  for (const [field, value] of Object.entries(body)) {
    if (value === undefined || value === null || TRANSLATED.has(field) || HARMLESS.has(field)) continue;
    throw refuse(field, field);
  }
  if (present(body.n) && body.n !== 1) throw refuse('n > 1', 'n');
  if (body.logprobs === true || present(body.top_logprobs)) throw refuse('logprobs', 'logprobs');
  for (const field of ['frequency_penalty', 'presence_penalty'] as const) {
    if (present(body[field]) && body[field] !== 0) throw refuse(field, field);
  }
  if (
    present(body.modalities) &&
    !(Array.isArray(body.modalities) && body.modalities.every((m) => m === 'text'))
  ) {
    throw refuse('audio output', 'modalities');
  }
  const format = isObject(body.response_format) ? body.response_format.type : body.response_format;
  if (present(format) && format !== 'text')
    throw refuse(`response_format ${String(format)}`, 'response_format');
  // Converse has no switch for one call at a time.
  if (body.parallel_tool_calls === false) throw refuse('parallel_tool_calls: false', 'parallel_tool_calls');

  const { system, messages } = translateMessages(body.messages, refuse);
  const converse: Record<string, unknown> = { messages };
  if (system.length > 0) converse.system = system;
  const inference = inferenceConfig(body, refuse);
  if (Object.keys(inference).length > 0) converse.inferenceConfig = inference;
  const toolConfig = translateTools(body.tools, body.tool_choice, refuse);
  if (toolConfig) converse.toolConfig = toolConfig;

  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(target.headers)) headers[name.toLowerCase()] = value;
  headers['content-type'] = 'application/json';
  headers.accept = opts.stream ? 'application/vnd.amazon.eventstream' : 'application/json';
  const operation = opts.stream ? 'converse-stream' : 'converse';
  return {
    url: `${target.base_url.replace(/\/+$/, '')}/model/${encodePathSegment(target.model)}/${operation}`,
    method: 'POST',
    headers,
    body: JSON.stringify(converse),
  };
}

type Refuse = (feature: string, param: string) => GatewayError;

function badRequest(message: string, param: string): GatewayError {
  return new GatewayError('AIGW_BAD_REQUEST', message, { param });
}

/**
 * OpenAI messages as Converse `system` blocks and alternating user/assistant turns. System
 * and developer messages go to `system` wherever they stand; tool results become
 * `toolResult` blocks of a user turn; consecutive turns of one role are merged, as Converse
 * wants the roles to alternate.
 */
export function translateMessages(
  raw: unknown,
  refuse: Refuse,
): { system: ConverseBlock[]; messages: ConverseMessage[] } {
  if (!Array.isArray(raw) || raw.length === 0) {
    throw badRequest('messages must be a non-empty array', 'messages');
  }
  const system: ConverseBlock[] = [];
  const messages: ConverseMessage[] = [];
  const add = (role: ConverseMessage['role'], content: ConverseBlock[]) => {
    if (content.length === 0) return;
    const last = messages[messages.length - 1];
    if (last?.role === role) last.content.push(...content);
    else messages.push({ role, content });
  };

  raw.forEach((message: unknown, i) => {
    const at = `messages[${i}]`;
    if (!isObject(message)) throw badRequest(`${at} must be an object`, 'messages');
    switch (message.role) {
      case 'system':
      case 'developer':
        for (const text of textParts(message.content, at, refuse)) system.push({ text });
        return;
      case 'user':
        add('user', userContent(message.content, at, refuse));
        return;
      case 'assistant':
        add('assistant', assistantContent(message, at, refuse));
        return;
      case 'tool':
        add('user', [toolResult(message, at, refuse)]);
        return;
      case 'function':
        throw refuse('the legacy function role', `${at}.role`);
      default:
        throw badRequest(`${at}.role must be system, developer, user, assistant or tool`, 'messages');
    }
  });
  return { system, messages };
}

/** The text of a system, tool or assistant message: a string or text parts. */
function textParts(content: unknown, at: string, refuse: Refuse): string[] {
  if (content === undefined || content === null) return [];
  if (typeof content === 'string') return content === '' ? [] : [content];
  if (!Array.isArray(content)) throw badRequest(`${at}.content must be a string or an array`, 'messages');
  const texts: string[] = [];
  for (const part of content) {
    if (!isObject(part)) throw badRequest(`${at}.content parts must be objects`, 'messages');
    if ((part.type === 'text' || part.type === 'refusal') && typeof part.text === 'string') {
      if (part.text !== '') texts.push(part.text);
    } else if (part.type === 'refusal' && typeof part.refusal === 'string') {
      texts.push(part.refusal);
    } else {
      throw refuse(`content parts of type ${String(part.type)} here`, `${at}.content`);
    }
  }
  return texts;
}

function userContent(content: unknown, at: string, refuse: Refuse): ConverseBlock[] {
  if (typeof content === 'string') return [{ text: content }];
  if (!Array.isArray(content)) throw badRequest(`${at}.content must be a string or an array`, 'messages');
  return content.map((part: unknown) => {
    if (!isObject(part)) throw badRequest(`${at}.content parts must be objects`, 'messages');
    switch (part.type) {
      case 'text':
        if (typeof part.text !== 'string')
          throw badRequest(`${at}.content text parts need a text`, 'messages');
        return { text: part.text };
      case 'image_url':
        return imageBlock(part.image_url, at, refuse);
      case 'input_audio':
        throw refuse('audio input', `${at}.content`);
      default:
        throw refuse(`content parts of type ${String(part.type)}`, `${at}.content`);
    }
  });
}

/** A data: URL image as an image block; Converse takes no image by link. */
function imageBlock(imageUrl: unknown, at: string, refuse: Refuse): ConverseBlock {
  const url = isObject(imageUrl) ? imageUrl.url : imageUrl;
  if (typeof url !== 'string') throw badRequest(`${at}.content image_url needs a url`, 'messages');
  if (/^https?:/i.test(url)) {
    throw refuse('images by http(s) URL (send the image as a data: URL)', `${at}.content`);
  }
  const match = /^data:([\w.+/-]+);base64,/i.exec(url);
  const format = match ? IMAGE_FORMATS[match[1]!.toLowerCase()] : undefined;
  if (!match || !format) {
    throw refuse('images other than base64 data: URLs of PNG, JPEG, GIF or WebP', `${at}.content`);
  }
  // `detail` tunes OpenAI's image tokenizer; Converse has no such knob and sees the whole image.
  return { image: { format, source: { bytes: url.slice(match[0].length) } } };
}

function assistantContent(message: Record<string, unknown>, at: string, refuse: Refuse): ConverseBlock[] {
  const blocks: ConverseBlock[] = textParts(message.content, at, refuse).map((text) => ({ text }));
  if (typeof message.refusal === 'string' && message.refusal !== '') blocks.push({ text: message.refusal });
  if (message.audio !== undefined && message.audio !== null) throw refuse('audio', `${at}.audio`);
  if (message.function_call !== undefined && message.function_call !== null) {
    throw refuse('the legacy function_call', `${at}.function_call`);
  }
  const calls = message.tool_calls;
  if (calls === undefined || calls === null) return blocks;
  if (!Array.isArray(calls)) throw badRequest(`${at}.tool_calls must be an array`, 'messages');
  for (const call of calls) {
    const fn = isObject(call) ? call.function : undefined;
    if (!isObject(call) || typeof call.id !== 'string' || !isObject(fn) || typeof fn.name !== 'string') {
      throw badRequest(`${at}.tool_calls entries need an id and a function name`, 'messages');
    }
    blocks.push({ toolUse: { toolUseId: call.id, name: fn.name, input: toolInput(fn.arguments, at) } });
  }
  return blocks;
}

/** Tool call arguments (a JSON text) as the object Converse wants. */
function toolInput(args: unknown, at: string): unknown {
  if (args === undefined || args === null || args === '') return {};
  if (typeof args !== 'string')
    throw badRequest(`${at}.tool_calls arguments must be a JSON string`, 'messages');
  try {
    return JSON.parse(args);
  } catch {
    throw badRequest(`${at}.tool_calls arguments are not valid JSON`, 'messages');
  }
}

function toolResult(message: Record<string, unknown>, at: string, refuse: Refuse): ConverseBlock {
  if (typeof message.tool_call_id !== 'string') {
    throw badRequest(`${at}.tool_call_id is required for a tool message`, 'messages');
  }
  const texts = textParts(message.content, at, refuse);
  return {
    toolResult: {
      toolUseId: message.tool_call_id,
      // Converse refuses a result without content; an empty result is an empty text.
      content: (texts.length > 0 ? texts : ['']).map((text) => ({ text })),
    },
  };
}

function inferenceConfig(body: Record<string, unknown>, refuse: Refuse): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  const maxTokens = body.max_completion_tokens ?? body.max_tokens;
  if (present(maxTokens)) config.maxTokens = maxTokens;
  if (present(body.temperature)) config.temperature = body.temperature;
  if (present(body.top_p)) config.topP = body.top_p;
  if (present(body.stop)) {
    const stop = typeof body.stop === 'string' ? [body.stop] : body.stop;
    if (!Array.isArray(stop) || !stop.every((s) => typeof s === 'string')) {
      throw refuse('stop that is not a string or an array of strings', 'stop');
    }
    if (stop.length > 0) config.stopSequences = stop;
  }
  return config;
}

/** OpenAI tools and tool_choice as Converse's toolConfig; `none` sends no tools at all. */
function translateTools(
  tools: unknown,
  choice: unknown,
  refuse: Refuse,
): Record<string, unknown> | undefined {
  if (tools === undefined || tools === null || choice === 'none') return undefined;
  if (!Array.isArray(tools)) throw badRequest('tools must be an array', 'tools');
  if (tools.length === 0) return undefined;
  const specs = tools.map((tool: unknown) => {
    const fn = isObject(tool) ? tool.function : undefined;
    if (!isObject(tool) || tool.type !== 'function' || !isObject(fn) || typeof fn.name !== 'string') {
      throw refuse('tools other than functions', 'tools');
    }
    // Converse does not hold the model to the schema.
    if (fn.strict === true) throw refuse('strict function schemas', 'tools');
    const parameters = isObject(fn.parameters) ? fn.parameters : { type: 'object', properties: {} };
    const spec: Record<string, unknown> = { name: fn.name };
    if (typeof fn.description === 'string' && fn.description !== '') spec.description = fn.description;
    spec.inputSchema = { json: parameters };
    return { toolSpec: spec };
  });
  const config: Record<string, unknown> = { tools: specs };
  if (choice === 'auto') config.toolChoice = { auto: {} };
  else if (choice === 'required') config.toolChoice = { any: {} };
  else if (isObject(choice) && isObject(choice.function) && typeof choice.function.name === 'string') {
    config.toolChoice = { tool: { name: choice.function.name } };
  } else if (choice !== undefined && choice !== null) {
    throw refuse(`tool_choice ${JSON.stringify(choice)}`, 'tool_choice');
  }
  return config;
}

/**
 * A model id (or inference profile ARN) as one path segment, escaped as the AWS SDK does:
 * `:` and `/` and also the characters encodeURIComponent leaves alone.
 */
export function encodePathSegment(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function present(value: unknown): boolean {
  return value !== undefined && value !== null;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
