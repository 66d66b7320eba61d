import { MemoryStore } from '../../../lib/store/memory';
import { rejection } from '../../support/errors';

/** A clock the test moves by hand. */
function manualClock(start = 1_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

describe('MemoryStore', () => {
  let clock: ReturnType<typeof manualClock>;
  let store: MemoryStore;

  beforeEach(() => {
    clock = manualClock();
    store = new MemoryStore({ now: clock.now, maxEntries: 100 });
  });

  afterEach(() => store.close());

  it('stores, returns and deletes values; strings come back as UTF-8 bytes', async () => {
    expect(await store.get('k')).toBeNull();
    await store.set('k', 'héllo');
    expect(await store.get('k')).toEqual(Buffer.from('héllo', 'utf8'));
    await store.delete('k');
    expect(await store.get('k')).toBeNull();
    await store.delete('never-set'); // deleting a missing key is not an error
  });

  it('keeps binary values byte for byte and isolated from the caller’s buffer', async () => {
    const original = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const bytes = Buffer.from(original);
    await store.set('bin', bytes);
    bytes[0] = 42; // the caller reuses its buffer after set
    const first = await store.get('bin');
    expect(first).toEqual(original);
    first![1] = 42; // and changes what get returned
    expect(await store.get('bin')).toEqual(original);
  });

  describe('TTL', () => {
    it('expires a key once its TTL has passed, and not before', async () => {
      await store.set('k', 'v', 100);
      clock.advance(99);
      expect(await store.get('k')).toEqual(Buffer.from('v'));
      clock.advance(1);
      expect(await store.get('k')).toBeNull();
    });

    it('set without a TTL removes an earlier TTL, as Redis SET does', async () => {
      await store.set('k', 'v1', 100);
      await store.set('k', 'v2');
      clock.advance(1_000_000);
      expect(await store.get('k')).toEqual(Buffer.from('v2'));
    });

    it('rounds a fractional TTL up instead of expiring at once', async () => {
      await store.set('k', 'v', 0.2);
      expect(await store.get('k')).toEqual(Buffer.from('v'));
      clock.advance(1);
      expect(await store.get('k')).toBeNull();
    });

    it.each([0, -1, Number.NaN, Number.POSITIVE_INFINITY])('rejects TTL %p as a caller bug', async (ttl) => {
      expect((await rejection(store.set('k', 'v', ttl))).code).toBe('AIGW_INTERNAL');
      expect((await rejection(store.incrBy('c', 1, ttl))).code).toBe('AIGW_INTERNAL');
      expect(await store.get('k')).toBeNull();
    });

    it('sweep() drops expired entries nobody reads, and only those', async () => {
      await store.set('short', 'v', 10);
      await store.set('long', 'v', 1000);
      await store.set('forever', 'v');
      clock.advance(10);
      expect(store.size).toBe(3);
      expect(store.sweep()).toBe(1);
      expect(store.size).toBe(2);
      expect(await store.get('long')).not.toBeNull();
      expect(await store.get('forever')).not.toBeNull();
    });

    it('sweeps on its own timer', async () => {
      jest.useFakeTimers();
      try {
        const timed = new MemoryStore({ now: clock.now, sweepIntervalMs: 1000 });
        await timed.set('k', 'v', 10);
        clock.advance(10);
        expect(timed.size).toBe(1);
        jest.advanceTimersByTime(1000);
        expect(timed.size).toBe(0);
        await timed.close();
      } finally {
        jest.useRealTimers();
      }
    });
  });

  describe('incrBy', () => {
    it('creates a missing key at 0 and adds', async () => {
      expect(await store.incrBy('c', 5)).toBe(5);
      expect(await store.incrBy('c', -7)).toBe(-2);
      expect(await store.incrBy('c', 0)).toBe(-2);
      expect(await store.get('c')).toEqual(Buffer.from('-2'));
    });

    it('applies the TTL only when it creates the key', async () => {
      expect(await store.incrBy('c', 1, 100)).toBe(1);
      clock.advance(60);
      expect(await store.incrBy('c', 1, 100)).toBe(2); // must not push the expiry to 160
      clock.advance(40);
      expect(await store.get('c')).toBeNull();
      expect(await store.incrBy('c', 1, 100)).toBe(1); // a new window starts at 0
    });

    it('leaves a key without TTL without one', async () => {
      await store.set('c', '10');
      expect(await store.incrBy('c', 1, 100)).toBe(11);
      clock.advance(1_000_000);
      expect(await store.get('c')).toEqual(Buffer.from('11'));
    });

    it.each(['abc', '1.5', '01', ' 1', '+1', '', '99999999999999999999'])(
      'rejects a value that Redis would not count (%p) with AIGW_STORE_UNAVAILABLE, unchanged',
      async (value) => {
        await store.set('c', value);
        expect((await rejection(store.incrBy('c', 1))).code).toBe('AIGW_STORE_UNAVAILABLE');
        expect(await store.get('c')).toEqual(Buffer.from(value));
      },
    );

    it.each([1.5, Number.NaN, 2 ** 53])('rejects increment %p as a caller bug', async (by) => {
      expect((await rejection(store.incrBy('c', by))).code).toBe('AIGW_INTERNAL');
      expect(await store.get('c')).toBeNull();
    });

    it('refuses to pass the safe integer range instead of losing precision', async () => {
      await store.set('c', String(Number.MAX_SAFE_INTEGER));
      expect((await rejection(store.incrBy('c', 1))).code).toBe('AIGW_STORE_UNAVAILABLE');
      expect(await store.get('c')).toEqual(Buffer.from(String(Number.MAX_SAFE_INTEGER)));
    });
  });

  describe('bounded size', () => {
    it('evicts the least recently used entry past maxEntries', async () => {
      const small = new MemoryStore({ now: clock.now, maxEntries: 3 });
      await small.set('a', '1');
      await small.set('b', '2');
      await small.set('c', '3');
      await small.get('a'); // a is now more recent than b
      await small.set('d', '4');
      expect(small.size).toBe(3);
      expect(await small.get('b')).toBeNull();
      expect(await small.get('a')).toEqual(Buffer.from('1'));
      expect(await small.get('c')).toEqual(Buffer.from('3'));
      expect(await small.get('d')).toEqual(Buffer.from('4'));
      await small.close();
    });

    it('counts incrBy as a use', async () => {
      const small = new MemoryStore({ now: clock.now, maxEntries: 2 });
      await small.incrBy('a', 1);
      await small.set('b', 'x');
      await small.incrBy('a', 1);
      await small.set('c', 'y');
      expect(await small.get('a')).toEqual(Buffer.from('2'));
      expect(await small.get('b')).toBeNull();
      await small.close();
    });
  });

  describe('budget', () => {
    const k = '{t}:budget';
    const reservation = (holdMs: number, ttlMs = 1000) => ({
      id: `r-${clock.now()}`,
      charges: [{ keys: [k], cap: 100, hard: true, fixed: 0, perOutput: 1, ttlMs }],
      output: 100,
      minOutput: 100,
      holdMs,
    });

    it('releases a hold when holdMs has passed on its clock, and not before', async () => {
      expect(await store.reserve(reservation(50))).toMatchObject({ ok: true });
      clock.advance(49);
      expect(await store.budgetUsage(k)).toEqual({ used: 0, held: 100 });
      expect(await store.reserve(reservation(50))).toMatchObject({ ok: false });
      clock.advance(1);
      expect(await store.budgetUsage(k)).toEqual({ used: 0, held: 0 });
      expect(await store.reserve(reservation(50))).toMatchObject({ ok: true });
    });

    it('extends a counter’s TTL and never shortens it; the holds go with the counter', async () => {
      await store.reserve({ ...reservation(10_000, 100), output: 10, minOutput: 10 });
      await store.reserve({ ...reservation(10_000, 30), output: 10, minOutput: 10 });
      clock.advance(99);
      expect(await store.budgetUsage(k)).toEqual({ used: 0, held: 20 });
      await store.settle('late', [{ key: k, amount: 5, ttlMs: 200 }]);
      clock.advance(199);
      expect(await store.budgetUsage(k)).toEqual({ used: 5, held: 20 });
      clock.advance(1);
      expect(await store.budgetUsage(k)).toEqual({ used: 0, held: 0 });
      expect(store.size).toBe(0);
    });

    it('sweep() drops a budget counter whose window ended', async () => {
      await store.reserve(reservation(10_000, 100));
      clock.advance(100);
      expect(store.sweep()).toBe(1);
      expect(store.size).toBe(0);
    });
  });

  it('rejects every call after close() with AIGW_STORE_UNAVAILABLE', async () => {
    await store.set('k', 'v');
    await store.close();
    await store.close(); // twice is fine
    for (const call of [
      () => store.get('k'),
      () => store.set('k', 'v'),
      () => store.delete('k'),
      () => store.incrBy('c', 1),
      () => store.budgetUsage('{t}:c'),
      () => store.ping(),
    ]) {
      expect((await rejection(call())).code).toBe('AIGW_STORE_UNAVAILABLE');
    }
  });

  it('reports its kind', () => {
    expect(store.kind).toBe('memory');
  });
});
