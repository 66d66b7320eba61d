import type { RequestContext } from '../../lib/context';
import type { KongKeys } from '../../lib/kong/plugin';

/** Largest answer kept for the log line; a longer one is logged without its text. */
export const LOGGED_ANSWER_MAX_BYTES = 1024 * 1024;

/**
 * Which requests' answers ai-metrics logs. The relay records an answer only when asked before
 * the exchange, and ai-metrics has no policy to ask with (it works in the log phase), so each
 * instance registers its scope here, and the relay asks on its behalf as a context opens.
 * Kong runs the most specific instance of a plugin: route, then service, then global.
 * Kong starts an instance at its first event, the log phase of its first request: that one
 * request's answer is not logged.
 */
export class AnswerScopes {
  private readonly bytesByScope = new Map<string, number>();

  /** An instance's wish; 0 says the instance logs no answers (and overrides a wider one). */
  set(keys: KongKeys, maxBytes: number): void {
    this.bytesByScope.set(scopeOf(keys), maxBytes);
  }

  /** Applies the wish of the instance Kong will run for this request, if any. */
  prepare(ctx: RequestContext): void {
    const routeId = ctx.routeId ?? ctx.facts.routeId;
    const serviceId = ctx.serviceId ?? ctx.facts.serviceId;
    const bytes =
      (routeId !== undefined ? this.bytesByScope.get(`route:${routeId}`) : undefined) ??
      (serviceId !== undefined ? this.bytesByScope.get(`service:${serviceId}`) : undefined) ??
      this.bytesByScope.get('global');
    if (bytes) ctx.keepAnswer(bytes);
  }
}

function scopeOf(keys: KongKeys): string {
  if (keys.route_id) return `route:${keys.route_id}`;
  if (keys.service_id) return `service:${keys.service_id}`;
  return 'global';
}
