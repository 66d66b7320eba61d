/**
 * ai-budget through the Kong emulator and the in-process suite server, on the shared Redis:
 * 200 concurrent streams never spend more than a hard cap; clamp vs reject; soft limits;
 * priority classes; sliding-window rollover; consumers apart; re-pricing on fallback;
 * headers; the admin endpoint; and a dead store in both fault modes.
 */
import { randomBytes } from 'node:crypto';
import { until } from '../../support/eventually';
import type { DriverResponse } from '../../support/kong';
import { type ProviderMock, parseSse, startOpenAIMock } from '../../support/providers';
import { freePort } from '../../support/redis';
import { chatBody, type InProcess, openAIError, postChat, startInProcess } from '../../support/suite';

const KEY = 'sk-proj-BudgetKey0123456789abcdefXYZ';
/** Limit names are unique per run: the Redis is shared with other test files. */
const RUN = randomBytes(4).toString('hex');
const ANSWER = Array.from({ length: 40 }, (_, i) => `w${i}`).join(' ');

let mock: ProviderMock;
let pricey: ProviderMock;
let gw: InProcess;
let deadStore: InProcess;

const target = (name: string, m: { url: string }, extra: Record<string, unknown> = {}) => ({
  name,
  model: name,
  base_url: m.url,
  api_key: KEY,
  ...extra,
});

const tokens = (name: string, limit: number, extra: Record<string, unknown> = {}) => ({
  name: `${name}-${RUN}`,
  scope: 'global',
  window: 'day',
  unit: 'tokens',
  limit,
  ...extra,
});

function route(
  name: string,
  budget: Record<string, unknown>,
  extra: { auth?: boolean; fallback?: boolean } = {},
) {
  return {
    name,
    path: `/${name}`,
    plugins: [
      ...(extra.auth ? [{ name: 'key-auth', config: {} }] : []),
      {
        name: 'ai-router',
        config: {
          targets: [
            target('cheap', mock, { prices: { input_per_1m: 1, output_per_1m: 1 } }),
            target('dear', pricey, { prices: { input_per_1m: 1000, output_per_1m: 1000 } }),
          ],
        },
      },
      { name: 'ai-budget', config: budget },
      ...(extra.fallback
        ? [
            {
              name: 'ai-fallback',
              config: { chains: [{ target: 'cheap', fallbacks: ['dear'] }], breaker: { enabled: false } },
            },
          ]
        : []),
      { name: 'ai-metrics' },
    ],
  };
}

beforeAll(async () => {
  [mock, pricey] = await Promise.all([
    startOpenAIMock({ apiKey: KEY, chunkDelayMs: 1 }),
    startOpenAIMock({ apiKey: KEY, chunkDelayMs: 1 }),
  ]);
  const redis = process.env.AIGW_TEST_REDIS_URL!;
  gw = await startInProcess({
    serverEnv: { AIGW_STORE: redis },
    consumers: [
      { username: 'alice', keyauth_credentials: [{ key: 'alice-key' }] },
      { username: 'bob', tags: ['ai-priority:batch'], keyauth_credentials: [{ key: 'bob-key' }] },
    ],
    routes: () => [
      route('cap', { limits: [tokens('cap', 3_000)], min_output_tokens: 5 }),
      route('busy', { limits: [tokens('busy', 1_000_000)] }),
      route('unleased', { limits: [tokens('unleased', 1_000_000)], lease: { enabled: false } }),
      route('reject', { limits: [tokens('reject', 100)], on_exceed: 'reject' }),
      route('clamp', { limits: [tokens('clamp', 100)], min_output_tokens: 5 }),
      route('soft', { limits: [tokens('soft', 10, { mode: 'soft' })] }),
      route('slide', {
        limits: [tokens('slide', 120, { window: 'sliding', sliding_window_s: 2 })],
        on_exceed: 'reject',
      }),
      route(
        'classes',
        {
          limits: [tokens('classes', 400)],
          on_exceed: 'reject',
          priority: { classes: [{ name: 'batch', share: 0.5 }], header: 'x-ai-priority' },
        },
        { auth: true },
      ),
      route(
        'per-consumer',
        { limits: [tokens('per-consumer', 150, { scope: 'consumer' })], on_exceed: 'reject' },
        {
          auth: true,
        },
      ),
      route(
        'reprice',
        { limits: [{ name: `usd-${RUN}`, scope: 'global', window: 'day', unit: 'cost_usd', limit: 0.05 }] },
        { fallback: true },
      ),
    ],
  });
  const dead = `redis://127.0.0.1:${await freePort()}/0`;
  deadStore = await startInProcess({
    serverEnv: { AIGW_STORE: dead, AIGW_STORE_COMMAND_TIMEOUT_MS: '100' },
    routes: () => [
      route('tolerant', { limits: [tokens('tolerant', 1_000)], local_share: 0.1, on_exceed: 'reject' }),
      route('strict', { limits: [tokens('strict', 1_000)], fault_tolerant: false }),
    ],
  });
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await deadStore?.close();
  await Promise.all([mock, pricey].map((m) => m?.close()));
});

