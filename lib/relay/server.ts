import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CONTEXT_HEADER, type ContextStore, type PolicyAnswer, ticketIds } from '../context';
import { GatewayError, toGatewayError } from '../errors';
import { TargetLoad } from '../health/target-load';
import { listen } from '../listen';
import type { RequestLimitsInput } from '../llm/request';
import type { Logger } from '../log/logger';
import { Exchange } from './exchange';
import { readClientRequest } from './intake';
import { UpstreamClient } from './upstream';

export interface RelayOptions {
  /** Loopback only: Kong on the same host is the one client. Default 127.0.0.1. */
  host?: string;
  /** 0 picks a free port. */
  port: number;
  contexts: ContextStore;
  logger: Logger;
  /** What a client request may be (body size, JSON depth). */
  limits: RequestLimitsInput;
  /** Largest non-stream answer (and stream event) accepted from a provider. Default 32 MiB. */
  maxResponseBytes?: number;
  /** Where every attempt's load, latency and rate-limit headroom is reported (ai-router reads it). */
  load?: TargetLoad;
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
 * The relay: Kong's upstream for LLM routes. It serves only requests, from loopback peers,
 * that carry tickets issued by the suite's plugins in Kong's access phase. It reads and
 * checks the request, runs the plugins' policies (route, budget...), calls the provider
 * they chose and streams the answer back.
 */
export async function startRelay(options: RelayOptions): Promise<Relay> {
  const logger = options.logger.child({ component: 'relay' });
  const upstream = new UpstreamClient();
  const deps = {
    contexts: options.contexts,
    upstream,
    logger,
    maxResponseBytes: options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES,
    load: options.load ?? new TargetLoad(),
  };

  let closing: Promise<void> | undefined;
  const server = createServer((req, res) => {
    // While draining, a connection whose answer is done is closed at once: server.close()
    // only closes the connections idle when it is called, and Kong keeps its own alive.
    res.once('close', () => {
      if (closing) server.closeIdleConnections();
    });
    serve(req, res).catch((err: unknown) => {
      // serve and Exchange.run handle their own failures; this is the last guard against a hung request.
      logger.error({ err }, 'relay exchange crashed');
      if (res.headersSent) res.destroy();
      else sendError(res, new GatewayError('AIGW_INTERNAL', 'internal error in the AI gateway'));
    });
  });

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const ctx = isLoopback(req.socket.remoteAddress)
      ? options.contexts.open(ticketIds(req.headersDistinct[CONTEXT_HEADER]), describe(req))
      : undefined;
    if (!ctx) {
      req.resume();
      logger.debug('relay refused a request without a live ticket');
      sendError(res, notAdmitted());
      return;
    }
    try {
      await readClientRequest(req, ctx, options.limits);
      for (const policy of ctx.policies) {
        const answer = await policy.apply(ctx);
        if (answer) {
          sendAnswer(res, answer, ctx.responseHeaders);
          options.contexts.settle(ctx);
          return;
        }
      }
      // Feedback is answered by ai-router when enabled; it never goes to a provider.
      if (ctx.endpoint === 'feedback')
        throw new GatewayError('AIGW_NOT_FOUND', 'feedback is not enabled on this route');
    } catch (err) {
      req.resume();
      const error = toGatewayError(err);
      ctx.refusal = { status: error.status, code: error.code };
      sendError(res, error, ctx.responseHeaders);
      options.contexts.settle(ctx);
      return;
    } finally {
      // Refused or answered before the exchange: a reservation already made is released.
      if (ctx.refusal || res.writableEnded) await ctx.budget?.settle(undefined);
    }
    try {
      await new Exchange(ctx, res, deps).run();
    } finally {
      // Even if the exchange crashed: a reservation left open would hold its budget until hold_ms.
      await ctx.budget?.settle(ctx.outcome);
    }
    for (const err of await ctx.runAfterExchange()) {
      logger.warn({ err, request_id: ctx.requestId }, 'an after-exchange hook failed');
    }
  }

  server.keepAliveTimeout = KEEP_ALIVE_MS;
  server.headersTimeout = KEEP_ALIVE_MS + 1_000;

  await listen(server, { port: options.port, host: options.host ?? '127.0.0.1' });

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

const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The request as the relay sees it. Its id: the client's `x-request-id` if sane, else Kong's. */
function describe(req: IncomingMessage) {
  const headers = req.headersDistinct as Record<string, string[]>;
  const clientId = headers['x-request-id']?.[0];
  return {
    requestId:
      clientId && SANE_REQUEST_ID.test(clientId)
        ? clientId
        : (headers['x-kong-request-id']?.[0] ?? randomUUID()),
    method: req.method ?? 'GET',
    path: (req.url ?? '/').split('?')[0]!,
    headers,
  };
}

/** No live ticket: not from the local Kong, not admitted by the plugins, or a replay. */
function notAdmitted(): GatewayError {
  return new GatewayError(
    'AIGW_CONTEXT_REQUIRED',
    'this endpoint serves only requests admitted by the AI gateway plugins of the local Kong',
  );
}

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}

function sendError(res: ServerResponse, error: GatewayError, headers: Record<string, string> = {}): void {
  sendJson(res, error.status, error.toJSON(), { ...headers, ...error.headers });
}

/** A policy's own answer: JSON, or a whole SSE body (a replayed stream), with its headers. */
function sendAnswer(res: ServerResponse, answer: PolicyAnswer, headers: Record<string, string>): void {
  if (answer.sse === undefined) {
    sendJson(res, answer.status, answer.body, { ...headers, ...answer.headers });
    return;
  }
  res.writeHead(answer.status, {
    ...headers,
    ...answer.headers,
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
    'content-length': String(Buffer.byteLength(answer.sse)),
  });
  res.end(answer.sse);
}

function sendJson(
  res: ServerResponse,
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
  });
  res.end(body);
}
