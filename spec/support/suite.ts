/**
 * Helpers for spec/integration/suite: the real suite server driven by the Kong emulator,
 * either in this process (`startInProcess`: startSuiteServer + externally managed sockets)
 * or as the process Kong starts (`startRealProcess`: pluginServerDefs with start_cmd, built
 * dist/ required: `npx tsc -p .`).
 */

import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ticketIds } from '../../lib/context';
import { pluginServerDefs } from '../../lib/kong/kong-conf';
import { pluginInfo, type SuitePlugin } from '../../lib/kong/plugin';
import type { PluginServerOptions } from '../../lib/kong/plugin-server';
import { type SuiteServer, startSuiteServer } from '../../lib/kong/suite-server';
import { createLogger, type Logger } from '../../lib/log/logger';
import { suitePlugins } from '../../plugins';
import { type DriverResponse, KongDriver, type KongDriverOptions, type PluginServerDef } from './kong';
import { freePort } from './redis';

export const ROOT = path.resolve(__dirname, '../..');
export const MAIN_JS = path.join(ROOT, 'dist', 'lib', 'kong', 'main.js');
/** The fixture plugins as built by tsc, preloaded into main.js with NODE_OPTIONS=--require. */
export const FIXTURES_JS = path.join(ROOT, 'dist', 'spec', 'support', 'fixtures', 'suite-plugins.js');

/** Fails with the fix when dist/ is missing (the process tests run what Kong would start). */
export function requireBuild(): void {
  for (const file of [MAIN_JS, FIXTURES_JS]) {
    if (!existsSync(file)) throw new Error(`${file} is missing: run \`npx tsc -p .\` first`);
  }
}

