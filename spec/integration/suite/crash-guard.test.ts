/**
 * The plugin server's crash guard, driven as Kong drives it: a handler that throws or hangs
 * ends the request with a 500 in OpenAI error shape (never lets it through), is logged, and
 * leaves the server serving. In-process: startSuiteServer with the real plugins and the
 * test-faults fixture. Real process: dist/lib/kong/main.js, whose process handlers keep an
 * unhandled rejection or an uncaught exception from taking every route down.
 */
import { suitePlugins } from '../../../plugins';
import { FAULT_SECRET, type FaultMode, faultsPlugin } from '../../support/fixtures/suite-plugins';
import { type ProviderMock, startOpenAIMock } from '../../support/providers';
import {
  type InProcess,
  openAIError,
  postChat,
  type RealProcess,
  type RouteSpec,
  routerConfig,
  startInProcess,
  startRealProcess,
  until,
} from '../../support/suite';

const KEY = 'sk-proj-CrashGuardKey0123456789abcdefXYZ';
const HANDLER_TIMEOUT_MS = 300;

let mock: ProviderMock;

function route(name: string, access?: FaultMode, log?: FaultMode): RouteSpec {
  return {
    name,
    path: `/${name}`,
    plugins: [
      { name: 'ai-router', config: routerConfig(mock.url, [{ name: 'gpt-4o-mini', api_key: KEY }]) },
      ...(access || log
        ? [{ name: 'test-faults', config: { access: access ?? 'pass', log: log ?? 'pass' } }]
        : []),
      { name: 'ai-metrics' },
    ],
  };
}

beforeAll(async () => {
  mock = await startOpenAIMock({ apiKey: KEY, chunkDelayMs: 1 });
});

afterAll(async () => {
  await mock?.close();
});

