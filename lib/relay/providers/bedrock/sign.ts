import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import type { Target } from '../../../context/request-context';
import { GatewayError } from '../../../errors';
import type { UpstreamRequest } from '../index';

/** Bedrock's SigV4 signing name (the host is bedrock-runtime, the service is bedrock). */
export const SIGNING_SERVICE = 'bedrock';

/** sha256 as SignatureV4 wants it: a constructor taking the optional HMAC secret. */
export const sha256 = Hash.bind(null, 'sha256');

/**
 * Signs a Bedrock request with AWS SigV4 (Authorization, X-Amz-Date, X-Amz-Content-Sha256
 * and, with temporary credentials, X-Amz-Security-Token). The host header is signed, as AWS
 * requires, so it is sent explicitly.
 */
export async function signBedrockRequest(
  request: UpstreamRequest,
  target: Target,
  signingDate: Date = new Date(),
): Promise<UpstreamRequest> {
  const aws = target.aws;
  if (!aws) {
    throw new GatewayError(
      'AIGW_CONFIG_INVALID',
      `target ${target.name} has no AWS credentials to sign with`,
    );
  }
  const signer = new SignatureV4({
    service: SIGNING_SERVICE,
    region: aws.region,
    credentials: {
      accessKeyId: aws.access_key_id,
      secretAccessKey: aws.secret_access_key,
      ...(aws.session_token ? { sessionToken: aws.session_token } : {}),
    },
    sha256,
  });
  const url = new URL(request.url);
  const query: Record<string, string> = {};
  for (const [name, value] of url.searchParams) query[name] = value;
  const signed = await signer.sign(
    {
      method: request.method,
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port ? { port: Number(url.port) } : {}),
      path: url.pathname,
      query,
      headers: { ...request.headers, host: url.host },
      body: request.body,
    },
    { signingDate },
  );
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(signed.headers)) headers[name.toLowerCase()] = value;
  return { ...request, headers };
}
