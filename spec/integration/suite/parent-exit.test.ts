/**
 * Kong's worker 0 starts the suite server (ngx.pipe.spawn) and stops it with SIGTERM. A worker
 * killed outright (a crash, the OOM killer) cannot: its replacement starts a new suite server,
 * which needs the plugin sockets and the relay port. With --exit-with-parent (what kong-conf
 * writes into the start_cmd) the orphan notices and exits, though nobody reads its log output
 * any more; without it, it stays.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { installationRoot } from '../../../lib/kong/kong-conf';
import { until } from '../../support/eventually';
import { freePort } from '../../support/redis';

const MAIN = path.join(installationRoot(), 'dist', 'lib', 'kong', 'main.js');

let dir: string;
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'aigw-parent-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/**
 * A process standing in for Kong's worker: it starts the suite server with its output on a pipe
 * it holds (as ngx.pipe does), reports the server's pid, and never reads the pipe.
 */
async function startUnderParent(
  flags: string[],
): Promise<{ parent: ChildProcess; pid: number; relayPort: number }> {
  const relayPort = await freePort();
  const args = [MAIN, '--socket-dir', dir, '--relay-port', String(relayPort), ...flags];
  const parentCode = `
    const child = require('node:child_process').spawn(process.execPath, ${JSON.stringify(args)}, {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    console.log(child.pid);
    setInterval(() => {}, 1000);`;
  const parent = spawn(process.execPath, ['-e', parentCode], {
    env: { AIGW_STORE: 'memory', AIGW_ADMIN_PORT: 'off', AIGW_LOG_LEVEL: 'debug' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const pid = await new Promise<number>((resolve) =>
    parent.stdout!.once('data', (d) => resolve(Number(String(d).trim()))),
  );
  await until(
    () =>
      new Promise<true | undefined>((resolve) => {
        const s = net.connect(relayPort, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(undefined));
      }),
    'the relay to listen',
  );
  return { parent, pid, relayPort };
}

const portFree = (port: number) =>
  new Promise<boolean>((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });

it('with --exit-with-parent, a suite server whose parent was killed exits (its log pipe dead) and frees the relay port', async () => {
  const { parent, pid, relayPort } = await startUnderParent(['--exit-with-parent']);
  try {
    parent.kill('SIGKILL');
    await until(() => (alive(pid) ? undefined : true), 'the orphan to exit', 5_000);
    expect(await portFree(relayPort)).toBe(true);
  } finally {
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
}, 20_000);

it('without it, the orphan keeps running (what the flag is for)', async () => {
  const { parent, pid } = await startUnderParent([]);
  parent.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 1_500));
  expect(alive(pid)).toBe(true);
  process.kill(pid, 'SIGKILL');
}, 20_000);
