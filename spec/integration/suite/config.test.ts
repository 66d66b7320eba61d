/**
 * Invalid plugin configs, as Kong and the suite server split the work: Kong refuses a type
 * or bounds error when it loads the config (from the schema `--dump` reported), naming the
 * field; a broken rule across fields passes Kong and is caught by the suite server, whose
 * instance then answers every request of that route with 500 AIGW_CONFIG_INVALID naming
 * the field (fail closed), logged once. Other routes keep working.
 */
import { DeclarativeConfigError } from '../../support/kong';
import { type ProviderMock, startOpenAIMock } from '../../support/providers';
import {
  chatBody,
  declarativeFor,
  type InProcess,
  openAIError,
  postChat,
  type RouteSpec,
  routerConfig,
  startInProcess,
} from '../../support/suite';

const KEY = 'sk-proj-ConfigKey0123456789abcdefXYZ';

let mock: ProviderMock;
let suite: InProcess;

const router = (config: Record<string, unknown>): RouteSpec['plugins'] => [
  { name: 'ai-router', config },
  { name: 'ai-metrics' },
];

function routes(
  okRouter: Record<string, unknown> = routerConfig(mock.url, [{ name: 'gpt-4o-mini', api_key: KEY }]),
) {
  return [
    { name: 'ok', path: '/ok', plugins: router(okRouter) },
    {
      name: 'baddefault',
      path: '/baddefault',
      plugins: router(
        routerConfig(mock.url, [{ name: 'gpt-4o-mini', api_key: KEY }], { default_target: 'nope' }),
      ),
    },
    {
      name: 'bothkeys',
      path: '/bothkeys',
      plugins: router(
        routerConfig(mock.url, [{ name: 'gpt-4o-mini', api_key: KEY, api_key_env: 'AIGW_TEST_KEY' }]),
      ),
    },
    {
      name: 'novault',
      path: '/novault',
      plugins: router(
        routerConfig(mock.url, [{ name: 'gpt-4o-mini', api_key: '{vault://env/AIGW_TEST_UNSET_KEY}' }]),
      ),
    },
  ];
}

beforeAll(async () => {
  mock = await startOpenAIMock({ apiKey: KEY, chunkDelayMs: 0 });
  suite = await startInProcess({ routes: () => routes() });
}, 30_000);

afterAll(async () => {
  await suite?.close();
  await mock?.close();
});

beforeEach(() => mock.reset());

async function expectConfigInvalid(prefix: string, field: string, rule: string): Promise<void> {
  const requests = [
    () => postChat(suite.kong, prefix),
    () => postChat(suite.kong, prefix, chatBody({ stream: true })),
    () => suite.kong.request({ method: 'GET', path: `${prefix}/v1/models` }),
    // Even bad input: the route is closed until its config is fixed.
    () => postChat(suite.kong, prefix, { model: 'x' }),
  ];
  for (const send of requests) {
    const res = await send();
    expect(res.status).toBe(500);
    const error = openAIError(res);
    expect(error).toMatchObject({ type: 'server_error', code: 'AIGW_CONFIG_INVALID', param: null });
    expect(error.message).toContain(`${field}: ${rule}`);
    expect(error.message).not.toContain(KEY);
    await res.stats();
  }
}

test('default_target naming no target: every request of the route gets 500 AIGW_CONFIG_INVALID naming config.default_target', async () => {
  await expectConfigInvalid('/baddefault', 'config.default_target', 'names no target or pool');
  expect(mock.requests).toHaveLength(0);
  expect((await postChat(suite.kong, '/ok')).status).toBe(200);
});

test('api_key and api_key_env both set: 500 naming config.targets[0].api_key, without the key', async () => {
  await expectConfigInvalid('/bothkeys', 'config.targets[0].api_key', 'set api_key or api_key_env, not both');
  expect(mock.requests).toHaveLength(0);
});

test('a vault reference Kong cannot resolve: 500 naming the field, never an unauthenticated call', async () => {
  await expectConfigInvalid('/novault', 'config.targets[0].api_key', 'vault reference could not be resolved');
  expect(mock.requests).toHaveLength(0);
});

test('an invalid config is logged once per instance, with the field and without the config values', async () => {
  for (let i = 0; i < 3; i++) await (await postChat(suite.kong, '/baddefault')).stats();
  const logged = suite.log.records().filter((r) => r.msg === 'invalid plugin config');
  for (const r of logged) expect(r).toMatchObject({ level: 'error', plugin: 'ai-router' });
  expect(logged.filter((r) => String(r.err).includes('config.default_target'))).toHaveLength(1);
  for (const r of logged) expect(r.config_hash).toMatch(/^[0-9a-f]{8}$/);
  expect(suite.log.text()).not.toContain(KEY);
});

describe('type and bounds errors are refused by Kong when it loads the config', () => {
  async function rejection(target: Record<string, unknown>): Promise<DeclarativeConfigError> {
    const bad = routes({ targets: [{ name: 'gpt-4o-mini', base_url: mock.url, api_key: KEY, ...target }] });
    const err = await suite.kong.reload(declarativeFor(suite.relayPort, bad)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DeclarativeConfigError);
    return err as DeclarativeConfigError;
  }

  test('timeouts.connect_ms: -5 → the field path and the bounds', async () => {
    const err = await rejection({ model: 'gpt-4o-mini', timeouts: { connect_ms: -5 } });
    // Kong numbers array elements from 1.
    expect(err.message).toContain(
      '(ai-router): config.targets[1].timeouts.connect_ms: value should be between 1 and 600000',
    );
  });

  test('a target without model → required field missing', async () => {
    const err = await rejection({});
    expect(err.message).toContain('(ai-router): config.targets[1].model: required field missing');
  });

  test('after a refused reload the previous config keeps serving, the broken route stays closed', async () => {
    await rejection({ model: 7 });
    const ok = await postChat(suite.kong, '/ok');
    expect(ok.status).toBe(200);
    expect(ok.headers['x-ai-target']).toBe('gpt-4o-mini');
    const closed = await postChat(suite.kong, '/baddefault');
    expect(closed.status).toBe(500);
    expect(openAIError(closed).code).toBe('AIGW_CONFIG_INVALID');
  });
});
