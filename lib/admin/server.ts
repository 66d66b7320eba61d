import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { TargetHealth } from '../health';
import { listen } from '../listen';
import type { Logger } from '../log/logger';
import type { Store } from '../store';
import { SUITE_VERSION } from '../version';
import { type AdminAnswer, type AdminRoutes, adminError } from './routes';

export interface AdminOptions {
  /** Default 127.0.0.1: the admin endpoint shows operational state and is not for clients. */
  host?: string;
  /** 0 picks a free port. */
  port: number;
  routes: AdminRoutes;
  health: TargetHealth;
  /** What `GET /metrics` exposes, in Prometheus' text format. */
  metrics: Registry;
  store: Store;
  logger: Logger;
}

export interface AdminServer {
  port: number;
  close(): Promise<void>;
}

/** How long `/health` waits for the store before calling it unreachable. */
const STORE_CHECK_MS = 500;

/**
 * The suite server's admin endpoint, for operators and monitoring (never proxied by Kong):
 *
 *   GET /health    the server is up; whether the store answers
 *   GET /targets   every target's circuit breaker as this node sees it
 *   GET /metrics   Prometheus metrics of this node
 *
 * and what plugins add to `routes` (ai-budget: `/budgets`).
 */
export async function startAdmin(options: AdminOptions): Promise<AdminServer> {
  const { health, store, routes, metrics } = options;
  routes.add('health', async (req) => {
    if (req.method !== 'GET') return notAllowed();
    const storeOk = await Promise.race([
      store.ping().then(
        () => true,
        () => false,
      ),
      new Promise<boolean>((r) => setTimeout(() => r(false), STORE_CHECK_MS).unref()),
    ]);
    return [200, { status: 'ok', version: SUITE_VERSION, store: storeOk ? 'ok' : 'unreachable' }];
  });
  routes.add('targets', async (req) =>
    req.method === 'GET' ? [200, { object: 'list', data: health.snapshot() }] : notAllowed(),
  );
  routes.add('metrics', async (req) =>
    req.method === 'GET' ? [200, await metrics.metrics(), metrics.contentType] : notAllowed(),
  );

  const server = createServer((req, res) => {
    const [path = '/', query = ''] = (req.url ?? '/').split('?', 2);
    const handler = routes.find(path);
    const answer: Promise<AdminAnswer> = handler
      ? handler({ method: req.method ?? 'GET', path, query: new URLSearchParams(query) })
      : Promise.resolve(adminError(404, `no admin resource at ${path}`, 'AIGW_NOT_FOUND'));
    answer
      .catch((err: unknown): AdminAnswer => {
        options.logger.error({ err }, 'admin request failed');
        return adminError(500, 'the admin request failed', 'AIGW_INTERNAL');
      })
      .then(([status, body, contentType]) => {
        const text = contentType ? String(body) : JSON.stringify(body);
        res.writeHead(status, {
          'content-type': contentType ?? 'application/json',
          'content-length': Buffer.byteLength(text),
        });
        res.end(text);
      });
  });
  await listen(server, { port: options.port, host: options.host ?? '127.0.0.1' });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function notAllowed(): AdminAnswer {
  return adminError(405, 'method not allowed on this resource', 'AIGW_METHOD_NOT_ALLOWED');
}
