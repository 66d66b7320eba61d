import type { Endpoint } from '../context';
import { GatewayError } from '../errors';

export interface RequestLimitsInput {
  max_body_bytes: number;
  max_json_depth: number;
}

/** Upper bound on `max_tokens` and friends: anything above is a client bug, not a request. */
const MAX_OUTPUT_TOKENS = 10_000_000;

/** Maps a request path to an endpoint, whatever prefix the Kong route adds (`/ai/v1/...`). */
export function endpointOf(method: string, path: string): Endpoint {
  const p = path.split('?')[0]!.replace(/\/+$/, '');
  let endpoint: Endpoint | undefined;
  let allowed = 'POST';
  if (p.endsWith('/chat/completions')) endpoint = 'chat.completions';
  else if (p.endsWith('/completions')) endpoint = 'completions';
  else if (p.endsWith('/embeddings')) endpoint = 'embeddings';
  else if (p.endsWith('/feedback')) endpoint = 'feedback';
  else if (/\/models(\/[^/]+)?$/.test(p)) {
    endpoint = 'models';
    allowed = 'GET';
  }
  if (!endpoint) {
    throw new GatewayError(
      'AIGW_NOT_FOUND',
      'unknown endpoint: use /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models or /v1/feedback',
    );
  }
  if (method.toUpperCase() !== allowed) {
    throw new GatewayError('AIGW_METHOD_NOT_ALLOWED', `this endpoint accepts ${allowed} only`, {
      headers: { allow: allowed },
    });
  }
  return endpoint;
}

/** Refuses a body by its declared size before it is read. */
export function checkDeclaredSize(contentLength: string | undefined, limits: RequestLimitsInput): void {
  if (contentLength !== undefined && Number(contentLength) > limits.max_body_bytes) {
    throw tooLarge(limits);
  }
}

export function tooLarge(limits: RequestLimitsInput): GatewayError {
  return new GatewayError('AIGW_BODY_TOO_LARGE', `request body exceeds ${limits.max_body_bytes} bytes`);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Parses and checks a client body for an endpoint: media type, size, UTF-8, JSON, depth,
 * shape. Errors name the offending field but never echo its value.
 */
export function parseRequestBody(
  endpoint: Endpoint,
  contentType: string | undefined,
  raw: Uint8Array | undefined,
  limits: RequestLimitsInput,
): Record<string, unknown> | undefined {
  if (endpoint === 'models') return undefined;
  if (!raw || raw.length === 0) throw new GatewayError('AIGW_BAD_REQUEST', 'request body is empty');
  if (raw.length > limits.max_body_bytes) throw tooLarge(limits);
  const mediaType = contentType?.split(';')[0]?.trim().toLowerCase();
  if (mediaType !== 'application/json') {
    throw new GatewayError('AIGW_UNSUPPORTED_MEDIA_TYPE', 'content-type must be application/json');
  }
  let text: string;
  try {
    text = utf8.decode(raw);
  } catch {
    throw new GatewayError('AIGW_INVALID_UTF8', 'request body is not valid UTF-8');
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new GatewayError('AIGW_INVALID_JSON', 'request body is not valid JSON');
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new GatewayError('AIGW_BAD_REQUEST', 'request body must be a JSON object');
  }
  if (jsonDepth(body) > limits.max_json_depth) {
    throw new GatewayError(
      'AIGW_BAD_REQUEST',
      `request body nests deeper than ${limits.max_json_depth} levels`,
    );
  }
  checkShape(endpoint, body as Record<string, unknown>);
  return body as Record<string, unknown>;
}

/** Nesting depth, iteratively (a deep body must not overflow the stack). */
export function jsonDepth(value: unknown): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth > max) max = depth;
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return max;
}

function invalid(param: string, message: string): GatewayError {
  return new GatewayError('AIGW_BAD_REQUEST', message, { param });
}

