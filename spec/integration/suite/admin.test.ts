/**
 * The suite server's admin endpoint: loopback HTTP for operators. `/health` says whether the
 * store answers; `/targets` shows every breaker this node knows (filled by ai-fallback, see
 * spec/integration/fallback); anything else is a clear JSON error. A port already taken
 * does not stop the suite server.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { AdminRoutes } from '../../../lib/admin/routes';
import { type AdminOptions, type AdminServer, startAdmin } from '../../../lib/admin/server';
import { TargetHealth } from '../../../lib/health';
import { startSuiteServer } from '../../../lib/kong/suite-server';
import { createStore, MemoryStore, storeConfigFromEnv } from '../../../lib/store';
import { freePort } from '../../support/redis';
import { captureLogger } from '../../support/suite';

const target = {
  name: 'gpt',
  provider: 'openai' as const,
  model: 'gpt-4o-mini',
  base_url: 'https://api.openai.com/v1',
  api_key: 'sk-admin-secret-0123456789',
  headers: {},
  timeouts: { connect_ms: 1, first_byte_ms: 1, idle_ms: 1, total_ms: 1 },
};

let admin: AdminServer | undefined;
afterEach(async () => {
  await admin?.close();
  admin = undefined;
});

/** An admin endpoint on a free port, with what a test does not give made fresh. */
async function start(parts: Partial<AdminOptions> = {}): Promise<AdminServer> {
  const started = await startAdmin({
    routes: new AdminRoutes(),
    metrics: new Registry(),
    port: 0,
    health: new TargetHealth(),
    store: new MemoryStore(),
    logger: captureLogger().logger,
    ...parts,
  });
  admin = started;
  return started;
}

const get = async (path: string, method = 'GET') => {
  const res = await fetch(`http://127.0.0.1:${admin!.port}${path}`, { method });
  return {
    status: res.status,
    body: (await res.json()) as { data?: Array<Record<string, unknown>> } & Record<string, unknown>,
  };
};

it('GET /health: up, with the store reachable or not', async () => {
  const log = captureLogger();
  const first = await start({ logger: log.logger });
  expect(await get('/health')).toEqual({
    status: 200,
    body: expect.objectContaining({ status: 'ok', store: 'ok' }),
  });
  await first.close();

  const deadRedis = `redis://127.0.0.1:${await freePort()}/0`;
  const store = createStore(storeConfigFromEnv({ AIGW_STORE: deadRedis }), log.logger);
  await start({ store, logger: log.logger });
  expect((await get('/health')).body).toMatchObject({ status: 'ok', store: 'unreachable' });
  await store.close().catch(() => undefined);
});

it('GET /targets: each breaker by target, never its key', async () => {
  const health = new TargetHealth();
  await start({ health });
  expect((await get('/targets')).body).toEqual({ object: 'list', data: [] });
  const until = Date.now() + 60_000;
  health.update(target, 'open', until);
  const res = await get('/targets');
  expect(res.body.data).toEqual([
    {
      target: 'gpt',
      provider: 'openai',
      model: 'gpt-4o-mini',
      state: 'open',
      open_until: until,
      changed_at: expect.any(Number),
    },
  ]);
  expect(JSON.stringify(res.body)).not.toContain('sk-admin-secret');
  health.update(target, 'closed');
  expect((await get('/targets')).body.data?.[0]?.state).toBe('closed');
});

it('GET /metrics: the breaker state per target in Prometheus format', async () => {
  const health = new TargetHealth();
  const metrics = new Registry();
  health.exportTo(metrics);
  await start({ metrics, health });
  const scrape = async () => {
    const res = await fetch(`http://127.0.0.1:${admin!.port}/metrics`);
    expect(res.headers.get('content-type')).toContain('text/plain');
    return res.text();
  };
  health.update(target, 'open', Date.now() + 60_000);
  const line = 'aigw_target_breaker_state{target="gpt",provider="openai",model="gpt-4o-mini"}';
  expect(await scrape()).toContain(`${line} 2`);
  health.update(target, 'open', Date.now() - 1);
  expect(await scrape()).toContain(`${line} 1`);
  health.update(target, 'closed');
  const text = await scrape();
  expect(text).toContain(`${line} 0`);
  expect(text).not.toContain('sk-admin-secret');
});

it('an unknown path is a 404 and a write a 405, both as JSON errors', async () => {
  await start();
  expect(await get('/nope')).toEqual({
    status: 404,
    body: { error: expect.objectContaining({ code: 'AIGW_NOT_FOUND' }) },
  });
  expect((await get('/targets', 'DELETE')).status).toBe(405);
});

it('a port already taken: the suite server logs it and serves on without the admin endpoint', async () => {
  const taken = await start();
  const log = captureLogger();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aigw-admin-'));
  const server = await startSuiteServer({
    plugins: [],
    socketDir: dir,
    relayHost: '127.0.0.1',
    relayPort: 0,
    logger: log.logger,
    limits: { max_body_bytes: 1024, max_json_depth: 8 },
    env: { AIGW_STORE: 'memory' },
    admin: { port: taken.port },
  });
  try {
    expect(server.adminPort).toBeUndefined();
    expect(server.relayPort).toBeGreaterThan(0);
    expect(log.records().find((r) => r.msg === 'admin endpoint not started')?.err).toContain('EADDRINUSE');
  } finally {
    await server.close(0);
    rmSync(dir, { recursive: true, force: true });
  }
});
