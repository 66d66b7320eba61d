import { reconnectDelay } from '../../../lib/store/redis';

describe('reconnectDelay', () => {
  const noJitter = () => 0;

  it('doubles from 50 ms and stops growing at 2 s', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((n) => reconnectDelay(n, noJitter))).toEqual([
      50, 100, 200, 400, 800, 1600, 2000, 2000,
    ]);
  });

  it('always returns a finite delay, so ioredis never gives up reconnecting', () => {
    for (const attempt of [0, 1, 100, 10_000, Number.MAX_SAFE_INTEGER]) {
      const delay = reconnectDelay(attempt, () => 0.999);
      expect(Number.isFinite(delay)).toBe(true);
      expect(delay).toBeGreaterThanOrEqual(50);
      expect(delay).toBeLessThan(2100);
    }
  });

  it('adds up to 100 ms of jitter', () => {
    expect(reconnectDelay(1, () => 0.5)).toBe(100);
    expect(reconnectDelay(20, () => 0.999)).toBe(2099);
  });
});
