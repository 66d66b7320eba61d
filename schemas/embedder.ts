import { Type } from '@sinclair/typebox';
import type { ConfigProblem } from '../lib/config';
import type { EmbedderConfig } from '../lib/embed';

/**
 * An embedder's config, shared by ai-semantic-cache and ai-router's task classifier: the
 * built-in local embedder, or an OpenAI-compatible embeddings endpoint.
 */
export function embedderSchema(localDimensions: number, description: string, onFailure: string) {
  return Type.Object(
    {
      kind: Type.Union([Type.Literal('local'), Type.Literal('openai')], {
        default: 'local',
        description:
          '`local`: the built-in embedder (deterministic, offline, in process, no model download). `openai`: any OpenAI-compatible embeddings endpoint (`POST {base_url}/embeddings`).',
      }),
      dimensions: Type.Optional(
        Type.Integer({
          minimum: 32,
          maximum: 4096,
          description: `Vector length. \`local\`: ${localDimensions} when unset. \`openai\`: required, sent as \`dimensions\` (models that take no \`dimensions\` must answer vectors of exactly this length).`,
        }),
      ),
      base_url: Type.Optional(
        Type.String({
          pattern: '^https?://',
          description:
            'For `openai`: base URL of the API up to the version, e.g. `https://api.openai.com/v1`.',
        }),
      ),
      model: Type.String({
        default: 'text-embedding-3-small',
        minLength: 1,
        maxLength: 128,
        description: 'For `openai`: the embedding model.',
      }),
      api_key: Type.Optional(
        Type.String({
          referenceable: true,
          description:
            'For `openai`: the API key, as a vault reference such as `{vault://env/OPENAI_API_KEY}`.',
        }),
      ),
      timeout_ms: Type.Integer({
        minimum: 10,
        maximum: 60_000,
        default: 2000,
        description: `For \`openai\`: limit of one embeddings call. ${onFailure}`,
      }),
    },
    { description },
  );
}

/** `openai` needs an endpoint and a length; the endpoint's fields mean nothing to `local`. */
export function checkEmbedder(e: EmbedderConfig, path: string): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  if (e.kind === 'openai') {
    if (e.base_url === undefined)
      problems.push({ path: `${path}.base_url`, message: 'required when kind is openai' });
    if (e.dimensions === undefined)
      problems.push({ path: `${path}.dimensions`, message: 'required when kind is openai' });
  } else {
    if (e.base_url !== undefined)
      problems.push({ path: `${path}.base_url`, message: 'only used when kind is openai' });
    if (e.api_key !== undefined)
      problems.push({ path: `${path}.api_key`, message: 'only used when kind is openai' });
  }
  return problems;
}
