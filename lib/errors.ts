/**
 * One error type with stable codes. Clients see the OpenAI error shape
 * `{error: {message, type, code}}`; messages never echo client input or secrets.
 */

export type OpenAIErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error';

const CODES = {
  AIGW_BAD_REQUEST: [400, 'invalid_request_error'],
  AIGW_INVALID_JSON: [400, 'invalid_request_error'],
  AIGW_INVALID_UTF8: [400, 'invalid_request_error'],
  AIGW_UNSUPPORTED_FEATURE: [400, 'invalid_request_error'],
  AIGW_CONTENT_FILTERED: [400, 'invalid_request_error'],
  AIGW_UNKNOWN_MODEL: [404, 'not_found_error'],
  AIGW_NOT_FOUND: [404, 'not_found_error'],
  AIGW_METHOD_NOT_ALLOWED: [405, 'invalid_request_error'],
  AIGW_CONFLICT: [409, 'invalid_request_error'],
  AIGW_BODY_TOO_LARGE: [413, 'invalid_request_error'],
  AIGW_UNSUPPORTED_MEDIA_TYPE: [415, 'invalid_request_error'],
  AIGW_CONTEXT_REQUIRED: [403, 'permission_error'],
  AIGW_FORBIDDEN: [403, 'permission_error'],
  AIGW_MODEL_NOT_ALLOWED: [403, 'permission_error'],
  AIGW_REGION_NOT_ALLOWED: [403, 'permission_error'],
  AIGW_BUDGET_EXCEEDED: [429, 'rate_limit_error'],
  AIGW_NO_ROUTE: [500, 'server_error'],
  AIGW_INTERNAL: [500, 'server_error'],
  AIGW_CONFIG_INVALID: [500, 'server_error'],
  AIGW_UPSTREAM_ERROR: [502, 'server_error'],
  AIGW_UPSTREAM_UNAVAILABLE: [502, 'server_error'],
  AIGW_UPSTREAM_PROTOCOL: [502, 'server_error'],
  AIGW_STREAM_BROKEN: [502, 'server_error'],
  AIGW_STORE_UNAVAILABLE: [503, 'server_error'],
  AIGW_UPSTREAM_TIMEOUT: [504, 'server_error'],
} as const satisfies Record<string, readonly [number, OpenAIErrorType]>;

export type ErrorCode = keyof typeof CODES;

export interface OpenAIErrorBody {
  error: { message: string; type: string; code: string; param: string | null };
}

export interface GatewayErrorOptions {
  /** Overrides the code's default status (e.g. a provider's own status kept as is). */
  status?: number;
  /** Overrides the code's default OpenAI error type. */
  type?: string;
  /** The offending request field, as OpenAI's `param`. */
  param?: string;
  /** Extra response headers (e.g. `retry-after`). */
  headers?: Record<string, string>;
  cause?: unknown;
}

export class GatewayError extends Error {
  override readonly name = 'GatewayError';
  readonly code: ErrorCode;
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, message: string, options: GatewayErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    const [status, type] = CODES[code];
    this.code = code;
    this.status = options.status ?? status;
    this.type = options.type ?? type;
    this.param = options.param ?? null;
    this.headers = options.headers ?? {};
  }

  toJSON(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.param } };
  }
}

/** Anything thrown becomes a GatewayError; unknown errors hide their message from clients. */
export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  return new GatewayError('AIGW_INTERNAL', 'internal error in the AI gateway', { cause: err });
}
