export type { Embedder } from './embedder';
export { type EmbedderConfig, embedderFromConfig } from './from-config';
export {
  LOCAL_EMBEDDER_DEFAULT_DIMENSIONS,
  LOCAL_EMBEDDER_DEFAULT_THRESHOLD,
  LOCAL_EMBEDDER_VERSION,
  LocalEmbedder,
  type LocalEmbedderOptions,
  MAX_FEATURE_CHARS,
} from './local';
