/**
 * Budget reservations, run against both stores like contract.test.ts: the memory store and the
 * Redis store on the shared redis-server. The caps must hold under concurrency, so the Redis
 * store is also raced from one client and from two.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { createLogger } from '../../../lib/log/logger';
import {
  type BudgetCharge,
  createStore,
  key,
  parseStoreConfig,
  type ReserveRequest,
  type Store,
} from '../../../lib/store';
import { rejection } from '../../support/errors';
import { sharedRedisUrl } from '../../support/redis';

const quietLogger = createLogger({ level: 'silent' });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function redisStore(prefix: string): Store {
  return createStore(
    parseStoreConfig({ kind: 'redis', redis: { url: sharedRedisUrl(), key_prefix: prefix } }),
    quietLogger,
  );
}

const kinds: Array<[string, () => Promise<Store>]> = [
  ['memory', async () => createStore(parseStoreConfig({ kind: 'memory' }), quietLogger)],
  [
    'redis',
    async () => {
      const store = redisStore(`t-${randomUUID()}`);
      await store.ping();
      return store;
    },
  ],
];

/** A hard charge of 1 per output token with no fixed cost, unless told otherwise. */
function charge(keys: string[], cap: number, extra: Partial<BudgetCharge> = {}): BudgetCharge {
  return { keys, cap, hard: true, fixed: 0, perOutput: 1, ttlMs: 60_000, ...extra };
}

function request(charges: BudgetCharge[], extra: Partial<ReserveRequest> = {}): ReserveRequest {
  return { id: randomUUID(), charges, output: 100, minOutput: 100, holdMs: 60_000, ...extra };
}

