import { randomUUID } from 'node:crypto';
import { CONTEXT_HEADER, type RequestContext } from '../context';
import { GatewayError } from '../errors';
import { checkDeclaredSize, endpointOf, parseRequestBody } from '../llm/request';
import type { KongPDK } from './pdk';
import type { EventScope, KongKeys, Suite } from './plugin';

const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** `POST /v1/chat/completions?x=1 HTTP/1.1` → method and path (nginx's $request). */
export function parseRequestLine(line: unknown): { method: string; path: string } {
  const [method, target] = typeof line === 'string' ? line.split(' ') : [];
  if (!method || !target) throw new GatewayError('AIGW_BAD_REQUEST', 'malformed request line');
  return { method, path: target.split('?')[0]! };
}

/**
 * The request's context, built once by whichever suite plugin runs first and found by the
 * others with one PDK call. Every plugin starts with `getHeaders()`: the first finds no
 * context header, reads the request line and the body (three more calls), checks them, and
 * sets the context id on the upstream request with `kong.service.request.set_header` —
 * which later plugins see in their own `getHeaders()` (Kong's set_header rewrites the
 * request headers) and which carries the id to the relay. Bad input throws a GatewayError.
 */
export async function acquireContext(
  kong: KongPDK,
  event: EventScope,
  suite: Suite,
  keys: KongKeys,
): Promise<RequestContext> {
  const headers = (await kong.request.getHeaders()) ?? {};
  // A context the relay has taken is no longer this request's: a client replaying an id gets a new one.
  const existing = suite.contexts.get(headers[CONTEXT_HEADER]?.[0]);
  if (existing && !existing.used) {
    track(existing, event, suite);
    return existing;
  }

  // One call for method and path: nginx's $request ("POST /v1/chat/completions HTTP/1.1")
  // instead of get_method + get_path. ($request_line is nil in Kong 3.9.3.)
  const { method, path } = parseRequestLine(await kong.nginx.getVar('request'));
  const endpoint = endpointOf(method, path);
  checkDeclaredSize(headers['content-length']?.[0], suite.limits);
  const raw = endpoint === 'models' ? undefined : await kong.request.getRawBody(0);
  const body = parseRequestBody(endpoint, headers['content-type']?.[0], raw, suite.limits);

  const clientRequestId = headers['x-request-id']?.[0];
  const ctx = suite.contexts.create({
    requestId: clientRequestId && SANE_REQUEST_ID.test(clientRequestId) ? clientRequestId : randomUUID(),
    method,
    path,
    endpoint,
    headers,
    body,
    routeId: keys.route_id,
    serviceId: keys.service_id,
  });
  track(ctx, event, suite);
  await kong.service.request.setHeader(CONTEXT_HEADER, ctx.id);
  return ctx;
}

/**
 * Counts the event's round trips into the context and, when a plugin ended the request
 * with exit() (the relay will never see it), settles the context so it is dropped soon.
 */
function track(ctx: RequestContext, event: EventScope, suite: Suite): void {
  event.onEnd(() => {
    ctx.pdkCalls += event.roundTrips;
    if (event.exited) suite.contexts.settle(ctx);
  });
}
