/**
 * End to end, as a user runs it: the dev gateway (Kong emulator → real suite server process
 * → relay → provider mock) and the official `openai` client. Needs the build (`npm test`
 * runs it first). The scenarios live in scenarios.ts; `npm run test:kong` runs the same ones
 * against a real Kong (spec/kong/).
 */
import { startDevGateway } from '../../scripts/dev-gateway';
import { freePort } from '../support/redis';
import { describeGatewayScenarios, type StartGateway } from './scenarios';

const startDev: StartGateway = async (_mock, env, config) => {
  const relayPort = await freePort();
  const gateway = await startDevGateway({
    config: config(relayPort),
    port: await freePort(),
    relayPort,
    mock: false,
    env: { ...process.env, ...env },
  });
  const pid = () => {
    const p = gateway.kong.pluginServers.pid('ai-router');
    if (p === undefined) throw new Error('the emulator runs no suite server right now');
    return p;
  };
  return {
    url: gateway.url,
    kind: 'dev',
    suiteServerPid: pid,
    diagnostics: () => gateway.kong.pluginServers.outputText().split('\n').slice(-30).join('\n'),
    close: () => gateway.close(),
  };
};

describeGatewayScenarios('e2e: the dev gateway', startDev);
