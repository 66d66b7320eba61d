/**
 * Instance ids across a suite server restart. Kong caches instance ids per plugin config
 * and keeps using them after the server behind the socket changed; the new server must
 * answer "no plugin instance" for every old id (so Kong starts new instances) and never hand
 * out an id the previous server gave out, else a stale id could run another route's config
 * (or another plugin). The restart happens in a later second, as Kong respawns a server at
 * least one second apart.
 */
import { type ProviderMock, startOpenAIMock } from '../../support/providers';
import { chatBody, type InProcess, postChat, routerConfig, startInProcess } from '../../support/suite';

const KEY = 'sk-proj-InstancesKey0123456789abcdefXYZ';

let mock: ProviderMock;
let suite: InProcess;

beforeAll(async () => {
  mock = await startOpenAIMock({ apiKey: KEY, chunkDelayMs: 0 });
  const targets = [
    { name: 'alpha', model: 'gpt-4o-mini', api_key: KEY },
    { name: 'beta', model: 'gpt-4o', api_key: KEY },
  ];
  suite = await startInProcess({
    routes: () => [
      {
        name: 'r1',
        path: '/r1',
        plugins: [
          { name: 'ai-router', config: routerConfig(mock.url, targets, { default_target: 'alpha' }) },
          { name: 'ai-metrics' },
        ],
      },
      {
        name: 'r2',
        path: '/r2',
        plugins: [
          { name: 'ai-router', config: routerConfig(mock.url, targets, { default_target: 'beta' }) },
          { name: 'ai-metrics', config: { log_consumer: true } },
        ],
      },
    ],
  });
}, 30_000);

afterAll(async () => {
  await suite?.close();
  await mock?.close();
});

/** Ids from the server's "instance started" lines, from the log line `from` on. */
function startedIds(from = 0): number[] {
  return suite.log
    .records()
    .slice(from)
    .filter((r) => r.msg === 'instance started')
    .map((r) => r.instance as number);
}

/** A model no target serves: the route's default_target decides. */
const anyModel = chatBody({ model: 'some-model' });

async function expectTarget(prefix: string, target: string) {
  const res = await postChat(suite.kong, prefix, anyModel);
  expect(res.status).toBe(200);
  expect(res.headers['x-ai-target']).toBe(target);
  return res;
}

function metricsTargets(from: number): string[] {
  return suite.log
    .records()
    .slice(from)
    .filter((r) => r.msg === 'ai request')
    .map((r) => r.target as string);
}

test('a restarted server never reuses an id; Kong’s stale ids get "no plugin instance", restart, and each route keeps its config', async () => {
  await (await expectTarget('/r1', 'alpha')).stats();
  await (await expectTarget('/r2', 'beta')).stats();
  await (await expectTarget('/r1', 'alpha')).stats();
  const firstIds = startedIds();
  expect(firstIds).toHaveLength(4); // ai-router and ai-metrics on each route
  expect(new Set(firstIds).size).toBe(4);

  // Kong respawns a server at least a second after the last start.
  await new Promise((r) => setTimeout(r, 1_000 - (Date.now() % 1_000) + 50));
  const logMark = suite.log.lines.length;
  await suite.restartServer();

  // r2 first: its cached ids are the higher ones; then r1.
  const r2 = await expectTarget('/r2', 'beta');
  const r2Stats = await r2.stats();
  const r1 = await expectTarget('/r1', 'alpha');
  const r1Stats = await r1.stats();
  for (const stats of [r2Stats, r1Stats]) {
    expect(stats.status).toBe(200);
    expect(stats.instanceRpcs).toBeGreaterThanOrEqual(1);
  }
  // The stale ids were refused, and the event retried on a new instance.
  const refused = [r2Stats, r1Stats].flatMap((s) =>
    Object.values(s.plugins).flatMap((p) => p.failures.map((f) => f.reason)),
  );
  expect(refused.length).toBeGreaterThanOrEqual(2);
  for (const reason of refused) expect(reason).toMatch(/^no plugin instance #\d+$/);
  const staleIds = refused.map((r) => Number(r.slice('no plugin instance #'.length)));
  for (const id of staleIds) expect(firstIds).toContain(id);

  await (await expectTarget('/r2', 'beta')).stats();
  await (await expectTarget('/r1', 'alpha')).stats();

  const secondIds = startedIds(logMark);
  expect(secondIds).toHaveLength(4);
  expect(Math.min(...secondIds)).toBeGreaterThan(Math.max(...firstIds));
  for (const id of [...firstIds, ...secondIds]) {
    expect(Number.isInteger(id)).toBe(true);
    expect(id).toBeLessThan(2 ** 31);
  }
  // ai-metrics ran with its own instance for every request after the restart (a stale id
  // reaching ai-router's instance would have run no log handler), and saw each route's target.
  expect(metricsTargets(logMark)).toEqual(['beta', 'alpha', 'beta', 'alpha']);
}, 30_000);
