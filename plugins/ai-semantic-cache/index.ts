import { definePlugin } from '../../lib/kong/plugin';
import { semanticCacheConfig } from '../../schemas/ai-semantic-cache';

/**
 * Exact and semantic answers for repeated prompts. Priority 760: the first of the suite, so
 * a hit spends no routing or budget work, yet after auth/ACL (the tenant is known) and after
 * Kong's AI prompt plugins (771–777, the cached prompt is the final one). This release
 * registers the plugin and its (empty) config; it declares no phase yet, so Kong makes no
 * call to it and it costs nothing per request.
 */
export default definePlugin({
  config: semanticCacheConfig,
  priority: 760,
  phases: [],
  create: () => ({}),
});
