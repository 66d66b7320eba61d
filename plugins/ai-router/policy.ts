import type { KongFacts, Target } from '../../lib/context';
import { GatewayError } from '../../lib/errors';
import type { RouterConfig } from '../../schemas/ai-router';

/** Who is asking, as the policies match it. */
export interface Requester {
  consumer?: KongFacts['consumer'];
  /** Consumer groups (Kong's ACL plugin sets `x-consumer-groups`). */
  groups: readonly string[];
}

interface WhoRule {
  readonly consumers: readonly string[];
  readonly consumer_tags: readonly string[];
  readonly groups: readonly string[];
}

/** Does a rule naming consumers (by username or id), tags or groups cover this requester? */
export function covers(rule: WhoRule, who: Requester): boolean {
  const c = who.consumer;
  if (
    c &&
    (rule.consumers.includes(c.id) || (c.username !== undefined && rule.consumers.includes(c.username)))
  ) {
    return true;
  }
  if (c?.tags?.some((t) => rule.consumer_tags.includes(t))) return true;
  return who.groups.some((g) => rule.groups.includes(g));
}

/**
 * Model allow-lists. With no rule, every model is allowed; with rules, a requester may use
 * the models of the rules that cover it (none: nothing). `names` are what the request asked
 * for: the client's string and the pool or target it maps to; listing either allows it.
 */
export function checkAccess(rules: RouterConfig['access'], who: Requester, names: readonly string[]): void {
  if (rules.length === 0) return;
  for (const rule of rules) {
    if (!covers(rule, who)) continue;
    if (rule.models.includes('*') || names.some((n) => rule.models.includes(n))) return;
  }
  throw new GatewayError('AIGW_MODEL_NOT_ALLOWED', 'you are not allowed to use this model', {
    param: 'model',
  });
}

/**
 * The regions a request may be served from: the route's, narrowed by every consumer rule that
 * covers the requester, narrowed by the client's header. Undefined: no residency rule applies.
 * The client's header can only narrow: a region it names that is not otherwise allowed is ignored.
 */
export function allowedRegions(
  residency: RouterConfig['residency'],
  who: Requester,
  header: (name: string) => string | undefined,
): ReadonlySet<string> | undefined {
  if (!residency) return undefined;
  let allowed: Set<string> | undefined =
    residency.regions.length > 0 ? new Set(residency.regions) : undefined;
  const narrow = (regions: readonly string[]) => {
    allowed = allowed ? new Set(regions.filter((r) => allowed!.has(r))) : new Set(regions);
  };
  for (const rule of residency.consumers) if (covers(rule, who)) narrow(rule.regions);
  const asked = residency.header ? header(residency.header) : undefined;
  if (asked !== undefined) {
    narrow(
      asked
        .split(',')
        .map((r) => r.trim())
        .filter((r) => r.length > 0),
    );
  }
  return allowed;
}

/** A target may serve a request restricted to `regions` only when its region is among them. */
export function inRegions(target: Target, regions: ReadonlySet<string> | undefined): boolean {
  return regions === undefined || (target.region !== undefined && regions.has(target.region));
}
