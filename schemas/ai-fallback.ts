import { Type } from '@sinclair/typebox';
import { type ConfigOf, type ConfigProblem, definePluginConfig } from '../lib/config';

const TargetName = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._:-]+$' });

const Chain = Type.Object(
  {
    target: Type.String({
      minLength: 1,
      maxLength: 64,
      description: 'Name of an ai-router target, or `*` for every target without a chain of its own.',
    }),
    fallbacks: Type.Array(TargetName, {
      minItems: 1,
      maxItems: 10,
      description: 'ai-router target names tried in this order when the target fails.',
    }),
  },
  { description: 'What to try, in order, when a target fails.' },
);

const Triggers = Type.Object(
  {
    statuses: Type.Array(Type.Integer({ minimum: 400, maximum: 599 }), {
      default: [429, 500, 502, 503, 504, 529],
      uniqueItems: true,
      description: 'Provider HTTP statuses that move the request to the next target.',
    }),
    connect_error: Type.Boolean({
      default: true,
      description: 'Move on when the provider cannot be reached (refused, reset, DNS).',
    }),
    timeout: Type.Boolean({
      default: true,
      description: 'Move on when an attempt times out (the target timeouts, or `attempt_timeout_ms`).',
    }),
    context_window: Type.Boolean({
      default: true,
      description:
        "Move on when the prompt does not fit the target: checked before sending (ai-router's `context_window`) and on the provider's `context_length_exceeded` error.",
    }),
    content_filter: Type.Boolean({
      default: false,
      description:
        'Move on when the provider refuses with a content filter (`content_filter` error or finish reason).',
    }),
  },
  { description: 'Which failures move the request to the next target. Others are answered as they are.' },
);

const Breaker = Type.Object(
  {
    enabled: Type.Boolean({
      default: true,
      description: 'Track each target and skip it while it is failing.',
    }),
    window_ms: Type.Integer({
      minimum: 1_000,
      maximum: 600_000,
      default: 30_000,
      description: 'Rolling window over which the failure rate is measured, per node.',
    }),
    min_requests: Type.Integer({
      minimum: 1,
      maximum: 100_000,
      default: 10,
      description: 'Attempts needed in the window before the failure rate can open the breaker.',
    }),
    failure_rate: Type.Number({
      minimum: 0.01,
      maximum: 1,
      default: 0.5,
      description: 'Share of failed attempts in the window that opens the breaker.',
    }),
    cooldown_ms: Type.Integer({
      minimum: 100,
      maximum: 3_600_000,
      default: 30_000,
      description:
        "How long an open breaker keeps the target out before a probe; a provider's `Retry-After` or rate-limit reset header sets it instead (up to `max_cooldown_ms`).",
    }),
    max_cooldown_ms: Type.Integer({
      minimum: 100,
      maximum: 86_400_000,
      default: 300_000,
      description: 'Longest cooldown a provider header may ask for.',
    }),
    half_open_probes: Type.Integer({
      minimum: 1,
      maximum: 100,
      default: 1,
      description: 'Requests let through at once, per node, to probe a target whose cooldown has passed.',
    }),
  },
  {
    description:
      'Circuit breaker per target. An open breaker is written to the store, so every node skips the target within a second.',
  },
);

const RetryBudget = Type.Object(
  {
    ratio: Type.Number({
      minimum: 0,
      maximum: 10,
      default: 0.2,
      description: 'Retries allowed per request over the window (0.2: at most one retry per five requests).',
    }),
    window_ms: Type.Integer({
      minimum: 1_000,
      maximum: 600_000,
      default: 10_000,
      description: 'Window over which requests and retries are counted, per node.',
    }),
    min_retries_per_s: Type.Number({
      minimum: 0,
      maximum: 10_000,
      default: 1,
      description: 'Retries always allowed per second, so light traffic can still fail over.',
    }),
  },
  {
    description:
      'Caps retries across all traffic of this plugin instance, so an outage does not multiply load.',
  },
);

const Hedge = Type.Object(
  {
    enabled: Type.Boolean({
      default: false,
      description:
        'When an attempt is slower than usual, send the request to the next target of the chain too (once per request) and keep the first answer; the other call is cancelled. A hedge takes one retry from the retry budget and counts as an attempt.',
    }),
    percentile: Type.Number({
      minimum: 50,
      maximum: 99.9,
      default: 95,
      description:
        "Hedge once the attempt has taken longer than this percentile of its target's recent answers on this node (time until the answer is ready: JSON whole, stream's first event).",
    }),
    min_samples: Type.Integer({
      minimum: 1,
      maximum: 256,
      default: 20,
      description: 'Answers of a target needed before its percentile is used.',
    }),
    default_delay_ms: Type.Integer({
      minimum: 1,
      maximum: 600_000,
      default: 2_000,
      description: 'Hedge delay while a target has fewer than `min_samples` answers.',
    }),
    min_delay_ms: Type.Integer({
      minimum: 1,
      maximum: 600_000,
      default: 50,
      description: 'Shortest hedge delay, whatever the percentile says.',
    }),
  },
  {
    description:
      'Hedged requests: trade a little extra load for a shorter tail. Off by default; a JSON answer is raced whole, so hedging suits streams and short answers best.',
  },
);

