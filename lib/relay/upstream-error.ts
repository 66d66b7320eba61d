import { GatewayError, type OpenAIErrorBody } from '../errors';
import { scrubText } from '../log/redact';

/**
 * A provider's own error answer (4xx/5xx), kept with its status. The client sees the
 * provider's code (`rate_limit_exceeded`, `context_length_exceeded`...) when it sent one,
 * as OpenAI clients branch on it, else AIGW_UPSTREAM_ERROR.
 */
export class ProviderError extends GatewayError {
  readonly providerCode?: string;

  constructor(
    status: number,
    message: string,
    options: { type?: string; param?: string; providerCode?: string; headers?: Record<string, string> } = {},
  ) {
    super('AIGW_UPSTREAM_ERROR', message, {
      status,
      type: options.type ?? errorTypeForStatus(status),
      param: options.param,
      headers: options.headers,
    });
    this.providerCode = options.providerCode;
  }

  override toJSON(): OpenAIErrorBody {
    const body = super.toJSON();
    if (this.providerCode) body.error.code = this.providerCode;
    return body;
  }
}

/** The OpenAI error type a status implies, for providers that send none. */
export function errorTypeForStatus(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 400 && status < 500) return 'invalid_request_error';
  return 'server_error';
}

// Partly masked keys that providers echo, e.g. OpenAI's 401 "sk-proj-abc1****************wXyZ".
// The lookbehind starts a match only at a word start, which keeps the scan linear.
const MASKED_KEY_ECHO = /(?<![A-Za-z0-9_-])[A-Za-z0-9_-]*\*{3,}[A-Za-z0-9_-]*/g;
// The gateway's own account (OpenAI's 429 names the organization) is nobody else's business.
const ORGANIZATION_ID = /\borg-[A-Za-z0-9]+/g;
const MAX_MESSAGE_CHARS = 1000;

/** Provider text made safe for clients and logs: key echoes and key lookalikes masked, length bounded. */
export function scrubProviderText(text: string, secret?: string): string {
  let out = secret && secret.length >= 4 ? text.split(secret).join('[REDACTED]') : text;
  // Mask first, cut after: a cut through a key would leave a prefix too short to recognise.
  out = scrubText(out.replace(MASKED_KEY_ECHO, '[REDACTED]').replace(ORGANIZATION_ID, 'org-[REDACTED]'));
  return out.length > MAX_MESSAGE_CHARS ? `${out.slice(0, MAX_MESSAGE_CHARS)}…` : out;
}

/** A provider's error body as JSON, or undefined when it is not JSON (an HTML page from a proxy...). */
export function errorJson(bodyText: string): unknown {
  try {
    return JSON.parse(bodyText);
  } catch {
    return undefined;
  }
}
