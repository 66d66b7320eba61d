import type { Endpoint, Target } from '../../../context/request-context';
import type { UpstreamRequest } from '../index';
import { isObject } from '../openai/api';
import { unsupported } from '../refusal';
import { badRequest, type Refuse, toConversation } from './messages';
import { toGeminiSchema } from './schema';

/**
 * OpenAI request → Gemini API (Generative Language API) request:
 * `POST {base_url}/models/{model}:generateContent`, `:streamGenerateContent?alt=sse`, and
 * `:batchEmbedContents` for embeddings. The key goes in `x-goog-api-key`, never in the URL,
 * so no URL the relay logs can carry it.
 */
export function buildGeminiRequest(
  endpoint: Endpoint,
  body: Record<string, unknown>,
  target: Target,
  opts: { stream: boolean },
): UpstreamRequest {
  const refuse: Refuse = (feature, param) => unsupported(target, feature, param);
  const model = modelPath(target.model);
  let method: string;
  let upstream: Record<string, unknown>;
  if (endpoint === 'chat.completions') {
    method = opts.stream ? 'streamGenerateContent?alt=sse' : 'generateContent';
    upstream = chatRequest(body, refuse, opts.stream);
  } else if (endpoint === 'embeddings') {
    method = 'batchEmbedContents';
    upstream = embeddingsRequest(body, model, refuse);
  } else {
    throw refuse(`the ${endpoint} endpoint`, 'model');
  }

  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(target.headers)) headers[name.toLowerCase()] = value;
  headers['content-type'] = 'application/json';
  headers.accept = opts.stream && endpoint === 'chat.completions' ? 'text/event-stream' : 'application/json';
  if (target.api_key) headers['x-goog-api-key'] = target.api_key;
  return {
    url: `${target.base_url.replace(/\/+$/, '')}/${model}:${method}`,
    method: 'POST',
    headers,
    body: JSON.stringify(upstream),
  };
}

/** `gemini-2.5-flash` → `models/gemini-2.5-flash`; a full name (`tunedModels/x`) is kept. */
export function modelPath(model: string): string {
  const name = model.includes('/') ? model : `models/${model}`;
  return name.split('/').map(encodeURIComponent).join('/');
}

/**
 * Fields dropped as harmless: they change neither the answer's content nor its format.
 * `user`, `safety_identifier`, `metadata`, `store`, `service_tier`, `prompt_cache_key`,
 * `prediction` (OpenAI account, storage and latency hints); `parallel_tool_calls` (Gemini
 * decides how many calls to make; any number is a valid OpenAI answer); `stream_options`
 * (the relay meters every stream from Gemini's usage anyway).
 */
const DROPPED = new Set([
  'model',
  'stream',
  'stream_options',
  'user',
  'safety_identifier',
  'metadata',
  'store',
  'service_tier',
  'prompt_cache_key',
  'prediction',
  'parallel_tool_calls',
]);

/** Translated below. */
const TRANSLATED = new Set([
  'messages',
  'max_tokens',
  'max_completion_tokens',
  'temperature',
  'top_p',
  'top_k',
  'stop',
  'n',
  'seed',
  'presence_penalty',
  'frequency_penalty',
  'response_format',
  'tools',
  'tool_choice',
  'reasoning_effort',
  'logprobs',
  'top_logprobs',
  'modalities',
]);

// OpenAI's reasoning_effort as Gemini thinking budgets (tokens), as Google's OpenAI endpoint maps them.
const THINKING_BUDGET: Record<string, number> = { none: 0, minimal: 0, low: 1024, medium: 8192, high: 24576 };

