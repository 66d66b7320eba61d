/** Jest globalTeardown: stops the redis-server that global-setup.ts started, if it started one. */
import { rmSync } from 'node:fs';

const STOP_TIMEOUT_MS = 5_000;

export default async function globalTeardown(): Promise<void> {
  const pid = Number(process.env.AIGW_TEST_REDIS_PID);
  const dir = process.env.AIGW_TEST_REDIS_DIR;
  if (Number.isInteger(pid) && pid > 0) {
    signal(pid, 'SIGTERM');
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (isAlive(pid)) signal(pid, 'SIGKILL');
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
  delete process.env.AIGW_TEST_REDIS_URL;
  delete process.env.AIGW_TEST_REDIS_PID;
  delete process.env.AIGW_TEST_REDIS_DIR;
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Already gone.
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
