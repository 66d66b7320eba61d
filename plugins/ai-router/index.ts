import type { RequestContext, RouteDecision } from '../../lib/context';
import { gatherFacts } from '../../lib/kong/facts';
import { definePlugin } from '../../lib/kong/plugin';
import { headerSafe } from '../../lib/relay/headers';
import { routerConfig } from '../../schemas/ai-router';
import type { Requester } from './policy';
import { closeRouting, createRouting, decide, modelList } from './routing';

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
    const routing = createRouting(config, {
      ...suite,
      logger: suite.logger.child({ plugin: 'ai-router' }),
    });
    const needs = {
      consumer:
        config.access.length > 0 ||
        (config.residency?.consumers.length ?? 0) > 0 ||
        (config.tasks?.premium?.consumer_tags.length ?? 0) > 0 ||
        config.experiments.some((e) => e.sticky_by === 'consumer') ||
        // Feedback: only the consumer who made a request may rate it.
        config.quality.feedback.enabled,
      credential: config.experiments.some((e) => e.sticky_by === 'credential'),
    };

    return {
      ...(needs.consumer || needs.credential ? { gather: (pdk) => gatherFacts(pdk, needs) } : {}),
      async request(ctx) {
        const who: Requester = {
          consumer: ctx.facts.consumer,
          groups: ctx.consumerGroups,
        };
        if (ctx.endpoint === 'models') return { status: 200, body: modelList(routing, who) };
        if (ctx.endpoint === 'feedback') return routing.signals.answerFeedback(ctx);
        ctx.route = { ...(await decide(ctx, routing, who)), exposeTarget: config.headers.enabled };
        if (config.headers.enabled) setHeaders(ctx, ctx.route);
        return undefined;
      },
      close: () => closeRouting(routing),
    };
  },
});

function setHeaders(ctx: RequestContext, route: RouteDecision): void {
  const reason = headerSafe(route.reason);
  if (reason !== undefined) ctx.responseHeaders['x-ai-route-reason'] = reason;
  if (route.task !== undefined) ctx.responseHeaders['x-ai-task'] = route.task;
  if (route.experiment)
    ctx.responseHeaders['x-ai-experiment'] = `${route.experiment.name}=${route.experiment.arm}`;
}
