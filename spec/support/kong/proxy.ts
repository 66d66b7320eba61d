/**
 * nginx's part of a request: proxying to the service (kong_defaults/nginx_kong.lua
 * `location /`: proxy_set_header lines, request buffered, response streamed) and writing
 * responses with the headers kong/runloop/handler.lua header_filter adds.
 *
 * Like nginx, an upstream that dies mid-body leaves the client with a truncated response:
 * the client connection is destroyed, no terminating chunk is ever written.
 */
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { ServiceEntity } from './declarative';
import type { KongRequest } from './request-state';
import { SERVER_TOKENS } from './responses';

/** Request headers nginx never passes on, or that Kong's proxy_set_header lines replace. */
const REPLACED_REQUEST_HEADERS = new Set([
  'host',
  'connection',
  'content-length',
  'transfer-encoding',
  'te',
  'keep-alive',
  'expect',
  'upgrade',
  'via',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-forwarded-path',
  'x-forwarded-prefix',
  'x-real-ip',
  'x-kong-request-id',
  'proxy-connection',
]);

/**
 * Response headers nginx's upstream module drops: hop-by-hop ones (Transfer-Encoding is
 * re-done downstream) and the X-Accel-* controls it obeys itself (proxy_hide_header default).
 */
const HOP_BY_HOP_RESPONSE = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'proxy-connection',
  'upgrade',
  'trailer',
  'x-accel-buffering',
  'x-accel-charset',
  'x-accel-expires',
  'x-accel-limit-rate',
  'x-accel-redirect',
]);

export type ProxyOutcome =
  | { kind: 'streamed'; status: number; truncated: boolean }
  | { kind: 'upstream-error'; status: 502 | 504; reason: string };

/** Writes the status line, headers and (for Kong-made responses) body; counts bytes_sent. */
function writeHead(res: http.ServerResponse, req: KongRequest, headers: Array<[string, string]>): void {
  const flat: string[] = [];
  let size = `HTTP/1.1 ${req.status} \r\n`.length + 2;
  for (const [n, v] of headers) {
    flat.push(n, v);
    size += n.length + v.length + 4;
  }
  res.writeHead(req.status, flat);
  req.headersSent = true;
  req.bytesSent += size;
}

/** header_filter for responses Kong produced itself (exit, error, 404...). */
export function writeKongResponse(res: http.ServerResponse, req: KongRequest): void {
  const headers = req.responseHeaders;
  headers.set('X-Kong-Response-Latency', [String(req.ctx.responseLatency ?? Date.now() - req.startTime)]);
  if (headers.first('Via') !== SERVER_TOKENS) headers.set('Server', [SERVER_TOKENS]);
  headers.set('X-Kong-Request-Id', [req.id]);
  const body = req.exitBody ?? Buffer.alloc(0);
  if (headers.first('content-length') === undefined) headers.set('Content-Length', [String(body.length)]);
  writeHead(res, req, headers.entries);
  if (req.method !== 'HEAD' && req.status !== 204 && req.status !== 304) {
    res.end(body);
    req.bytesSent += body.length;
  } else res.end();
}

/** The Host header balancer.set_host_header sends. */
function upstreamHostHeader(req: KongRequest, host: string, port: number): string {
  if (req.upstreamHost !== '') return req.upstreamHost;
  const defaultPort = req.upstreamScheme === 'https' ? 443 : 80;
  return port === defaultPort ? host : `${host}:${port}`;
}

