import { CONTEXT_HEADER, ticketIds } from '../../lib/context';
import { definePlugin, type Suite } from '../../lib/kong/plugin';
import { metricsConfig } from '../../schemas/ai-metrics';
import { AnswerScopes, LOGGED_ANSWER_MAX_BYTES } from './answer-scopes';
import { ContentLog } from './content';
import { buildLogRecord, type KongLogData, requestSpan } from './log-record';
import { measureRequest, RequestMetrics } from './metrics';
import { PromptPatterns, promptText } from './patterns';
import { logSinkFor } from './sinks';
import { tracerFor } from './traces';

/** Per suite, shared by every ai-metrics instance: the metric families, whose answers to keep, prompt patterns. */
const perSuite = new WeakMap<
  Suite,
  { metrics: RequestMetrics; answers: AnswerScopes; patterns: PromptPatterns }
>();

/** Templates kept per route when an instance says nothing else: the schema's default. */
const DEFAULT_TOP_K = metricsConfig.validate({}).config.prompt_patterns.top_k;

function shared(suite: Suite) {
  let state = perSuite.get(suite);
  if (!state) {
    const answers = new AnswerScopes();
    suite.contexts.whenOpened((ctx) => answers.prepare(ctx));
    const patterns = new PromptPatterns({ topK: DEFAULT_TOP_K });
    patterns.exportTo(suite.metrics);
    suite.admin.add('patterns', patterns.handle);
    state = { metrics: new RequestMetrics(suite.metrics), answers, patterns };
    perSuite.set(suite, state);
  }
  return state;
}

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
  create(config, keys, suite) {
    const { metrics, answers, patterns } = shared(suite);
    const sink = logSinkFor(suite, config.log_sink);
    const tracer = tracerFor(suite, config.traces);
    const content = new ContentLog(config.content);
    answers.set(keys, config.log_requests && config.content.answers ? LOGGED_ANSWER_MAX_BYTES : 0);
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
        if (config.prompt_patterns.enabled && measure.labels.route) {
          const text = promptText(ctx?.endpoint, ctx?.body);
          if (text !== undefined) patterns.observe(measure.labels.route, text, config.prompt_patterns.top_k);
        }
        if (!config.log_requests && !tracer) return;
        const record = buildLogRecord(ctx, kongData, measure, config);
        tracer?.record(requestSpan(record, kongData));
        if (config.log_requests) {
          Object.assign(record, content.fields(ctx?.endpoint, ctx?.body, ctx?.outcome?.answer));
          sink.write(record);
        }
      },
    };
  },
});