describe.each(kinds)('%s store budget', (_, open) => {
  let store: Store;
  /** Counter keys of a tenant of this test only. */
  let counter: (...parts: string[]) => string;

  beforeAll(async () => {
    store = await open();
  });

  afterAll(() => store.close());

  beforeEach(() => {
    const tenant = `tenant-${randomUUID()}`;
    counter = (...parts) => key(tenant, 'budget', ...parts);
  });

  describe('reserve', () => {
    it('holds fixed + perOutput * output when it fits', async () => {
      const k = counter('day');
      const result = await store.reserve(request([charge([k], 1000, { fixed: 100, perOutput: 2 })]));
      expect(result).toEqual({ ok: true, output: 100, used: [300] });
      expect(await store.budgetUsage(k)).toEqual({ used: 0, held: 300 });
    });

    it('refuses what does not fit, writes nothing and reports the window', async () => {
      const k = counter('day');
      await store.reserve(request([charge([k], 1000, { fixed: 100, perOutput: 2 })], { output: 200 }));
      const result = await store.reserve(
        request([charge([k], 1000, { fixed: 100, perOutput: 2 })], { output: 300, minOutput: 300 }),
      );
      expect(result).toEqual({ ok: false, output: 0, used: [500], refusedBy: 0 });
      expect(await store.budgetUsage(k)).toEqual({ used: 0, held: 500 });

      const fresh = counter('untouched');
      expect(await store.reserve(request([charge([fresh], 10)]))).toMatchObject({ ok: false, used: [0] });
      expect(await store.get(fresh)).toBeNull();
    });

    it('clamps the output to what the cap still affords', async () => {
      const k = counter('day');
      await store.reserve(request([charge([k], 1000, { fixed: 100, perOutput: 2 })], { output: 200 }));
      const result = await store.reserve(
        request([charge([k], 1000, { fixed: 100, perOutput: 2 })], { output: 300, minOutput: 10 }),
      );
      expect(result).toEqual({ ok: true, output: 200, used: [1000] });
      expect(await store.budgetUsage(k)).toEqual({ used: 0, held: 1000 });
    });

    it('rounds the affordable output down', async () => {
      const k = counter('day');
      const result = await store.reserve(
        request([charge([k], 1000, { fixed: 1, perOutput: 7 })], { output: 1000, minOutput: 0 }),
      );
      expect(result).toEqual({ ok: true, output: 142, used: [995] });
    });

    it('reserves exactly minOutput at the boundary and refuses one more', async () => {
      const limit = (k: string) => charge([k], 110, { fixed: 10 });
      const atBoundary = await store.reserve(request([limit(counter('a'))], { output: 500, minOutput: 100 }));
      expect(atBoundary).toEqual({ ok: true, output: 100, used: [110] });
      const beyond = await store.reserve(request([limit(counter('b'))], { output: 500, minOutput: 101 }));
      expect(beyond).toEqual({ ok: false, output: 0, used: [0], refusedBy: 0 });
    });

    it('with minOutput 0 reserves the fixed cost alone, and refuses when even that does not fit', async () => {
      const k = counter('day');
      const limit = charge([k], 50, { fixed: 50 });
      expect(await store.reserve(request([limit], { minOutput: 0 }))).toEqual({
        ok: true,
        output: 0,
        used: [50],
      });
      expect(
        await store.reserve(request([charge([counter('b')], 49, { fixed: 50 })], { minOutput: 0 })),
      ).toEqual({ ok: false, output: 0, used: [0], refusedBy: 0 });
    });

    it('does not clamp on a charge that output does not count toward', async () => {
      const k = counter('requests');
      const limit = charge([k], 3, { fixed: 1, perOutput: 0 });
      for (const used of [1, 2, 3]) {
        expect(await store.reserve(request([limit], { output: 4096, minOutput: 1 }))).toEqual({
          ok: true,
          output: 4096,
          used: [used],
        });
      }
      expect(await store.reserve(request([limit], { output: 4096, minOutput: 0 }))).toMatchObject({
        ok: false,
        refusedBy: 0,
      });
    });

    it('charges soft limits but never lets them refuse or clamp', async () => {
      const soft = counter('soft');
      const hard = counter('hard');
      const charges = [charge([soft], 10, { hard: false }), charge([hard], 1000)];
      expect(await store.reserve(request(charges))).toEqual({ ok: true, output: 100, used: [100, 100] });
      expect(await store.reserve(request(charges))).toEqual({ ok: true, output: 100, used: [200, 200] });
      expect(await store.reserve(request([charge([soft], 10, { hard: false })]))).toEqual({
        ok: true,
        output: 100,
        used: [300],
      });
      expect(await store.budgetUsage(soft)).toEqual({ used: 0, held: 300 });
    });

    it('with several charges, the tightest decides, and a refusal names the first that cannot fit', async () => {
      const [tokens, cost, day] = [counter('tokens'), counter('cost'), counter('day')];
      const charges = (costCap: number, dayCap: number) => [
        charge([tokens], 10_000),
        charge([cost], costCap, { fixed: 100, perOutput: 2 }),
        charge([day], dayCap, { fixed: 5, perOutput: 3 }),
      ];
      expect(await store.reserve(request(charges(300, 10_000), { output: 500, minOutput: 1 }))).toEqual({
        ok: true,
        output: 100,
        used: [100, 300, 305],
      });
      // Nothing fits in cost or day any more; cost comes first.
      expect(await store.reserve(request(charges(300, 305), { output: 500, minOutput: 1 }))).toEqual({
        ok: false,
        output: 0,
        used: [100, 300, 305],
        refusedBy: 1,
      });
      // A soft charge that is over its cap is skipped when naming the refusing one.
      const overSoft = [charge([cost], 1, { hard: false }), charge([day], 305)];
      expect(await store.reserve(request(overSoft, { minOutput: 1 }))).toMatchObject({
        ok: false,
        refusedBy: 1,
      });
    });

    it('counts earlier buckets of a sliding window without writing them', async () => {
      const [current, previous, oldest] = [counter('s', '3'), counter('s', '2'), counter('s', '1')];
      await store.settle('earlier', [
        { key: previous, amount: 300, ttlMs: 60_000 },
        { key: oldest, amount: 200, ttlMs: 60_000 },
      ]);
      const result = await store.reserve(
        request([charge([current, previous, oldest], 1000)], { output: 600, minOutput: 0 }),
      );
      expect(result).toEqual({ ok: true, output: 500, used: [1000] });
      expect(await store.budgetUsage(current)).toEqual({ used: 0, held: 500 });
      expect(await store.budgetUsage(previous)).toEqual({ used: 300, held: 0 });
      expect(await store.budgetUsage(oldest)).toEqual({ used: 200, held: 0 });
      // Holds in an earlier bucket count as well.
      const next = counter('s', '4');
      expect(
        await store.reserve(
          request([charge([next, current, previous], 1000)], { output: 500, minOutput: 0 }),
        ),
      ).toEqual({ ok: true, output: 200, used: [1000] });
    });

    it('holds both amounts when two charges share a counter, and settle releases both', async () => {
      const k = counter('shared');
      const req = request([charge([k], 1000), charge([k], 1000, { hard: false, fixed: 5, perOutput: 0 })]);
      expect(await store.reserve(req)).toEqual({ ok: true, output: 100, used: [105, 105] });
      expect(await store.budgetUsage(k)).toEqual({ used: 0, held: 105 });
      await store.settle(req.id, [
        { key: k, amount: 40, ttlMs: 60_000 },
        { key: k, amount: 5, ttlMs: 60_000 },
      ]);
      expect(await store.budgetUsage(k)).toEqual({ used: 45, held: 0 });
    });

    it('makes the counter expire with its window, and only ever extends that', async () => {
      const k = counter('minute');
      await store.reserve(request([charge([k], 1000, { ttlMs: 200 })]));
      await store.reserve(request([charge([k], 1000, { ttlMs: 50 })])); // must not shorten the window
      await sleep(120);
      expect(await store.budgetUsage(k)).toEqual({ used: 0, held: 200 });
      await sleep(180);
      expect(await store.budgetUsage(k)).toEqual({ used: 0, held: 0 });
    });

    it('with no charges reserves the whole output', async () => {
      expect(await store.reserve(request([], { output: 50, minOutput: 50 }))).toEqual({
        ok: true,
        output: 50,
        used: [],
      });
    });

    it('keeps exactly to the cap under 200 concurrent callers', async () => {
      const k = counter('race');
      // Each wants 3 + 7 = 10: 100 fit whole, one more gets 2 output tokens, the rest nothing.
      const results = await Promise.all(
        Array.from({ length: 200 }, () =>
          store.reserve(request([charge([k], 1005, { fixed: 3 })], { output: 7, minOutput: 0 })),
        ),
      );
      const made = results.filter((r) => r.ok);
      expect(made).toHaveLength(101);
      expect(made.filter((r) => r.output === 7)).toHaveLength(100);
      expect(made.filter((r) => r.output === 2)).toHaveLength(1);
      expect(made.reduce((sum, r) => sum + 3 + r.output, 0)).toBe(1005);
      expect(Math.max(...results.map((r) => r.used[0]!))).toBe(1005);
      expect(await store.budgetUsage(k)).toEqual({ used: 0, held: 1005 });
    });
  });

  describe('settle', () => {
    it('releases the hold and adds less than was reserved', async () => {
      const k = counter('day');
      const req = request([charge([k], 1000, { fixed: 100, perOutput: 2 })], { output: 200 });
      await store.reserve(req);
      await store.settle(req.id, [{ key: k, amount: 320, ttlMs: 60_000 }]);
      expect(await store.budgetUsage(k)).toEqual({ used: 320, held: 0 });
      // The freed part is available again.
      expect(await store.reserve(request([charge([k], 1000)], { output: 680 }))).toMatchObject({
        ok: true,
        used: [1000],
      });
    });

    it('adds more than was reserved, even past the cap', async () => {
      const k = counter('day');
      const req = request([charge([k], 1000)]);
      await store.reserve(req);
      await store.settle(req.id, [{ key: k, amount: 1500, ttlMs: 60_000 }]);
      expect(await store.budgetUsage(k)).toEqual({ used: 1500, held: 0 });
      expect(await store.reserve(request([charge([k], 1000)], { minOutput: 0 }))).toMatchObject({
        ok: false,
        used: [1500],
      });
    });

    it('leaves the holds of other reservations alone', async () => {
      const k = counter('day');
      const [first, second] = [request([charge([k], 1000)]), request([charge([k], 1000)])];
      await store.reserve(first);
      await store.reserve(second);
      await store.settle(first.id, [{ key: k, amount: 60, ttlMs: 60_000 }]);
      expect(await store.budgetUsage(k)).toEqual({ used: 60, held: 100 });
      await store.settle(second.id, [{ key: k, amount: 0, ttlMs: 60_000 }]);
      expect(await store.budgetUsage(k)).toEqual({ used: 60, held: 0 });
    });

    it('settles every charge of a reservation, soft ones too', async () => {
      const [tokens, cost] = [counter('tokens'), counter('cost')];
      const req = request([
        charge([tokens], 1000),
        charge([cost], 1, { hard: false, fixed: 50, perOutput: 3 }),
      ]);
      await store.reserve(req);
      expect(await store.budgetUsage(cost)).toEqual({ used: 0, held: 350 });
      await store.settle(req.id, [
        { key: tokens, amount: 20, ttlMs: 60_000 },
        { key: cost, amount: 110, ttlMs: 60_000 },
      ]);
      expect(await store.budgetUsage(tokens)).toEqual({ used: 20, held: 0 });
      expect(await store.budgetUsage(cost)).toEqual({ used: 110, held: 0 });
      expect(await store.get(cost)).toEqual(Buffer.from('110'));
    });

    it('after the hold expired only adds the actual usage', async () => {
      const k = counter('day');
      const req = request([charge([k], 1000)], { holdMs: 50 });
      await store.reserve(req);
      await store.reserve(request([charge([k], 1000)])); // a live one stays held
      await sleep(120);
      await store.settle(req.id, [{ key: k, amount: 70, ttlMs: 60_000 }]);
      expect(await store.budgetUsage(k)).toEqual({ used: 70, held: 100 });
    });

    it('of an unknown id adds the usage and creates the counter with its TTL', async () => {
      const k = counter('minute');
      await store.settle('never-reserved', [{ key: k, amount: 9, ttlMs: 100 }]);
      expect(await store.budgetUsage(k)).toEqual({ used: 9, held: 0 });
      await sleep(200);
      expect(await store.budgetUsage(k)).toEqual({ used: 0, held: 0 });
    });
  });

  describe('expiry', () => {
    it('releases a hold nobody settled once holdMs has passed', async () => {
      const k = counter('day');
      expect(await store.reserve(request([charge([k], 100)], { holdMs: 50 }))).toMatchObject({ ok: true });
      expect(await store.reserve(request([charge([k], 100)]))).toMatchObject({ ok: false, used: [100] });
      expect(await store.budgetUsage(k)).toEqual({ used: 0, held: 100 });
      await sleep(120);
      expect(await store.budgetUsage(k)).toEqual({ used: 0, held: 0 });
      expect(await store.reserve(request([charge([k], 100)]))).toEqual({
        ok: true,
        output: 100,
        used: [100],
      });
    });

    it('releases expired holds in earlier buckets too', async () => {
      const [current, previous] = [counter('s', '2'), counter('s', '1')];
      await store.reserve(request([charge([previous], 1000)], { holdMs: 50 }));
      await sleep(120);
      expect(await store.reserve(request([charge([current, previous], 100)]))).toEqual({
        ok: true,
        output: 100,
        used: [100],
      });
    });
  });

  describe('budgetUsage and resetBudget', () => {
    it('reports nothing for an unknown counter', async () => {
      expect(await store.budgetUsage(counter('nothing'))).toEqual({ used: 0, held: 0 });
    });

    it('resetBudget clears usage and holds of one counter only', async () => {
      const [k, other] = [counter('day'), counter('other')];
      const req = request([charge([k], 1000), charge([other], 1000)]);
      await store.reserve(req);
      await store.settle('earlier', [{ key: k, amount: 400, ttlMs: 60_000 }]);
      expect(await store.budgetUsage(k)).toEqual({ used: 400, held: 100 });
      await store.resetBudget(k);
      expect(await store.budgetUsage(k)).toEqual({ used: 0, held: 0 });
      expect(await store.get(k)).toBeNull();
      expect(await store.budgetUsage(other)).toEqual({ used: 0, held: 100 });
      await store.resetBudget(k); // twice is fine
      // Settling the reservation afterwards counts only its usage.
      await store.settle(req.id, [{ key: k, amount: 30, ttlMs: 60_000 }]);
      expect(await store.budgetUsage(k)).toEqual({ used: 30, held: 0 });
    });

    it('reads a counter written by incrBy as committed usage', async () => {
      const k = counter('day');
      await store.incrBy(k, 250, 60_000);
      expect(await store.budgetUsage(k)).toEqual({ used: 250, held: 0 });
      expect(await store.reserve(request([charge([k], 300)], { minOutput: 0 }))).toMatchObject({
        ok: true,
        output: 50,
      });
    });
  });

  describe('bad arguments', () => {
    const k = key('t', 'budget');
    const valid = () => request([charge([k], 1000)]);
    const bad: Array<[string, () => ReserveRequest]> = [
      ['an empty id', () => ({ ...valid(), id: '' })],
      ['a fractional output', () => ({ ...valid(), output: 1.5 })],
      ['a negative minOutput', () => ({ ...valid(), minOutput: -1 })],
      ['minOutput above output', () => ({ ...valid(), output: 10, minOutput: 11 })],
      ['a zero holdMs', () => ({ ...valid(), holdMs: 0 })],
      ['65 charges', () => ({ ...valid(), charges: Array.from({ length: 65 }, () => charge([k], 1)) })],
      ['a negative cap', () => request([charge([k], -1)])],
      ['a NaN fixed cost', () => request([charge([k], 1, { fixed: Number.NaN })])],
      ['a fractional perOutput', () => request([charge([k], 1, { perOutput: 0.5 })])],
      ['a negative ttlMs', () => request([charge([k], 1, { ttlMs: -1 })])],
      ['a charge without keys', () => request([charge([], 1)])],
      ['a key twice in one charge', () => request([charge([k, k], 1)])],
      ['a key without hash tag', () => request([charge(['plain:key'], 1)])],
      ['keys of two tenants', () => request([charge([k], 1), charge([key('other', 'budget')], 1)])],
      [
        'a reservation beyond 2^53',
        () => request([charge([k], 1, { perOutput: 2 ** 40 })], { output: 2 ** 20, minOutput: 0 }),
      ],
    ];

    it.each(bad)('reserve rejects %s as AIGW_INTERNAL without touching the store', async (_, req) => {
      expect((await rejection(store.reserve(req()))).code).toBe('AIGW_INTERNAL');
      expect(await store.budgetUsage(k)).toEqual({ used: 0, held: 0 });
    });

    it.each([
      ['settle with an empty id', (s: Store) => s.settle('', [{ key: k, amount: 1, ttlMs: 1000 }])],
      ['settle with a negative amount', (s: Store) => s.settle('id', [{ key: k, amount: -1, ttlMs: 1000 }])],
      [
        'settle with a fractional amount',
        (s: Store) => s.settle('id', [{ key: k, amount: 0.5, ttlMs: 1000 }]),
      ],
      ['settle with a zero ttlMs', (s: Store) => s.settle('id', [{ key: k, amount: 1, ttlMs: 0 }])],
      [
        'settle of a key without hash tag',
        (s: Store) => s.settle('id', [{ key: 'plain', amount: 1, ttlMs: 1000 }]),
      ],
      [
        'settle of keys of two tenants',
        (s: Store) =>
          s.settle('id', [
            { key: k, amount: 1, ttlMs: 1000 },
            { key: key('other', 'b'), amount: 1, ttlMs: 1000 },
          ]),
      ],
      ['budgetUsage of a key without hash tag', (s: Store) => s.budgetUsage('plain')],
      ['resetBudget of a key without hash tag', (s: Store) => s.resetBudget('{}plain')],
    ])('rejects %s as AIGW_INTERNAL without touching the store', async (_, call) => {
      expect((await rejection(call(store))).code).toBe('AIGW_INTERNAL');
      expect(await store.budgetUsage(k)).toEqual({ used: 0, held: 0 });
    });

    it('rejects a counter holding something else with AIGW_STORE_UNAVAILABLE, writing nothing', async () => {
      const [k1, k2] = [counter('fine'), counter('text')];
      await store.set(k2, 'abc');
      const charges = [charge([k1], 1000), charge([k2], 1000)];
      for (const call of [
        () => store.reserve(request(charges)),
        () =>
          store.settle('id', [
            { key: k1, amount: 1, ttlMs: 1000 },
            { key: k2, amount: 1, ttlMs: 1000 },
          ]),
        () => store.budgetUsage(k2),
      ]) {
        expect((await rejection(call())).code).toBe('AIGW_STORE_UNAVAILABLE');
      }
      expect(await store.budgetUsage(k1)).toEqual({ used: 0, held: 0 });
      expect(await store.get(k2)).toEqual(Buffer.from('abc'));
    });
  });

  it('refuses to settle past the safe integer range instead of losing precision', async () => {
    const k = counter('huge');
    await store.set(k, String(Number.MAX_SAFE_INTEGER - 1));
    await store.settle('fits', [{ key: k, amount: 1, ttlMs: 60_000 }]);
    const err = await rejection(store.settle('beyond', [{ key: k, amount: 1, ttlMs: 60_000 }]));
    expect(err.code).toBe('AIGW_STORE_UNAVAILABLE');
    expect(await store.budgetUsage(k)).toEqual({ used: Number.MAX_SAFE_INTEGER, held: 0 });
  });

  it('rejects every budget call after close() with AIGW_STORE_UNAVAILABLE', async () => {
    const other = await open();
    await other.close();
    const k = key('t', 'closed');
    for (const call of [
      () => other.reserve(request([charge([k], 1000)])),
      () => other.settle('id', [{ key: k, amount: 1, ttlMs: 1000 }]),
      () => other.budgetUsage(k),
      () => other.resetBudget(k),
    ]) {
      expect((await rejection(call())).code).toBe('AIGW_STORE_UNAVAILABLE');
    }
  });
});

