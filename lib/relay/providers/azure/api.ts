import type { Endpoint, Target } from '../../../context/request-context';
import { GatewayError } from '../../../errors';
import type { UpstreamRequest } from '../index';
import { isObject, OPENAI_PATHS, openaiHeaders, openaiRequestBody } from '../openai/api';
import { unsupported } from '../openai-compatible/features';

// api-versions before this one refuse `stream_options` ("Unrecognized request argument").
const STREAM_OPTIONS_SINCE = '2024-09-01';

/**
 * Azure OpenAI: OpenAI's body, sent to the deployment (`target.model`) under the resource's
 * host with the `api-version` query parameter, and the key in `api-key` (an Entra ID token
 * goes in the target's `Authorization` header instead, without `api_key`).
 */
export function buildAzureRequest(
  endpoint: Endpoint,
  body: Record<string, unknown>,
  target: Target,
  opts: { stream: boolean },
): UpstreamRequest {
  const path = OPENAI_PATHS[endpoint];
  if (!path) throw new Error(`azure adapter does not serve ${endpoint}`);
  const version = target.api_version;
  if (!version)
    throw new GatewayError('AIGW_CONFIG_INVALID', `target ${target.name} (azure) has no api_version`);
  const streamOptions = version >= STREAM_OPTIONS_SINCE;
  if (opts.stream && !streamOptions && clientWantsUsage(body)) {
    throw unsupported(target, `stream_options.include_usage (api-version ${version})`, 'stream_options');
  }

  const headers = openaiHeaders(target, opts.stream);
  if (target.api_key) headers['api-key'] = target.api_key;
  // Tolerates a base_url copied with Azure's `/openai` suffix.
  const resource = target.base_url.replace(/\/+$/, '').replace(/\/openai$/, '');
  return {
    url: `${resource}/openai/deployments/${encodeURIComponent(target.model)}${path}?api-version=${encodeURIComponent(version)}`,
    method: 'POST',
    headers,
    body: JSON.stringify(openaiRequestBody(body, target, opts, { streamOptions })),
  };
}

function clientWantsUsage(body: Record<string, unknown>): boolean {
  return isObject(body.stream_options) && body.stream_options.include_usage === true;
}
