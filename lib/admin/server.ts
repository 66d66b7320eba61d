import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TargetHealth } from '../health';
import type { Logger } from '../log/logger';
import type { Store } from '../store';
import { SUITE_VERSION } from '../version';

export interface AdminOptions {
  /** Default 127.0.0.1: the admin endpoint shows operational state and is not for clients. */
  host?: string;
  /** 0 picks a free port. */
  port: number;
  health: TargetHealth;
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
 */
export async function startAdmin(options: AdminOptions): Promise<AdminServer> {
  const { health, store } = options;
  const routes: Record<string, () => Promise<[number, unknown]>> = {
    '/health': async () => {
      const storeOk = await Promise.race([
        store.ping().then(
          () => true,
          () => false,
        ),
        new Promise<boolean>((r) => setTimeout(() => r(false), STORE_CHECK_MS).unref()),
      ]);
      return [200, { status: 'ok', version: SUITE_VERSION, store: storeOk ? 'ok' : 'unreachable' }];
    },
    '/targets': async () => [200, { object: 'list', data: health.snapshot() }],
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const route = Object.hasOwn(routes, path) ? routes[path] : undefined;
    const answer: Promise<[number, unknown]> =
      req.method !== 'GET'
        ? Promise.resolve([405, adminError('only GET is served here', 'AIGW_METHOD_NOT_ALLOWED')])
        : route
          ? route()
          : Promise.resolve([404, adminError(`no admin resource at ${path}`, 'AIGW_NOT_FOUND')]);
    answer
      .catch((err: unknown): [number, unknown] => {
        options.logger.error({ err }, 'admin request failed');
        return [500, adminError('the admin request failed', 'AIGW_INTERNAL')];
      })
      .then(([status, body]) => {
        const text = JSON.stringify(body);
        res.writeHead(status, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(text),
        });
        res.end(text);
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function adminError(message: string, code: string) {
  return {
    error: {
      message,
      type: code === 'AIGW_INTERNAL' ? 'server_error' : 'invalid_request_error',
      code,
      param: null,
    },
  };
}
