import type { Endpoint, Target } from '../../../context/request-context';
import type { UpstreamRequest } from '../index';

/** Paths under the base URL (which ends with the API version, e.g. `/v1`). */
export const OPENAI_PATHS: Partial<Record<Endpoint, string>> = {
  'chat.completions': '/chat/completions',
  completions: '/completions',
  embeddings: '/embeddings',
};

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
): UpstreamRequest {
  const path = OPENAI_PATHS[endpoint];
  if (!path) throw new Error(`openai adapter does not serve ${endpoint}`);
  const upstreamBody: Record<string, unknown> = { ...body, model: target.model };
  if (opts.stream) {
    upstreamBody.stream = true;
    // Usage is always asked for, so every stream is metered; the relay hides the usage
    // chunk from clients that did not ask for it themselves.
    const clientOptions = isObject(body.stream_options) ? body.stream_options : {};
    upstreamBody.stream_options = { ...clientOptions, include_usage: true };
  }

  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(target.headers)) headers[name.toLowerCase()] = value;
  headers['content-type'] = 'application/json';
  headers.accept = opts.stream ? 'text/event-stream' : 'application/json';
  // Local servers (Ollama, vLLM, LM Studio) often run without a key.
  if (target.api_key) headers.authorization = `Bearer ${target.api_key}`;

  return {
    url: target.base_url.replace(/\/+$/, '') + path,
    method: 'POST',
    headers,
    body: JSON.stringify(upstreamBody),
  };
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