/** A short temp dir (Unix socket paths are limited to ~107 bytes). */
export function tempDir(prefix = 'aigw-s-'): { dir: string; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface CapturedLog {
  logger: Logger;
  /** Raw JSON lines as pino wrote them (after redaction). */
  readonly lines: string[];
  records(): Array<Record<string, unknown>>;
  text(): string;
}

/** A real pino logger (with the suite's redaction) writing into memory. */
export function captureLogger(level = 'debug'): CapturedLog {
  const lines: string[] = [];
  const logger = createLogger({ level, destination: { write: (line: string) => void lines.push(line) } });
  return {
    logger,
    lines,
    records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
    text: () => lines.join(''),
  };
}

/**
 * kong.conf entry for an externally managed socket in `dir`: no start_cmd, and a query_cmd
 * that prints `[pluginInfo(plugin)]` (written to a file now, printed by /bin/cat, as Kong
 * runs query commands with an empty environment).
 */
export function externalDef(dir: string, plugin: SuitePlugin): PluginServerDef {
  const info = path.join(dir, `${plugin.name}.info.json`);
  writeFileSync(info, `${JSON.stringify([pluginInfo(plugin)])}\n`);
  return { name: plugin.name, socket: path.join(dir, `${plugin.name}.sock`), query_cmd: `/bin/cat ${info}` };
}

export interface PluginEntry {
  name: string;
  config?: Record<string, unknown>;
}

export interface RouteSpec {
  name: string;
  /** Path prefix, e.g. `/a` serves `/a/v1/chat/completions`. */
  path: string;
  plugins: PluginEntry[];
  /** The route's service URL; default the relay. */
  upstream?: string;
}

/** DB-less kong.yml: per route a service (the relay unless told) and the route's plugins. */
export function declarativeFor(relayPort: number, routes: RouteSpec[], consumers: object[] = []) {
  return {
    _format_version: '3.0',
    ...(consumers.length > 0 ? { consumers } : {}),
    services: routes.map((r) => ({
      name: `svc-${r.name}`,
      url: r.upstream ?? `http://127.0.0.1:${relayPort}`,
      read_timeout: 600_000,
      routes: [
        {
          name: r.name,
          paths: [r.path],
          strip_path: false,
          plugins: r.plugins.map((p) => (p.config ? { name: p.name, config: p.config } : { name: p.name })),
        },
      ],
    })),
  };
}

/**
 * A loopback HTTP proxy between Kong and the relay that records the context id of every
 * request it forwards (what the relay receives in `x-aigw-context`).
 */
export async function startTap(targetPort: number): Promise<{
  url: string;
  contextIds: string[];
  close(): Promise<void>;
}> {
  const contextIds: string[] = [];
  const server = http.createServer((req, res) => {
    contextIds.push(...ticketIds(req.headers['x-aigw-context']));
    const upstream = http.request(
      { host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    contextIds,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** An ai-router config with one target per entry of `targets` (name = model). */
export function routerConfig(
  baseUrl: string,
  targets: Array<{ name: string; model?: string } & Record<string, unknown>>,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    targets: targets.map((t) => ({ model: t.name, base_url: baseUrl, ...t })),
    ...extra,
  };
}

export const chatBody = (extra: Record<string, unknown> = {}) => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'Say hello' }],
  ...extra,
});

export function postChat(
  kong: KongDriver,
  prefix: string,
  body: unknown = chatBody(),
  headers: Record<string, string> = {},
): Promise<DriverResponse> {
  return kong.request({
    method: 'POST',
    path: `${prefix}/v1/chat/completions`,
    headers,
    body: body as object,
  });
}

/** Asserts the OpenAI error shape and returns the error object. */
export function openAIError(res: DriverResponse): {
  message: string;
  type: string;
  code: string;
  param: unknown;
} {
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  const body = res.json<{ error: { message: string; type: string; code: string; param: unknown } }>();
  expect(Object.keys(body)).toEqual(['error']);
  expect(body.error).toEqual(
    expect.objectContaining({
      message: expect.any(String),
      type: expect.any(String),
      code: expect.any(String),
    }),
  );
  return body.error;
}

export { until } from './eventually';

// ------------------------------------------------------------------ in-process

export interface InProcessOptions {
  /** Plugins served (default: the five suite plugins). */
  plugins?: readonly SuitePlugin[];
  routes(relayPort: number): RouteSpec[];
  pluginServer?: Partial<PluginServerOptions>;
  limits?: { max_body_bytes: number; max_json_depth: number };
  /** Kong's environment (vault references). */
  env?: Record<string, string>;
  /** The suite server's environment (api_key_env, AIGW_STORE...). */
  serverEnv?: NodeJS.ProcessEnv;
  /** Kong consumers (kong.yml `consumers`, with keyauth_credentials). */
  consumers?: object[];
}

export interface InProcess {
  kong: KongDriver;
  server: SuiteServer;
  log: CapturedLog;
  dir: string;
  relayPort: number;
  /** Closes the suite server and starts a new one on the same sockets and relay port. */
  restartServer(): Promise<SuiteServer>;
  close(): Promise<void>;
}

/** startSuiteServer on sockets in a temp dir, and a KongDriver with externally managed defs. */
export async function startInProcess(options: InProcessOptions): Promise<InProcess> {
  const plugins = options.plugins ?? suitePlugins;
  const sockets = tempDir();
  const log = captureLogger();
  const relayPort = await freePort();
  const start = () =>
    startSuiteServer({
      plugins,
      socketDir: sockets.dir,
      relayHost: '127.0.0.1',
      relayPort,
      logger: log.logger,
      limits: options.limits ?? { max_body_bytes: 10 * 1024 * 1024, max_json_depth: 64 },
      env: options.serverEnv ?? { AIGW_STORE: 'memory' },
      pluginServer: options.pluginServer,
      admin: { port: 0 },
    });
  let server = await start();
  let kong: KongDriver;
  try {
    kong = await KongDriver.start({
      pluginServers: plugins.map((p) => externalDef(sockets.dir, p)),
      declarative: declarativeFor(relayPort, options.routes(relayPort), options.consumers),
      env: options.env,
    });
  } catch (err) {
    await server.close(0);
    sockets.remove();
    throw err;
  }
  const handle: InProcess = {
    kong,
    server,
    log,
    dir: sockets.dir,
    relayPort,
    async restartServer() {
      await server.close(1_000);
      server = await start();
      handle.server = server;
      return server;
    },
    async close() {
      await kong.close();
      await server.close(1_000);
      sockets.remove();
    },
  };
  return handle;
}

// ------------------------------------------------------------------ real process

export interface RealProcessOptions {
  routes(relayPort: number): RouteSpec[];
  /** Default: a free port. */
  relayPort?: number;
  /** Extra suite server environment (AIGW_MAX_BODY_BYTES...), passed through /usr/bin/env. */
  serverEnv?: Record<string, string>;
  /** Kong's environment (vault references). */
  env?: Record<string, string>;
  /** Also serve the fixture plugins of spec/support/fixtures/suite-plugins.ts. */
  fixtures?: readonly SuitePlugin[];
  driver?: Partial<KongDriverOptions>;
}

export interface RealProcess {
  kong: KongDriver;
  dir: string;
  relayPort: number;
  /** What the suite server wrote (stdout and stderr), as Kong would copy it into its log. */
  output(): string;
  pid(): number;
  close(): Promise<void>;
}

/**
 * dist/lib/kong/main.js started by the driver as Kong would (kong.conf lines from
 * pluginServerDefs, start_cmd on the first entry). Fixture plugins are preloaded with
 * NODE_OPTIONS=--require, each with its own externally managed socket of that same process.
 */
export async function startRealProcess(options: RealProcessOptions): Promise<RealProcess> {
  requireBuild();
  const sockets = tempDir();
  const relayPort = options.relayPort ?? (await freePort());
  const fixtures = options.fixtures ?? [];
  const fixtureEnv: Record<string, string> = fixtures.length
    ? { NODE_OPTIONS: `--require ${FIXTURES_JS}`, AIGW_TEST_FIXTURE_PLUGINS: '1' }
    : {};
  const serverEnv = {
    AIGW_RELAY_PORT: String(relayPort),
    AIGW_ADMIN_PORT: '0',
    AIGW_STORE: 'memory',
    AIGW_LOG_LEVEL: 'debug',
    ...fixtureEnv,
    ...(options.serverEnv ?? {}),
  };
  const defs = pluginServerDefs({
    socketDir: sockets.dir,
    node: process.execPath,
    root: ROOT,
    env: serverEnv,
  });
  for (const plugin of fixtures) {
    defs.push({
      name: plugin.name,
      socket: path.join(sockets.dir, `${plugin.name}.sock`),
      query_cmd: `${process.execPath} ${MAIN_JS} --dump ${plugin.name}`,
    });
  }
  let kong: KongDriver;
  try {
    kong = await KongDriver.start({
      pluginServers: defs,
      declarative: declarativeFor(relayPort, options.routes(relayPort)),
      env: options.env,
      // Query commands get this environment (Kong: none); the start_cmd carries its own.
      pluginServerEnv: fixtureEnv,
      socketWaitMs: 30_000,
      ...options.driver,
    });
  } catch (err) {
    sockets.remove();
    throw err;
  }
  return {
    kong,
    dir: sockets.dir,
    relayPort,
    output: () => kong.pluginServers.outputText(),
    pid: () => {
      const pid = kong.pluginServers.pid('ai-router');
      if (pid === undefined) throw new Error('the suite server is not running');
      return pid;
    },
    async close() {
      await kong.close();
      sockets.remove();
    },
  };
}
