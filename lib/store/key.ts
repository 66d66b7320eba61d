import { GatewayError } from '../errors';

/**
 * Builds a store key: `{tenant}:part:part...`; the Redis store prefixes it (`aigw:{tenant}:...`).
 *
 * The rule: every key starts with its tenant inside braces. Redis Cluster hashes only the text
 * between the first `{` and the next `}` (the hash tag), so all keys of one tenant live in one
 * slot and a Lua script may touch several of them atomically (budget reservations across
 * minute/day windows, for instance). Keys of different tenants spread across the cluster.
 * Anything shared by all tenants uses a fixed tenant name such as `global`.
 *
 * Each component is escaped (`%`, `:`, `{`, `}` become `%XX`), so a tenant or part can never
 * end the hash tag early or pass for two components: distinct inputs give distinct keys.
 */
export function key(tenant: string, ...parts: Array<string | number>): string {
  if (tenant === '') {
    // An empty tag `{}` makes Redis hash the whole key and scatters the tenant's keys.
    throw new GatewayError('AIGW_INTERNAL', 'store key: tenant must not be empty');
  }
  let out = `{${escapeComponent(tenant)}}`;
  for (const part of parts) out += `:${escapeComponent(String(part))}`;
  return out;
}

const SPECIAL = /[%:{}]/g;

function escapeComponent(text: string): string {
  return text.replace(SPECIAL, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
