/**
 * Two suite-server processes (two Kong nodes, each with its own emulated Kong and its own
 * dist/lib/kong/main.js) sharing one Redis: a breaker opened by the first is honoured by
 * the second within a second, without the second ever seeing the target fail.
 */
import { type ProviderMock, startOpenAIMock } from '../../support/providers';
import { chatBody, postChat, type RealProcess, startRealProcess } from '../../support/suite';

const KEY = 'sk-proj-SharedBreakerKey0123456789abcdef';

let a: ProviderMock;
let b: ProviderMock;
const nodes: RealProcess[] = [];

beforeAll(async () => {
  [a, b] = await Promise.all([startOpenAIMock({ apiKey: KEY }), startOpenAIMock({ apiKey: KEY })]);
  const redis = process.env.AIGW_TEST_REDIS_URL;
  if (!redis) throw new Error('AIGW_TEST_REDIS_URL is not set (spec/support/global-setup.ts starts Redis)');
  for (let i = 0; i < 2; i++) {
    nodes.push(
      await startRealProcess({
        serverEnv: { AIGW_STORE: redis },
        routes: () => [
          {
            name: 'r',
            path: '/r',
            plugins: [
              {
                name: 'ai-router',
                config: {
                  targets: [
                    // The mock's random port makes this target's breaker key its own in Redis.
                    { name: 'a', model: 'm', base_url: a.url, api_key: KEY },
                    { name: 'b', model: 'm', base_url: b.url, api_key: KEY },
                  ],
                },
              },
              {
                name: 'ai-fallback',
                config: {
                  chains: [{ target: 'a', fallbacks: ['b'] }],
                  breaker: { min_requests: 3, failure_rate: 0.5, cooldown_ms: 30_000 },
                  retry_budget: { min_retries_per_s: 1000 },
                },
              },
            ],
          },
        ],
      }),
    );
  }
}, 60_000);

afterAll(async () => {
  for (const n of nodes) await n.close();
  await a?.close();
  await b?.close();
});

it('a breaker opened on node 1 keeps node 2 away from the target within a second', async () => {
  const [one, two] = nodes as [RealProcess, RealProcess];
  // Node 2 uses the target once while it is healthy (its view: closed).
  expect((await postChat(two.kong, '/r', chatBody({ model: 'a' }))).headers['x-ai-target']).toBe('a');
  a.setFault({ kind: 'status', status: 500 });
  for (let i = 0; i < 3; i++) {
    const res = await postChat(one.kong, '/r', chatBody({ model: 'a' }));
    expect(res.headers['x-ai-target']).toBe('b');
  }
  const callsToA = a.requests.length;
  expect(callsToA).toBe(4);
  await new Promise((r) => setTimeout(r, 1_000));
  // Node 2 never saw a fail, yet skips it: the open state came through Redis.
  for (let i = 0; i < 3; i++) {
    const res = await postChat(two.kong, '/r', chatBody({ model: 'a' }));
    expect(res.status).toBe(200);
    expect(res.headers['x-ai-target']).toBe('b');
    expect(res.headers['x-ai-fallback-count']).toBe('0');
  }
  expect(a.requests).toHaveLength(callsToA);
}, 30_000);
