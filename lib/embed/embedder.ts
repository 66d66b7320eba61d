/**
 * Turns texts into vectors whose cosine similarity says how close their meanings are.
 * ai-semantic-cache keys its semantic tier by `id` and `dimensions`, so vectors of two
 * embedders never meet in one index.
 */
export interface Embedder {
  /** Stable name of the embedder and its version, e.g. `local-v1` or `openai:text-embedding-3-small`. */
  readonly id: string;
  readonly dimensions: number;
  /** One unit-length vector per text, in order. */
  embed(texts: readonly string[]): Promise<Float32Array[]>;
}
