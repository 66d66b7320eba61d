/**
 * Two suite-server processes (two Kong nodes, each with its emulated Kong and its own
 * dist/lib/kong/main.js) sharing one Redis and one hard cap: 200 concurrent streams split
 * across them never spend more than the cap. Then a node killed with SIGKILL in the middle
 * of a stream: its reservation is released by expiry (hold_ms), never leaked.
 */
import { randomBytes } from 'node:crypto';
import type { DriverResponse } from '../../support/kong';
import { type ProviderMock, parseSse, startOpenAIMock } from '../../support/providers';
import { freePort } from '../../support/redis';
import { chatBody, postChat, type RealProcess, startRealProcess, until } from '../../support/suite';

const KEY = 'sk-proj-SharedBudgetKey0123456789abcdef';
const LIMIT = `shared-${randomBytes(4).toString('hex')}`;
const CAP = 3_000;
const HOLD_MS = 2_000;

/** The kill test's limit: holds expire after HOLD_MS (the other route keeps the default). */
const SHORT = `${LIMIT}-short`;

let mock: ProviderMock;
const nodes: RealProcess[] = [];
const adminPorts: number[] = [];

const route = (path: string, limit: string, extra: Record<string, unknown>) => ({
  name: path.slice(1),
  path,
  plugins: [
    { name: 'ai-router', config: { targets: [{ name: 'm', model: 'm', base_url: mock.url, api_key: KEY }] } },
    {
      name: 'ai-budget',
      config: {
        limits: [{ name: limit, scope: 'global', window: 'day', unit: 'tokens', limit: CAP }],
        min_output_tokens: 5,
        ...extra,
      },
    },
  ],
});

beforeAll(async () => {
  mock = await startOpenAIMock({ apiKey: KEY, chunkDelayMs: 2 });
  const redis = process.env.AIGW_TEST_REDIS_URL!;
  for (let i = 0; i < 2; i++) {
    const adminPort = await freePort();
    adminPorts.push(adminPort);
    nodes.push(
      await startRealProcess({
        serverEnv: { AIGW_STORE: redis, AIGW_ADMIN_PORT: String(adminPort) },
        routes: () => [route('/r', LIMIT, {}), route('/short', SHORT, { hold_ms: HOLD_MS })],
      }),
    );
  }
}, 60_000);

afterAll(async () => {
  for (const n of nodes) await n.close();
  await mock?.close();
});

beforeEach(() => {
  mock.reset();
  mock.setAnswer(Array.from({ length: 40 }, (_, i) => `w${i}`).join(' '));
});

const stream = (node: RealProcess, max_tokens: number, path = '/r') =>
  postChat(
    node.kong,
    path,
    chatBody({
      model: 'm',
      stream: true,
      max_tokens,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'hi' }],
    }),
  );

function usageOf(res: DriverResponse): number {
  const chunks = parseSse(res.text())
    .filter((f) => f.data !== '[DONE]')
    .map((f) => JSON.parse(f.data) as { usage?: { total_tokens: number } | null });
  return chunks.find((c) => c.usage)?.usage?.total_tokens ?? 0;
}

async function budget(node = 0, limit = LIMIT): Promise<{ used: number; held: number }> {
  const res = await fetch(`http://127.0.0.1:${adminPorts[node]}/budgets/${limit}`);
  return (await res.json()) as { used: number; held: number };
}

it('200 concurrent streams over two nodes never spend more than the shared cap', async () => {
  const [one, two] = nodes as [RealProcess, RealProcess];
  const responses = await Promise.all(
    Array.from({ length: 200 }, (_, i) => stream(i % 2 === 0 ? one : two, 30)),
  );
  const served = responses.filter((r) => r.status === 200);
  const refused = responses.filter((r) => r.status !== 200);
  expect(refused.every((r) => r.status === 429)).toBe(true);
  expect(served.length).toBeGreaterThan(10);
  expect(refused.length).toBeGreaterThan(10);
  const spent = served.reduce((sum, r) => sum + usageOf(r), 0);
  expect(spent).toBeLessThanOrEqual(CAP);
  // Both nodes admitted requests, and both see the same counter.
  expect(mock.requests.length).toBe(served.length);
  await until(async () => ((await budget(0)).held === 0 ? true : undefined), 'holds released', 5_000);
  expect(await budget(0)).toMatchObject({ used: spent, held: 0 });
  expect(await budget(1)).toMatchObject({ used: spent, held: 0 });
}, 60_000);

it('a node killed mid-stream: its reservation is released after hold_ms, not leaked', async () => {
  const [one, two] = nodes as [RealProcess, RealProcess];
  // Kong starts a plugin instance on first use: node 2 learns the limit, then it is reset.
  expect((await stream(two, 5, '/short')).status).toBe(200);
  await fetch(`http://127.0.0.1:${adminPorts[1]}/budgets/${SHORT}`, { method: 'DELETE' });
  mock.setFault({ kind: 'chunk_delay', ms: 200 });
  const pending = stream(one, 500, '/short').catch(() => undefined);
  await until(
    async () => ((await budget(1, SHORT)).held > 0 ? true : undefined),
    'the stream to hold tokens',
    5_000,
  );
  process.kill(one.pid(), 'SIGKILL');
  await pending;
  mock.setFault(undefined);
  // The hold outlives the dead node until hold_ms...
  expect((await budget(1, SHORT)).held).toBeGreaterThan(0);
  // ...and is then released: the other node sees the whole cap again.
  await until(
    async () => ((await budget(1, SHORT)).held === 0 ? true : undefined),
    'the dead hold to expire',
    HOLD_MS + 3_000,
  );
  expect(await budget(1, SHORT)).toMatchObject({ used: 0, held: 0 });
  expect((await stream(two, 30, '/short')).status).toBe(200);
}, 30_000);
