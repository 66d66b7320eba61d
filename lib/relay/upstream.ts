import { type Dispatcher, Pool } from 'undici';
import type { Target } from '../context/request-context';
import { GatewayError, toGatewayError } from '../errors';
import type { UpstreamRequest } from './providers';

export type UpstreamResponse = Dispatcher.ResponseData;

/**
 * Provider connections: one keep-alive pool per origin (and connect timeout, which undici
 * fixes per pool). The other timeouts are per request, so targets with different limits
 * on the same origin share connections.
 */
export class UpstreamClient {
  private readonly pools = new Map<string, Pool>();

  request(target: Target, req: UpstreamRequest, signal: AbortSignal): Promise<UpstreamResponse> {
    const url = new URL(req.url);
    return this.pool(url.origin, target.timeouts.connect_ms).request({
      path: url.pathname + url.search,
      method: req.method,
      headers: req.headers,
      body: req.body,
      signal,
      headersTimeout: target.timeouts.first_byte_ms,
      bodyTimeout: target.timeouts.idle_ms,
    });
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.close()));
  }

  private pool(origin: string, connectMs: number): Pool {
    const key = `${origin} ${connectMs}`;
    let pool = this.pools.get(key);
    if (!pool) {
      pool = new Pool(origin, { connect: { timeout: connectMs } });
      this.pools.set(key, pool);
    }
    return pool;
  }
}

/** Why the relay itself stopped the upstream call, and the limit that ran out. */
export interface Abort {
  reason: 'client' | 'total' | 'first_byte' | 'idle' | 'attempt' | 'deadline' | 'cancelled';
  ms: number;
}

const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
]);

const ABORT_MESSAGES: Record<Abort['reason'], (ms: number) => string> = {
  client: () => 'the client went away',
  total: (ms) => `the provider did not finish within ${ms} ms`,
  first_byte: (ms) => `the provider sent nothing within ${ms} ms`,
  idle: (ms) => `the provider sent nothing for ${ms} ms`,
  attempt: (ms) => `the provider did not start its answer within ${ms} ms`,
  deadline: (ms) => `no answer started within the request deadline of ${ms} ms`,
  cancelled: () => 'another target answered first',
};

/**
 * A failed upstream call (network error, undici timeout, relay abort) as a GatewayError.
 * Connection refused or reset: 502 AIGW_UPSTREAM_UNAVAILABLE; any timeout: 504
 * AIGW_UPSTREAM_TIMEOUT. Errors the relay made itself pass through unchanged; anything
 * without an error code is a bug and becomes AIGW_INTERNAL.
 */
export function upstreamFailure(err: unknown, target: Target, aborted?: Abort): GatewayError {
  if (aborted) return new GatewayError('AIGW_UPSTREAM_TIMEOUT', ABORT_MESSAGES[aborted.reason](aborted.ms));
  if (err instanceof GatewayError) return err;
  const code = errorCode(err);
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return new GatewayError(
        'AIGW_UPSTREAM_TIMEOUT',
        `connecting to the provider took longer than ${target.timeouts.connect_ms} ms`,
      );
    case 'UND_ERR_HEADERS_TIMEOUT':
      return new GatewayError(
        'AIGW_UPSTREAM_TIMEOUT',
        `the provider sent no response within ${target.timeouts.first_byte_ms} ms`,
      );
    case 'UND_ERR_BODY_TIMEOUT':
      return new GatewayError(
        'AIGW_UPSTREAM_TIMEOUT',
        `the provider sent nothing for ${target.timeouts.idle_ms} ms`,
      );
    case 'UND_ERR_INVALID_ARG':
      return new GatewayError(
        'AIGW_CONFIG_INVALID',
        `the request for target ${target.name} is invalid (check base_url and headers)`,
      );
  }
  if (code === undefined) return toGatewayError(err); // not a network error: a bug, logged as internal
  if (code.startsWith('HPE_') || code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') {
    return new GatewayError(
      'AIGW_UPSTREAM_PROTOCOL',
      `the provider sent a malformed HTTP response (${code})`,
    );
  }
  if (UNREACHABLE.has(code)) {
    return new GatewayError(
      'AIGW_UPSTREAM_UNAVAILABLE',
      `the provider could not be reached or closed the connection (${code})`,
    );
  }
  return new GatewayError('AIGW_UPSTREAM_UNAVAILABLE', `the call to the provider failed (${code})`);
}

/** The errno / undici code, also inside the AggregateError of a multi-address connect. */
function errorCode(err: unknown, depth = 0): string | undefined {
  const e = err as { code?: unknown; cause?: unknown; errors?: unknown[] } | null;
  if (typeof e?.code === 'string') return e.code;
  if (depth > 4) return undefined;
  if (e?.cause !== undefined) return errorCode(e.cause, depth + 1);
  if (Array.isArray(e?.errors) && e.errors.length > 0) return errorCode(e.errors[0], depth + 1);
  return undefined;
}
