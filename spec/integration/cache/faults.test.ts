/**
 * ai-semantic-cache under faults, through the Kong emulator and in-process suite servers:
 * two nodes sharing Redis (a node learns what the other stored), a restart (the vector index
 * is rebuilt from the store), bad bytes in the store (ignored, deleted, counted, never a
 * crash) and Redis down (lookups miss, requests are still served).
 */
import { randomBytes } from 'node:crypto';
import { decodeEntry } from '../../../lib/cache/entry';
import { namespaceOf, storeNamespace } from '../../../lib/cache/keys';
import { LOCAL_EMBEDDER_DEFAULT_THRESHOLD } from '../../../lib/embed/local';
import type { DriverResponse } from '../../support/kong';
import { type ProviderMock, startOpenAIMock } from '../../support/providers';
import { freePort } from '../../support/redis';
import { chatBody, type InProcess, postChat, startInProcess, until } from '../../support/suite';

const KEY = 'sk-proj-CacheFaultKey0123456789abcdefXYZ';
const RUN = randomBytes(4).toString('hex');
/** A vector size of its own, so this file's namespace is apart from the other cache tests'. */
const DIMENSIONS = 128;
const NAMESPACE = namespaceOf('global', { id: `local-v1-${DIMENSIONS}`, dimensions: DIMENSIONS });
const TTL_MS = 3_600_000;

let mock: ProviderMock;
let nodeA: InProcess;
let nodeB: InProcess;
let deadStore: InProcess;

const routes = () => [
  {
    name: 'g',
    path: '/g',
    plugins: [
      {
        name: 'ai-semantic-cache',
        config: {
          scope: 'global',
          embedder: { dimensions: DIMENSIONS },
          sync_interval_ms: 20,
          local_cache: { ttl_ms: 1 },
          lookup_timeout_ms: 2000,
        },
      },
      {
        name: 'ai-router',
        config: {
          targets: [{ name: 'gpt-4o-mini', model: 'gpt-4o-mini', base_url: mock.url, api_key: KEY }],
        },
      },
    ],
  },
];

beforeAll(async () => {
  mock = await startOpenAIMock({ apiKey: KEY, chunkDelayMs: 0 });
  const redis = process.env.AIGW_TEST_REDIS_URL!;
  [nodeA, nodeB] = await Promise.all([
    // Generous store timeouts: these tests are about bad data and nodes, not about a slow Redis.
    startInProcess({ serverEnv: { AIGW_STORE: redis, AIGW_STORE_COMMAND_TIMEOUT_MS: '2000' }, routes }),
    startInProcess({ serverEnv: { AIGW_STORE: redis, AIGW_STORE_COMMAND_TIMEOUT_MS: '2000' }, routes }),
  ]);
  deadStore = await startInProcess({
    serverEnv: {
      AIGW_STORE: `redis://127.0.0.1:${await freePort()}/0`,
      AIGW_STORE_COMMAND_TIMEOUT_MS: '100',
    },
    routes,
  });
}, 60_000);

afterAll(async () => {
  await Promise.all([nodeA, nodeB, deadStore].map((n) => n?.close()));
  await mock?.close();
});

beforeEach(() => mock.reset());

const ask = (node: InProcess, prompt: string, headers: Record<string, string> = {}) =>
  postChat(node.kong, '/g', chatBody({ messages: [{ role: 'user', content: `${prompt} ${RUN}` }] }), headers);
const status = (res: DriverResponse) => res.headers['x-cache-status'];
const content = (res: DriverResponse) =>
  res.json<{ choices: Array<{ message: { content: string } }> }>().choices[0]!.message.content;

async function untilHit(send: () => Promise<DriverResponse>): Promise<DriverResponse> {
  return until(async () => {
    const res = await send();
    return status(res) === 'HIT' ? res : undefined;
  }, 'a cache hit');
}

const metrics = async (node: InProcess) =>
  (await fetch(`http://127.0.0.1:${node.server.adminPort}/metrics`)).text();
const counter = (text: string, name: string) =>
  Number(text.match(new RegExp(`^${name} (\\d+)`, 'm'))?.[1] ?? 0);

describe('nodes sharing Redis', () => {
  it('a node serves, by meaning, an answer another node stored after it had loaded the namespace', async () => {
    // Node B loads the namespace first: what A stores next reaches B by catching up, not by a first load.
    expect(status(await ask(nodeB, 'Which planet is known as the red planet?'))).toBe('MISS');
    mock.setAnswer('Mars.');
    expect(status(await ask(nodeA, 'What planet is called the red planet?'))).toBe('MISS');
    await untilHit(() => ask(nodeA, 'What planet is called the red planet?'));
    // no-store: B must find A's entry by meaning, never an exact copy of its own.
    const hit = await untilHit(() =>
      ask(nodeB, 'what planet is called the red planet', { 'cache-control': 'no-store' }),
    );
    expect(hit.headers['x-cache-similarity']).toBeDefined();
    expect(content(hit)).toBe('Mars.');
  });
});

