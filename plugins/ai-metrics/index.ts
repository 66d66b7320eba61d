import { CONTEXT_SHARED_KEY } from '../../lib/context';
import { definePlugin } from '../../lib/kong/plugin';
import { metricsConfig } from '../../schemas/ai-metrics';
import { buildLogRecord, type KongLogData } from './log-record';

/**
 * Observability in the log phase, after the answer has left: reads the relay's outcome from
 * the request context and Kong's view from `kong.log.serialize()`, then drops the context.
 * Priority 720: the last of the suite (log handlers run after the response anyway).
 */
export default definePlugin({
  config: metricsConfig,
  priority: 720,
  phases: ['log'],
  create(config, _keys, suite) {
    const logger = suite.logger.child({ plugin: 'ai-metrics' });
    return {
      async log(kong) {
        const ctx = suite.contexts.get(await kong.ctx.shared.get(CONTEXT_SHARED_KEY));
        try {
          if (!config.log_requests) return;
          const kongData = JSON.parse(await kong.log.serialize()) as KongLogData;
          logger.info(buildLogRecord(ctx, kongData, config), 'ai request');
        } finally {
          if (ctx) suite.contexts.delete(ctx.id);
        }
      },
    };
  },
});
