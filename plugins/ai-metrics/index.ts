import { CONTEXT_HEADER, ticketIds } from '../../lib/context';
import { definePlugin, type Suite } from '../../lib/kong/plugin';
import { metricsConfig } from '../../schemas/ai-metrics';
import { ContentLog } from './content';
import { buildLogRecord, type KongLogData } from './log-record';
import { measureRequest, RequestMetrics } from './metrics';

/** One set of metric families per suite, shared by every ai-metrics instance. */
const metricsOf = new WeakMap<Suite, RequestMetrics>();

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
    let metrics = metricsOf.get(suite);
    if (!metrics) {
      metrics = new RequestMetrics(suite.metrics);
      metricsOf.set(suite, metrics);
    }
    const content = new ContentLog(config.content);
    return {
      async log(kong, event) {
        const kongData = JSON.parse(await kong.log.serialize()) as KongLogData;
        const tickets = ticketIds(kongData.request?.headers?.[CONTEXT_HEADER]);
        const ctx = suite.contexts.find(tickets);
        suite.contexts.delete(tickets);
        // Requests that never reached the relay (refused by Kong or another plugin) count too.
        const measure = measureRequest(ctx, kongData, {
          consumerLabel: config.consumer_label,
          logRoundTrips: event.roundTrips,
        });
        if (config.metrics) metrics.record(measure);
        if (config.log_requests) {
          const record = buildLogRecord(ctx, kongData, measure, config);
          Object.assign(record, content.fields(ctx?.endpoint, ctx?.body, ctx?.outcome?.answer));
          logger.info(record, 'ai request');
        }
      },
    };
  },
});
