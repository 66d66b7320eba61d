/**
 * Nothing is retained per request: after many requests the relay answers itself (bad input
 * 4xx, /v1/models answered by ai-router, unknown models), crash-guard 500s (exit() in
 * access, never proxied) and normal ones (JSON and SSE), the plugin server holds no event
 * and the context store no ticket once the log phases ran. Routes with ai-metrics drop the
 * tickets in the log phase; routes without it rely on the context store's sweeper (settled
 * grace, max age), driven here with an explicit clock through `contexts.sweep(now)` since
 * startSuiteServer takes no ContextStore options.
 */
import { suitePlugins } from '../../../plugins';
import { type FaultMode, faultsPlugin } from '../../support/fixtures/suite-plugins';
import type { DriverResponse } from '../../support/kong';
import { type ProviderMock, startOpenAIMock } from '../../support/providers';
import {
  chatBody,
  type InProcess,
  postChat,
  type RouteSpec,
  routerConfig,
  startInProcess,
  until,
} from '../../support/suite';

const KEY = 'sk-proj-MemoryKey0123456789abcdefXYZ';
const ROUNDS = 15;
/** ContextStore defaults (lib/context/context-store.ts). */
const SETTLED_GRACE_MS = 30_000;
const MAX_AGE_MS = 15 * 60_000;

let mock: ProviderMock;
let suite: InProcess;

function route(name: string, options: { metrics: boolean; access?: FaultMode; log?: FaultMode }): RouteSpec {
  const faults = options.access || options.log;
  return {
    name,
    path: `/${name}`,
    plugins: [
      { name: 'ai-router', config: routerConfig(mock.url, [{ name: 'gpt-4o-mini', api_key: KEY }]) },
      ...(faults
        ? [{ name: 'test-faults', config: { access: options.access ?? 'pass', log: options.log ?? 'pass' } }]
        : []),
      ...(options.metrics ? [{ name: 'ai-metrics' }] : []),
    ],
  };
}

beforeAll(async () => {
  mock = await startOpenAIMock({ apiKey: KEY, chunkDelayMs: 0 });
  suite = await startInProcess({
    plugins: [...suitePlugins, faultsPlugin],
    pluginServer: { handler_timeout_ms: 300 },
    routes: () => [
      route('m', { metrics: true }),
      route('mthrow', { metrics: true, access: 'throw' }),
      route('mlog', { metrics: true, log: 'refused' }),
      route('mloghang', { metrics: true, log: 'hang' }),
      route('n', { metrics: false }),
      route('nthrow', { metrics: false, access: 'throw' }),
    ],
  });
}, 30_000);

afterAll(async () => {
  await suite?.close();
  await mock?.close();
});

/** Requests the relay answers without a provider call, with the status each must get. */
async function answeredByRelay(prefix: string): Promise<DriverResponse[]> {
  const kong = suite.kong;
  const json = { 'content-type': 'application/json' };
  const sent: Array<[number, Promise<DriverResponse>]> = [
    [
      400,
      kong.request({
        method: 'POST',
        path: `${prefix}/v1/chat/completions`,
        headers: json,
        body: '{"model":',
      }),
    ],
    [400, postChat(kong, prefix, { model: 'gpt-4o-mini' })],
    [400, postChat(kong, prefix, [chatBody()])],
    [
      415,
      kong.request({
        method: 'POST',
        path: `${prefix}/v1/chat/completions`,
        headers: { 'content-type': 'text/plain' },
        body: JSON.stringify(chatBody()),
      }),
    ],
    [405, kong.request({ method: 'GET', path: `${prefix}/v1/chat/completions` })],
    [404, kong.request({ method: 'POST', path: `${prefix}/v1/nothing`, body: chatBody() })],
    [200, kong.request({ method: 'GET', path: `${prefix}/v1/models` })],
    [404, postChat(kong, prefix, chatBody({ model: 'no-such-model' }))],
  ];
  const out: DriverResponse[] = [];
  for (const [i, [status, pending]] of sent.entries()) {
    const res = await pending;
    expect({ request: i, status: res.status }).toEqual({ request: i, status });
    out.push(res);
  }
  return out;
}

