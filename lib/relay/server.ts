import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CONTEXT_HEADER, type ContextStore, type RequestContext } from '../context';
import { GatewayError } from '../errors';
import type { Logger } from '../log/logger';
import { Exchange } from './exchange';
import { UpstreamClient } from './upstream';

export interface RelayOptions {
  /** Loopback only: Kong on the same host is the one client. Default 127.0.0.1. */
  host?: string;
  /** 0 picks a free port. */
  port: number;
  contexts: ContextStore;
  logger: Logger;
  /** Largest non-stream answer (and stream event) accepted from a provider. Default 32 MiB. */
  maxResponseBytes?: number;
}

export interface Relay {
  port: number;
  /** Stops accepting, lets exchanges in flight finish, then closes provider connections. */
  close(): Promise<void>;
}

const DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024;
// Longer than Kong's upstream keepalive idle timeout (60 s), so Kong always closes an idle
// connection first and never sends a request on a socket the relay is closing.
const KEEP_ALIVE_MS = 65_000;

/**
 * The relay: Kong's upstream for LLM routes. It serves only requests that carry a context
 * id issued by the suite's plugins, from loopback peers; it calls the provider the
 * plugins chose and streams the answer back.
 */
export async function startRelay(options: RelayOptions): Promise<Relay> {
  const logger = options.logger.child({ component: 'relay' });
  const upstream = new UpstreamClient();
  const deps = {
    contexts: options.contexts,
    upstream,
    logger,
    maxResponseBytes: options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES,
  };

  let closing: Promise<void> | undefined;
  const server = createServer((req, res) => {
    // While draining, a connection whose answer is done is closed at once: server.close()
    // only closes the connections idle when it is called, and Kong keeps its own alive.
    res.once('close', () => {
      if (closing) server.closeIdleConnections();
    });
    // The body comes from the context (the plugins may have rewritten it); drain what Kong sends.
    req.resume();
    const ctx = options.contexts.get(req.headers[CONTEXT_HEADER]);
    const refusal = refuse(req, ctx);
    if (refusal) {
      logger.debug({ reason: refusal.message }, 'relay refused a request');
      sendError(res, refusal);
      return;
    }
    new Exchange(ctx!, res, deps).run().catch((err: unknown) => {
      // Exchange.run handles its own failures; this is the last guard against a hung request.
      logger.error({ err }, 'relay exchange crashed');
      if (res.headersSent) res.destroy();
      else sendError(res, new GatewayError('AIGW_INTERNAL', 'internal error in the AI gateway'));
    });
  });
  server.keepAliveTimeout = KEEP_ALIVE_MS;
  server.headersTimeout = KEEP_ALIVE_MS + 1_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });

  return {
    port: (server.address() as AddressInfo).port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }).then(() => upstream.close());
      return closing;
    },
  };
}

/** Why a request may not use the relay, if it may not. */
function refuse(req: IncomingMessage, ctx: RequestContext | undefined): GatewayError | undefined {
  if (!isLoopback(req.socket.remoteAddress)) {
    return new GatewayError('AIGW_CONTEXT_REQUIRED', 'the relay serves only the local gateway');
  }
  if (!ctx) {
    return new GatewayError(
      'AIGW_CONTEXT_REQUIRED',
      'this endpoint serves only requests routed by the AI gateway plugins',
    );
  }
  // One context, one exchange: a replayed id must not spend again or overwrite the outcome.
  if (ctx.used) {
    return new GatewayError('AIGW_CONTEXT_REQUIRED', 'this request context was already used');
  }
  return undefined;
}

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}

function sendError(res: ServerResponse, error: GatewayError): void {
  const body = JSON.stringify(error.toJSON());
  res.writeHead(error.status, {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
  });
  res.end(body);
}
