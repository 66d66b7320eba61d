import { CONTEXT_HEADER, ticketIds } from '../../lib/context';
import { definePlugin } from '../../lib/kong/plugin';
import { metricsConfig } from '../../schemas/ai-metrics';
import { buildLogRecord, type KongLogData } from './log-record';

/**
 * Observability in the log phase, after the answer has left: one PDK call,
 * `kong.log.serialize()`, gives Kong's view and the request headers, whose tickets find
 * the relay's context and outcome; then the tickets are dropped.
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
        const tickets = ticketIds(kongData.request?.headers?.[CONTEXT_HEADER]);
        const ctx = suite.contexts.find(tickets);
        suite.contexts.delete(tickets);
        // Requests that never reached the relay (refused by Kong or another plugin) are logged too.
        if (config.log_requests) {
          logger.info(buildLogRecord(ctx, kongData, config, event.roundTrips), 'ai request');
        }
      },
    };
  },
});