function upstreamRequestHeaders(req: KongRequest, host: string, port: number): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const f = req.upstreamForwarded;
  const set = (name: string, value: string | undefined) => {
    if (value !== undefined && value !== '') out.push([name, value]);
  };
  set('Via', f.upstream_via);
  set('Host', upstreamHostHeader(req, host, port));
  set('Connection', 'keep-alive');
  set('X-Forwarded-For', f.upstream_x_forwarded_for);
  set('X-Forwarded-Proto', f.upstream_x_forwarded_proto);
  set('X-Forwarded-Host', f.upstream_x_forwarded_host);
  set('X-Forwarded-Port', f.upstream_x_forwarded_port);
  set('X-Forwarded-Path', f.upstream_x_forwarded_path);
  set('X-Forwarded-Prefix', f.upstream_x_forwarded_prefix);
  set('X-Real-IP', req.client.remoteAddr);
  set('X-Kong-Request-Id', req.id); // headers_upstream = x-kong-request-id
  const te = req.headers.getAll('te').join(',');
  if (te.split(',').some((t) => t.trim() === 'trailers')) set('TE', 'trailers');
  for (const [n, v] of req.headers.entries)
    if (!REPLACED_REQUEST_HEADERS.has(n.toLowerCase())) out.push([n, v]);
  // nginx sends the (buffered) body with its length, when there is one or the client declared one.
  const declared =
    req.headers.first('content-length') !== undefined || req.headers.first('transfer-encoding') !== undefined;
  if (req.body.length > 0 || declared) out.push(['Content-Length', String(req.body.length)]);
  return out;
}

interface Attempt {
  response?: http.IncomingMessage;
  error?: { reason: string; beforeSend: boolean; timeout: boolean };
  upstream?: http.ClientRequest;
}

function attempt(
  req: KongRequest,
  host: string,
  port: number,
  agent: http.Agent,
  httpsAgent: https.Agent,
): Promise<Attempt> {
  const b = req.ctx.balancer;
  return new Promise((resolve) => {
    const client = req.upstreamScheme === 'https' ? https : http;
    const flat: string[] = [];
    for (const [n, v] of upstreamRequestHeaders(req, host, port)) flat.push(n, v);
    let connected = false;
    let settled = false;
    let socketRef: Socket | undefined;
    const onTimeout = () => {
      upstream.destroy(new Error('read timeout'));
      done({
        error: {
          reason:
            'upstream timed out (110: Connection timed out) while reading response header from upstream',
          beforeSend: false,
          timeout: true,
        },
      });
    };
    const done = (a: Attempt) => {
      if (settled) return;
      settled = true;
      clearTimeout(connectTimer);
      socketRef?.off('timeout', onTimeout);
      resolve(a);
    };
    const upstream = client.request({
      host,
      port,
      method: req.method,
      path: req.upstreamUri,
      headers: flat as unknown as http.OutgoingHttpHeaders,
      agent: req.upstreamScheme === 'https' ? httpsAgent : agent,
      rejectUnauthorized: false, // proxy_ssl_verify is off by default
      setHost: false,
    });
    const connectTimer = setTimeout(() => {
      upstream.destroy(new Error('connect timeout'));
      done({
        error: {
          reason: 'upstream timed out (110: Connection timed out) while connecting to upstream',
          beforeSend: true,
          timeout: true,
        },
      });
    }, b.connectTimeout);
    upstream.on('socket', (socket) => {
      socketRef = socket;
      const onConnect = () => {
        connected = true;
        clearTimeout(connectTimer);
        socket.setTimeout(b.readTimeout);
        if (!settled) socket.on('timeout', onTimeout);
      };
      if (socket.connecting) socket.once('connect', onConnect);
      else onConnect();
    });
    upstream.on('response', (response) => done({ response, upstream }));
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      const where = connected ? 'reading response header from' : 'connecting to';
      done({
        error: {
          reason: `${err.code ?? err.message} while ${where} upstream`,
          beforeSend: !connected,
          timeout: false,
        },
      });
    });
    upstream.end(req.body);
  });
}

/**
 * Proxies the request and streams the answer to the client. Connection failures are
 * retried `retries` times (Kong's balancer + proxy_next_upstream error); failures before
 * any response header become 502/504 for the caller's error handler.
 */
