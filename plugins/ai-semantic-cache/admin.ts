import { type AdminAnswer, type AdminRequest, adminError } from '../../lib/admin/routes';
import type { AnswerCache } from '../../lib/cache/answer-cache';
import type { ShadowStats } from './metrics';

/**
 * The admin endpoint's `/cache` (loopback, for operators):
 *
 *   GET    /cache                       this node's view: namespaces indexed, local entries, shadow evidence
 *   GET    /cache/<namespace>           entries the store holds for the namespace
 *   DELETE /cache/<namespace>           purges the namespace (store, this node's memory and index)
 *   DELETE /cache/<namespace>/<key>     purges one entry
 *
 * A namespace is `<scope>:<id>@<embedder id>:<dimensions>` (`consumer:<consumer id>@local-v1-384:384`,
 * `global@local-v1-384:384`), percent-encoded where it holds a `/`. Other nodes drop purged
 * entries from their memory within `local_cache.ttl_ms`.
 */
export class CacheAdmin {
  /** The longest TTL among the instances: what `GET /cache/<namespace>` counts within. */
  private ttlMs = 0;

  constructor(
    private readonly cache: AnswerCache,
    private readonly shadow: ShadowStats,
  ) {}

  register(ttlMs: number): void {
    this.ttlMs = Math.max(this.ttlMs, ttlMs);
  }

  async handle(req: AdminRequest): Promise<AdminAnswer> {
    const [, , rawNs, rawKey, ...rest] = req.path.split('/');
    let namespace = '';
    let key = '';
    try {
      namespace = decodeURIComponent(rawNs ?? '');
      key = decodeURIComponent(rawKey ?? '');
    } catch {
      return adminError(400, 'the path is not valid percent-encoding', 'AIGW_BAD_REQUEST');
    }
    if (rest.length > 0) return adminError(404, 'use /cache/<namespace>[/<key>]', 'AIGW_NOT_FOUND');
    if (namespace === '') {
      if (req.method !== 'GET') return adminError(405, 'only GET shows the cache', 'AIGW_METHOD_NOT_ALLOWED');
      return [200, { object: 'cache', ...this.cache.snapshot(), shadow: this.shadow.snapshot() }];
    }
    if (req.method === 'DELETE') {
      if (key !== '') {
        const deleted = await this.cache.purgeEntry(namespace, key);
        return [200, { namespace, key, deleted }];
      }
      return [200, { namespace, purged: await this.cache.purge(namespace) }];
    }
    if (req.method !== 'GET' || key !== '') {
      return adminError(405, 'GET /cache/<namespace>, or DELETE', 'AIGW_METHOD_NOT_ALLOWED');
    }
    return [200, { namespace, entries: await this.cache.count(namespace, Math.max(1, this.ttlMs)) }];
  }
}