function chatRequest(
  body: Record<string, unknown>,
  refuse: Refuse,
  stream: boolean,
): Record<string, unknown> {
  for (const [field, value] of Object.entries(body)) {
    if (value == null || DROPPED.has(field) || TRANSLATED.has(field)) continue;
    if (field === 'logit_bias' && isObject(value) && Object.keys(value).length === 0) continue;
    // Everything else would change the answer if dropped: audio, logit_bias, functions...
    throw refuse(/^[a-z_]{1,40}$/.test(field) ? field : 'an unknown request field', field);
  }
  if (body.logprobs === true) throw refuse('logprobs', 'logprobs');
  if (body.top_logprobs != null) throw refuse('top_logprobs', 'top_logprobs');
  if (Array.isArray(body.modalities) && body.modalities.some((m) => m !== 'text')) {
    throw refuse('output modalities other than text', 'modalities');
  }

  const { contents, systemInstruction } = toConversation(body.messages, refuse);
  const request: Record<string, unknown> = { contents };
  if (systemInstruction) request.systemInstruction = systemInstruction;
  const tools = toolsOf(body.tools, refuse);
  if (tools) request.tools = tools;
  const toolConfig = toolConfigOf(body.tool_choice, refuse);
  if (toolConfig) request.toolConfig = toolConfig;
  const generationConfig = generationConfigOf(body, refuse, stream);
  if (Object.keys(generationConfig).length > 0) request.generationConfig = generationConfig;
  return request;
}

function generationConfigOf(
  body: Record<string, unknown>,
  refuse: Refuse,
  stream: boolean,
): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  const number = (field: string, key: string, integer = false) => {
    const value = body[field];
    if (value == null) return;
    if (typeof value !== 'number' || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
      throw badRequest(`${field} must be ${integer ? 'an integer' : 'a number'}`, field);
    }
    config[key] = value;
  };
  number('max_tokens', 'maxOutputTokens', true);
  number('max_completion_tokens', 'maxOutputTokens', true);
  number('temperature', 'temperature');
  number('top_p', 'topP');
  number('top_k', 'topK', true);
  number('n', 'candidateCount', true);
  number('seed', 'seed', true);
  number('presence_penalty', 'presencePenalty');
  number('frequency_penalty', 'frequencyPenalty');
  if (stream && typeof config.candidateCount === 'number' && config.candidateCount > 1) {
    throw refuse('n > 1 with stream', 'n');
  }

  const stop = body.stop;
  if (typeof stop === 'string') config.stopSequences = [stop];
  else if (Array.isArray(stop) && stop.every((s) => typeof s === 'string')) {
    if (stop.length > 0) config.stopSequences = stop;
  } else if (stop != null) throw badRequest('stop must be a string or an array of strings', 'stop');

  const format = body.response_format;
  if (format != null) {
    if (!isObject(format)) throw badRequest('response_format must be an object', 'response_format');
    if (format.type === 'json_object') config.responseMimeType = 'application/json';
    else if (format.type === 'json_schema') {
      const spec = isObject(format.json_schema) ? format.json_schema : {};
      config.responseMimeType = 'application/json';
      if (spec.schema !== undefined) {
        config.responseSchema = toGeminiSchema(spec.schema, (what) =>
          refuse(`${what} in response_format`, 'response_format'),
        );
      }
    } else if (format.type !== 'text') throw refuse('this response_format type', 'response_format');
  }

  const effort = body.reasoning_effort;
  if (effort != null) {
    const budget = typeof effort === 'string' ? THINKING_BUDGET[effort] : undefined;
    if (budget === undefined)
      throw badRequest('reasoning_effort must be none, minimal, low, medium or high', 'reasoning_effort');
    config.thinkingConfig = { thinkingBudget: budget };
  }
  return config;
}

/** OpenAI function tools → one Gemini tool holding every function declaration. */
function toolsOf(tools: unknown, refuse: Refuse): Record<string, unknown>[] | undefined {
  if (tools == null) return undefined;
  if (!Array.isArray(tools)) throw badRequest('tools must be an array', 'tools');
  if (tools.length === 0) return undefined;
  const declarations = tools.map((tool, i) => {
    const at = `tools[${i}]`;
    if (!isObject(tool) || !isObject(tool.function)) throw badRequest(`${at} must be a function tool`, at);
    if (tool.type !== 'function') throw refuse('tools that are not functions', `${at}.type`);
    const fn = tool.function;
    if (typeof fn.name !== 'string' || fn.name === '')
      throw badRequest(`${at}.function.name must be a string`, at);
    const declaration: Record<string, unknown> = { name: fn.name };
    if (typeof fn.description === 'string') declaration.description = fn.description;
    if (fn.parameters != null) {
      const parameters = toGeminiSchema(fn.parameters, (what) => refuse(`${what} in tool parameters`, at));
      // Gemini refuses an OBJECT without properties: a function without arguments has no parameters.
      const empty = parameters.type === 'OBJECT' && Object.keys(asRecord(parameters.properties)).length === 0;
      if (!empty) declaration.parameters = parameters;
    }
    return declaration;
  });
  return [{ functionDeclarations: declarations }];
}

