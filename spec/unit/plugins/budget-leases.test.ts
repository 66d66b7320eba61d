/**
 * Node-local budget leases on the memory store (same contract as Redis, see the store
 * contract tests): which requests are admitted without a store call, and that caps, usage and
 * holds come out exactly as with one reservation per request.
 */
import { createLogger } from '../../../lib/log/logger';
import { type BudgetCharge, MemoryStore, type ReserveRequest, type Store } from '../../../lib/store';
import { budgetKey } from '../../../plugins/ai-budget/charges';
import { type BudgetStore, LeasedBudget, type LeaseSettings } from '../../../plugins/ai-budget/leases';

const logger = createLogger({ level: 'silent' });
const SETTINGS: LeaseSettings = { maxAgeMs: 200, headroomShare: 0.1, requests: 16, holdMs: 60_000 };
const TTL = 3_600_000;
const K = (name: string) => budgetKey(name, 'global', 0);

/** The memory store, counting the calls that reach it. */
class CountingStore implements BudgetStore {
  reserves = 0;
  /** Reservations of requests themselves (not of leases). */
  requestReserves = 0;
  settles = 0;
  constructor(readonly inner: Store = new MemoryStore()) {}
  reserve(req: ReserveRequest) {
    this.reserves++;
    if (!req.id.startsWith('lease:')) this.requestReserves++;
    return this.inner.reserve(req);
  }
  settle(id: string, actual: Parameters<Store['settle']>[1]) {
    this.settles++;
    return this.inner.settle(id, actual);
  }
}

const charge = (key: string, cap: number, extra: Partial<BudgetCharge> = {}): BudgetCharge => ({
  keys: [K(key)],
  cap,
  hard: true,
  fixed: 10,
  perOutput: 1,
  ttlMs: TTL,
  ...extra,
});

let seq = 0;
const request = (charges: BudgetCharge[], output = 40): ReserveRequest => ({
  id: `r${++seq}`,
  charges,
  output,
  minOutput: output,
  holdMs: 60_000,
});

/** Reserves, then settles with `used` per counter (default: what was reserved). */
async function serve(budget: BudgetStore, charges: BudgetCharge[], used?: number) {
  const req = request(charges);
  const result = await budget.reserve(req);
  if (result.ok) {
    await budget.settle(
      req.id,
      charges.map((c) => ({
        key: c.keys[0]!,
        amount: used ?? c.fixed + c.perOutput * req.output,
        ttlMs: TTL,
      })),
    );
  }
  return result;
}

/** Lets the leases' store calls (started on the next turn) finish. */
const settled = () => new Promise((r) => setTimeout(r, 5));

/** Four reservations in one period make the counters busy: the fourth reserves a lease (8 requests' worth). */
async function warm(budget: BudgetStore, charges: BudgetCharge[]) {
  for (let i = 0; i < 4; i++) await serve(budget, charges);
  await settled();
}
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

let budgets: LeasedBudget[] = [];
function leased(store: BudgetStore, settings: Partial<LeaseSettings> = {}, now?: () => number) {
  const b = new LeasedBudget(store, { ...SETTINGS, ...settings }, logger, undefined, now);
  budgets.push(b);
  return b;
}

afterEach(() => {
  for (const b of budgets) b.close();
  budgets = [];
});