/** Requests proxied to the provider, JSON and SSE. */
async function proxied(prefix: string): Promise<DriverResponse[]> {
  const json = await postChat(suite.kong, prefix);
  const sse = await postChat(suite.kong, prefix, chatBody({ stream: true }));
  expect(json.status).toBe(200);
  expect(sse.status).toBe(200);
  expect(sse.text()).toContain('data: [DONE]');
  return [json, sse];
}

async function logPhasesRan(responses: DriverResponse[]): Promise<void> {
  await Promise.all(responses.map((r) => r.stats()));
}

function clearContexts(): void {
  suite.server.contexts.sweep(Date.now() + MAX_AGE_MS + 1);
  expect(suite.server.contexts.size).toBe(0);
}

test('with ai-metrics: no event and no context outlives the log phase, whatever ended the request', async () => {
  clearContexts();
  const first: DriverResponse[] = [...(await answeredByRelay('/m')), ...(await proxied('/m'))];
  await logPhasesRan(first);
  const instances = suite.server.plugins.stats.instances;

  const all: DriverResponse[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    all.push(...(await answeredByRelay('/m')), ...(await proxied('/m')));
    const crashed = await postChat(suite.kong, '/mthrow');
    expect(crashed.status).toBe(500);
    all.push(crashed);
  }
  await logPhasesRan(all);
  expect(suite.server.plugins.stats.events).toBe(0);
  expect(suite.server.contexts.size).toBe(0);
  // One instance per plugin config, not per request (+2: ai-router and test-faults of /mthrow, +1 its ai-metrics).
  expect(suite.server.plugins.stats.instances).toBe(instances + 3);
}, 60_000);

test('log handlers that Kong never answers (refused PDK call) or that hang leave no event behind', async () => {
  const responses = [];
  for (let i = 0; i < 5; i++) {
    responses.push(await postChat(suite.kong, '/mlog'), await postChat(suite.kong, '/mloghang'));
  }
  for (const r of responses) expect(r.status).toBe(200);
  await logPhasesRan(responses);
  const stats = await responses[0]!.stats();
  expect(stats.plugins['test-faults']?.calls).toEqual([
    { phase: 'log', method: 'kong.request.get_path', outcome: 'lua-error' },
  ]);
  await until(
    () => (suite.server.plugins.stats.events === 0 ? true : undefined),
    'silent log events to be dropped',
  );
  // ai-metrics (priority 720) ran after test-faults (745) in the log phase and dropped the contexts.
  expect(suite.server.contexts.size).toBe(0);
});

test('without ai-metrics: a proxied request keeps its context for the settled grace (for log plugins), then it is dropped', async () => {
  clearContexts();
  const responses: DriverResponse[] = [];
  for (let i = 0; i < ROUNDS; i++) responses.push(...(await proxied('/n')));
  await logPhasesRan(responses);
  expect(suite.server.plugins.stats.events).toBe(0);
  const now = Date.now();
  suite.server.contexts.sweep(now);
  expect(suite.server.contexts.size).toBe(2 * ROUNDS);
  suite.server.contexts.sweep(now + SETTLED_GRACE_MS + 1_000);
  expect(suite.server.contexts.size).toBe(0);
});

test('without ai-metrics: a context that is never settled is dropped at max age at the latest', async () => {
  clearContexts();
  await logPhasesRan([...(await answeredByRelay('/n')), await postChat(suite.kong, '/nthrow')]);
  suite.server.contexts.sweep(Date.now() + MAX_AGE_MS + 1_000);
  expect(suite.server.contexts.size).toBe(0);
});

// A request the relay answers itself (/v1/models, bad input, an unknown model) is settled like
// a proxied one: on a route without ai-metrics its context (with the parsed body) goes after
// the settled grace, not at max age. (/nthrow's ticket never reaches the relay: max age above.)
test('without ai-metrics: contexts of requests the relay answered itself are dropped by the settled grace too', async () => {
  clearContexts();
  await logPhasesRan(await answeredByRelay('/n'));
  expect(suite.server.plugins.stats.events).toBe(0);
  suite.server.contexts.sweep(Date.now() + SETTLED_GRACE_MS + 1_000);
  expect(suite.server.contexts.size).toBe(0);
});
