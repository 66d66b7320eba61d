import { Type } from '@sinclair/typebox';
import { type ConfigOf, type ConfigProblem, definePluginConfig } from '../lib/config';

const Timeouts = Type.Object(
  {
    connect_ms: Type.Integer({
      minimum: 1,
      maximum: 600_000,
      default: 5000,
      description: 'Milliseconds allowed to open the connection to the provider.',
    }),
    first_byte_ms: Type.Integer({
      minimum: 1,
      maximum: 3_600_000,
      default: 60_000,
      description: 'Milliseconds allowed between sending the request and the first byte of the answer.',
    }),
    idle_ms: Type.Integer({
      minimum: 1,
      maximum: 3_600_000,
      default: 60_000,
      description: 'Milliseconds allowed between two chunks of a streamed answer.',
    }),
    total_ms: Type.Integer({
      minimum: 1,
      maximum: 3_600_000,
      default: 600_000,
      description: 'Milliseconds allowed for the whole upstream call, streaming included.',
    }),
  },
  { description: 'Upstream timeouts for this target.' },
);

const Target = Type.Object(
  {
    name: Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: '^[A-Za-z0-9._:-]+$',
      description: 'Name of the target. A request whose `model` equals this name is routed here.',
    }),
    provider: Type.Union([Type.Literal('openai')], {
      default: 'openai',
      description:
        'Provider API. `openai` covers OpenAI and every OpenAI-compatible server: vLLM, Ollama, Mistral, Groq, Together, LM Studio.',
    }),
    model: Type.String({ description: 'Model name sent to the provider.' }),
    base_url: Type.String({
      default: 'https://api.openai.com/v1',
      description:
        'Base URL of the provider API, an http(s) URL; `/chat/completions` and the like are appended.',
    }),
    api_key: Type.Optional(
      Type.String({
        referenceable: true,
        description:
          'API key sent to the provider, as a vault reference such as `{vault://env/OPENAI_API_KEY}`.',
      }),
    ),
    api_key_env: Type.Optional(
      Type.String({
        pattern: '^[A-Za-z_][A-Za-z0-9_]*$',
        description: 'Name of an environment variable of the suite server that holds the API key.',
      }),
    ),
    headers: Type.Optional(
      Type.Record(Type.String(), Type.String(), {
        description: 'Extra static headers sent to the provider. Keys do not belong here: use `api_key`.',
      }),
    ),
    timeouts: Timeouts,
    context_window: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 100_000_000,
        description:
          'Tokens the model takes, prompt and answer together. A request that cannot fit (estimated prompt + `max_tokens`) is not sent to this target.',
      }),
    ),
    prices: Type.Optional(
      Type.Object(
        {
          input_per_1m: Type.Number({
            minimum: 0,
            maximum: 10_000,
            description: 'USD per 1M prompt tokens.',
          }),
          output_per_1m: Type.Number({
            minimum: 0,
            maximum: 10_000,
            description: 'USD per 1M answer tokens.',
          }),
          cached_input_per_1m: Type.Optional(
            Type.Number({
              minimum: 0,
              maximum: 10_000,
              description:
                "USD per 1M prompt tokens served from the provider's prompt cache (default: the input price).",
            }),
          ),
        },
        {
          description:
            "What the model costs, for ai-budget's cost limits and the metrics. Without it, the list price of a well-known model name applies (docs: lib/llm/prices.ts); other models have no price, and a cost limit on them is refused as a config error.",
        },
      ),
    ),
  },
  { description: 'A model at a provider that requests can be routed to.' },
);

export const routerSchema = Type.Object({
  targets: Type.Array(Target, {
    minItems: 1,
    description: 'Models that requests can be routed to, matched by the `model` of each request.',
  }),
  default_target: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 64,
      description:
        'Name of the target used when the requested model matches no target name. When unset, an unknown model is refused with 404.',
    }),
  ),
  expose_target_header: Type.Boolean({
    default: true,
    description: 'Send the `x-ai-target` and `x-ai-model` response headers naming the target and model used.',
  }),
});

export type RouterConfig = ConfigOf<typeof routerSchema>;
export type RouterTarget = RouterConfig['targets'][number];

/** Headers that carry credentials: a key written there would bypass vault references. */
const CREDENTIAL_HEADERS = new Set(['authorization', 'api-key', 'x-api-key']);

/** RFC 9110 token characters. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function checkRouter(config: RouterConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const firstIndex = new Map<string, number>();
  config.targets.forEach((target, i) => {
    const at = `targets[${i}]`;
    const first = firstIndex.get(target.name);
    if (first === undefined) firstIndex.set(target.name, i);
    else
      problems.push({
        path: `${at}.name`,
        message: `duplicate target name, already used by targets[${first}]`,
      });

    if (!isHttpUrl(target.base_url)) {
      problems.push({ path: `${at}.base_url`, message: 'must be an http(s) URL without credentials' });
    }
    if (target.api_key !== undefined && target.api_key_env !== undefined) {
      problems.push({ path: `${at}.api_key`, message: 'set api_key or api_key_env, not both' });
    }
    for (const [name, value] of Object.entries(target.headers ?? {})) {
      const where = `${at}.headers[${JSON.stringify(name)}]`;
      if (!HEADER_NAME.test(name)) problems.push({ path: where, message: 'not a valid HTTP header name' });
      else if (CREDENTIAL_HEADERS.has(name.toLowerCase())) {
        problems.push({
          path: where,
          message: 'credentials belong in api_key or api_key_env, not in headers',
        });
      }
      if (/[\r\n\0]/.test(value))
        problems.push({ path: where, message: 'value must not contain line breaks' });
    }
    const { first_byte_ms, idle_ms, total_ms } = target.timeouts;
    if (first_byte_ms > total_ms) {
      problems.push({ path: `${at}.timeouts.first_byte_ms`, message: 'must not exceed timeouts.total_ms' });
    }
    if (idle_ms > total_ms) {
      problems.push({ path: `${at}.timeouts.idle_ms`, message: 'must not exceed timeouts.total_ms' });
    }
  });
  if (config.default_target !== undefined && !firstIndex.has(config.default_target)) {
    problems.push({ path: 'default_target', message: 'names no target in targets' });
  }
  return problems;
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return (
      (url.protocol === 'http:' || url.protocol === 'https:') && url.username === '' && url.password === ''
    );
  } catch {
    return false;
  }
}

export const routerConfig = definePluginConfig({
  name: 'ai-router',
  schema: routerSchema,
  check: checkRouter,
  rules: [
    'Target names are unique.',
    '`default_target` names one of the targets.',
    '`base_url` is an http(s) URL without user or password.',
    '`api_key` and `api_key_env` are not both set.',
    '`headers` holds valid header names and no `authorization`, `api-key` or `x-api-key` header.',
    '`timeouts.first_byte_ms` and `timeouts.idle_ms` do not exceed `timeouts.total_ms`.',
  ],
});
