import { definePlugin } from '../../lib/kong/plugin';
import { routerConfig } from '../../schemas/ai-router';
import { resolveTargets, TargetTable } from './targets';

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
    const table = new TargetTable(
      resolveTargets(config, process.env),
      config.default_target ?? undefined,
      config.headers.enabled,
      suite.health,
    );
    return {
      request(ctx) {
        if (ctx.endpoint === 'models') return { status: 200, body: table.modelList() };
        ctx.route = table.route(ctx.model);
        return undefined;
      },
    };
  },
});
