import { Type } from '@sinclair/typebox';
import { type ConfigOf, type ConfigProblem, definePluginConfig } from '../lib/config';

const NAME = '^[A-Za-z0-9._:-]+$';
/** RFC 9110 token characters, lowercase: Kong and the relay see header names in lowercase. */
const HEADER_NAME = "^[!#$%&'*+.^_`|~0-9a-z-]+$";

/** A request header the config trusts (set by a plugin or proxy in front, never by clients). */
const trustedHeader = (description: string) =>
  Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: HEADER_NAME, description }));

const Limit = Type.Object(
  {
    name: Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: NAME,
      description:
        'Name of the limit. Its counters are keyed by this name: every route whose ai-budget has a limit of this name shares them.',
    }),
    scope: Type.Union(
      [
        Type.Literal('consumer'),
        Type.Literal('credential'),
        Type.Literal('consumer_group'),
        Type.Literal('route'),
        Type.Literal('service'),
        Type.Literal('global'),
        Type.Literal('header'),
      ],
      {
        description:
          "Whose usage is counted: Kong's authenticated `consumer` or `credential`, each ACL group of the consumer (`consumer_group`: the `x-consumer-groups` header Kong's acl plugin sets), the `route`, the `service`, everyone (`global`), or the value of a trusted `header`. Requests without that identity share one `anonymous` counter.",
      },
    ),
    header: trustedHeader(
      'For `scope: header`: the header naming who pays, e.g. one an authentication plugin sets. Only trust a header that clients cannot set themselves.',
    ),
    window: Type.Union(
      [
        Type.Literal('minute'),
        Type.Literal('hour'),
        Type.Literal('day'),
        Type.Literal('month'),
        Type.Literal('sliding'),
      ],
      {
        description:
          'Calendar window in `time_zone` (a new budget at the start of each minute, hour, day or month), or `sliding` over the last `sliding_window_s` seconds.',
      },
    ),
    sliding_window_s: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 31 * 86_400,
        description: 'Length of a `sliding` window, in seconds.',
      }),
    ),
    unit: Type.Union(
      [
        Type.Literal('tokens'),
        Type.Literal('input_tokens'),
        Type.Literal('output_tokens'),
        Type.Literal('cost_usd'),
      ],
      {
        description:
          "What is counted: all tokens, prompt tokens, answer tokens, or cost in USD from the target's prices (ai-router `prices`, or the built-in price of a well-known model).",
      },
    ),
    limit: Type.Number({
      minimum: 0.000001,
      maximum: 1_000_000_000_000,
      description: 'The cap per window: tokens (an integer), or USD (at most 1000000).',
    }),
    mode: Type.Union([Type.Literal('hard'), Type.Literal('soft')], {
      default: 'hard',
      description:
        '`hard`: a request that does not fit is refused (429) or clamped; `soft`: it is served and flagged (`x-ai-budget-soft-exceeded`, log, metrics).',
    }),
  },
  { description: 'One cap. Every limit that applies to a request must admit it.' },
);

const PriorityClass = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 32, pattern: NAME, description: 'Name of the class.' }),
    share: Type.Number({
      minimum: 0.01,
      maximum: 1,
      description:
        'Share of each hard limit this class may use: at 0.8 its requests stop at 80 % of the cap, leaving the rest to higher classes.',
    }),
  },
  { description: 'A priority class.' },
);