beforeEach(() => {
  for (const m of [mock, pricey]) {
    m.reset();
    m.setAnswer(ANSWER);
  }
});

const ask = (path: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) =>
  postChat(
    gw.kong,
    path,
    chatBody({ model: 'cheap', messages: [{ role: 'user', content: 'hi' }], ...extra }),
    headers,
  );

/** What the stream's usage chunk reports (stream_options.include_usage). */
function streamedUsage(res: DriverResponse): number {
  const usage = parseSse(res.text())
    .filter((f) => f.data !== '[DONE]')
    .map((f) => JSON.parse(f.data) as { usage?: { total_tokens: number } | null })
    .find((c) => c.usage)?.usage;
  return usage?.total_tokens ?? 0;
}

async function admin(
  path: string,
  method = 'GET',
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${gw.server.adminPort}${path}`, { method });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('a hard cap under concurrency', () => {
  it('200 simultaneous streams never spend more than the cap; every refused one gets a clear 429', async () => {
    const responses = await Promise.all(
      Array.from({ length: 200 }, () =>
        ask('/cap', { stream: true, max_tokens: 30, stream_options: { include_usage: true } }),
      ),
    );
    const served = responses.filter((r) => r.status === 200);
    const refused = responses.filter((r) => r.status !== 200);
    for (const r of refused) {
      expect(r.status).toBe(429);
      expect(openAIError(r)).toMatchObject({ code: 'AIGW_BUDGET_EXCEEDED', type: 'rate_limit_error' });
      expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
    }
    for (const r of served) expect(parseSse(r.text()).at(-1)?.data).toBe('[DONE]');
    const spent = served.reduce((sum, r) => sum + streamedUsage(r), 0);
    expect(served.length).toBeGreaterThan(10);
    expect(refused.length).toBeGreaterThan(10);
    expect(spent).toBeLessThanOrEqual(3_000);
    // Clamped requests reached the provider with a lower answer limit, and never below the minimum.
    const limits = mock.requests.map((q) => (q.body as { max_tokens: number }).max_tokens);
    expect(Math.min(...limits)).toBeGreaterThanOrEqual(5);
    expect(Math.max(...limits)).toBe(30);
    // Settled: the counter holds what was really used, nothing is left held (leases are settled
    // within lease.max_age_ms of their last request).
    const usage = await until(async () => {
      const u = await admin(`/budgets/cap-${RUN}`);
      return u.body.held === 0 ? u : undefined;
    }, 'leases settled');
    expect(usage.body).toMatchObject({ used: spent, held: 0 });
  }, 60_000);
});

describe('leases', () => {
  const leasedCount = async () => {
    const m = /aigw_budget_leased_reservations_total (\d+)/.exec(await scrape(gw));
    return Number(m?.[1] ?? 0);
  };

  it('a busy counter is served from a lease: most requests make no store call, usage is exact once settled', async () => {
    const before = await leasedCount();
    let spent = 0;
    for (let i = 0; i < 30; i++) {
      const res = await ask('/busy', { max_tokens: 20 });
      expect(res.status).toBe(200);
      spent += res.json<{ usage: { total_tokens: number } }>().usage.total_tokens;
    }
    // The first requests reserve in Redis until the counter is busy; then leases serve them.
    expect((await leasedCount()) - before).toBeGreaterThanOrEqual(20);
    const usage = await until(async () => {
      const u = await admin(`/budgets/busy-${RUN}`);
      return u.body.held === 0 ? u : undefined;
    }, 'leases settled');
    expect(usage.body.used).toBe(spent);
  });

  it('lease.enabled false: every request reserves in the store, usage is there at once', async () => {
    const before = await leasedCount();
    let spent = 0;
    for (let i = 0; i < 10; i++) {
      const res = await ask('/unleased', { max_tokens: 20 });
      spent += res.json<{ usage: { total_tokens: number } }>().usage.total_tokens;
    }
    expect(await leasedCount()).toBe(before);
    expect((await admin(`/budgets/unleased-${RUN}`)).body).toMatchObject({ used: spent, held: 0 });
  });
});

describe('when the reservation does not fit', () => {
  it('reject: 429 with the rate-limit headers, the provider never called', async () => {
    const first = await ask('/reject', { max_tokens: 60 });
    expect(first.status).toBe(200);
    expect(first.headers['x-ratelimit-limit-tokens']).toBe('100');
    const second = await ask('/reject', { max_tokens: 60 });
    expect(second.status).toBe(429);
    expect(second.headers['x-ratelimit-remaining-tokens']).toBeDefined();
    expect(openAIError(second).message).toContain(`reject-${RUN}`);
    expect(mock.requests).toHaveLength(1);
  });

  it('clamp: max_tokens is lowered to what is left, then refused below min_output_tokens', async () => {
    const first = await ask('/clamp', { max_tokens: 60 });
    expect(first.status).toBe(200);
    const second = await ask('/clamp', { max_tokens: 60 });
    expect(second.status).toBe(200);
    const sent = mock.requests.map((q) => (q.body as { max_tokens: number }).max_tokens);
    expect(sent[0]).toBe(60);
    expect(sent[1]).toBeLessThan(60);
    expect(sent[1]).toBeGreaterThanOrEqual(5);
    const used = (await admin(`/budgets/clamp-${RUN}`)).body.used as number;
    expect(used).toBeLessThanOrEqual(100);
    // The ai-metrics line says so.
    await second.stats();
    const line = gw.log
      .records()
      .find((r) => r.msg === 'ai request' && r.kong_request_id === second.headers['x-kong-request-id']);
    expect(line?.budget).toEqual({ reserved_output: sent[1], clamped: true });
  });

  it('a request without max_tokens is sent with the reservation as its limit', async () => {
    expect((await ask('/soft')).status).toBe(200);
    expect((mock.requests[0]!.body as { max_tokens: number }).max_tokens).toBe(4096);
  });
});

it('a soft limit serves and flags', async () => {
  await ask('/soft', { max_tokens: 20 });
  const res = await ask('/soft', { max_tokens: 20 });
  expect(res.status).toBe(200);
  expect(res.headers['x-ai-budget-soft-exceeded']).toBe(`soft-${RUN}`);
});

it('a sliding window frees up as the spent usage leaves it', async () => {
  expect((await ask('/slide', { max_tokens: 80 })).status).toBe(200);
  const refused = await ask('/slide', { max_tokens: 80 });
  expect(refused.status).toBe(429);
  const wait = Number(refused.headers['retry-after']);
  expect(wait).toBeGreaterThanOrEqual(1);
  expect(wait).toBeLessThanOrEqual(3);
  await new Promise((r) => setTimeout(r, 2_500));
  expect((await ask('/slide', { max_tokens: 80 })).status).toBe(200);
});

describe('identities and classes', () => {
  it('each consumer has its own counter; anonymous requests are refused by key-auth first', async () => {
    expect((await ask('/per-consumer', { max_tokens: 100 }, { apikey: 'alice-key' })).status).toBe(200);
    expect((await ask('/per-consumer', { max_tokens: 100 }, { apikey: 'alice-key' })).status).toBe(429);
    expect((await ask('/per-consumer', { max_tokens: 100 }, { apikey: 'bob-key' })).status).toBe(200);
    expect((await ask('/per-consumer', {})).status).toBe(401);
  });

  it('a lower class stops at its share of the cap; others keep the rest', async () => {
    // bob is tagged ai-priority:batch (share 0.5 of 400); alice has no class.
    expect((await ask('/classes', { max_tokens: 150 }, { apikey: 'bob-key' })).status).toBe(200);
    const stopped = await ask('/classes', { max_tokens: 150 }, { apikey: 'bob-key' });
    expect(stopped.status).toBe(429);
    expect(stopped.headers['x-ratelimit-limit-tokens']).toBe('200');
    // The trusted header names the class too.
    expect(
      (await ask('/classes', { max_tokens: 150 }, { apikey: 'alice-key', 'x-ai-priority': 'batch' })).status,
    ).toBe(429);
    expect((await ask('/classes', { max_tokens: 150 }, { apikey: 'alice-key' })).status).toBe(200);
  });
});

describe('fallback hops re-price', () => {
  it('a pricier fallback that the budget cannot cover is skipped: the client gets the first failure', async () => {
    mock.nextFault({ kind: 'status', status: 503 });
    // cheap: ~10 prompt + 100 answer tokens at $1/1M; dear: at $1000/1M that is ~$0.11 > $0.05.
    const res = await ask('/reprice', { max_tokens: 100 });
    expect(res.status).toBe(503);
    expect(pricey.requests).toHaveLength(0);
  });

  it('a pricier fallback that fits is tried, and settled at its own price', async () => {
    mock.nextFault({ kind: 'status', status: 503 });
    const res = await ask('/reprice', { max_tokens: 10 });
    expect(res.status).toBe(200);
    expect(res.headers['x-ai-target']).toBe('dear');
    // Answered by dear: ~13 prompt + 10 answer tokens at $1000/1M ≈ $0.02; nothing held once
    // a lease the route's reservations may have made is settled.
    const usage = await until(async () => {
      const u = await admin(`/budgets/usd-${RUN}`);
      return u.body.held === 0 ? u : undefined;
    }, 'nothing held');
    expect(usage.body.used as number).toBeGreaterThan(0.01);
  });
});

const scrape = async (proc: InProcess) =>
  (await fetch(`http://127.0.0.1:${proc.server.adminPort}/metrics`)).text();

describe('the admin endpoint', () => {
  it('counts refusals, clamps and soft excesses per limit in /metrics', async () => {
    const text = await scrape(gw);
    expect(text).toMatch(new RegExp(`aigw_budget_refused_total\\{limit="reject-${RUN}"\\} [1-9]`));
    expect(text).toMatch(new RegExp(`aigw_budget_clamped_total\\{limit="clamp-${RUN}"\\} [1-9]`));
    expect(text).toMatch(new RegExp(`aigw_budget_soft_exceeded_total\\{limit="soft-${RUN}"\\} [1-9]`));
  });

  it('lists limits, reads a scope’s window and resets it', async () => {
    const list = await admin('/budgets');
    expect((list.body.data as Array<{ name: string }>).map((l) => l.name)).toContain(`reject-${RUN}`);
    const before = await admin(`/budgets/reject-${RUN}`);
    expect(before.body).toMatchObject({ scope: 'global', unit: 'tokens', limit: 100 });
    expect((await admin(`/budgets/reject-${RUN}`, 'DELETE')).body).toMatchObject({ reset: true });
    expect((await admin(`/budgets/reject-${RUN}`)).body).toMatchObject({ used: 0, held: 0, remaining: 100 });
    expect((await admin('/budgets/nope')).status).toBe(404);
    expect((await admin(`/budgets/per-consumer-${RUN}`)).status).toBe(400);
  });
});

describe('the store is down', () => {
  it('fault_tolerant: served, each node counting alone against its local share', async () => {
    const ok = await postChat(deadStore.kong, '/tolerant', chatBody({ model: 'cheap', max_tokens: 50 }));
    expect(ok.status).toBe(200);
    // 10 % of 1000 tokens per node: the second request no longer fits.
    const refused = await postChat(deadStore.kong, '/tolerant', chatBody({ model: 'cheap', max_tokens: 50 }));
    expect(refused.status).toBe(429);
    expect(deadStore.log.records().some((r) => String(r.msg).includes('counting on this node only'))).toBe(
      true,
    );
    expect(await scrape(deadStore)).toMatch(/aigw_budget_local_reservations_total [1-9]/);
  });

  it('not fault_tolerant: 503 with a clear error, the provider never called', async () => {
    const res = await postChat(deadStore.kong, '/strict', chatBody({ model: 'cheap' }));
    expect(res.status).toBe(503);
    expect(openAIError(res)).toMatchObject({ code: 'AIGW_STORE_UNAVAILABLE' });
    expect(mock.requests).toHaveLength(0);
  });
});
