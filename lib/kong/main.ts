#!/usr/bin/env node
/**
 * The suite server: one process serving every suite plugin on its own Unix socket, and the
 * relay Kong proxies to.
 *
 *   main.js --socket-dir DIR [--relay-port N] [--relay-host H]   serve (Kong's start_cmd)
 *   main.js --dump NAME                                           plugin info JSON (Kong's query_cmd)
 *
 * Environment: AIGW_SOCKET_DIR, AIGW_RELAY_PORT, AIGW_RELAY_HOST, AIGW_LOG_LEVEL,
 * AIGW_LOG_FILE, AIGW_STORE, AIGW_STORE_COMMAND_TIMEOUT_MS, AIGW_MAX_BODY_BYTES,
 * AIGW_MAX_JSON_DEPTH, AIGW_DRAIN_MS.
 */
import { mkdirSync } from 'node:fs';
import type { Server } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { suitePlugins } from '../../plugins';
import { ContextStore } from '../context';
import { rootLogger } from '../log/logger';
import { startRelay } from '../relay/server';
import { createStore, storeConfigFromEnv } from '../store';
import { listenRpc } from './listener';
import { pluginInfo, type Suite } from './plugin';
import { PluginServer } from './plugin-server';
import { defaultSocketDir } from './kong-conf';

function intFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer`);
  return n;
}

function dump(name: string): void {
  const plugin = suitePlugins.find((p) => p.name === name);
  if (!plugin) {
    process.stderr.write(`unknown plugin ${name}; known: ${suitePlugins.map((p) => p.name).join(', ')}\n`);
    process.exit(1);
  }
  // Kong reads stdout with io.popen and JSON-decodes it: nothing else may be printed there.
  process.stdout.write(`${JSON.stringify([pluginInfo(plugin)])}\n`);
}

async function serve(options: { socketDir: string; relayHost: string; relayPort: number }): Promise<void> {
  const logger = rootLogger();
  // A crash guard of last resort: one bad promise must not take every route down.
  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled rejection'));
  process.on('uncaughtException', (err) => logger.error({ err }, 'uncaught exception'));

  const contexts = new ContextStore();
  const store = createStore(storeConfigFromEnv(process.env), logger);
  // Wait for the first connection (bounded by the store's connect timeout); a store that is
  // down does not stop the server: each plugin's config says what its store trouble means.
  await store.ping().catch((err) => logger.warn({ err: String(err) }, 'store not reachable at start'));
  const suite: Suite = {
    contexts,
    store,
    logger,
    limits: {
      max_body_bytes: intFromEnv('AIGW_MAX_BODY_BYTES', 10 * 1024 * 1024),
      max_json_depth: intFromEnv('AIGW_MAX_JSON_DEPTH', 64),
    },
  };
  const server = new PluginServer(suitePlugins, suite);
  mkdirSync(options.socketDir, { recursive: true });
  const sockets: Server[] = [];
  for (const plugin of suitePlugins) {
    sockets.push(await listenRpc(join(options.socketDir, `${plugin.name}.sock`), server, logger));
  }
  const relay = await startRelay({ host: options.relayHost, port: options.relayPort, contexts, logger });
  logger.info(
    { socket_dir: options.socketDir, relay: `${options.relayHost}:${relay.port}`, plugins: suitePlugins.map((p) => p.name) },
    'suite server ready',
  );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'draining');
    for (const s of sockets) s.close();
    const drainMs = intFromEnv('AIGW_DRAIN_MS', 10_000);
    await Promise.race([relay.close(), new Promise((r) => setTimeout(r, drainMs).unref())]);
    server.close();
    contexts.close();
    await store.close().catch(() => undefined);
    logger.info('stopped');
    logger.flush();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

function main(): void {
  const { values } = parseArgs({
    options: {
      dump: { type: 'string' },
      'socket-dir': { type: 'string' },
      'relay-port': { type: 'string' },
      'relay-host': { type: 'string' },
    },
    strict: true,
  });
  if (values.dump) return dump(values.dump);
  serve({
    socketDir: values['socket-dir'] ?? process.env.AIGW_SOCKET_DIR ?? defaultSocketDir(),
    relayHost: values['relay-host'] ?? process.env.AIGW_RELAY_HOST ?? '127.0.0.1',
    relayPort: values['relay-port'] ? Number(values['relay-port']) : intFromEnv('AIGW_RELAY_PORT', 8900),
  }).catch((err) => {
    rootLogger().fatal({ err }, 'suite server failed to start');
    rootLogger().flush();
    process.exit(1);
  });
}

main();
