import { Type } from '@sinclair/typebox';
import { type ConfigOf, type ConfigProblem, definePluginConfig } from '../lib/config';
import { CAPABILITIES, PROVIDER_KINDS } from '../lib/context';
import { checkEmbedder, embedderSchema } from './embedder';

const NAME = '^[A-Za-z0-9._:-]+$';
/** RFC 9110 token characters, lowercase: Kong and the relay see header names in lowercase. */
const LOWER_HEADER_NAME = "^[!#$%&'*+.^_`|~0-9a-z-]+$";

/** A request header the config trusts (set by a plugin or proxy in front, never by clients). */
const trustedHeader = (description: string) =>
  Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: LOWER_HEADER_NAME, description }));

/**
 * Vector length of the task classifier's local embedder: more than the semantic cache's 384,
 * because fewer hash collisions between words keep the small differences between tasks.
 */
export const CLASSIFIER_DIMENSIONS = 4096;

export const STRATEGIES = [
  'weighted',
  'round-robin',
  'least-latency',
  'least-busy',
  'least-cost',
  'quota-aware',
  'adaptive',
] as const;

export type Strategy = (typeof STRATEGIES)[number];

export const REDACTED_ENTITIES = [
  'email',
  'phone',
  'credit_card',
  'iban',
  'national_id',
  'ip_address',
  'secret',
] as const;

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
    provider: Type.Union(
      PROVIDER_KINDS.map((p) => Type.Literal(p)),
      {
        default: 'openai',
        description:
          'Provider API: `openai`, `azure` (Azure OpenAI), `anthropic` (Messages API), `gemini` (Google Gemini API), `bedrock` (AWS Bedrock Converse), or an OpenAI-compatible server with its own defaults: `mistral`, `groq`, `deepseek`, `vllm`, `ollama` (any other OpenAI-compatible server: `openai` with its `base_url`).',
      },
    ),
    model: Type.String({
      minLength: 1,
      maxLength: 256,
      description:
        'Model name sent to the provider (Azure: the deployment name; Bedrock: the model or inference profile id).',
    }),
    base_url: Type.Optional(
      Type.String({
        description:
          "Base URL of the provider API, an http(s) URL; the endpoint's path is appended. Default per provider (docs/providers.md); required for `azure` (`https://RESOURCE.openai.azure.com`).",
      }),
    ),
    api_version: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 32,
        pattern: '^[A-Za-z0-9._-]+$',
        description:
          'API version: `api-version` of Azure OpenAI (default `2024-10-21`), `anthropic-version` of Anthropic (default `2023-06-01`).',
      }),
    ),
    aws: Type.Optional(
      Type.Object(
        {
          region: Type.String({
            minLength: 1,
            maxLength: 32,
            pattern: '^[a-z0-9-]+$',
            description: 'AWS region of the Bedrock endpoint, e.g. `us-east-1`.',
          }),
          access_key_id: Type.Optional(
            Type.String({
              referenceable: true,
              description:
                'AWS access key id, as a vault reference. Default: `AWS_ACCESS_KEY_ID` of the suite server.',
            }),
          ),
          secret_access_key: Type.Optional(
            Type.String({
              referenceable: true,
              description:
                'AWS secret access key, as a vault reference. Default: `AWS_SECRET_ACCESS_KEY` of the suite server.',
            }),
          ),
          session_token: Type.Optional(
            Type.String({
              referenceable: true,
              description:
                'AWS session token of temporary credentials. Default: `AWS_SESSION_TOKEN` of the suite server, if set.',
            }),
          ),
        },
        { description: 'Bedrock only (required there): region and credentials for AWS SigV4 signing.' },
      ),
    ),
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
    region: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 32,
        pattern: NAME,
        description:
          'Where the model runs, as you name regions (`eu`, `us-east`...). Residency policies admit a target only when its region is allowed; a target without a region is admitted only when no residency policy applies.',
      }),
    ),
    capabilities: Type.Array(Type.Union(CAPABILITIES.map((c) => Type.Literal(c))), {
      default: [],
      uniqueItems: true,
      description:
        'What the model can do: `vision` (image parts), `tools` (function calling), `json` (response_format), `long-context`, `embeddings`. In a pool, a request that needs one of these goes only to targets that have it (a pool whose targets declare none is not filtered).',
    }),
    weight: Type.Integer({
      minimum: 0,
      maximum: 10_000,
      default: 1,
      description:
        'Share of traffic under the `weighted` strategy, relative to the other targets of a pool; 0 takes none.',
    }),
    trusted: Type.Boolean({
      default: true,
      description:
        'False for a provider that must not see personal data: with `redaction` enabled, prompts sent to this target have e-mails, phone numbers, card numbers, IBANs, national ids, IP addresses and secrets replaced by placeholders.',
    }),
  },
  { description: 'A model at a provider that requests can be routed to.' },
);