describe('Redis store budget across clients', () => {
  const prefix = `t-${randomUUID()}`;
  let stores: Store[];
  let raw: Redis;

  beforeAll(async () => {
    stores = [redisStore(prefix), redisStore(prefix)];
    raw = new Redis(sharedRedisUrl());
    await Promise.all(stores.map((s) => s.ping()));
  });

  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    raw.disconnect();
  });

  it('keeps exactly to the cap with 200 concurrent callers on two connections', async () => {
    const k = key('acme', 'budget', 'race');
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        stores[i % 2]!.reserve(request([charge([k], 1000, { fixed: 3 })], { output: 7, minOutput: 7 })),
      ),
    );
    const made = results.filter((r) => r.ok);
    expect(made).toHaveLength(100);
    expect(made.reduce((sum, r) => sum + 3 + r.output, 0)).toBe(1000);
    expect(new Set(made.map((r) => r.used[0])).size).toBe(100); // each saw its own total
    expect(results.filter((r) => !r.ok).every((r) => r.used[0] === 1000 && r.refusedBy === 0)).toBe(true);
    expect(await stores[0]!.budgetUsage(k)).toEqual({ used: 0, held: 1000 });
    expect(await stores[1]!.budgetUsage(k)).toEqual({ used: 0, held: 1000 });
  });

  it('settles on one node what another reserved', async () => {
    const k = key('acme', 'budget', 'handover');
    const req = request([charge([k], 1000)]);
    await stores[0]!.reserve(req);
    await stores[1]!.settle(req.id, [{ key: k, amount: 42, ttlMs: 60_000 }]);
    expect(await stores[0]!.budgetUsage(k)).toEqual({ used: 42, held: 0 });
  });

  it('keeps a counter, its holds and their expiry beside it under the tenant’s hash tag', async () => {
    const k = key('acme', 'budget', 'layout');
    const full = `${prefix}:{acme}:budget:layout`;
    const req = request([charge([k], 1000, { ttlMs: 30_000 })], { holdMs: 5_000 });
    const before = Date.now();
    await stores[0]!.reserve(req);
    expect(await raw.get(full)).toBe('0');
    expect(await raw.hgetall(`${full}:{held}`)).toEqual({ [req.id]: '100', '': '100' });
    const [member, score] = await raw.zrange(`${full}:{expiry}`, '0', '-1', 'WITHSCORES');
    expect(member).toBe(req.id);
    expect(Number(score)).toBeGreaterThanOrEqual(before + 5_000 - 1_000); // server clock
    for (const suffix of ['', ':{held}', ':{expiry}']) {
      const pttl = await raw.pttl(full + suffix);
      expect(pttl).toBeGreaterThan(25_000);
      expect(pttl).toBeLessThanOrEqual(30_000);
    }

    await stores[0]!.settle(req.id, [{ key: k, amount: 80, ttlMs: 60_000 }]);
    expect(await raw.get(full)).toBe('80');
    expect(await raw.pttl(full)).toBeGreaterThan(55_000);
    // Nothing held: the hash and the sorted set are gone.
    expect(await raw.exists(`${full}:{held}`, `${full}:{expiry}`)).toBe(0);
  });

  it('keeps no TTL on a counter that had none', async () => {
    const k = key('acme', 'budget', 'forever');
    await stores[0]!.set(k, '5');
    await stores[0]!.reserve(request([charge([k], 1000)]));
    const full = `${prefix}:{acme}:budget:forever`;
    expect(await raw.pttl(full)).toBe(-1);
    expect(await raw.pttl(`${full}:{held}`)).toBe(-1);
    expect(await stores[0]!.budgetUsage(k)).toEqual({ used: 5, held: 100 });
  });

  it('counts amounts beyond 10^14 exactly', async () => {
    const k = key('acme', 'budget', 'nano-usd');
    const big = 4_000_000_000_000_123;
    const req = request([charge([k], 2 * big + 1, { fixed: big, perOutput: 0 })]);
    expect(await stores[0]!.reserve(req)).toEqual({ ok: true, output: 100, used: [big] });
    await stores[0]!.settle(req.id, [{ key: k, amount: big + 1, ttlMs: 60_000 }]);
    expect(await raw.get(`${prefix}:{acme}:budget:nano-usd`)).toBe(String(big + 1));
    expect(await stores[0]!.budgetUsage(k)).toEqual({ used: big + 1, held: 0 });
  });

  it('keeps working after Redis dropped its script cache', async () => {
    const k = key('acme', 'budget', 'flushed');
    expect(await stores[0]!.reserve(request([charge([k], 1000)]))).toMatchObject({ ok: true });
    await raw.script('FLUSH');
    expect(await stores[0]!.reserve(request([charge([k], 1000)]))).toMatchObject({ ok: true, used: [200] });
    expect(await stores[0]!.budgetUsage(k)).toEqual({ used: 0, held: 200 });
  });
});
