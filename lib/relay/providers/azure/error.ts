import type { GatewayError } from '../../../errors';
import { errorJson, errorTypeForStatus, ProviderError } from '../../upstream-error';
import { isObject } from '../openai/api';
import { parseOpenAIError } from '../openai/error';

/** Azure's own codes, as OpenAI clients know them. */
const CODES: Record<string, string> = {
  '401': 'invalid_api_key',
  '429': 'rate_limit_exceeded',
  DeploymentNotFound: 'model_not_found',
};

/**
 * Azure OpenAI's error answers, in OpenAI's shape with Azure's status:
 * `{"error": {"code": "429", "message": "Requests to the ChatCompletions_Create Operation..."}}`,
 * `{"error": {"code": "DeploymentNotFound", ...}}`, `{"statusCode": 401, "message": ...}`
 * (Entra ID), and the prompt filter's 400: `{"error": {"code": "content_filter", "param":
 * "prompt", "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result":
 * {"violence": {"filtered": true, "severity": "medium"}, ...}}}}`, whose filtered categories
 * are named in the message. `retry-after-ms` also gives `retry-after` (in seconds).
 */
export function parseAzureError(
  status: number,
  bodyText: string,
  headers: Record<string, string | string[] | undefined>,
): GatewayError {
  const base = parseOpenAIError(status, bodyText, headers);
  if (!(base instanceof ProviderError)) return base;
  const json = errorJson(bodyText);
  const error = isObject(json) && isObject(json.error) ? json.error : {};
  const code = base.providerCode === undefined ? undefined : (CODES[base.providerCode] ?? base.providerCode);
  // Numeric codes other than the mapped ones say no more than the status.
  const providerCode = code !== undefined && /^\d+$/.test(code) ? undefined : code;
  const filtered = filteredCategories(error.innererror);
  return new ProviderError(
    status,
    filtered.length > 0 ? `${base.message} (filtered: ${filtered.join(', ')})` : base.message,
    {
      type: typeof error.type === 'string' ? base.type : errorTypeForStatus(status),
      param: base.param ?? undefined,
      providerCode,
      headers: retryHeaders(base.headers, headers),
    },
  );
}

function filteredCategories(inner: unknown): string[] {
  const result = isObject(inner) ? inner.content_filter_result : undefined;
  if (!isObject(result)) return [];
  return Object.entries(result)
    .filter(
      ([name, verdict]) => /^[a-z_]{1,40}$/.test(name) && isObject(verdict) && verdict.filtered === true,
    )
    .map(([name]) => name);
}

function retryHeaders(
  kept: Record<string, string>,
  headers: Record<string, string | string[] | undefined>,
): Record<string, string> | undefined {
  const raw = headers['retry-after-ms'];
  const ms = Number(Array.isArray(raw) ? raw[0] : raw);
  if (raw === undefined || !Number.isFinite(ms) || ms < 0)
    return Object.keys(kept).length > 0 ? kept : undefined;
  return { 'retry-after': String(Math.ceil(ms / 1000)), ...kept, 'retry-after-ms': String(Math.ceil(ms)) };
}