const Adaptive = Type.Object(
  {
    cost_weight: Type.Number({
      minimum: 0,
      maximum: 1_000_000,
      default: 0,
      description:
        'λ: reward lost per USD a request costs (reward = quality − λ·cost − μ·latency; quality is 0 to 1). E.g. 100 makes a request costing one cent lose 1.',
    }),
    latency_weight: Type.Number({
      minimum: 0,
      maximum: 1_000,
      default: 0,
      description: 'μ: reward lost per second of latency (time to the whole answer).',
    }),
    min_explore: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 0.02,
      description:
        "Exploration floor: every eligible target gets at least this share of a task's requests divided by the number of targets.",
    }),
    max_explore: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 0.2,
      description:
        'Exploration ceiling: at most this share of requests go to a target other than the current best.',
    }),
    window_s: Type.Integer({
      minimum: 10,
      maximum: 30 * 86_400,
      default: 3600,
      description:
        'What the bandit remembers: rewards of the last `window_s` seconds (in 10 buckets), so it follows a target whose quality, price or latency drifts.',
    }),
  },
  {
    description:
      'For `strategy: adaptive`: how rewards weigh quality, cost and latency, and how much to explore.',
  },
);

const Pool = Type.Object(
  {
    name: Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: NAME,
      description: 'Virtual model name clients ask for, e.g. `fast`, `smart`, `cheap`.',
    }),
    targets: Type.Array(Type.String({ minLength: 1, maxLength: 64, pattern: NAME }), {
      minItems: 1,
      maxItems: 64,
      uniqueItems: true,
      description: 'Names of the targets serving this pool.',
    }),
    strategy: Type.Union(
      STRATEGIES.map((s) => Type.Literal(s)),
      {
        default: 'weighted',
        description:
          'How a target is picked: `weighted` (by `weight`), `round-robin`, `least-latency` (moving averages of time to first token and per token), `least-busy` (fewest in flight here), `least-cost` (price of the estimated tokens), `quota-aware` (most rate-limit headroom), `adaptive` (a bandit learning the best target per task; needs `quality.enabled`).',
      },
    ),
    health_aware: Type.Boolean({
      default: true,
      description:
        'Skip targets whose circuit breaker (ai-fallback) is open, unless all are open. The others follow as failover candidates, best first.',
    }),
    prompt_affinity: Type.Optional(
      Type.Object(
        {
          min_prefix_chars: Type.Integer({
            minimum: 64,
            maximum: 1_000_000,
            default: 2048,
            description:
              'Requests whose prompt starts with at least this many identical characters (system prompt, tools, first messages) go to the same target while it is eligible and healthy, so its prompt cache keeps working.',
          }),
        },
        {
          description:
            "Keeps requests sharing a long prompt prefix on one target, for the provider's prompt cache.",
        },
      ),
    ),
    adaptive: Adaptive,
  },
  { description: 'A virtual model: a set of targets and how to choose among them.' },
);

