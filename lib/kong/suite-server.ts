import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { AdminRoutes } from '../admin/routes';
import { type AdminServer, startAdmin } from '../admin/server';
import { ContextStore, type ContextStoreOptions } from '../context';
import { TargetHealth, TargetLoad } from '../health';
import type { Logger } from '../log/logger';
import { startRelay } from '../relay/server';
import { createStore, type Store, storeConfigFromEnv } from '../store';
import { listenRpc, type RpcListener } from './listener';
import type { RequestLimits, Suite, SuitePlugin } from './plugin';
import { PluginServer, type PluginServerOptions } from './plugin-server';

/** Longest wait for the plugins' close hooks (flushing logs and spans). */
const CLOSE_HOOKS_MS = 5_000;

export interface SuiteServerOptions {
  plugins: readonly SuitePlugin[];
  socketDir: string;
  relayHost: string;
  /** 0 picks a free port. */
  relayPort: number;
  logger: Logger;
  limits: RequestLimits;
  /** The admin endpoint (loopback by default); absent: none. */
  admin?: { host?: string; port: number };
  env?: NodeJS.ProcessEnv;
  pluginServer?: Partial<PluginServerOptions>;
  contexts?: Partial<ContextStoreOptions>;
}

export interface SuiteServer {
  readonly plugins: PluginServer;
  readonly contexts: ContextStore;
  readonly store: Store;
  readonly relayPort: number;
  /** Port of the admin endpoint, when it runs. */
  readonly adminPort?: number;
  /** Stops taking Kong calls, lets in-flight answers finish (up to drainMs), frees everything. */
  close(drainMs?: number): Promise<void>;
}

/** Every plugin on its own socket under socketDir, and the relay, in this process. */
export async function startSuiteServer(options: SuiteServerOptions): Promise<SuiteServer> {
  const { logger } = options;
  const contexts = new ContextStore(options.contexts);
  const store = createStore(storeConfigFromEnv(options.env ?? process.env), logger);
  // Waits for the first connection (bounded by the store's connect timeout); a store that is
  // down does not stop the server: each plugin's config says what store trouble means.
  await store.ping().catch((err) => logger.warn({ err: String(err) }, 'store not reachable at start'));
  const metrics = new Registry();
  const health = new TargetHealth();
  health.exportTo(metrics);
  const load = new TargetLoad();
  const admin = new AdminRoutes();
  const closeHooks: Array<() => Promise<void> | void> = [];
  const suite: Suite = {
    contexts,
    store,
    logger,
    limits: options.limits,
    health,
    load,
    admin,
    metrics,
    onClose: (fn) => void closeHooks.push(fn),
  };
  const plugins = new PluginServer(options.plugins, suite, options.pluginServer);
  mkdirSync(options.socketDir, { recursive: true });
  const sockets: RpcListener[] = [];
  for (const plugin of options.plugins) {
    sockets.push(await listenRpc(join(options.socketDir, `${plugin.name}.sock`), plugins, logger));
  }
  const relay = await startRelay({
    host: options.relayHost,
    port: options.relayPort,
    contexts,
    logger,
    limits: options.limits,
    load,
  });
  // The admin endpoint is for operators: a port already taken must not stop the traffic.
  const adminServer: AdminServer | undefined = options.admin
    ? await startAdmin({ ...options.admin, routes: admin, health, store, logger, metrics }).catch(
        (err: unknown) => {
          logger.error({ err: String(err) }, 'admin endpoint not started');
          return undefined;
        },
      )
    : undefined;
  logger.info(
    {
      socket_dir: options.socketDir,
      relay: `${options.relayHost}:${relay.port}`,
      ...(adminServer ? { admin: `${options.admin?.host ?? '127.0.0.1'}:${adminServer.port}` } : {}),
      plugins: options.plugins.map((p) => p.name),
    },
    'suite server ready',
  );
  return {
    plugins,
    contexts,
    store,
    relayPort: relay.port,
    ...(adminServer ? { adminPort: adminServer.port } : {}),
    async close(drainMs = 10_000) {
      for (const s of sockets) s.stop();
      await adminServer?.close();
      await Promise.race([relay.close(), new Promise((r) => setTimeout(r, drainMs).unref())]);
      for (const s of sockets) s.close();
      plugins.close();
      // A collector that is down must not hold the shutdown: the hooks get a bounded wait.
      const hooks = Promise.allSettled(closeHooks.map(async (fn) => fn()));
      await Promise.race([hooks, new Promise((r) => setTimeout(r, CLOSE_HOOKS_MS).unref())]);
      contexts.close();
      await store.close().catch(() => undefined);
    },
  };
}
