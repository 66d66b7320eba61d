import { Type } from '@sinclair/typebox';
import { type ConfigOf, definePluginConfig } from '../lib/config';

export const metricsSchema = Type.Object({
  log_requests: Type.Boolean({
    default: true,
    description: 'Write one structured JSON line per request: target, model, tokens, latency and outcome.',
  }),
  log_consumer: Type.Boolean({
    default: false,
    description: 'Include the Kong consumer id in the per-request log line.',
  }),
});

export type MetricsConfig = ConfigOf<typeof metricsSchema>;

export const metricsConfig = definePluginConfig({ name: 'ai-metrics', schema: metricsSchema });