const Rule = Type.Object(
  {
    task: Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: NAME,
      description:
        'Task the rule assigns, e.g. `code`, `summarization`, `extraction`, `math`, `vision`, `long-context`, `chat`.',
    }),
    keywords: Type.Array(Type.String({ minLength: 1, maxLength: 128 }), {
      default: [],
      maxItems: 256,
      description:
        'Words or phrases (case-insensitive, whole words) any of which in the last user message matches.',
    }),
    regex: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 512,
        description: 'A JavaScript regular expression (case-insensitive) tested on the last user message.',
      }),
    ),
    min_tokens: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 100_000_000,
        description: 'Matches a prompt of at least this many tokens.',
      }),
    ),
    max_tokens: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 100_000_000,
        description: 'Matches a prompt of at most this many tokens.',
      }),
    ),
    has_image: Type.Optional(
      Type.Boolean({ description: 'Matches when the request has (true) or has no (false) image parts.' }),
    ),
    has_tools: Type.Optional(
      Type.Boolean({ description: 'Matches when the request declares (true) or declares no (false) tools.' }),
    ),
  },
  {
    description:
      'A task rule: every condition set must hold. Rules are tried in order before the embedding classifier; the first match wins.',
  },
);

const Tasks = Type.Object(
  {
    model: Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: NAME,
      default: 'auto',
      description: 'Virtual model name that asks for task routing.',
    }),
    rules: Type.Array(Rule, {
      default: [],
      maxItems: 256,
      description: 'Rules tried in order; the first that matches sets the task.',
    }),
    examples: Type.Record(
      Type.String(),
      Type.Array(Type.String({ minLength: 1, maxLength: 4096 }), { minItems: 1, maxItems: 1000 }),
      {
        default: {},
        description:
          'Labelled example prompts per task for the embedding classifier (nearest centroid, local embedder). Leave empty to use the built-in examples for `code`, `summarization`, `extraction`, `math`, `chat`.',
      },
    ),
    embedder: embedderSchema(
      CLASSIFIER_DIMENSIONS,
      'What turns prompts into vectors for the classifier: the built-in local embedder (offline, the default), or an embeddings endpoint. Another embedder needs its own `min_confidence`: measure it with `npm run eval:tasks`.',
      'A failed call leaves the request to `default_task`.',
    ),
    min_confidence: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 0.015,
      description:
        "Smallest margin of the nearest task's score over the next one's (cosine similarities) for the classifier's answer to count; below it the task is `default_task`. The default suits the built-in local embedder, whose margins are mostly under 0.1 (measured by `npm run eval:tasks`).",
    }),
    default_task: Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: NAME,
      default: 'chat',
      description: 'Task of a request no rule and no confident classification assigns.',
    }),
    routes: Type.Record(Type.String(), Type.String({ minLength: 1, maxLength: 64, pattern: NAME }), {
      description: 'Pool or target name per task; `default_task` must have one.',
    }),
    premium: Type.Optional(
      Type.Object(
        {
          pool: Type.String({
            minLength: 1,
            maxLength: 64,
            pattern: NAME,
            description: 'Pool or target for high-stakes requests, whatever their task.',
          }),
          consumer_tags: Type.Array(Type.String({ minLength: 1, maxLength: 128 }), {
            default: [],
            description: 'Consumers carrying one of these Kong tags are high-stakes.',
          }),
          header: trustedHeader(
            'A trusted request header (set by a plugin or proxy in front, never by clients) whose value `premium` marks a request high-stakes.',
          ),
        },
        { description: 'Complexity routing: high-stakes requests go to a premium pool.' },
      ),
    ),
  },
  { description: 'Task routing: requests for `model` are classified and sent to the pool of their task.' },
);

