/** A deterministic random unit vector (xorshift), so tests and benchmarks never depend on Math.random. */
export function randomUnit(seed: number, dims: number): Float32Array {
  let x = (seed * 2654435761) >>> 0 || 1;
  const v = new Float32Array(dims);
  let norm = 0;
  for (let i = 0; i < dims; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    v[i] = ((x >>> 0) / 2 ** 32) * 2 - 1;
    norm += v[i]! * v[i]!;
  }
  const n = Math.sqrt(norm);
  for (let i = 0; i < dims; i++) v[i]! /= n;
  return v;
}

/** `v` moved by `amount` toward another random direction, renormalised. */
export function nudge(v: Float32Array, seed: number, amount: number): Float32Array {
  const noise = randomUnit(seed, v.length);
  const out = v.map((x, i) => x + amount * noise[i]!);
  let norm = 0;
  for (const x of out) norm += x * x;
  return out.map((x) => x / Math.sqrt(norm));
}
