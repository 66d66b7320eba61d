import type { Embedder } from './embedder';
import { LocalEmbedder } from './local';
import { OpenAIEmbedder } from './openai-embedder';

/** An embedder as plugin configs describe it (schemas/embedder.ts). */
export interface EmbedderConfig {
  readonly kind: 'local' | 'openai';
  readonly dimensions?: number;
  readonly base_url?: string;
  readonly api_key?: string;
  readonly model: string;
  readonly timeout_ms: number;
}

/** The embedder a config names; `localDimensions` is the local embedder's length when unset. */
export function embedderFromConfig(config: EmbedderConfig, localDimensions?: number): Embedder {
  if (config.kind === 'openai') {
    return new OpenAIEmbedder({
      baseUrl: config.base_url!,
      model: config.model,
      dimensions: config.dimensions!,
      ...(config.api_key !== undefined ? { apiKey: config.api_key } : {}),
      timeoutMs: config.timeout_ms,
    });
  }
  const dimensions = config.dimensions ?? localDimensions;
  return new LocalEmbedder(dimensions !== undefined ? { dimensions } : {});
}
