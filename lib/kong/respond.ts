import { type GatewayError, toGatewayError } from '../errors';
import type { KongPDK } from './pdk';

/** Ends the request from an access handler with an OpenAI-shaped error. */
export function exitWithError(kong: KongPDK, err: unknown): Promise<void> {
  const error: GatewayError = toGatewayError(err);
  return kong.response.exit(error.status, error.toJSON(), {
    'content-type': 'application/json',
    ...error.headers,
  });
}
