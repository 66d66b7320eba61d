/**
 * Jest globalSetup: one redis-server for the whole run, its URL in AIGW_TEST_REDIS_URL.
 * globalSetup runs in jest's main process before the workers start, so the workers inherit
 * the variable; the pid and temp dir travel the same way to global-teardown.ts.
 * When AIGW_TEST_REDIS_URL is already set (a CI service, a developer's own Redis), that
 * server is used and left alone.
 */
import { findRedisServer, startRedis } from './redis';

export default async function globalSetup(): Promise<void> {
  if (process.env.AIGW_TEST_REDIS_URL) return;
  findRedisServer(); // fails the run at once, with install instructions, when it is missing
  const server = await startRedis();
  process.env.AIGW_TEST_REDIS_URL = server.url;
  process.env.AIGW_TEST_REDIS_PID = String(server.pid);
  process.env.AIGW_TEST_REDIS_DIR = server.dir;
}
