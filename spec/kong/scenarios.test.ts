/**
 * The e2e scenarios of spec/e2e/scenarios.ts against a real Kong 3.9.3 (the kong-lab build):
 * `npm run test:kong`. Not part of `npm test` (jest.config.js ignores spec/kong).
 */
import { describeGatewayScenarios } from '../e2e/scenarios';
import { KONG_START_TIMEOUT_MS, kongVersion, startKongGateway } from './support';

// Each start may wait for the shared lab (KONG_LAB_WAIT_S) before Kong's own few seconds.
describeGatewayScenarios(`real Kong ${kongVersion()}`, startKongGateway, {
  timeoutMs: KONG_START_TIMEOUT_MS,
});
