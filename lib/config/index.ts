export * from './define';
export { type DocumentedPlugin, embedConfigInReadme, renderConfigDocs } from './docs';
export * from './errors';
export type { KongField, KongFieldEntry, KongPluginSchema } from './kong-schema';
export { SchemaDefinitionError } from './model';
export { type KongKeys, splitKongKeys } from './validate';
