import { Type } from '@sinclair/typebox';
import { type ConfigOf, type ConfigProblem, definePluginConfig } from '../lib/config';
import { LOCAL_EMBEDDER_DEFAULT_DIMENSIONS, LOCAL_EMBEDDER_DEFAULT_THRESHOLD } from '../lib/embed/local';
import { checkEmbedder, embedderSchema } from './embedder';

const Embedder = embedderSchema(
  LOCAL_EMBEDDER_DEFAULT_DIMENSIONS,
  'What turns prompts into vectors. Its id and dimensions are part of the namespace: switching embedders starts an empty semantic cache and never mixes vectors.',
  'A failed call makes the semantic tier miss (the exact tier still answers).',
);

export const semanticCacheSchema = Type.Object({
  exact: Type.Object(
    {
      enabled: Type.Boolean({
        default: true,
        description:
          'Answer a request whose answer-shaping content is identical to a cached one (canonical hash).',
      }),
    },
    { description: 'The exact tier.' },
  ),
  semantic: Type.Object(
    {
      enabled: Type.Boolean({
        default: true,
        description:
          'Answer a request whose conversation means the same as a cached one (cosine similarity of embeddings at or above `threshold`), among entries with equal model, parameters and system prompt.',
      }),
      threshold: Type.Optional(
        Type.Number({
          minimum: 0.5,
          maximum: 1,
          description: `Lowest cosine similarity that counts as a match. Unset: the \`local\` embedder's calibrated default (${LOCAL_EMBEDDER_DEFAULT_THRESHOLD}, docs/semantic-cache-eval.md); required for \`openai\` embedders, whose scales differ by model.`,
        }),
      ),
      conversation: Type.Union([Type.Literal('last_user'), Type.Literal('last_turns')], {
        default: 'last_user',
        description:
          'What is embedded: the last user message, or the last `turns` messages (the system prompt must be equal in both cases). A request whose last message is not a user text is matched exactly only.',
      }),
      turns: Type.Integer({
        minimum: 1,
        maximum: 50,
        default: 3,
        description:
          'For `conversation: last_turns`: how many of the latest non-system messages are embedded.',
      }),
    },
    { description: 'The semantic tier.' },
  ),
  embedder: Embedder,
  scope: Type.Union(
    [Type.Literal('consumer'), Type.Literal('credential'), Type.Literal('route'), Type.Literal('global')],
    {
      default: 'consumer',
      description:
        "Whose entries a request shares: Kong's authenticated `consumer` (default), its `credential`, everyone on the `route`, or everyone (`global`). A request without that identity (no consumer under `consumer`) is neither looked up nor stored: `x-cache-status: BYPASS`.",
    },
  ),
  ttl_s: Type.Integer({
    minimum: 1,
    maximum: 30 * 86_400,
    default: 3600,
    description: 'Seconds an answer stays servable.',
  }),
  max_entries: Type.Integer({
    minimum: 1,
    maximum: 1_000_000,
    default: 10_000,
    description: 'Most answers one namespace keeps; past it the oldest are evicted.',
  }),
  max_answer_bytes: Type.Integer({
    minimum: 256,
    maximum: 16 * 1024 * 1024,
    default: 256 * 1024,
    description: 'Answers larger than this (JSON body, or the whole stream) are not stored.',
  }),
  max_temperature: Type.Number({
    minimum: 0,
    maximum: 2,
    default: 1,
    description:
      "Requests with a higher `temperature` (absent counts as 1, the providers' default) are neither looked up nor stored: their answers are meant to vary.",
  }),
  cache_tool_calls: Type.Boolean({
    default: false,
    description:
      'Also store answers that call tools. Off by default: a tool call usually acts on a world that changes.',
  }),
  shadow: Type.Boolean({
    default: false,
    description:
      'Shadow mode: a semantic match is not served but forwarded (`x-cache-status: SHADOW`), and the fresh answer is compared with the cached one. The estimated false-hit rate is exported (`aigw_cache_shadow_false_hit_ratio`), so a threshold can be chosen on evidence. Exact hits are still served.',
  }),
  lookup_timeout_ms: Type.Integer({
    minimum: 1,
    maximum: 10_000,
    default: 200,
    description:
      'Limit of a lookup (store, embedding, index catch-up). Past it, or when the store fails, the request is a MISS and goes to the provider.',
  }),
  sync_interval_ms: Type.Integer({
    minimum: 10,
    maximum: 600_000,
    default: 500,
    description:
      'How often a node reads the entries other nodes stored into its vector index (at most once per interval per namespace, when a lookup needs it).',
  }),
  local_cache: Type.Object(
    {
      max_entries: Type.Integer({
        minimum: 0,
        maximum: 1_000_000,
        default: 1000,
        description:
          'Answers each node keeps in memory in front of the store (0: none). The largest value among instances applies.',
      }),
      ttl_ms: Type.Integer({
        minimum: 1,
        maximum: 3_600_000,
        default: 5000,
        description:
          "How long a node serves an answer from its memory without asking the store: a purge or eviction reaches other nodes' memory within this time.",
      }),
    },
    { description: 'The per-node tier in front of the store.' },
  ),
  expose_headers: Type.Boolean({
    default: true,
    description:
      'Send `x-cache-status` (HIT, MISS, BYPASS, SHADOW) and, for semantic matches, `x-cache-similarity`.',
  }),
});

export type SemanticCacheConfig = ConfigOf<typeof semanticCacheSchema>;

function checkCache(config: SemanticCacheConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  problems.push(...checkEmbedder(config.embedder, 'embedder'));
  if (
    config.embedder.kind === 'openai' &&
    config.semantic.enabled &&
    config.semantic.threshold === undefined
  ) {
    problems.push({ path: 'semantic.threshold', message: 'required with an openai embedder' });
  }
  if (!config.exact.enabled && !config.semantic.enabled) {
    problems.push({ path: 'exact.enabled', message: 'enable the exact tier, the semantic tier, or both' });
  }
  if (config.shadow && !config.semantic.enabled) {
    problems.push({ path: 'shadow', message: 'shadow mode measures the semantic tier: enable semantic' });
  }
  return problems;
}

export const semanticCacheConfig = definePluginConfig({
  name: 'ai-semantic-cache',
  schema: semanticCacheSchema,
  check: checkCache,
  rules: [
    '`embedder.kind: openai` needs `embedder.base_url`, `embedder.dimensions` and (with the semantic tier) `semantic.threshold`; `base_url` and `api_key` are only for `openai`.',
    'At least one of `exact.enabled` and `semantic.enabled`.',
    '`shadow` needs the semantic tier.',
  ],
});