export const budgetSchema = Type.Object({
  limits: Type.Array(Limit, {
    minItems: 1,
    maxItems: 32,
    description: 'The caps this plugin instance enforces.',
  }),
  time_zone: Type.String({
    default: 'UTC',
    maxLength: 64,
    description: 'IANA time zone of the calendar windows, e.g. `Europe/Paris`.',
  }),
  default_max_tokens: Type.Integer({
    minimum: 1,
    maximum: 1_000_000,
    default: 4096,
    description:
      'Answer tokens reserved for a request that sets no `max_tokens` / `max_completion_tokens`; the request is sent with that limit, so the reservation holds.',
  }),
  on_exceed: Type.Union([Type.Literal('clamp'), Type.Literal('reject')], {
    default: 'clamp',
    description:
      'When the whole reservation does not fit a hard limit: `clamp` lowers `max_tokens` to what the budget affords (down to `min_output_tokens`), `reject` refuses with 429.',
  }),
  min_output_tokens: Type.Integer({
    minimum: 1,
    maximum: 1_000_000,
    default: 64,
    description: 'Fewest answer tokens worth serving when clamping; below it the request is refused.',
  }),
  priority: Type.Object(
    {
      classes: Type.Array(PriorityClass, {
        default: [],
        maxItems: 16,
        description:
          'Priority classes. A request names its class by `header`, else by a consumer tag, else `default_class`; a request of no known class uses all of the cap.',
      }),
      header: trustedHeader(
        "Trusted header naming the request's class (set by a plugin or proxy in front, never by clients).",
      ),
      consumer_tag_prefix: Type.String({
        default: 'ai-priority:',
        maxLength: 64,
        description: 'A consumer tagged `<prefix><class>` (e.g. `ai-priority:batch`) is in that class.',
      }),
      default_class: Type.Optional(
        Type.String({ minLength: 1, maxLength: 32, description: 'Class of requests that name none.' }),
      ),
    },
    { description: 'Priority classes: lower classes stop early so higher ones keep the rest of the cap.' },
  ),
  fault_tolerant: Type.Boolean({
    default: true,
    description:
      'When the store (Redis) fails: `true` keeps serving, each node counting alone against `local_share` of each limit (logged); `false` refuses with 503.',
  }),
  local_share: Type.Number({
    minimum: 0.001,
    maximum: 1,
    default: 0.1,
    description:
      'Share of each limit one node may spend on its own while the store is down: overspend stays below nodes × share.',
  }),
  hold_ms: Type.Integer({
    minimum: 1_000,
    maximum: 86_400_000,
    default: 900_000,
    description:
      'A reservation whose request never finished (a crashed node) is released after this long. Keep it above the longest answer.',
  }),
  lease: Type.Object(
    {
      enabled: Type.Boolean({
        default: true,
        description:
          'With a shared store (Redis), serve busy counters from node-local leases: the node reserves a slice of the headroom in one store call and admits the next requests against it in memory, with no round trip. Caps hold as without leases.',
      }),
      max_age_ms: Type.Integer({
        minimum: 100,
        maximum: 60_000,
        default: 1_000,
        description:
          "A lease admits requests this long; then it is settled with its requests' actual usage once they end. Usage served from a lease reaches the store (and the admin endpoint) that much later, and a node that dies loses it.",
      }),
      headroom_share: Type.Number({
        minimum: 0.001,
        maximum: 0.5,
        default: 0.1,
        description:
          "Most of a hard limit's remaining headroom one lease may take. When that is under two requests' worth, requests reserve one by one in the store, so near a cap no node holds what another needs.",
      }),
      requests: Type.Integer({
        minimum: 2,
        maximum: 10_000,
        default: 16,
        description:
          'A lease covers at most this many requests like the one that asked for it; fewer when the counters are less busy (leases start at 4 reservations per `max_age_ms`).',
      }),
    },
    { description: 'Node-local leases of busy counters (no store round trip per request).' },
  ),
  expose_headers: Type.Boolean({
    default: true,
    description:
      'Send `x-ratelimit-limit-tokens`, `x-ratelimit-remaining-tokens`, `x-ratelimit-reset-tokens` (and `-cost-usd` equivalents) for the tightest limit.',
  }),
});

export type BudgetConfig = ConfigOf<typeof budgetSchema>;
export type BudgetLimit = BudgetConfig['limits'][number];

function checkBudget(config: BudgetConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const names = new Map<string, number>();
  config.limits.forEach((limit, i) => {
    const at = `limits[${i}]`;
    const first = names.get(limit.name);
    if (first !== undefined) {
      problems.push({
        path: `${at}.name`,
        message: `duplicate limit name, already used by limits[${first}]`,
      });
    } else names.set(limit.name, i);
    if (limit.scope === 'header' && limit.header === undefined) {
      problems.push({ path: `${at}.header`, message: 'required when scope is header' });
    }
    if (limit.scope !== 'header' && limit.header !== undefined) {
      problems.push({ path: `${at}.header`, message: 'only used when scope is header' });
    }
    if (limit.window === 'sliding' && limit.sliding_window_s === undefined) {
      problems.push({ path: `${at}.sliding_window_s`, message: 'required when window is sliding' });
    }
    if (limit.window !== 'sliding' && limit.sliding_window_s !== undefined) {
      problems.push({ path: `${at}.sliding_window_s`, message: 'only used when window is sliding' });
    }
    if (limit.unit === 'cost_usd' && limit.limit > 1_000_000) {
      problems.push({ path: `${at}.limit`, message: 'a cost limit is at most 1000000 USD' });
    }
    if (limit.unit !== 'cost_usd' && !Number.isInteger(limit.limit)) {
      problems.push({ path: `${at}.limit`, message: 'a token limit is a whole number' });
    }
  });
  if (!isTimeZone(config.time_zone)) {
    problems.push({ path: 'time_zone', message: 'not an IANA time zone' });
  }
  const classes = new Set<string>();
  config.priority.classes.forEach((c, i) => {
    if (classes.has(c.name))
      problems.push({ path: `priority.classes[${i}].name`, message: 'duplicate class' });
    classes.add(c.name);
  });
  const fallbackClass = config.priority.default_class;
  if (fallbackClass !== undefined && !classes.has(fallbackClass)) {
    problems.push({ path: 'priority.default_class', message: 'names no class in priority.classes' });
  }
  return problems;
}

function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

export const budgetConfig = definePluginConfig({
  name: 'ai-budget',
  schema: budgetSchema,
  check: checkBudget,
  rules: [
    'Limit names are unique within an instance.',
    '`header` is set exactly when `scope` is `header`; `sliding_window_s` exactly when `window` is `sliding`.',
    'Token limits are whole numbers; cost limits are at most 1000000 USD.',
    '`time_zone` is an IANA time zone.',
    'Class names are unique; `priority.default_class` names one of them.',
  ],
});
