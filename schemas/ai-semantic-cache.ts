import { Type } from '@sinclair/typebox';
import { type ConfigOf, definePluginConfig } from '../lib/config';

/** No fields yet: this plugin's policies and their settings arrive in later releases. */
export const semanticCacheSchema = Type.Object({});

export type SemanticCacheConfig = ConfigOf<typeof semanticCacheSchema>;

export const semanticCacheConfig = definePluginConfig({
  name: 'ai-semantic-cache',
  schema: semanticCacheSchema,
});
