import { Type } from '@sinclair/typebox';
import { type ConfigOf, definePluginConfig } from '../lib/config';

/** No fields yet: this plugin's policies and their settings arrive in later releases. */
export const budgetSchema = Type.Object({});

export type BudgetConfig = ConfigOf<typeof budgetSchema>;

export const budgetConfig = definePluginConfig({ name: 'ai-budget', schema: budgetSchema });