const Arm = Type.Object(
  {
    name: Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: NAME,
      description: 'Arm name, returned in `x-ai-experiment`.',
    }),
    route_to: Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: NAME,
      description: 'Pool or target serving this arm.',
    }),
    weight: Type.Integer({
      minimum: 0,
      maximum: 10_000,
      default: 1,
      description: "Relative share of users. Ignored for the rollout's arm whenever `rollout` is set.",
    }),
  },
  { description: 'One arm of an experiment.' },
);

const Experiment = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 64, pattern: NAME, description: 'Experiment name.' }),
    model: Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: NAME,
      description: 'Requested model (pool, target or task model) whose requests are split between the arms.',
    }),
    sticky_by: Type.Union([Type.Literal('consumer'), Type.Literal('credential'), Type.Literal('header')], {
      default: 'consumer',
      description:
        'What keeps a user on one arm: the Kong consumer, the credential, or `sticky_header`. A request without it is served by the control arm.',
    }),
    sticky_header: trustedHeader('For `sticky_by: header`: the request header identifying the user.'),
    control: Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: NAME,
      description: 'Name of the control arm.',
    }),
    arms: Type.Array(Arm, { minItems: 2, maxItems: 16, description: 'The arms, the control among them.' }),
    rollout: Type.Optional(
      Type.Object(
        {
          arm: Type.String({
            minLength: 1,
            maxLength: 64,
            pattern: NAME,
            description: 'The arm being rolled out.',
          }),
          start: Type.String({
            minLength: 1,
            maxLength: 64,
            description:
              'When the rollout starts, an RFC 3339 time such as `2026-12-01T09:00:00Z`; the same on every node.',
          }),
          start_percent: Type.Number({
            minimum: 0,
            maximum: 100,
            default: 5,
            description: 'Share of users on the arm at the start.',
          }),
          step_percent: Type.Number({
            minimum: 0,
            maximum: 100,
            default: 5,
            description: 'Share added every interval.',
          }),
          interval_s: Type.Integer({
            minimum: 1,
            maximum: 31_536_000,
            default: 3600,
            description: 'Seconds between steps.',
          }),
          max_percent: Type.Number({
            minimum: 0,
            maximum: 100,
            default: 100,
            description: 'Share the rollout stops at.',
          }),
        },
        {
          description:
            "Gradual rollout of one arm against the control: its share of all users grows by steps, taken only from the control's users (so it is capped at the control's share when other arms have weights); users only ever move from the control to the arm.",
        },
      ),
    ),
    guard: Type.Optional(
      Type.Object(
        {
          max_error_rate_increase: Type.Number({
            minimum: 0,
            maximum: 1,
            default: 0.05,
            description:
              "Halt when an arm's error rate exceeds the control's by more than this (0.05 = 5 points).",
          }),
          max_latency_ratio: Type.Number({
            minimum: 1,
            maximum: 100,
            default: 1.5,
            description: "Halt when an arm's mean latency exceeds the control's times this.",
          }),
          max_quality_drop: Type.Number({
            minimum: 0,
            maximum: 1,
            default: 0.1,
            description:
              "Halt when an arm's mean quality score (ai-router's checks, with `quality.enabled`) is below the control's by more than this.",
          }),
          min_requests: Type.Integer({
            minimum: 1,
            maximum: 1_000_000,
            default: 100,
            description:
              'Requests (and, for quality, scored answers) each side needs before the guard judges.',
          }),
        },
        {
          description:
            "Automatic halt and rollback: when an arm does worse than the control (judged on the current and previous 5-minute windows, all nodes' requests together), the whole experiment halts and every user is served by the control, on every node, until the experiment's config changes.",
        },
      ),
    ),
  },
  { description: 'An A/B test or gradual rollout of a requested model.' },
);

/** Who a rule covers: consumers by username or id, Kong tags, ACL groups (any one matches). */
const whoFields = () => ({
  consumers: Type.Array(Type.String({ minLength: 1, maxLength: 128 }), {
    default: [],
    description: 'Kong consumer usernames or ids the rule applies to.',
  }),
  consumer_tags: Type.Array(Type.String({ minLength: 1, maxLength: 128 }), {
    default: [],
    description: 'Consumers with one of these Kong tags.',
  }),
  groups: Type.Array(Type.String({ minLength: 1, maxLength: 128 }), {
    default: [],
    description: "Consumer groups (Kong's ACL plugin `x-consumer-groups` header).",
  }),
});