export async function proxyToUpstream(
  req: KongRequest,
  res: http.ServerResponse,
  service: ServiceEntity,
  agents: { http: http.Agent; https: https.Agent },
): Promise<ProxyOutcome> {
  const b = req.ctx.balancer;
  const host = b.host ?? service.host;
  const port = b.port ?? service.port;
  let result: Attempt | undefined;
  const idempotent = !['POST', 'LOCK', 'PATCH'].includes(req.method);
  for (let tryNo = 0; tryNo <= b.retries; tryNo++) {
    const start = Date.now();
    req.ctx.proxyLatency ??= start - req.startTime;
    result = await attempt(req, host, port, agents.http, agents.https);
    b.tries.push({ ip: host, port, balancer_start: start, balancer_latency: 0 });
    if (result.response) break;
    const e = result.error;
    if (!e || !(e.beforeSend || idempotent)) break;
  }
  if (!result?.response) {
    const e = result?.error;
    req.upstreamStatus = e?.timeout ? '504' : '502';
    return { kind: 'upstream-error', status: e?.timeout ? 504 : 502, reason: e?.reason ?? 'no response' };
  }

  const upstream = result.response;
  const headersAt = Date.now();
  req.ctx.waitingTime = headersAt - (req.startTime + (req.ctx.proxyLatency ?? 0));
  req.status = upstream.statusCode ?? 502;
  req.upstreamStatus = String(req.status);

  // header_filter: upstream headers after those plugins set in access; Kong's own on top.
  const headers = req.responseHeaders;
  let upstreamVia: string | undefined;
  let upstreamServer = false;
  for (let i = 0; i < upstream.rawHeaders.length; i += 2) {
    const name = upstream.rawHeaders[i];
    const value = upstream.rawHeaders[i + 1];
    const lower = name.toLowerCase();
    if (HOP_BY_HOP_RESPONSE.has(lower)) continue;
    if (lower === 'via') {
      upstreamVia = upstreamVia ? `${upstreamVia}, ${value}` : value;
      continue;
    }
    if (lower === 'server') upstreamServer = true;
    if (lower === 'content-type' || lower === 'content-length' || lower === 'server' || lower === 'date')
      headers.set(name, [value]);
    else headers.add(name, [value]);
  }
  headers.set('X-Kong-Upstream-Latency', [String(req.ctx.waitingTime)]);
  headers.set('X-Kong-Proxy-Latency', [String(req.ctx.proxyLatency ?? 0)]);
  headers.set('Via', [upstreamVia ? `${upstreamVia}, 1.1 ${SERVER_TOKENS}` : `1.1 ${SERVER_TOKENS}`]);
  if (!upstreamServer) headers.set('Server', [SERVER_TOKENS]);
  headers.set('X-Kong-Request-Id', [req.id]);
  writeHead(res, req, headers.entries);
  res.flushHeaders();

  return new Promise<ProxyOutcome>((resolve) => {
    let finished = false;
    const socket = upstream.socket;
    // proxy_read_timeout applies between two reads of the body too.
    const onTimeout = () => upstream.destroy(new Error('read timeout'));
    socket?.on('timeout', onTimeout);
    const finish = (truncated: boolean) => {
      if (finished) return;
      finished = true;
      socket?.off('timeout', onTimeout);
      socket?.setTimeout(0);
      req.ctx.receiveTime = Date.now() - headersAt;
      resolve({ kind: 'streamed', status: req.status, truncated });
    };
    upstream.on('data', (chunk: Buffer) => {
      req.bytesSent += chunk.length;
      if (!res.write(chunk)) {
        upstream.pause();
        res.once('drain', () => upstream.resume());
      }
    });
    upstream.on('end', () => {
      if (upstream.complete) {
        res.end();
        finish(false);
      } else {
        res.destroy();
        finish(true);
      }
    });
    // The upstream died mid-body (reset, read timeout): nginx closes the client connection.
    upstream.on('aborted', () => {
      res.destroy();
      finish(true);
    });
    upstream.on('error', () => {
      res.destroy();
      finish(true);
    });
    res.on('close', () => {
      if (!finished) {
        upstream.destroy();
        finish(true);
      }
    });
  });
}
