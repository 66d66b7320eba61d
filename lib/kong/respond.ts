import { type GatewayError, toGatewayError } from '../errors';
import type { KongPDK } from './pdk';

/**
 * Ends the request with a JSON answer. The body crosses as a string: a table would be
 * re-encoded by Kong, which drops `null` values (OpenAI's `"param": null`) and turns an
 * empty array into `{}` (KONG.md §11).
 */
export function exitJson(kong: KongPDK, status: number, body: unknown, headers: Record<string, string> = {}) {
  return kong.response.exit(status, JSON.stringify(body), { ...headers, 'content-type': 'application/json' });
}

/** Ends the request from an access handler with an OpenAI-shaped error. */
export function exitWithError(kong: KongPDK, err: unknown): Promise<void> {
  const error: GatewayError = toGatewayError(err);
  return exitJson(kong, error.status, error.toJSON(), error.headers);
}