describe('a restart', () => {
  it('rebuilds the vector index from the store: a paraphrase hits right after', async () => {
    mock.setAnswer('Water boils at 100 degrees Celsius at sea level.');
    await ask(nodeA, 'At what temperature does water boil?');
    await untilHit(() => ask(nodeA, 'At what temperature does water boil?'));
    await nodeA.restartServer();
    const calls = mock.requests.length;
    const hit = await ask(nodeA, 'at what temperature does water boil');
    expect(status(hit)).toBe('HIT');
    expect(Number(hit.headers['x-cache-similarity'])).toBeGreaterThanOrEqual(
      LOCAL_EMBEDDER_DEFAULT_THRESHOLD,
    );
    expect(content(hit)).toBe('Water boils at 100 degrees Celsius at sea level.');
    expect(mock.requests.length).toBe(calls);
  });
});

describe('bad bytes in the store', () => {
  it('an entry that does not decode is a miss, deleted and counted; the request is served and the entry refilled', async () => {
    mock.setAnswer('A fine answer.');
    await ask(nodeA, 'A question whose entry gets damaged');
    await untilHit(() => ask(nodeA, 'A question whose entry gets damaged'));
    const store = nodeA.server.store;
    const ns = storeNamespace(NAMESPACE);
    const { records } = await store.cacheScan(ns, 0, 1000, TTL_MS);
    const answerOf = (value: Buffer) =>
      (decodeEntry(value).answer as { choices: Array<{ message: { content: string } }> }).choices[0]!.message
        .content;
    const id = records.find((r) => answerOf(r.value) === 'A fine answer.')?.id;
    expect(id).toBeDefined();
    await store.cachePut(ns, id!, Buffer.from('not an entry at all'), { ttlMs: TTL_MS, maxEntries: 10_000 });
    const corruptBefore = counter(await metrics(nodeA), 'aigw_cache_corrupt_entries_total');

    const res = await ask(nodeA, 'A question whose entry gets damaged');
    expect(res.status).toBe(200);
    expect(status(res)).toBe('MISS');
    expect(content(res)).toBe('A fine answer.');
    expect(counter(await metrics(nodeA), 'aigw_cache_corrupt_entries_total')).toBe(corruptBefore + 1);
    // Refilled with a good entry.
    await until(async () => {
      const bytes = await store.cacheGet(ns, id!, TTL_MS);
      return bytes && decodeEntry(bytes).answer ? true : undefined;
    }, 'the entry refilled');
    await untilHit(() => ask(nodeA, 'A question whose entry gets damaged'));
  });

  it('bad bytes met while catching up with the store are deleted and counted, and the node keeps serving', async () => {
    const store = nodeB.server.store;
    const ns = storeNamespace(NAMESPACE);
    await store.cachePut(ns, `garbage-${RUN}`, Buffer.from([0xff, 0x00, 0x13]), {
      ttlMs: TTL_MS,
      maxEntries: 10_000,
    });
    const before = counter(await metrics(nodeB), 'aigw_cache_corrupt_entries_total');
    let n = 0;
    await until(async () => {
      // A new question each time: an exact hit would not need the vector index, nor catch up.
      await ask(nodeB, `Something to make node B catch up, take ${n++}`);
      return counter(await metrics(nodeB), 'aigw_cache_corrupt_entries_total') > before ? true : undefined;
    }, 'the bad entry met');
    expect(await store.cacheGet(ns, `garbage-${RUN}`, TTL_MS)).toBeNull();
    expect((await ask(nodeB, 'Still serving after bad bytes')).status).toBe(200);
  });
});

describe('Redis down', () => {
  it('lookups miss and every request is still served by the provider; store errors are counted', async () => {
    mock.setAnswer('Served without a cache.');
    for (let i = 0; i < 3; i++) {
      const res = await ask(deadStore, 'Is the cache there?');
      expect(res.status).toBe(200);
      expect(status(res)).toBe('MISS');
      expect(content(res)).toBe('Served without a cache.');
    }
    expect(mock.requests.filter((r) => r.path === '/v1/chat/completions')).toHaveLength(3);
    const text = await until(async () => {
      const t = await metrics(deadStore);
      return /aigw_cache_store_errors_total\{op="put"\} [1-9]/.test(t) ? t : undefined;
    }, 'the failed fills counted');
    expect(text).toMatch(/aigw_cache_store_errors_total\{op="(get|scan)"\} [1-9]/);
    expect(text).toMatch(/aigw_cache_fills_total\{result="store_error"\} [1-9]/);
  });

  it('a streamed request is served too', async () => {
    const res = await postChat(
      deadStore.kong,
      '/g',
      chatBody({ stream: true, messages: [{ role: 'user', content: `Stream without a cache ${RUN}` }] }),
    );
    expect(res.status).toBe(200);
    expect(status(res)).toBe('MISS');
    expect(res.text()).toContain('data: [DONE]');
  });
});
