import { Type } from '@sinclair/typebox';
import { type ConfigOf, definePluginConfig } from '../lib/config';

/** No fields yet: this plugin's policies and their settings arrive in later releases. */
export const fallbackSchema = Type.Object({});

export type FallbackConfig = ConfigOf<typeof fallbackSchema>;

export const fallbackConfig = definePluginConfig({ name: 'ai-fallback', schema: fallbackSchema });
