import { createHash } from 'node:crypto';

/** Header names whose values are credentials, in every spelling (compared lowercased). */
export const SECRET_HEADERS = new Set([
  'authorization',
  'proxy-authorization',
  'x-api-key',
  'api-key',
  'x-goog-api-key',
]);

/** Object keys whose values are secrets wherever they appear (config fields, headers). */
const SECRET_KEY = /(^|[_-])(key|secret|password|token|authorization|credentials?)$|^api[_-]?key|secret/i;

/** Token lookalikes inside free text: OpenAI/Anthropic style keys, bearer tokens, AWS keys. */
const SECRET_TEXT =
  /\b(sk-[A-Za-z0-9_-]{8,}|sk-ant-[A-Za-z0-9_-]{8,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{20,})|\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{6,}/g;

function shortHash(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 8);
}

/** `[REDACTED len=N hash=H]`: enough to correlate two log lines, never enough to recover. */
export function maskSecret(value: string): string {
  return `[REDACTED len=${value.length} hash=${shortHash(value)}]`;
}

/** Masks secret lookalikes inside free text. */
export function scrubText(text: string): string {
  return text.replace(SECRET_TEXT, (m) => maskSecret(m));
}

/**
 * Deep copy with every secret-named field masked and secret lookalikes in strings scrubbed.
 * Used on every log line, so it is iterative and bounded in depth.
 */
export function redact(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return scrubText(value);
  if (value === null || typeof value !== 'object' || depth > 8) return value;
  if (value instanceof Error) return value;
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (v != null && (SECRET_HEADERS.has(k.toLowerCase()) || SECRET_KEY.test(k))) {
      out[k] = typeof v === 'string' ? maskSecret(v) : '[REDACTED]';
    } else {
      out[k] = redact(v, depth + 1);
    }
  }
  return out;
}

/** Stable hash of a config: logged instead of the config, which may hold resolved secrets. */
export function configHash(config: unknown): string {
  return shortHash(JSON.stringify(config, Object.keys(config as object).sort()));
}
