import type { AwsCredentials, Target } from '../../lib/context';
import { GatewayError } from '../../lib/errors';
import { listPrice, type Prices } from '../../lib/llm/prices';
import { DEFAULT_API_VERSION, defaultBaseUrl } from '../../lib/relay/providers';
import type { RouterConfig, RouterTarget } from '../../schemas/ai-router';

/**
 * Builds the relay's targets from config, once per instance. A key named by `api_key_env`
 * is read from the suite server's environment; a missing variable is a config error
 * (named, never silently an unauthenticated call).
 */
export function resolveTargets(config: RouterConfig, env: NodeJS.ProcessEnv): Target[] {
  return config.targets.map((t, i) => {
    let apiKey = t.api_key ?? undefined;
    if (t.api_key_env) {
      apiKey = env[t.api_key_env];
      if (!apiKey) {
        throw new GatewayError(
          'AIGW_CONFIG_INVALID',
          `config.targets[${i}].api_key_env: environment variable ${t.api_key_env} is not set in the suite server`,
        );
      }
    }
    const aws = t.aws ? resolveAws(t.aws, env, i) : undefined;
    const baseUrl = t.base_url ?? defaultBaseUrl(t.provider, aws?.region);
    const apiVersion = t.api_version ?? DEFAULT_API_VERSION[t.provider];
    return {
      name: t.name,
      provider: t.provider,
      model: t.model,
      base_url: (baseUrl ?? '').replace(/\/+$/, ''),
      ...(apiKey ? { api_key: apiKey } : {}),
      ...(apiVersion ? { api_version: apiVersion } : {}),
      ...(aws ? { aws } : {}),
      headers: { ...(t.headers ?? {}) },
      timeouts: { ...t.timeouts },
      ...(t.context_window ? { context_window: t.context_window } : {}),
      ...pricesOf(t),
      ...(t.region ? { region: t.region } : {}),
      capabilities: [...t.capabilities],
      trusted: t.trusted,
    };
  });
}

/** Bedrock credentials: configured, else the suite server's standard AWS environment variables. */
function resolveAws(
  aws: NonNullable<RouterTarget['aws']>,
  env: NodeJS.ProcessEnv,
  i: number,
): AwsCredentials {
  const pick = (value: string | null | undefined, name: string, required: boolean): string | undefined => {
    const found = value ?? env[name];
    if (!found && required) {
      throw new GatewayError(
        'AIGW_CONFIG_INVALID',
        `config.targets[${i}].aws: no credentials (set them, or ${name} in the suite server's environment)`,
      );
    }
    return found || undefined;
  };
  const sessionToken = pick(aws.session_token, 'AWS_SESSION_TOKEN', false);
  return {
    region: aws.region,
    access_key_id: pick(aws.access_key_id, 'AWS_ACCESS_KEY_ID', true)!,
    secret_access_key: pick(aws.secret_access_key, 'AWS_SECRET_ACCESS_KEY', true)!,
    ...(sessionToken ? { session_token: sessionToken } : {}),
  };
}

/** The target's configured prices, else the list price of its model, else none. */
function pricesOf(t: RouterTarget): { prices?: Prices } {
  const prices = t.prices ? { ...t.prices } : listPrice(t.model);
  return prices ? { prices } : {};
}
