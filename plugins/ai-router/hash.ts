/**
 * Fast, stable, non-cryptographic hashes for sticky choices (experiment arms, prompt
 * affinity): the same input gives the same number on every node and every run. FNV-1a with
 * murmur3's finalizer: well spread bits, no allocation, a fraction of a microsecond.
 */

/** 32 well-spread bits of `text`; `seed` gives an independent hash of the same text. */
export function hash32(text: string, seed = 0): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return mix32(h);
}

/** murmur3's finalizer: every input bit moves about half the output bits. */
export function mix32(x: number): number {
  let h = x;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A number uniform in (0, 1) from 53 bits of two independent hashes of `text`. */
export function uniform(text: string): number {
  const high = hash32(text, 0x9e3779b9) >>> 11; // 21 bits
  return (high * 2 ** 32 + hash32(text) + 0.5) / 2 ** 53;
}