describe('leases', () => {
  it('a busy counter is served from a lease: no store call per request, exact usage once settled', async () => {
    const store = new CountingStore();
    const budget = leased(store);
    const c = [charge('k1', 1_000_000)];
    await serve(budget, c); // one reservation: not busy, no lease
    await settled();
    expect(store.reserves).toBe(1);
    for (let i = 0; i < 3; i++) await serve(budget, c);
    await settled();
    const before = store.reserves;
    expect(before).toBe(5); // four requests + the lease
    // Half of the lease (8 requests of 50) serves 4 requests without a store call.
    for (let i = 0; i < 4; i++) expect((await serve(budget, c)).ok).toBe(true);
    expect(store.reserves).toBe(before);
    // The lease holds 400 in the store until it is settled.
    expect(await store.inner.budgetUsage(K('k1'))).toEqual({ used: 200, held: 400 });
    await wait(SETTINGS.maxAgeMs * 2);
    expect(await store.inner.budgetUsage(K('k1'))).toEqual({ used: 400, held: 0 });
  });

  it('counts actual usage, not what was reserved', async () => {
    const store = new CountingStore();
    const budget = leased(store);
    const c = [charge('k2', 1_000_000)];
    await warm(budget, c);
    for (let i = 0; i < 4; i++) await serve(budget, c, 7);
    expect(store.requestReserves).toBe(4);
    budget.close();
    await settled();
    expect(await store.inner.budgetUsage(K('k2'))).toEqual({ used: 200 + 4 * 7, held: 0 });
  });

  it('a retired lease is settled only after its last request', async () => {
    const store = new CountingStore();
    let now = 0;
    const budget = leased(store, {}, () => now);
    const c = [charge('k3', 1_000_000)];
    await warm(budget, c);
    const req = request(c);
    expect((await budget.reserve(req)).ok).toBe(true); // in flight on the lease
    expect(store.requestReserves).toBe(4);
    now += SETTINGS.maxAgeMs + 1;
    await serve(budget, c); // the lease is too old: retired; this one goes to the store, and a new lease is taken
    await settled();
    expect(store.requestReserves).toBe(5);
    expect(budget.leases).toBe(2); // the old one waits for its request
    await budget.settle(req.id, [{ key: K('k3'), amount: 30, ttlMs: TTL }]);
    await settled();
    expect(budget.leases).toBe(1);
    budget.close();
    await settled();
    expect(await store.inner.budgetUsage(K('k3'))).toEqual({ used: 250 + 30, held: 0 });
  });

  it('near a cap no lease is taken: every request reserves exactly', async () => {
    const store = new CountingStore();
    const budget = leased(store);
    // Headroom 900: a tenth is 90, under two requests of 50.
    const c = [charge('k4', 900)];
    for (let i = 0; i < 18; i++) expect((await serve(budget, c)).ok).toBe(true);
    await settled();
    expect(store.reserves).toBe(18);
    expect((await serve(budget, c)).ok).toBe(false);
    expect(await store.inner.budgetUsage(K('k4'))).toEqual({ used: 900, held: 0 });
  });

  it('a request larger than what the lease has left goes to the store', async () => {
    const store = new CountingStore();
    const budget = leased(store, { requests: 4 });
    const c = [charge('k5', 1_000_000)];
    await warm(budget, c);
    const reserves = store.reserves;
    const big = await budget.reserve(request(c, 500));
    expect(big.ok).toBe(true);
    await settled();
    // Its own reservation, then a lease sized for requests like it.
    expect(store.reserves).toBe(reserves + 2);
  });

  it('the next lease is reserved when one is half spent, so requests keep avoiding the store', async () => {
    const store = new CountingStore();
    const budget = leased(store, { requests: 4 });
    const c = [charge('k6', 1_000_000)];
    await warm(budget, c);
    for (let i = 0; i < 40; i++) {
      await serve(budget, c);
      await settled();
    }
    expect(store.requestReserves).toBe(4);
    // Each lease of 4 requests was replaced at half: about 40 / 2 store calls for 40 requests.
    expect(store.reserves).toBeLessThanOrEqual(4 + 21);
    budget.close();
    await settled();
    expect(await store.inner.budgetUsage(K('k6'))).toEqual({ used: 44 * 50, held: 0 });
  });

  it('every counter of the request must have room; a priority class has its own lease', async () => {
    const store = new CountingStore();
    const budget = leased(store);
    const both = [charge('k7a', 1_000_000), charge('k7b', 1_000_000)];
    await warm(budget, both);
    const reserves = store.reserves;
    await serve(budget, both);
    expect(store.reserves).toBe(reserves);
    // Same counters held to 80 % of the cap: another lease signature.
    const lower = both.map((c) => ({ ...c, cap: 800_000 }));
    await serve(budget, lower);
    expect(store.reserves).toBe(reserves + 1);
  });

  it('two nodes with leases on one store never admit more than the cap', async () => {
    const store = new CountingStore();
    const nodes = [leased(store, { headroomShare: 0.5 }), leased(store, { headroomShare: 0.5 })];
    const cap = 20_000;
    const c = [charge('k8', cap)];
    let admitted = 0;
    const inFlight: Array<Promise<void>> = [];
    for (let i = 0; i < 600; i++) {
      const node = nodes[i % 2]!;
      const req = request(c);
      const result = await node.reserve(req);
      if (!result.ok) continue;
      admitted += 50;
      // Half of the requests are still running when the cap is reached.
      const done = node.settle(req.id, [{ key: K('k8'), amount: 50, ttlMs: TTL }]);
      if (i % 2 === 0) inFlight.push(done);
      else await done;
    }
    expect(admitted).toBeLessThanOrEqual(cap);
    expect(admitted).toBeGreaterThan(cap * 0.9);
    await Promise.all(inFlight);
    for (const n of nodes) n.close();
    await settled();
    expect(await store.inner.budgetUsage(K('k8'))).toEqual({ used: admitted, held: 0 });
  });

  it('a store that fails while a lease is reserved leaves requests on the store path', async () => {
    const inner = new MemoryStore();
    let failLeases = true;
    const store: BudgetStore = {
      reserve: (req) =>
        failLeases && req.id.startsWith('lease:') ? Promise.reject(new Error('down')) : inner.reserve(req),
      settle: (id, actual) => inner.settle(id, actual),
    };
    const budget = leased(store);
    const c = [charge('k9', 1_000_000)];
    for (let i = 0; i < 5; i++) expect((await serve(budget, c)).ok).toBe(true);
    await settled();
    expect(budget.leases).toBe(0);
    failLeases = false;
    await serve(budget, c);
    await settled();
    expect(budget.leases).toBe(1);
  });

  it('closing gives every lease back, one being reserved included, and takes no new one', async () => {
    const store = new CountingStore();
    const budget = leased(store);
    const c = [charge('k10', 1_000_000)];
    for (let i = 0; i < 4; i++) await serve(budget, c); // the fourth asks for a lease...
    budget.close(); // ...which the store grants after the close
    await settled();
    for (let i = 0; i < 8; i++) await serve(budget, c);
    await settled();
    expect(budget.leases).toBe(0);
    expect(store.requestReserves).toBe(12);
    expect(await store.inner.budgetUsage(K('k10'))).toEqual({ used: 12 * 50, held: 0 });
  });

  it('a request that never settles holds its lease only until the lease hold expires', async () => {
    const store = new CountingStore();
    let now = 0;
    const settings = { maxAgeMs: 50, holdMs: 1_000 };
    const budget = leased(store, settings, () => now);
    const c = [charge('k11', 1_000_000)];
    await warm(budget, c);
    const lost = request(c);
    expect((await budget.reserve(lost)).ok).toBe(true); // on the lease, and never settled
    await serve(budget, c); // settled on the lease
    now += settings.maxAgeMs + 1;
    await wait(settings.maxAgeMs); // the sweep retires the lease: it waits for the lost request
    expect(budget.leases).toBe(1);
    now += settings.holdMs;
    await wait(settings.maxAgeMs);
    await settled();
    expect(budget.leases).toBe(0);
    // The settled request is counted; the lost one is not, until it settles late (in the store).
    expect(await store.inner.budgetUsage(K('k11'))).toMatchObject({ used: 250 });
    await budget.settle(lost.id, [{ key: K('k11'), amount: 30, ttlMs: TTL }]);
    expect(await store.inner.budgetUsage(K('k11'))).toMatchObject({ used: 280 });
  });
});
