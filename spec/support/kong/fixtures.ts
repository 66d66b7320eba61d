/**
 * Helpers for tests that run the driver against kong-pdk's own plugin server with the
 * fixture plugins in spec/support/fixtures/kong-pdk-plugins (one server per plugin, as
 * Kong 3.9 registers only the first plugin a server reports), and a loopback upstream.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { PluginServerDef } from './plugin-servers';

export const PDK_PLUGIN_DIR = path.resolve(__dirname, '../fixtures/kong-pdk-plugins');
export const PDK_SERVER_BIN = require.resolve('kong-pdk/bin/kong-js-pluginserver');

/**
 * kong-pdk's lib/mod.js always calls require('ts-node').register(), and ts-node picks the
 * project's TypeScript (7.x here), which it cannot drive: point it at kong-pdk's own 4.9.
 * Kong spawns servers with an empty environment, so the variables go through /usr/bin/env.
 */
export const PDK_SERVER_ENV: Record<string, string> = {
  TS_NODE_COMPILER: require.resolve('typescript', {
    paths: [path.dirname(require.resolve('kong-pdk/server'))],
  }),
  TS_NODE_TRANSPILE_ONLY: 'true',
  TS_NODE_SKIP_PROJECT: 'true',
};
const ENV_PREFIX = `/usr/bin/env ${Object.entries(PDK_SERVER_ENV)
  .map(([k, v]) => `${k}=${v}`)
  .join(' ')}`;

/** A short socket directory (Unix socket paths are limited to ~107 bytes). */
export function makeSocketDir(): { dir: string; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kd-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

function serverArgs(plugin: string, socketDir: string): string[] {
  return [
    PDK_SERVER_BIN,
    '-d',
    path.join(PDK_PLUGIN_DIR, plugin),
    '--kong-prefix',
    socketDir,
    '--sock-name',
    `${plugin}.sock`,
  ];
}

/** kong.conf entry for one fixture plugin; `managed` adds the start_cmd Kong spawns. */
export function pdkServerDef(plugin: string, socketDir: string, managed = true): PluginServerDef {
  const node = process.execPath;
  const base = `${ENV_PREFIX} ${node} ${PDK_SERVER_BIN} -d ${path.join(PDK_PLUGIN_DIR, plugin)}`;
  return {
    name: plugin,
    socket: path.join(socketDir, `${plugin}.sock`),
    start_cmd: managed ? `${ENV_PREFIX} ${node} ${serverArgs(plugin, socketDir).join(' ')}` : undefined,
    query_cmd: `${base} --dump-all-plugins`,
  };
}

/** Starts a fixture plugin server outside the driver ("external process management"). */
export function spawnPdkServer(plugin: string, socketDir: string): ChildProcess {
  return spawn(process.execPath, serverArgs(plugin, socketDir), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: PDK_SERVER_ENV,
  });
}

export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface TestUpstream {
  url: string;
  port: number;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

/** A loopback HTTP server; the default handler echoes what it received as JSON. */
export async function startUpstream(
  handler?: (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void,
): Promise<TestUpstream> {
  const requests: RecordedRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const recorded = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body };
      requests.push(recorded);
      if (handler) handler(req, res, body);
      else {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(recorded));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
