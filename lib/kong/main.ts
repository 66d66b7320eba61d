#!/usr/bin/env node
/**
 * The suite server: one process serving every suite plugin on its own Unix socket, and the
 * relay Kong proxies to.
 *
 *   main.js --socket-dir DIR [--relay-port N] [--relay-host H] [--exit-with-parent]
 *                                                                 serve (Kong's start_cmd)
 *   main.js --dump NAME                                           plugin info JSON (Kong's query_cmd)
 *
 * --exit-with-parent: drain and exit when the process that started this one dies. Kong starts
 * the suite server from its worker 0 and stops it with SIGTERM; a worker that dies without
 * stopping it (a crash, the OOM killer) is replaced by one that starts a new suite server,
 * which needs the plugin sockets and the relay port the orphan would keep.
 *
 * Environment: AIGW_SOCKET_DIR, AIGW_RELAY_PORT, AIGW_RELAY_HOST, AIGW_LOG_LEVEL,
 * AIGW_LOG_FILE, AIGW_STORE, AIGW_STORE_COMMAND_TIMEOUT_MS, AIGW_MAX_BODY_BYTES,
 * AIGW_MAX_JSON_DEPTH, AIGW_DRAIN_MS, AIGW_ADMIN_HOST, AIGW_ADMIN_PORT (`off`: no admin endpoint).
 */
import { parseArgs } from 'node:util';
import { suitePlugins } from '../../plugins';
import { intFromEnv } from '../env';
import { abandonStdoutLog, rootLogger } from '../log/logger';
import { defaultSocketDir } from './kong-conf';
import { pluginInfo } from './plugin';
import { startSuiteServer } from './suite-server';

function dump(name: string): void {
  const plugin = suitePlugins.find((p) => p.name === name);
  if (!plugin) {
    process.stderr.write(`unknown plugin ${name}; known: ${suitePlugins.map((p) => p.name).join(', ')}\n`);
    process.exit(1);
  }
  // Kong reads stdout with io.popen and JSON-decodes it: nothing else may be printed there.
  process.stdout.write(`${JSON.stringify([pluginInfo(plugin)])}\n`);
}

async function serve(
  options: { socketDir: string; relayHost: string; relayPort: number },
  exitWithParent: boolean,
): Promise<void> {
  const logger = rootLogger();
  // A crash guard of last resort: one bad promise must not take every route down.
  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled rejection'));
  process.on('uncaughtException', (err) => logger.error({ err }, 'uncaught exception'));

  const server = await startSuiteServer({
    plugins: suitePlugins,
    ...options,
    logger,
    ...adminFromEnv(),
    limits: {
      max_body_bytes: intFromEnv('AIGW_MAX_BODY_BYTES', 10 * 1024 * 1024),
      max_json_depth: intFromEnv('AIGW_MAX_JSON_DEPTH', 64),
    },
  });
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'draining');
    await server.close(intFromEnv('AIGW_DRAIN_MS', 10_000));
    logger.info('stopped');
    // Whoever read our stdout is gone with the parent: what is still buffered for it is lost anyway.
    if (signal === PARENT_EXITED) abandonStdoutLog();
    else logger.flush();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  if (exitWithParent) whenParentExits(() => void stop(PARENT_EXITED));
}

/** The process that started this one: read first thing, since it may die while the server starts. */
const STARTED_BY = process.ppid;

const PARENT_EXITED = 'parent exited';

/** Calls `onExit` once this process has been handed to another parent (init or a subreaper). */
function whenParentExits(onExit: () => void): void {
  const timer = setInterval(() => {
    if (process.ppid === STARTED_BY) return;
    clearInterval(timer);
    onExit();
  }, PARENT_CHECK_MS);
  timer.unref();
}

const PARENT_CHECK_MS = 500;

function adminFromEnv(): { admin?: { host: string; port: number } } {
  if (process.env.AIGW_ADMIN_PORT === 'off') return {};
  return {
    admin: {
      host: process.env.AIGW_ADMIN_HOST || '127.0.0.1',
      port: intFromEnv('AIGW_ADMIN_PORT', 8901),
    },
  };
}

function main(): void {
  const { values } = parseArgs({
    options: {
      dump: { type: 'string' },
      'socket-dir': { type: 'string' },
      'relay-port': { type: 'string' },
      'relay-host': { type: 'string' },
      'exit-with-parent': { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.dump) {
    dump(values.dump);
    return;
  }
  serve(
    {
      socketDir: values['socket-dir'] ?? process.env.AIGW_SOCKET_DIR ?? defaultSocketDir(),
      relayHost: values['relay-host'] ?? process.env.AIGW_RELAY_HOST ?? '127.0.0.1',
      relayPort: values['relay-port'] ? Number(values['relay-port']) : intFromEnv('AIGW_RELAY_PORT', 8900),
    },
    values['exit-with-parent'] === true,
  ).catch((err) => {
    rootLogger().fatal({ err }, 'suite server failed to start');
    rootLogger().flush();
    process.exit(1);
  });
}

main();
