import { createHash } from 'node:crypto';
import { findEntities, maskSecret, mayHoldSecret, replaceEntities } from './pii';

export { maskSecret };

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

const SECRETS: ReadonlySet<string> = new Set(['secret']);

/**
 * Masks secret lookalikes inside free text (provider keys, bearer tokens, AWS access keys,
 * JWTs, private key blocks, `password=...` values); the same string when there is none.
 */
export function scrubText(text: string): string {
  if (!mayHoldSecret(text)) return text; // most log fields: names, ids, numbers as text
  return replaceEntities(text, findEntities(text, SECRETS), (e) => maskSecret(e.value));
}

/** Field names seen, and whether they name a secret: log lines use the same few names over and over. */
const secretKeys = new Map<string, boolean>();
const SECRET_KEYS_REMEMBERED = 4096;

function isSecretKey(name: string): boolean {
  let secret = secretKeys.get(name);
  if (secret === undefined) {
    secret = SECRET_HEADERS.has(name.toLowerCase()) || SECRET_KEY.test(name);
    if (secretKeys.size < SECRET_KEYS_REMEMBERED) secretKeys.set(name, secret);
  }
  return secret;
}

/**
 * The value with every secret-named field masked and secret lookalikes in strings scrubbed.
 * Used on every log line, so it copies only what it changes (a clean line costs no
 * allocation) and stops at a bounded depth.
 */
export function redact(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return scrubText(value);
  if (value === null || typeof value !== 'object' || depth > 8) return value;
  if (value instanceof Error) return value;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    value.forEach((v, i) => {
      const r = redact(v, depth + 1);
      if (r === v) return;
      out ??= [...value];
      out[i] = r;
    });
    return out ?? value;
  }
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(value)) {
    const r =
      v != null && isSecretKey(k)
        ? typeof v === 'string'
          ? maskSecret(v)
          : '[REDACTED]'
        : redact(v, depth + 1);
    if (r === v) continue;
    out ??= { ...(value as Record<string, unknown>) };
    out[k] = r;
  }
  return out ?? value;
}

/** Stable hash of a config: logged instead of the config, which may hold resolved secrets. */
export function configHash(config: unknown): string {
  const json = JSON.stringify(config, Object.keys(config as object).sort());
  return createHash('sha256').update(json).digest('hex').slice(0, 8);
}