const AccessRule = Type.Object(
  {
    ...whoFields(),
    models: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
      minItems: 1,
      description:
        'Requested model names (pools, targets, the task model) these consumers may use; `*` for all.',
    }),
  },
  { description: 'Which models some consumers may ask for.' },
);

const RegionRule = Type.Object(
  {
    ...whoFields(),
    regions: Type.Array(Type.String({ minLength: 1, maxLength: 32, pattern: NAME }), {
      minItems: 1,
      description: 'Regions their requests may be served from.',
    }),
  },
  { description: 'Regions some consumers may be served from.' },
);

const Residency = Type.Object(
  {
    regions: Type.Array(Type.String({ minLength: 1, maxLength: 32, pattern: NAME }), {
      default: [],
      description: 'Regions every request of this route may be served from; empty: no route-wide rule.',
    }),
    consumers: Type.Array(RegionRule, {
      default: [],
      description:
        'Per consumer, tag or group: the allowed regions narrow the route-wide ones (all matching rules apply).',
    }),
    header: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 64,
        pattern: LOWER_HEADER_NAME,
        description:
          'A request header in which clients may list regions (comma-separated) to narrow what is allowed further; it can never widen it.',
      }),
    ),
  },
  {
    description:
      'Data residency: a request is only sent to targets in allowed regions (never routed elsewhere); with none eligible it gets 403.',
  },
);

const Redaction = Type.Object(
  {
    enabled: Type.Boolean({
      default: false,
      description: 'Replace personal data and secrets in prompts sent to targets with `trusted: false`.',
    }),
    entities: Type.Array(Type.Union(REDACTED_ENTITIES.map((e) => Type.Literal(e))), {
      default: [...REDACTED_ENTITIES],
      uniqueItems: true,
      description:
        'What is replaced. `national_id`: US SSN, UK NINO, French NIR, Spanish DNI/NIE, Italian codice fiscale (with their check digits); `secret`: API keys, bearer tokens, AWS keys, JWTs, private keys, `password=` values.',
    }),
    restore: Type.Boolean({
      default: true,
      description:
        'Put the original values back where the answer repeats a placeholder (streamed answers too).',
    }),
  },
  { description: 'Prompt redaction before untrusted providers.' },
);

const Judge = Type.Object(
  {
    target: Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: NAME,
      description: 'The target that scores answers (one of `targets`).',
    }),
    sample_rate: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 0.01,
      description: 'Share of answers sent to the judge.',
    }),
    max_per_minute: Type.Integer({
      minimum: 1,
      maximum: 100_000,
      default: 10,
      description: 'Most judge calls per minute on each node, whatever the traffic.',
    }),
    max_cost_usd_per_hour: Type.Number({
      minimum: 0,
      maximum: 100_000,
      default: 1,
      description:
        "Most the judge may spend per hour on each node (at the judge target's prices); past it, no more samples that hour.",
    }),
    rubric: Type.String({
      minLength: 1,
      maxLength: 8192,
      default:
        'Rate how well the answer serves the request: correct, complete, relevant and clear. 1 is useless, 10 is excellent.',
      description: 'What the judge is asked to score, on a 1 to 10 scale.',
    }),
  },
  { description: 'A model that scores a sample of answers against a rubric.' },
);

