import type { Endpoint } from '../../../context/request-context';
import type { ProviderAdapter } from '../index';
import { buildBedrockRequest } from './api';
import { AwsEventStreamDecoder } from './decoder';
import { parseBedrockError } from './error';
import { parseBedrockResponse } from './response';
import { signBedrockRequest } from './sign';
import { bedrockStreamTranslator } from './stream';

/**
 * AWS Bedrock through the Converse API (any model Bedrock serves, one wire format), signed
 * with SigV4; ConverseStream answers in the AWS event stream framing. Completions and
 * embeddings are taken here only to be refused in `buildRequest`, with the target's name.
 */
export const bedrockAdapter: ProviderAdapter = {
  supports: (endpoint: Endpoint) => endpoint !== 'models' && endpoint !== 'feedback',
  buildRequest: buildBedrockRequest,
  sign: signBedrockRequest,
  parseResponse: parseBedrockResponse,
  streamTranslator: bedrockStreamTranslator,
  eventDecoder: () => new AwsEventStreamDecoder(),
  parseError: parseBedrockError,
};
