import type { Endpoint, Target, Usage } from '../../../context/request-context';
import type { UpstreamRequest } from '../index';

/** Paths under the base URL (which ends with the API version, e.g. `/v1`). */
export const OPENAI_PATHS: Partial<Record<Endpoint, string>> = {
  'chat.completions': '/chat/completions',
  completions: '/completions',
  embeddings: '/embeddings',
};

/**
 * Where a server that speaks OpenAI's wire format departs from it in ways the OpenAI code
 * must know (the per-provider knowledge lives in openai-compatible/ and azure/).
 */
export interface OpenAIDialect {
  /** Takes `stream_options: {include_usage: true}` on streams (default true). */
  streamOptions?: boolean;
  /** Usage of a JSON answer or a stream chunk (default: its `usage` field). */
  usage?(json: Record<string, unknown>): Usage | undefined;
}

/**
 * The request for an OpenAI-compatible server: the client's body with the target's model.
 * Built only from the body and the target: client headers (its Authorization is for
 * Kong) never reach the provider.
 */
export function buildOpenAIRequest(
  endpoint: Endpoint,
  body: Record<string, unknown>,
  target: Target,
  opts: { stream: boolean },
  dialect: OpenAIDialect = {},
): UpstreamRequest {
  const path = OPENAI_PATHS[endpoint];
  if (!path) throw new Error(`openai adapter does not serve ${endpoint}`);
  const headers = openaiHeaders(target, opts.stream);
  // Local servers (Ollama, vLLM, LM Studio) often run without a key.
  if (target.api_key) headers.authorization = `Bearer ${target.api_key}`;
  return {
    url: target.base_url.replace(/\/+$/, '') + path,
    method: 'POST',
    headers,
    body: JSON.stringify(openaiRequestBody(body, target, opts, dialect)),
  };
}

/** The client's body for the upstream: the target's model, and usage asked for on streams. */
export function openaiRequestBody(
  body: Record<string, unknown>,
  target: Target,
  opts: { stream: boolean },
  dialect: OpenAIDialect = {},
): Record<string, unknown> {
  const upstreamBody: Record<string, unknown> = { ...body, model: target.model };
  if (!opts.stream) return upstreamBody;
  upstreamBody.stream = true;
  if (dialect.streamOptions === false) {
    // The server refuses the field; its streams carry usage anyway (or the relay counts it).
    delete upstreamBody.stream_options;
    return upstreamBody;
  }
  // Usage is always asked for, so every stream is metered; the relay hides the usage
  // chunk from clients that did not ask for it themselves.
  const clientOptions = isObject(body.stream_options) ? body.stream_options : {};
  upstreamBody.stream_options = { ...clientOptions, include_usage: true };
  return upstreamBody;
}

/** The target's static headers, lowercased, then the JSON ones (which they cannot replace). */
export function openaiHeaders(target: Target, stream: boolean): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(target.headers)) headers[name.toLowerCase()] = value;
  headers['content-type'] = 'application/json';
  headers.accept = stream ? 'text/event-stream' : 'application/json';
  return headers;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