const Quality = Type.Object(
  {
    enabled: Type.Boolean({
      default: false,
      description:
        "Check every answer (empty, refusal, cut by length, invalid JSON when JSON was asked, tool call not matching its schema, answer language unlike the prompt's, broken stream) and count the results per target, task and experiment arm; they feed `adaptive` pools and experiment guards.",
    }),
    max_answer_bytes: Type.Integer({
      minimum: 1024,
      maximum: 16 * 1024 * 1024,
      default: 256 * 1024,
      description: 'Answers larger than this are not checked (only their end and the stream are).',
    }),
    feedback: Type.Object(
      {
        enabled: Type.Boolean({
          default: false,
          description:
            'Take feedback on this route: `POST …/v1/feedback` with `{"request_id", "score": 0..1}` or `{"request_id", "label": "good"|"bad"}`, where `request_id` is the `x-ai-feedback-id` header of the answer rated; only the consumer who made the request may rate it, once.',
        }),
        max_age_s: Type.Integer({
          minimum: 60,
          maximum: 30 * 86_400,
          default: 86_400,
          description: 'Feedback on requests older than this is refused.',
        }),
      },
      { description: 'Explicit feedback from clients.' },
    ),
    judge: Type.Optional(Judge),
  },
  { description: 'Quality signals: automatic checks, client feedback and an optional judge model.' },
);

const Headers = Type.Object(
  {
    enabled: Type.Boolean({
      default: true,
      description:
        'Send `x-ai-model`, `x-ai-provider`, `x-ai-target`, `x-ai-route-reason` (and `x-ai-task`, `x-ai-experiment` when they apply) with every answer.',
    }),
  },
  { description: 'Response headers saying who answered and why.' },
);

export const routerSchema = Type.Object({
  targets: Type.Array(Target, {
    minItems: 1,
    maxItems: 256,
    description: 'Models that requests can be routed to.',
  }),
  pools: Type.Array(Pool, {
    default: [],
    maxItems: 256,
    description: 'Virtual models (aliases) served by a set of targets.',
  }),
  model_map: Type.Record(
    Type.String({ minLength: 1, maxLength: 256 }),
    Type.String({ minLength: 1, maxLength: 64, pattern: NAME }),
    {
      default: {},
      description:
        'Client model names mapped to a pool or target, e.g. `gpt-4: smart`. Applied before anything else.',
    },
  ),
  allow_model_names: Type.Boolean({
    default: true,
    description:
      "Let a client ask for a target's provider model name (e.g. `gpt-4o`) and get a target serving it. When false, only pool, target and mapped names are accepted.",
  }),
  default_target: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 64,
      description:
        'Pool or target used when the requested model matches nothing. When unset, an unknown model is refused with 404.',
    }),
  ),
  tasks: Type.Optional(Tasks),
  experiments: Type.Array(Experiment, {
    default: [],
    maxItems: 32,
    description: 'A/B tests and gradual rollouts.',
  }),
  access: Type.Array(AccessRule, {
    default: [],
    maxItems: 256,
    description:
      'Model allow-lists per consumer, tag or group. When any rule is set, a consumer matched by no rule may use no model; a request for a model its rules do not list gets 403.',
  }),
  residency: Type.Optional(Residency),
  redaction: Type.Optional(Redaction),
  quality: Quality,
  headers: Headers,
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

    if (target.base_url !== undefined && !isHttpUrl(target.base_url)) {
      problems.push({ path: `${at}.base_url`, message: 'must be an http(s) URL without credentials' });
    }
    if (target.provider === 'azure' && target.base_url === undefined) {
      problems.push({
        path: `${at}.base_url`,
        message: 'required for provider azure (https://RESOURCE.openai.azure.com)',
      });
    }
    if ((target.provider === 'bedrock') !== (target.aws !== undefined)) {
      problems.push({
        path: `${at}.aws`,
        message:
          target.provider === 'bedrock' ? 'required for provider bedrock' : 'only for provider bedrock',
      });
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
  problems.push(...checkRouting(config, new Set(firstIndex.keys())));
  return problems;
}

