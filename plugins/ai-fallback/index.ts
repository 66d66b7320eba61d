import { definePlugin } from '../../lib/kong/plugin';
import { fallbackConfig } from '../../schemas/ai-fallback';

/**
 * Failover chains, breakers and deadlines. Priority 730: after ai-budget, so a chain is only
 * planned for admitted requests. This release registers the plugin and its (empty) config;
 * it declares no phase yet, so Kong makes no call to it and it costs nothing per request.
 */
export default definePlugin({
  config: fallbackConfig,
  priority: 730,
  phases: [],
  create: () => ({}),
});
