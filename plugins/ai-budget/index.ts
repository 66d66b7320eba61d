import { definePlugin } from '../../lib/kong/plugin';
import { budgetConfig } from '../../schemas/ai-budget';

/**
 * Token and cost caps. Priority 740: after ai-router (the reservation prices the chosen
 * target), before ai-fallback. This release registers the plugin and its (empty) config;
 * it declares no phase yet, so Kong makes no call to it and it costs nothing per request.
 */
export default definePlugin({
  config: budgetConfig,
  priority: 740,
  phases: [],
  create: () => ({}),
});
