import { CONTEXT_HEADER } from '../../lib/context';
import { definePlugin } from '../../lib/kong/plugin';
import { metricsConfig } from '../../schemas/ai-metrics';
import { buildLogRecord, type KongLogData } from './log-record';

/**
 * Observability in the log phase, after the answer has left: one PDK call,
 * `kong.log.serialize()`, gives Kong's view and the request headers, whose context header
 * finds the relay's outcome; then the context is dropped.
 * Priority 720: the last of the suite (log handlers run after the response anyway).
 */
export default definePlugin({
  config: metricsConfig,
  priority: 720,
  phases: ['log'],
  create(config, _keys, suite) {
    const logger = suite.logger.child({ plugin: 'ai-metrics' });
    return {
      async log(kong, event) {
        const kongData = JSON.parse(await kong.log.serialize()) as KongLogData;
        const ctx = suite.contexts.get(firstValue(kongData.request?.headers?.[CONTEXT_HEADER]));
        if (ctx) suite.contexts.delete(ctx.id);
        // Requests refused before a context existed (bad input) are logged too.
        if (config.log_requests) {
          logger.info(buildLogRecord(ctx, kongData, config, event.roundTrips), 'ai request');
        }
      },
    };
  },
});

function firstValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