export const fallbackSchema = Type.Object({
  chains: Type.Array(Chain, {
    default: [],
    description:
      'Fallback chains by ai-router target. A target without a chain (and no `*` chain) is not retried elsewhere.',
  }),
  triggers: Triggers,
  max_attempts: Type.Integer({
    minimum: 1,
    maximum: 10,
    default: 3,
    description: 'Most attempts per request, the first included.',
  }),
  deadline_ms: Type.Integer({
    minimum: 100,
    maximum: 3_600_000,
    default: 120_000,
    description: 'Time allowed to get an answer started, across every attempt and backoff.',
  }),
  deadline_header: Type.Boolean({
    default: true,
    description: 'Let a client shorten the deadline with `x-ai-deadline-ms` (never lengthen it).',
  }),
  attempt_timeout_ms: Type.Optional(
    Type.Integer({
      minimum: 100,
      maximum: 3_600_000,
      description:
        'Time one attempt may take to start its answer (JSON: the whole answer; stream: the first event) before the next target is tried.',
    }),
  ),
  ttft_timeout_ms: Type.Optional(
    Type.Integer({
      minimum: 100,
      maximum: 3_600_000,
      description: 'Time allowed until the first byte of the answer before the next target is tried.',
    }),
  ),
  backoff: Type.Object(
    {
      base_ms: Type.Integer({
        minimum: 0,
        maximum: 60_000,
        default: 0,
        description: 'Wait before the second attempt.',
      }),
      max_ms: Type.Integer({
        minimum: 0,
        maximum: 60_000,
        default: 2_000,
        description: 'Longest wait between attempts.',
      }),
      jitter: Type.Boolean({
        default: true,
        description: 'Wait a random time up to the computed backoff (full jitter).',
      }),
    },
    { description: 'Wait between attempts: base_ms doubled per attempt, capped at max_ms.' },
  ),
  midstream: Type.Union([Type.Literal('error'), Type.Literal('continue')], {
    default: 'error',
    description:
      'A stream that breaks after its first byte: `error` ends it with an SSE error event; `continue` asks the next target to carry on from the partial answer, in the same stream.',
  }),
  breaker: Breaker,
  retry_budget: RetryBudget,
  hedge: Hedge,
  expose_headers: Type.Boolean({
    default: true,
    description: 'Send `x-ai-fallback-count` (attempts that failed before the answer) on answers.',
  }),
});

export type FallbackConfig = ConfigOf<typeof fallbackSchema>;

function checkFallback(config: FallbackConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const seen = new Map<string, number>();
  config.chains.forEach((chain, i) => {
    const first = seen.get(chain.target);
    if (first !== undefined) {
      problems.push({
        path: `chains[${i}].target`,
        message: `duplicate chain, already given by chains[${first}]`,
      });
    } else seen.set(chain.target, i);
    if (chain.fallbacks.includes(chain.target)) {
      problems.push({ path: `chains[${i}].fallbacks`, message: 'must not include the target itself' });
    }
    if (new Set(chain.fallbacks).size !== chain.fallbacks.length) {
      problems.push({ path: `chains[${i}].fallbacks`, message: 'names a target twice' });
    }
  });
  if (config.backoff.base_ms > config.backoff.max_ms) {
    problems.push({ path: 'backoff.base_ms', message: 'must not exceed backoff.max_ms' });
  }
  if (config.breaker.cooldown_ms > config.breaker.max_cooldown_ms) {
    problems.push({ path: 'breaker.cooldown_ms', message: 'must not exceed breaker.max_cooldown_ms' });
  }
  return problems;
}

export const fallbackConfig = definePluginConfig({
  name: 'ai-fallback',
  schema: fallbackSchema,
  check: checkFallback,
  rules: [
    'A target has at most one chain; a chain does not name its own target, nor one target twice.',
    '`backoff.base_ms` does not exceed `backoff.max_ms`.',
    '`breaker.cooldown_ms` does not exceed `breaker.max_cooldown_ms`.',
  ],
});
