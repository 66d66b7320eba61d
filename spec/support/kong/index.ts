/** Kong 3.9 emulator for tests and the dev gateway: see driver.ts. */
export { DeclarativeConfigError, type DeclarativeIssue, type KongConfig } from './declarative';
export {
  type DriverRequest,
  type DriverResponse,
  KongDriver,
  type KongDriverOptions,
  type KongLogLine,
  type RequestStats,
} from './driver';
export type { PluginTrace } from './external-plugin';
export { type PluginServerDef, PluginServerStartError } from './plugin-servers';
