import { field as borshField, deserialize, serialize } from '@dao-xyz/borsh';

// The project compiles legacy (experimental) decorators; borsh also types the stage-3 form first.
const field = borshField as (properties: Parameters<typeof borshField>[0]) => PropertyDecorator;

/** Version of the stored layout; an entry of another version reads as corrupt and is dropped. */
export const ENTRY_VERSION = 1;

/** One cached answer as the cache uses it. */
export interface CacheEntry {
  /** When the answer was stored (epoch ms). */
  createdAt: number;
  /** Hash of the answer-shaping parameters (see canonical.ts): semantic matches stay inside it. */
  partition: string;
  /** The answer, as the client's non-stream JSON body (`chat.completion`). */
  answer: Record<string, unknown>;
  /** Unit vector of the prompt (semantic tier); absent when the entry is exact-only. */
  vector?: Float32Array;
}

/** The borsh layout. The vector travels as raw little-endian float32 bytes (one copy, no per-element work). */
class StoredEntry {
  @field({ type: 'u8' })
  version!: number;

  @field({ type: 'f64' })
  createdAt!: number;

  @field({ type: 'string' })
  partition!: string;

  @field({ type: 'string' })
  answer!: string;

  @field({ type: Uint8Array })
  vector!: Uint8Array;

  constructor(data?: StoredEntry) {
    if (data) Object.assign(this, data);
  }
}

/** Thrown by decodeEntry for bytes that are not an entry of this version; the caller deletes them. */
export class CorruptEntryError extends Error {
  override readonly name = 'CorruptEntryError';
}

export function encodeEntry(entry: CacheEntry): Buffer {
  const vector = entry.vector
    ? new Uint8Array(
        entry.vector.buffer.slice(entry.vector.byteOffset, entry.vector.byteOffset + entry.vector.byteLength),
      )
    : new Uint8Array(0);
  const bytes = serialize(
    new StoredEntry({
      version: ENTRY_VERSION,
      createdAt: entry.createdAt,
      partition: entry.partition,
      answer: JSON.stringify(entry.answer),
      vector,
    }),
  );
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * The entry in `bytes`. Anything else (truncated, another version, a vector of the wrong
 * size, an answer that is not a JSON object) throws CorruptEntryError, never anything else.
 */
export function decodeEntry(bytes: Uint8Array, dimensions?: number): CacheEntry {
  let stored: StoredEntry;
  try {
    // borsh reads the whole underlying ArrayBuffer: a Buffer from a pool (ioredis' replies) is copied out first.
    const own =
      bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : new Uint8Array(bytes);
    stored = deserialize(own, StoredEntry);
  } catch {
    throw new CorruptEntryError('cache entry: not a borsh entry');
  }
  if (stored.version !== ENTRY_VERSION) throw new CorruptEntryError('cache entry: unknown version');
  if (!Number.isFinite(stored.createdAt)) throw new CorruptEntryError('cache entry: bad time');
  let answer: unknown;
  try {
    answer = JSON.parse(stored.answer);
  } catch {
    throw new CorruptEntryError('cache entry: answer is not JSON');
  }
  if (typeof answer !== 'object' || answer === null || Array.isArray(answer)) {
    throw new CorruptEntryError('cache entry: answer is not an object');
  }
  const entry: CacheEntry = {
    createdAt: stored.createdAt,
    partition: stored.partition,
    answer: answer as Record<string, unknown>,
  };
  const raw = stored.vector;
  if (raw.byteLength > 0) {
    if (raw.byteLength % 4 !== 0) throw new CorruptEntryError('cache entry: vector is not float32');
    // A copy: the float view needs 4-byte alignment, and must not pin the store's buffer.
    const vector = new Float32Array(raw.slice().buffer);
    if (dimensions !== undefined && vector.length !== dimensions) {
      throw new CorruptEntryError('cache entry: vector of another size');
    }
    if (!vector.every(Number.isFinite)) throw new CorruptEntryError('cache entry: vector is not finite');
    entry.vector = vector;
  }
  return entry;
}
