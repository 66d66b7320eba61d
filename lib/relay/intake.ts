import type { IncomingMessage } from 'node:http';
import type { RequestContext } from '../context';
import {
  checkDeclaredSize,
  endpointOf,
  parseRequestBody,
  type RequestLimitsInput,
  tooLarge,
} from '../llm/request';

/**
 * Reads and checks the client request Kong proxied to the relay: endpoint, size, media
 * type, UTF-8, JSON, shape. Fills `ctx.endpoint` and `ctx.body`; bad input throws a
 * GatewayError naming the problem. Kong has buffered the body already (its client body
 * limits apply first); this is the body's only read.
 */
export async function readClientRequest(
  req: IncomingMessage,
  ctx: RequestContext,
  limits: RequestLimitsInput,
): Promise<void> {
  ctx.endpoint = endpointOf(ctx.method, ctx.path);
  if (ctx.endpoint === 'models') {
    req.resume(); // a GET has no body to read; drop any that came
    return;
  }
  checkDeclaredSize(ctx.header('content-length'), limits);
  const raw = await readBody(req, limits.max_body_bytes);
  if (!raw) throw tooLarge(limits);
  ctx.body = parseRequestBody(ctx.endpoint, ctx.header('content-type'), raw, limits);
}

/** The whole body, or undefined past maxBytes (the rest is read and dropped, so Kong's connection stays usable). */
function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= maxBytes) chunks.push(chunk);
      else chunks.length = 0;
    });
    req.once('end', () => resolve(size <= maxBytes ? Buffer.concat(chunks, size) : undefined));
    req.once('error', reject);
    req.once('close', () => {
      if (!req.complete) reject(new Error('Kong closed the request before its body was complete'));
    });
  });
}