/** Pools, mappings, tasks and experiments name targets and pools that exist. */
function checkRouting(config: RouterConfig, targetNames: ReadonlySet<string>): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const poolNames = new Set<string>();
  config.pools.forEach((pool, i) => {
    if (targetNames.has(pool.name) || poolNames.has(pool.name)) {
      problems.push({ path: `pools[${i}].name`, message: 'already the name of a target or pool' });
    }
    poolNames.add(pool.name);
    pool.targets.forEach((name, j) => {
      if (!targetNames.has(name))
        problems.push({ path: `pools[${i}].targets[${j}]`, message: 'names no target' });
    });
  });
  const routable = (name: string) => targetNames.has(name) || poolNames.has(name);
  const mustRoute = (path: string, name: string) => {
    if (!routable(name)) problems.push({ path, message: 'names no target or pool' });
  };
  for (const [model, name] of Object.entries(config.model_map))
    mustRoute(`model_map[${JSON.stringify(model)}]`, name);
  if (config.default_target !== undefined) mustRoute('default_target', config.default_target);

  const tasks = config.tasks;
  if (tasks) {
    problems.push(...checkEmbedder(tasks.embedder, 'tasks.embedder'));
    if (routable(tasks.model))
      problems.push({ path: 'tasks.model', message: 'already the name of a target or pool' });
    for (const [task, name] of Object.entries(tasks.routes)) {
      if (!TASK_NAME.test(task))
        problems.push({ path: `tasks.routes.${task}`, message: `task names must match ${NAME}` });
      mustRoute(`tasks.routes.${task}`, name);
    }
    for (const task of Object.keys(tasks.examples)) {
      if (!TASK_NAME.test(task))
        problems.push({ path: `tasks.examples.${task}`, message: `task names must match ${NAME}` });
    }
    if (!Object.hasOwn(tasks.routes, tasks.default_task)) {
      problems.push({
        path: 'tasks.routes',
        message: `needs a route for default_task "${tasks.default_task}"`,
      });
    }
    tasks.rules.forEach((rule, i) => {
      const at = `tasks.rules[${i}]`;
      if (rule.regex !== undefined && !compiles(rule.regex)) {
        problems.push({ path: `${at}.regex`, message: 'not a valid regular expression' });
      }
      const conditions = [rule.regex, rule.min_tokens, rule.max_tokens, rule.has_image, rule.has_tools];
      if (rule.keywords.length === 0 && conditions.every((c) => c === undefined)) {
        problems.push({ path: at, message: 'has no condition: it would match every request' });
      }
      if (
        rule.min_tokens !== undefined &&
        rule.max_tokens !== undefined &&
        rule.min_tokens > rule.max_tokens
      ) {
        problems.push({ path: `${at}.min_tokens`, message: 'must not exceed max_tokens' });
      }
    });
    if (tasks.premium) mustRoute('tasks.premium.pool', tasks.premium.pool);
  }

  const requestable = (name: string) =>
    routable(name) || name === tasks?.model || Object.hasOwn(config.model_map, name);
  const experimented = new Set<string>();
  const experimentNames = new Set<string>();
  config.experiments.forEach((e, i) => {
    const at = `experiments[${i}]`;
    if (experimentNames.has(e.name))
      problems.push({ path: `${at}.name`, message: 'duplicate experiment name' });
    experimentNames.add(e.name);
    if (!requestable(e.model))
      problems.push({ path: `${at}.model`, message: 'names no target, pool or task model' });
    if (experimented.has(e.model))
      problems.push({ path: `${at}.model`, message: 'already has an experiment' });
    experimented.add(e.model);
    const arms = new Set<string>();
    e.arms.forEach((arm, j) => {
      if (arms.has(arm.name)) problems.push({ path: `${at}.arms[${j}].name`, message: 'duplicate arm name' });
      arms.add(arm.name);
      mustRoute(`${at}.arms[${j}].route_to`, arm.route_to);
    });
    if (!arms.has(e.control)) problems.push({ path: `${at}.control`, message: 'names no arm' });
    if (e.sticky_by === 'header' && e.sticky_header === undefined) {
      problems.push({ path: `${at}.sticky_header`, message: 'required when sticky_by is header' });
    }
    if (e.rollout) {
      if (!arms.has(e.rollout.arm) || e.rollout.arm === e.control) {
        problems.push({ path: `${at}.rollout.arm`, message: 'must name an arm other than the control' });
      }
      if (
        !/^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/.test(e.rollout.start) ||
        Number.isNaN(Date.parse(e.rollout.start))
      ) {
        problems.push({
          path: `${at}.rollout.start`,
          message: 'must be an RFC 3339 time, e.g. 2026-12-01T09:00:00Z',
        });
      }
      if (e.rollout.start_percent > e.rollout.max_percent) {
        problems.push({ path: `${at}.rollout.start_percent`, message: 'must not exceed max_percent' });
      }
    }
    if (e.arms.every((arm) => arm.weight === 0) && !e.rollout) {
      problems.push({ path: `${at}.arms`, message: 'at least one arm needs a weight above 0' });
    }
  });

  config.pools.forEach((pool, i) => {
    if (pool.strategy === 'adaptive' && !config.quality.enabled) {
      problems.push({
        path: `pools[${i}].strategy`,
        message: 'adaptive needs quality.enabled: it learns from the quality checks',
      });
    }
    if (pool.adaptive.min_explore > pool.adaptive.max_explore) {
      problems.push({ path: `pools[${i}].adaptive.min_explore`, message: 'must not exceed max_explore' });
    }
  });
  const judge = config.quality.judge;
  if (judge && !targetNames.has(judge.target))
    problems.push({ path: 'quality.judge.target', message: 'names no target' });
  if (judge && !config.quality.enabled)
    problems.push({ path: 'quality.judge', message: 'needs quality.enabled' });
  if (config.quality.feedback.enabled && !config.quality.enabled) {
    problems.push({ path: 'quality.feedback.enabled', message: 'needs quality.enabled' });
  }

  config.access.forEach((rule, i) => {
    if (rule.consumers.length + rule.consumer_tags.length + rule.groups.length === 0) {
      problems.push({ path: `access[${i}]`, message: 'names no consumer, tag or group' });
    }
    rule.models.forEach((name, j) => {
      if (name !== '*' && !requestable(name)) {
        problems.push({ path: `access[${i}].models[${j}]`, message: 'names no target, pool or task model' });
      }
    });
  });
  config.residency?.consumers.forEach((rule, i) => {
    if (rule.consumers.length + rule.consumer_tags.length + rule.groups.length === 0) {
      problems.push({ path: `residency.consumers[${i}]`, message: 'names no consumer, tag or group' });
    }
  });
  return problems;
}

const TASK_NAME = new RegExp(NAME);

function compiles(source: string): boolean {
  try {
    new RegExp(source, 'iu');
    return true;
  } catch {
    return false;
  }
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
    'Target names are unique; pool names differ from every target and pool name.',
    '`pools[].targets`, `model_map`, `default_target`, `tasks.routes`, `tasks.premium.pool` and experiment arms name targets or pools.',
    '`tasks.routes` has a route for `tasks.default_task`; every task rule has a condition and a valid `regex`.',
    "Experiment names are unique; an experiment's `model` is requestable and has no other experiment; its `control` and `rollout.arm` name different arms; `sticky_header` is set for `sticky_by: header`; `rollout.start` is an RFC 3339 time.",
    'Access and residency rules name a consumer, tag or group; access rules list requestable models or `*`.',
    '`azure` targets set `base_url`; `bedrock` targets, and only they, set `aws`.',
    '`base_url` is an http(s) URL without user or password.',
    '`api_key` and `api_key_env` are not both set.',
    '`headers` holds valid header names and no `authorization`, `api-key` or `x-api-key` header.',
    '`timeouts.first_byte_ms` and `timeouts.idle_ms` do not exceed `timeouts.total_ms`.',
  ],
});
