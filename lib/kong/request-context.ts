import { randomUUID } from 'node:crypto';
import { CONTEXT_HEADER, CONTEXT_SHARED_KEY, type RequestContext } from '../context';
import { checkDeclaredSize, endpointOf, parseRequestBody } from '../llm/request';
import type { KongPDK } from './pdk';
import type { EventScope, KongKeys, Suite } from './plugin';

const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The request's context, built once by whichever suite plugin runs first and fetched by
 * the others with one PDK call. The first plugin reads the request from Kong (headers,
 * method, path, body: four calls), parses and checks it, and publishes the context id in
 * `kong.ctx.shared` (for later plugins) and on the upstream request (for the relay).
 * Bad input throws a GatewayError (4xx) before any further work.
 */
export async function acquireContext(
  kong: KongPDK,
  event: EventScope,
  suite: Suite,
  keys: KongKeys,
): Promise<RequestContext> {
  const existing = suite.contexts.get(await kong.ctx.shared.get(CONTEXT_SHARED_KEY));
  if (existing) {
    event.onEnd(() => {
      existing.pdkCalls += event.roundTrips;
    });
    return existing;
  }

  const headers = (await kong.request.getHeaders()) ?? {};
  const method = await kong.request.getMethod();
  const path = await kong.request.getPath();
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
  event.onEnd(() => {
    ctx.pdkCalls += event.roundTrips;
  });
  await kong.ctx.shared.set(CONTEXT_SHARED_KEY, ctx.id);
  await kong.service.request.setHeader(CONTEXT_HEADER, ctx.id);
  return ctx;
}
