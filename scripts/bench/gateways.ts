/**
 * A gateway for a benchmark: the dev gateway (Kong emulator and suite server, in a child
 * process) or a real Kong 3.9.3 of the Kong lab, with a declarative config whose AI routes
 * point at the relay on `relayPort`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../spec/support/redis';
import { closeChild, forkChild } from './children';
import { KongLab, waitForLab } from './kong-lab';

const log = (line: string) => process.stderr.write(`${line}\n`);

/** Where part 1 runs: the dev gateway, or a real Kong of the Kong lab. */
export type GatewayKind = { kind: 'dev' } | { kind: 'kong'; lab: string; scripts: string };

export interface RunningGateway {
  origin: string;
  close(): Promise<void>;
}

export async function startGateway(
  kind: GatewayKind,
  config: object,
  relayPort: number,
  env: Record<string, string>,
): Promise<RunningGateway> {
  if (kind.kind === 'dev') {
    const port = await freePort();
    const started = await forkChild('gateway-process.js', { type: 'start', config, port, relayPort, env });
    return { origin: `http://127.0.0.1:${port}`, close: () => closeChild(started.child) };
  }
  if (!(await waitForLab(kind.lab, 900, log))) throw new Error('the Kong lab stayed busy');
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'aigw-bench-cache-'));
  const kong = await KongLab.start({
    lab: kind.lab,
    scripts: kind.scripts,
    workDir,
    socketDir: path.join(workDir, 'sockets'),
    proxyPort: await freePort(),
    adminPort: await freePort(),
    declarative: config,
    serverEnv: { ...env, AIGW_RELAY_PORT: String(relayPort) },
    log,
  });
  return {
    origin: kong.url,
    close: async () => {
      await kong.stop();
      rmSync(workDir, { recursive: true, force: true });
    },
  };
}