describe('in-process', () => {
  let suite: InProcess;

  beforeAll(async () => {
    suite = await startInProcess({
      plugins: [...suitePlugins, faultsPlugin],
      pluginServer: { handler_timeout_ms: HANDLER_TIMEOUT_MS },
      routes: () => [
        route('ok'),
        route('throw', 'throw'),
        route('hang', 'hang'),
        route('refused', 'refused'),
        route('exit', 'exit'),
        route('logthrow', 'pass', 'throw'),
      ],
    });
  }, 30_000);

  afterAll(async () => {
    await suite?.close();
  });

  beforeEach(() => mock.reset());

  const failures = (phase: string) =>
    suite.log
      .records()
      .filter((r) => r.msg === 'plugin handler failed' && r.plugin === 'test-faults' && r.phase === phase);

  test('a throwing access handler: 500 AIGW_INTERNAL in OpenAI shape, a log line, no provider call; the server keeps serving', async () => {
    const before = failures('access').length;
    const res = await postChat(suite.kong, '/throw');
    expect(res.status).toBe(500);
    expect(openAIError(res)).toEqual({
      message: 'internal error in the AI gateway',
      type: 'server_error',
      code: 'AIGW_INTERNAL',
      param: null,
    });
    // The thrown message (which holds a secret) is for the log, never for the client.
    expect(res.text()).not.toContain('on purpose');
    expect(res.text()).not.toContain(FAULT_SECRET);
    const stats = await res.stats();
    expect(stats.plugins['test-faults']?.calls).toEqual([
      { phase: 'access', method: 'kong.response.exit', outcome: 'yield' },
    ]);
    expect(mock.requests).toHaveLength(0);

    const logged = failures('access');
    expect(logged).toHaveLength(before + 1);
    expect(logged.at(-1)).toMatchObject({ level: 'error', component: 'plugin-server' });
    expect(logged.at(-1)?.err).toMatchObject({ message: expect.stringContaining('failed on purpose') });

    // Every request of that route fails the same way; the others keep working.
    expect((await postChat(suite.kong, '/throw')).status).toBe(500);
    const ok = await postChat(suite.kong, '/ok');
    expect(ok.status).toBe(200);
    expect(ok.json<{ object: string }>().object).toBe('chat.completion');
    await ok.stats();
    expect(suite.server.plugins.stats.events).toBe(0);
  });

  // Regression: pino runs formatters.log (redact) before the `err` serializer, so an Error's
  // message and stack used to reach the log line unscrubbed (lib/log/logger.ts now scrubs them).
  test('the crash-guard log line does not carry a secret from the error message in clear', async () => {
    await (await postChat(suite.kong, '/throw')).stats();
    const line = suite.log.lines.filter((l) => l.includes('plugin handler failed')).at(-1);
    expect(line).toBeDefined();
    expect(line).not.toContain(FAULT_SECRET);
  });

  test('a hanging access handler: 500 AIGW_INTERNAL once handler_timeout_ms has passed, and the event is dropped', async () => {
    const res = await postChat(suite.kong, '/hang');
    expect(res.status).toBe(500);
    expect(openAIError(res)).toEqual({
      message: 'test-faults access handler timed out',
      type: 'server_error',
      code: 'AIGW_INTERNAL',
      param: null,
    });
    await res.stats();
    expect(mock.requests).toHaveLength(0);
    expect(failures('access').some((r) => (r.err as { code?: string }).code === 'AIGW_INTERNAL')).toBe(true);
    expect(suite.server.plugins.stats.events).toBe(0);
    expect((await postChat(suite.kong, '/ok')).status).toBe(200);
  });

  test('a PDK call Kong refuses in access: Kong answers its own 500 (Lua error), the silent event is dropped by the guard', async () => {
    const res = await postChat(suite.kong, '/refused', undefined, { accept: 'application/json' });
    expect(res.status).toBe(500);
    // Kong's error page, not ours: the handler never learns its call failed (KONG.md §11).
    expect(res.json()).toEqual({ message: 'An unexpected error occurred', request_id: res.requestId });
    const stats = await res.stats();
    expect(stats.plugins['test-faults']?.calls).toEqual([
      { phase: 'access', method: 'kong.response.get_status', outcome: 'lua-error' },
    ]);
    expect(mock.requests).toHaveLength(0);
    // Kong never answers that step; the handler timeout ends the event on the server side.
    await until(
      () => (suite.server.plugins.stats.events === 0 ? true : undefined),
      'the silent event to be dropped',
    );
    expect((await postChat(suite.kong, '/ok')).status).toBe(200);
  });

  test('exit() then more PDK calls: the client gets the exit answer and the event ends at exit()', async () => {
    const res = await postChat(suite.kong, '/exit');
    expect(res.status).toBe(418);
    expect(res.json()).toEqual({ error: { message: 'teapot', type: 'test', code: 'TEST_EXIT' } });
    const stats = await res.stats();
    // The getPath after exit() never reaches Kong.
    expect(stats.plugins['test-faults']?.calls).toEqual([
      { phase: 'access', method: 'kong.response.exit', outcome: 'yield' },
    ]);
    expect(suite.server.plugins.stats.events).toBe(0);
    expect(mock.requests).toHaveLength(0);
  });

  test('a throwing log handler is logged and changes nothing for the client', async () => {
    const before = failures('log').length;
    const res = await postChat(suite.kong, '/logthrow');
    expect(res.status).toBe(200);
    await res.stats();
    expect(failures('log')).toHaveLength(before + 1);
    expect(suite.server.plugins.stats.events).toBe(0);
  });
});

describe('real process (main.js installs the process handlers)', () => {
  let gw: RealProcess;

  beforeAll(async () => {
    gw = await startRealProcess({
      fixtures: [faultsPlugin],
      routes: () => [route('ok'), route('reject', 'reject'), route('uncaught', 'uncaught')],
    });
  }, 60_000);

  afterAll(async () => {
    await gw?.close();
  });

  test('an unhandled rejection and an uncaught exception inside handlers are logged; the process survives and serves', async () => {
    const exits: unknown[] = [];
    gw.kong.pluginServers.on('exit', (e: unknown) => exits.push(e));
    const pid = gw.pid();

    const rejected = await postChat(gw.kong, '/reject');
    expect(rejected.status).toBe(200); // the handler itself returned normally
    await until(
      () => (gw.output().includes('"msg":"unhandled rejection"') ? true : undefined),
      'the unhandled rejection log line',
    );

    const uncaught = await postChat(gw.kong, '/uncaught');
    expect(uncaught.status).toBe(200);
    await until(
      () => (gw.output().includes('"msg":"uncaught exception"') ? true : undefined),
      'the uncaught exception log line',
    );

    for (const path of ['/ok', '/reject', '/ok']) {
      const res = await postChat(gw.kong, path);
      expect(res.status).toBe(200);
      expect(res.json<{ object: string }>().object).toBe('chat.completion');
    }
    expect(gw.pid()).toBe(pid);
    expect(exits).toEqual([]);
  }, 30_000);
});
