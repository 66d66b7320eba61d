import type { RequestContext, RouteDecision } from '../../lib/context';
import { GatewayError } from '../../lib/errors';
import { gatherFacts } from '../../lib/kong/facts';
import { definePlugin } from '../../lib/kong/plugin';
import { headerSafe } from '../../lib/relay/headers';
import { type RouterConfig, routerConfig } from '../../schemas/ai-router';
import { allowedRegions, checkAccess, groupsOf, type Requester } from './policy';
import { Router } from './router';
import { resolveTargets } from './targets';

/**
 * Chooses the target of every request. Priority 750: after Kong's auth (key-auth 1250),
 * ACL (950), rate limiting (910) and AI prompt plugins (ai-prompt-* 771–777, so it routes
 * the final prompt), after ai-semantic-cache (a hit needs no route), before ai-budget (which
 * prices the chosen target).
 */
export default definePlugin({
  config: routerConfig,
  priority: 750,
  phases: ['access'],
  create(config, _keys, suite) {
    const router = new Router(config, resolveTargets(config, process.env), {
      health: suite.health,
      load: suite.load,
    });
    const needs = { consumer: usesConsumer(config) };

    return {
      ...(needs.consumer ? { gather: (pdk) => gatherFacts(pdk, needs) } : {}),
      request(ctx) {
        const who: Requester = {
          consumer: ctx.facts.consumer,
          groups: groupsOf(ctx.header('x-consumer-groups')),
        };
        if (ctx.endpoint === 'models') return { status: 200, body: modelList(config, router, who) };
        const decision = decide(ctx, config, router, who);
        ctx.route = { ...decision, exposeTarget: config.headers.enabled };
        if (config.headers.enabled) setHeaders(ctx, ctx.route);
        return undefined;
      },
    };
  },
});

/** The client's model → access check → pool or target → filters, health, strategy. */
function decide(
  ctx: RequestContext,
  config: RouterConfig,
  router: Router,
  who: Requester,
): Omit<RouteDecision, 'exposeTarget'> {
  const requested = ctx.model;
  const mapped =
    requested !== undefined && Object.hasOwn(config.model_map, requested)
      ? config.model_map[requested]
      : undefined;
  let name = mapped ?? requested;
  const reasons: string[] = mapped !== undefined ? [`mapped to ${mapped}`] : [];
  if (name === undefined || !router.knows(name)) {
    if (config.default_target === undefined) {
      if (requested === undefined)
        throw new GatewayError('AIGW_BAD_REQUEST', "'model' is required", { param: 'model' });
      throw new GatewayError(
        'AIGW_UNKNOWN_MODEL',
        'the requested model is not served here; GET /v1/models lists the models you can use',
        { param: 'model' },
      );
    }
    name = config.default_target;
    reasons.push('default target');
  }
  checkAccess(config.access, who, requested !== undefined ? [requested, name] : [name]);
  const regions = allowedRegions(config.residency, who, (h) => ctx.header(h));
  const decision = router.route(name, {
    endpoint: ctx.endpoint ?? 'chat.completions',
    body: ctx.body,
    regions,
  });
  return { ...decision, reason: [...reasons, decision.reason].join('; ') };
}

function setHeaders(ctx: RequestContext, route: RouteDecision): void {
  const reason = headerSafe(route.reason);
  if (reason !== undefined) ctx.responseHeaders['x-ai-route-reason'] = reason;
  if (route.task !== undefined) ctx.responseHeaders['x-ai-task'] = route.task;
  if (route.experiment)
    ctx.responseHeaders['x-ai-experiment'] = `${route.experiment.name}=${route.experiment.arm}`;
}

/** `GET /v1/models`: what this client may put in `model`. */
function modelList(config: RouterConfig, router: Router, who: Requester) {
  const names = [...router.names(), ...Object.keys(config.model_map)].filter((name) => {
    try {
      checkAccess(config.access, who, [name, config.model_map[name] ?? name]);
      return true;
    } catch {
      return false;
    }
  });
  const owner = new Map(config.targets.map((t) => [t.name, t.provider]));
  return {
    object: 'list',
    data: [...new Set(names)].map((id) => ({
      id,
      object: 'model',
      created: 0,
      owned_by: owner.get(id) ?? 'ai-gateway',
    })),
  };
}

function usesConsumer(config: RouterConfig): boolean {
  return config.access.length > 0 || (config.residency?.consumers.length ?? 0) > 0;
}
