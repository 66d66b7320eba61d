import { budgetConfig } from './ai-budget';
import { fallbackConfig } from './ai-fallback';
import { metricsConfig } from './ai-metrics';
import { routerConfig } from './ai-router';
import { semanticCacheConfig } from './ai-semantic-cache';

export * from './ai-budget';
export * from './ai-fallback';
export * from './ai-metrics';
export * from './ai-router';
export * from './ai-semantic-cache';

/** Every plugin's config definition, by plugin name, in the order Kong runs their access phases. */
export const pluginConfigs = {
  'ai-semantic-cache': semanticCacheConfig,
  'ai-router': routerConfig,
  'ai-budget': budgetConfig,
  'ai-fallback': fallbackConfig,
  'ai-metrics': metricsConfig,
} as const;

export type PluginName = keyof typeof pluginConfigs;
