import type { Embedder } from '../embed/embedder';
import { key } from '../store/key';

/** Whose entries a request may read and write. */
export type NamespaceScope = 'consumer' | 'credential' | 'route' | 'global';

export interface Identity {
  consumerId?: string;
  credentialId?: string;
  /** The route (or, without one, the service) the plugin serves. */
  routeId?: string;
}

/**
 * The tenant of a request under `scope`, or undefined when the request has no such identity
 * (no authenticated consumer under `consumer`...): such requests are not cached at all, since
 * every unidentified client would otherwise share one cache.
 */
export function tenantOf(scope: NamespaceScope, who: Identity): string | undefined {
  switch (scope) {
    case 'consumer':
      return who.consumerId ? `consumer:${who.consumerId}` : undefined;
    case 'credential':
      return who.credentialId ? `credential:${who.credentialId}` : undefined;
    case 'route':
      return who.routeId ? `route:${who.routeId}` : undefined;
    case 'global':
      return 'global';
  }
}

/**
 * A cache namespace, `<tenant>@<embedder id>:<dimensions>` (e.g. `consumer:8f1c…@local-v1-384:384`):
 * the tenant first, then the embedder and its dimensions, so switching embedders never mixes
 * vectors (it starts an empty namespace). The admin endpoint lists and purges by it.
 */
export function namespaceOf(tenant: string, embedder: Pick<Embedder, 'id' | 'dimensions'>): string {
  return `${tenant}@${embedder.id}:${embedder.dimensions}`;
}

/** The store key of a namespace's entries: its hash tag is the namespace, so all of it lives in one Redis Cluster slot. */
export function storeNamespace(namespace: string): string {
  return key(namespace, 'cache');
}

/** The per-node LRU key of one entry. A newline never appears in a namespace's parts as key() escapes them. */
export function localKey(namespace: string, id: string): string {
  return `${storeNamespace(namespace)}\n${id}`;
}

/** The per-node vector index of a namespace and partition. */
export function indexKey(namespace: string, partition: string): string {
  return `${storeNamespace(namespace)}\n${partition}`;
}
