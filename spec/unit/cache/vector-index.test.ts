import { FLAT_LIMIT, VectorIndex } from '../../../lib/cache/vector-index';
import { nudge as near, randomUnit as unit } from '../../support/vectors';

describe('VectorIndex', () => {
  it('finds the nearest vector above the threshold, and nothing below it', () => {
    const index = new VectorIndex(32);
    for (let i = 1; i <= 50; i++) index.add(`id-${i}`, unit(i, 32));
    const match = index.nearest(near(unit(7, 32), 999, 0.1), 0.9)!;
    expect(match.id).toBe('id-7');
    expect(match.similarity).toBeGreaterThan(0.9);
    expect(index.nearest(unit(12345, 32), 0.9)).toBeUndefined();
  });

  it('replaces and removes vectors', () => {
    const index = new VectorIndex(8);
    index.add('a', unit(1, 8));
    index.add('b', unit(2, 8));
    index.add('a', unit(3, 8));
    expect(index.size).toBe(2);
    expect(index.nearest(unit(3, 8), 0.99)?.id).toBe('a');
    expect(index.nearest(unit(1, 8), 0.99)).toBeUndefined();
    index.remove('a');
    index.remove('missing');
    expect(index.size).toBe(1);
    expect(index.has('a')).toBe(false);
    expect(index.nearest(unit(2, 8), 0.99)?.id).toBe('b');
  });

  it(`past ${FLAT_LIMIT} vectors it moves to HNSW and still finds near neighbours`, () => {
    const dims = 64;
    const index = new VectorIndex(dims);
    const count = FLAT_LIMIT + 500;
    for (let i = 1; i <= count; i++) index.add(`id-${i}`, unit(i, dims));
    expect(index.size).toBe(count);
    let found = 0;
    for (let i = 1; i <= count; i += 97) {
      if (index.nearest(near(unit(i, dims), i + 7, 0.05), 0.95)?.id === `id-${i}`) found++;
    }
    expect(found).toBe(Math.ceil(count / 97));
    index.remove('id-1');
    expect(index.nearest(unit(1, dims), 0.99)).toBeUndefined();
    expect(index.has('id-2')).toBe(true);
  });

  it('an empty index matches nothing', () => {
    expect(new VectorIndex(4).nearest(unit(1, 4), 0)).toBeUndefined();
  });
});
