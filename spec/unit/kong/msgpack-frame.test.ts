import { encode } from '@msgpack/msgpack';
import fc from 'fast-check';
import { scanFrame } from '../../../lib/kong/msgpack-frame';

// Values shaped like Kong's RPC traffic: nested maps and arrays, strings, binaries, numbers.
const value = fc.letrec((tie) => ({
  leaf: fc.oneof(
    fc.constant(null),
    fc.boolean(),
    fc.integer({ min: -(2 ** 31), max: 2 ** 32 }),
    fc.maxSafeInteger(),
    fc.double({ noNaN: true }),
    fc.string({ maxLength: 300 }),
    fc.uint8Array({ maxLength: 70_000 }),
  ),
  node: fc.oneof(
    { depthSize: 'small' },
    tie('leaf'),
    fc.array(tie('node'), { maxLength: 20 }),
    fc.dictionary(fc.string({ maxLength: 10 }), tie('node'), { maxKeys: 20 }),
  ),
})).node;

describe('scanFrame', () => {
  it('finds the exact end of any message and never claims a prefix is complete', () => {
    fc.assert(
      fc.property(value, fc.uint8Array({ maxLength: 8 }), fc.nat(), (v, trailer, cut) => {
        const bytes = encode(v);
        const whole = scanFrame(Buffer.concat([bytes, trailer]));
        expect(whole).toEqual({ complete: true, length: bytes.length });
        const prefixLength = cut % bytes.length;
        const prefix = scanFrame(bytes.subarray(0, prefixLength));
        expect(prefix.complete).toBe(false);
        if (!prefix.complete) {
          expect(prefix.needed).toBeGreaterThan(prefixLength);
          expect(prefix.needed).toBeLessThanOrEqual(bytes.length);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('asks for the whole payload of a large binary at once (linear, not per chunk)', () => {
    const message = encode([0, 7, 'plugin.Step', [{ EventId: 1, Data: new Uint8Array(8 * 1024 * 1024) }]]);
    const scan = scanFrame(message.subarray(0, 64 * 1024));
    expect(scan).toEqual({ complete: false, needed: expect.any(Number) });
    // The first scan already knows the binary's length: one more scan once it has arrived.
    expect(!scan.complete && scan.needed).toBeGreaterThan(8 * 1024 * 1024);
  });

  it('rejects a byte that is no msgpack type', () => {
    expect(() => scanFrame(Uint8Array.of(0xc1))).toThrow(/invalid msgpack type byte 0xc1/);
  });
});