/**
 * tool_choice → `toolConfig.functionCallingConfig`: auto → AUTO, none → NONE, required → ANY,
 * one named function → ANY limited to it; `allowed_tools` in mode required → ANY limited to its
 * functions (in mode auto it is refused: Gemini limits the functions only in mode ANY).
 */
function toolConfigOf(choice: unknown, refuse: Refuse): Record<string, unknown> | undefined {
  if (choice == null) return undefined;
  const config = (mode: string, names?: string[]) => ({
    functionCallingConfig: names ? { mode, allowedFunctionNames: names } : { mode },
  });
  if (choice === 'auto') return config('AUTO');
  if (choice === 'none') return config('NONE');
  if (choice === 'required') return config('ANY');
  if (isObject(choice) && choice.type === 'function') {
    const name = isObject(choice.function) ? choice.function.name : undefined;
    if (typeof name !== 'string')
      throw badRequest('tool_choice.function.name must be a string', 'tool_choice');
    return config('ANY', [name]);
  }
  if (isObject(choice) && choice.type === 'allowed_tools' && isObject(choice.allowed_tools)) {
    const { mode, tools } = choice.allowed_tools;
    const names = (Array.isArray(tools) ? tools : []).map((t) =>
      isObject(t) && isObject(t.function) ? t.function.name : undefined,
    );
    if (names.length === 0 || !names.every((n): n is string => typeof n === 'string')) {
      throw refuse('allowed_tools that are not named functions', 'tool_choice');
    }
    if (mode === 'required') return config('ANY', names);
    if (mode === 'auto') throw refuse('tool_choice allowed_tools in mode auto', 'tool_choice');
  }
  throw badRequest('tool_choice must be auto, none, required or a function', 'tool_choice');
}

/**
 * OpenAI embeddings → `batchEmbedContents`: one request per input string, `dimensions` as
 * `outputDimensionality`. Token-id inputs are refused (Gemini embeds text only); `user` is
 * dropped as harmless.
 */
function embeddingsRequest(
  body: Record<string, unknown>,
  model: string,
  refuse: Refuse,
): Record<string, unknown> {
  for (const [field, value] of Object.entries(body)) {
    if (value == null || ['model', 'input', 'dimensions', 'encoding_format', 'user'].includes(field))
      continue;
    throw refuse(/^[a-z_]{1,40}$/.test(field) ? field : 'an unknown request field', field);
  }
  const input = body.input;
  const texts = typeof input === 'string' ? [input] : input;
  if (!Array.isArray(texts) || texts.length === 0) {
    throw badRequest('input must be a string or a non-empty array of strings', 'input');
  }
  if (!texts.every((t) => typeof t === 'string')) throw refuse('token-id input', 'input');
  const dimensions = body.dimensions;
  if (
    dimensions != null &&
    (typeof dimensions !== 'number' || !Number.isInteger(dimensions) || dimensions < 1)
  ) {
    throw badRequest('dimensions must be a positive integer', 'dimensions');
  }
  // Gemini answers floats; base64 is encoded from them in the answer's translation.
  if (body.encoding_format != null && body.encoding_format !== 'float' && body.encoding_format !== 'base64') {
    throw badRequest('encoding_format must be float or base64', 'encoding_format');
  }
  return {
    requests: texts.map((text) => ({
      model,
      content: { parts: [{ text }] },
      ...(dimensions != null ? { outputDimensionality: dimensions } : {}),
    })),
  };
}

function asRecord(value: unknown): Record<string, unknown> {
  return isObject(value) ? value : {};
}