function checkShape(endpoint: Endpoint, body: Record<string, unknown>): void {
  if (endpoint === 'feedback') {
    checkFeedback(body);
    return;
  }
  if (body.model !== undefined && (typeof body.model !== 'string' || body.model === '')) {
    throw invalid('model', "'model' must be a non-empty string");
  }
  if (body.stream !== undefined && typeof body.stream !== 'boolean') {
    throw invalid('stream', "'stream' must be a boolean");
  }
  for (const field of ['max_tokens', 'max_completion_tokens'] as const) {
    const v = body[field];
    if (
      v !== undefined &&
      v !== null &&
      (!Number.isInteger(v) || (v as number) < 1 || (v as number) > MAX_OUTPUT_TOKENS)
    ) {
      throw invalid(field, `'${field}' must be an integer between 1 and ${MAX_OUTPUT_TOKENS}`);
    }
  }
  switch (endpoint) {
    case 'chat.completions': {
      const messages = body.messages;
      if (!Array.isArray(messages) || messages.length === 0) {
        throw invalid('messages', "'messages' is required and must be a non-empty array");
      }
      messages.forEach((m, i) => {
        if (m === null || typeof m !== 'object' || typeof (m as { role?: unknown }).role !== 'string') {
          throw invalid(`messages[${i}]`, `'messages[${i}]' must be an object with a string 'role'`);
        }
      });
      break;
    }
    case 'completions':
      if (typeof body.prompt !== 'string' && !Array.isArray(body.prompt)) {
        throw invalid('prompt', "'prompt' is required and must be a string or an array");
      }
      break;
    case 'embeddings':
      if (typeof body.input !== 'string' && !Array.isArray(body.input)) {
        throw invalid('input', "'input' is required and must be a string or an array");
      }
      if (body.stream === true) throw invalid('stream', 'embeddings cannot be streamed');
      break;
    default:
      break;
  }
}

/** Longest comment a client may attach to its feedback, in characters. */
export const MAX_FEEDBACK_COMMENT = 2000;

/** The id of the answer being rated: as the relay accepts request ids, and base64url feedback ids. */
const FEEDBACK_ID = /^[A-Za-z0-9._:-]{1,128}$/;

const FEEDBACK_FIELDS = new Set(['request_id', 'score', 'label', 'comment']);

/**
 * `{"request_id", "score": 0..1}` or `{"request_id", "label": "good"|"bad"}`, with an optional
 * `comment`; nothing else, so a typo is a 400 rather than a rating silently lost.
 */
function checkFeedback(body: Record<string, unknown>): void {
  if (Object.keys(body).some((field) => !FEEDBACK_FIELDS.has(field))) {
    throw new GatewayError(
      'AIGW_BAD_REQUEST',
      'a feedback body takes only request_id, score or label, and comment',
    );
  }
  if (typeof body.request_id !== 'string' || !FEEDBACK_ID.test(body.request_id)) {
    throw invalid(
      'request_id',
      "'request_id' is required: the id of the answer being rated (1 to 128 letters, digits or ._:-)",
    );
  }
  const hasScore = body.score !== undefined;
  const hasLabel = body.label !== undefined;
  if (hasScore === hasLabel) {
    throw invalid('score', "give either 'score' (0 to 1) or 'label' ('good' or 'bad'), not both");
  }
  if (hasScore && (typeof body.score !== 'number' || !(body.score >= 0 && body.score <= 1))) {
    throw invalid('score', "'score' must be a number from 0 to 1");
  }
  if (hasLabel && body.label !== 'good' && body.label !== 'bad') {
    throw invalid('label', "'label' must be 'good' or 'bad'");
  }
  if (
    body.comment !== undefined &&
    (typeof body.comment !== 'string' || [...body.comment].length > MAX_FEEDBACK_COMMENT)
  ) {
    throw invalid('comment', `'comment' must be a string of at most ${MAX_FEEDBACK_COMMENT} characters`);
  }
}
