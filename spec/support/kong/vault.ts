/**
 * `{vault://env/NAME}` references (kong/pdk/vault.lua is_reference/parse_reference and
 * kong/vaults/env/init.lua). Kong resolves them when the plugin config is read from the
 * database, before the config reaches a plugin server; an unresolvable one becomes "".
 */

/** is_reference: `{vault://` ... `}`. */
export function isVaultReference(value: unknown): value is string {
  return typeof value === 'string' && value.startsWith('{vault://') && value.endsWith('}');
}

export interface ResolvedReference {
  value?: string;
  error?: string;
}

/**
 * Resolves a reference against an environment map. Only the `env` vault exists here.
 * env vault: resource upper-cased with "-" → "_"; a `/key` suffix reads a JSON field; `#2` the _PREVIOUS value.
 */
export function resolveVaultReference(
  reference: string,
  env: Record<string, string | undefined>,
): ResolvedReference {
  let url: URL;
  try {
    url = new URL(reference.slice(1, -1));
  } catch (err) {
    return { error: `reference is not url (${(err as Error).message}) [${reference}]` };
  }
  const vault = url.hostname;
  if (!vault) return { error: `reference url is missing host [${reference}]` };
  const resourcePath = decodeURIComponent(url.pathname.slice(1));
  if (!resourcePath) return { error: `reference url has empty path [${reference}]` };
  if (vault !== 'env') return { error: `vault not found (${vault}) [${reference}]` };

  const parts = resourcePath.split('/').filter((p) => p !== '');
  const isDirectory = resourcePath.endsWith('/');
  const key = parts.length > 1 && !isDirectory ? parts.pop() : undefined;
  let name = parts.join('/').replace(/-/g, '_').toUpperCase();
  if (url.hash === '#2') name += '_PREVIOUS';
  const raw = env[name];
  if (raw === undefined)
    return { error: `could not get value from external vault (no value found (${reference}))` };
  if (key === undefined) return { value: raw };
  try {
    const parsed = JSON.parse(raw) as Record<string, unknown>;
    const v = parsed[key];
    if (typeof v === 'string') return { value: v };
    return { error: `could not get subfield value: ${key} (${reference})` };
  } catch {
    return { error: `unable to json decode value (${reference})` };
  }
}
