import fc from 'fast-check';
import { CorruptEntryError, decodeEntry, encodeEntry } from '../../../lib/cache/entry';

const answer = {
  id: 'chatcmpl-1',
  object: 'chat.completion',
  choices: [{ index: 0, message: { role: 'assistant', content: 'héllo 東京 🚀' } }],
};

describe('cache entry codec (borsh)', () => {
  it('round-trips an entry with a vector', () => {
    const vector = Float32Array.from([0.5, -0.25, 0.125, 1]);
    const bytes = encodeEntry({ createdAt: 1_700_000_000_123, partition: 'p', answer, vector });
    const entry = decodeEntry(bytes, 4);
    expect(entry).toEqual({ createdAt: 1_700_000_000_123, partition: 'p', answer, vector });
  });

  it('round-trips an exact-only entry (no vector)', () => {
    const entry = decodeEntry(encodeEntry({ createdAt: 1, partition: '', answer }));
    expect(entry.vector).toBeUndefined();
    expect(entry.answer).toEqual(answer);
  });

  it('reads bytes that sit at an offset inside a larger buffer (pooled Buffers)', () => {
    const bytes = encodeEntry({ createdAt: 2, partition: 'p', answer, vector: Float32Array.from([1, 0]) });
    const pool = Buffer.alloc(bytes.length + 100, 7);
    bytes.copy(pool, 37);
    expect(decodeEntry(pool.subarray(37, 37 + bytes.length), 2).vector).toEqual(Float32Array.from([1, 0]));
  });

  it.each([
    ['empty bytes', Buffer.alloc(0)],
    ['JSON text', Buffer.from('{"answer":"x"}')],
    ['a truncated entry', encodeEntry({ createdAt: 1, partition: 'p', answer }).subarray(0, 20)],
    [
      'trailing bytes',
      Buffer.concat([encodeEntry({ createdAt: 1, partition: 'p', answer }), Buffer.from([1])]),
    ],
  ])('%s is a CorruptEntryError', (_, bytes) => {
    expect(() => decodeEntry(bytes)).toThrow(CorruptEntryError);
  });

  it('another version, a vector of another size or an answer that is no object are corrupt', () => {
    const good = encodeEntry({ createdAt: 1, partition: 'p', answer, vector: Float32Array.from([1, 0]) });
    const otherVersion = Buffer.from(good);
    otherVersion[0] = 9;
    expect(() => decodeEntry(otherVersion)).toThrow(CorruptEntryError);
    expect(() => decodeEntry(good, 3)).toThrow(CorruptEntryError);
    const notObject = encodeEntry({
      createdAt: 1,
      partition: 'p',
      answer: [] as unknown as Record<string, unknown>,
    });
    expect(() => decodeEntry(notObject)).toThrow(CorruptEntryError);
  });

  it('any bytes decode to an entry or a CorruptEntryError, never anything else (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          decodeEntry(bytes, 4);
        } catch (err) {
          expect(err).toBeInstanceOf(CorruptEntryError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
