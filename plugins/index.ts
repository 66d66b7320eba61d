import type { SuitePlugin } from '../lib/kong/plugin';
import aiBudget from './ai-budget';
import aiFallback from './ai-fallback';
import aiMetrics from './ai-metrics';
import aiRouter from './ai-router';
import aiSemanticCache from './ai-semantic-cache';

/** Every suite plugin, in Kong's run order (priority, highest first). */
export const suitePlugins: readonly SuitePlugin[] = [
  aiSemanticCache,
  aiRouter,
  aiBudget,
  aiFallback,
  aiMetrics,
];
