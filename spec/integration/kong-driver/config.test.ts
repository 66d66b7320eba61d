/**
 * Declarative config through the driver: plugin configs validated against the schema the
 * plugin server reported (Kong's messages, with the field path), defaults, vault
 * references, the extra keys Kong adds to the instance config, and key-auth consumers.
 */
import { DeclarativeConfigError, KongDriver } from '../../support/kong';
import { makeSocketDir, pdkServerDef, startUpstream, type TestUpstream } from '../../support/kong/fixtures';

let kong: KongDriver;
let upstream: TestUpstream;
let sockets: ReturnType<typeof makeSocketDir>;

const ENV = {
  TYPED_KEY: 'sk-from-env',
  TYPED_HEADER: 'header-from-env',
  MOCK_URL: 'http://127.0.0.1:9/v1',
  JSON_SECRET: '{"token":"t-123"}',
};

function withPlugins(plugins: Array<Record<string, unknown>>, extra: Record<string, unknown> = {}) {
  return {
    _format_version: '3.0',
    services: [
      {
        name: 'echo',
        url: upstream.url,
        routes: [
          { name: 'v1', paths: ['/v1'] },
          { name: 'v2', paths: ['/v2'] },
        ],
      },
    ],
    plugins,
    ...extra,
  };
}

beforeAll(async () => {
  sockets = makeSocketDir();
  upstream = await startUpstream();
  kong = await KongDriver.start({
    pluginServers: ['typed', 'probe-b'].map((p) => pdkServerDef(p, sockets.dir)),
    declarative: withPlugins([]),
    env: ENV,
  });
}, 30_000);

afterAll(async () => {
  await kong?.close();
  await upstream?.close();
  sockets?.remove();
});

beforeEach(() => {
  upstream.requests.splice(0);
});

describe('plugin config validation at load', () => {
  async function rejection(config: Record<string, unknown>): Promise<DeclarativeConfigError> {
    const err = await kong.reload(withPlugins([{ name: 'typed', config }])).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DeclarativeConfigError);
    return err as DeclarativeConfigError;
  }

  test('a missing required field is named by its path', async () => {
    const err = await rejection({ targets: [{ model: 'a' }, { weight: 5 }] });
    expect(err.message).toBe(
      'declarative config is invalid: plugins[1] (typed): config.targets[2].model: required field missing',
    );
    expect(err.errorTable).toBe('{plugins={[1]={config={targets={[2]={model="required field missing"}}}}}}');
    expect((await rejection({})).message).toContain('config.targets: required field missing');
  });

  test("Kong's validator messages for types, one_of, between, gt, len_min/len_max and unknown fields", async () => {
    const err = await rejection({
      targets: [{ model: '' }],
      mode: 'slow',
      ratio: 2,
      retries: -1,
      enabled_flag: 'yes',
      tags: ['ok', 'much-too-long'],
      headers: { a: 5 },
      surprise: true,
    });
    const byField = Object.fromEntries(err.issues.map((i) => [i.field, i.message]));
    expect(byField).toEqual({
      'config.targets[1].model': 'length must be at least 1',
      'config.mode': 'expected one of: fast, smart',
      'config.ratio': 'value should be between 0 and 1',
      'config.retries': 'value must be greater than -1',
      'config.enabled_flag': 'expected a boolean',
      'config.tags[2]': 'length must be at most 8',
      'config.headers.a': 'expected a string',
      'config.surprise': 'unknown field',
    });
    expect((await rejection({ targets: [] })).message).toContain('config.targets: length must be at least 1');
    expect((await rejection({ targets: 'x' })).message).toContain('config.targets: expected an array');
    expect((await rejection({ targets: [{ model: 'm', weight: 1.5 }] })).message).toContain(
      'config.targets[1].weight: expected an integer',
    );
  });

  test('an invalid reload keeps the previous config serving', async () => {
    await kong.reload(
      withPlugins([{ name: 'typed', route: 'v2', config: { targets: [{ model: 'kept' }] } }]),
    );
    await rejection({ targets: [{}] });
    const res = await kong.request({ path: '/v2' });
    expect(res.json<{ config: { targets: Array<{ model: string }> } }>().config.targets[0].model).toBe(
      'kept',
    );
  });

  test('unknown plugins, references and entity fields are rejected too', async () => {
    const bad = withPlugins(
      [{ name: 'nope' }, { name: 'typed', route: 'missing', config: { targets: [{ model: 'm' }] } }],
      {
        routes: [{ name: 'r', paths: ['no-slash'], service: 'echo' }],
      },
    );
    const err = (await kong.reload(bad).catch((e: unknown) => e)) as DeclarativeConfigError;
    expect(err.message).toContain(
      "plugins[1] (nope): name: plugin 'nope' not enabled; add it to the 'plugins' configuration property",
    );
    expect(err.message).toContain(
      "plugins[2] (typed): invalid reference 'route: missing' (no such entry in 'routes')",
    );
    expect(err.message).toContain(
      'routes[1] (r): paths[1]: should start with: / (fixed path) or ~/ (regex path)',
    );
    expect(((await kong.reload({ services: [] }).catch((e: unknown) => e)) as Error).message).toContain(
      '_format_version: required field missing',
    );
  });
});

test('the instance config: defaults, vault references resolved with $refs, Kong extra keys, no nulls', async () => {
  await kong.reload(
    withPlugins([
      {
        name: 'typed',
        route: 'v1',
        instance_name: 'typed-one',
        config: {
          api_key: '{vault://env/typed-key}',
          headers: { 'x-a': '{vault://env/TYPED_HEADER}', 'x-b': 'plain' },
          targets: [
            { model: 'm1', url: '{vault://env/MOCK_URL}' },
            { model: 'm2', url: '{vault://env/json-secret/token}' },
          ],
        },
      },
    ]),
  );
  const res = await kong.request({ path: '/v1/chat' });
  expect(res.status).toBe(200);
  const { config } = res.json<{ config: Record<string, unknown> }>();
  const route = kong.config.routes.find((r) => r.name === 'v1');
  const plugin = kong.config.plugins[0];
  expect(config).toEqual({
    api_key: 'sk-from-env',
    headers: { 'x-a': 'header-from-env', 'x-b': 'plain' },
    targets: [
      { model: 'm1', url: 'http://127.0.0.1:9/v1', weight: 100, $refs: { url: '{vault://env/MOCK_URL}' } },
      { model: 'm2', url: 't-123', weight: 100, $refs: { url: '{vault://env/json-secret/token}' } },
    ],
    mode: 'fast',
    retries: 2,
    enabled_flag: true,
    empty_list: [],
    $refs: { api_key: '{vault://env/typed-key}', headers: { 'x-a': '{vault://env/TYPED_HEADER}' } },
    route_id: route?.id,
    plugin_instance_name: 'typed-one',
    __plugin_id: plugin.id,
    __ws_id: '0dc6f45b-8f8d-40d2-a504-473544ee190b',
    __key__: `plugins:typed:${route?.id}::::0dc6f45b-8f8d-40d2-a504-473544ee190b`,
    __seq__: expect.any(Number),
  });
});

test('an unresolvable reference becomes "" and is logged', async () => {
  await kong.reload(
    withPlugins([{ name: 'typed', config: { api_key: '{vault://env/NOT_SET}', targets: [{ model: 'm' }] } }]),
  );
  const res = await kong.request({ path: '/v1' });
  expect(res.json<{ config: { api_key: string } }>().config.api_key).toBe('');
  expect(kong.logText()).toContain('unable to resolve reference {vault://env/NOT_SET}');
});

test('plugin ids are stable across reloads of the same file; __seq__ changes', async () => {
  const cfg = withPlugins([{ name: 'typed', config: { targets: [{ model: 'm' }] } }]);
  await kong.reload(cfg);
  const first = (await kong.request({ path: '/v1' })).json<{
    config: { __plugin_id: string; __seq__: number };
  }>().config;
  await kong.reload(cfg);
  const second = (await kong.request({ path: '/v1' })).json<{
    config: { __plugin_id: string; __seq__: number };
  }>().config;
  expect(second.__plugin_id).toBe(first.__plugin_id);
  expect(second.__seq__).toBeGreaterThan(first.__seq__);
});

describe('key-auth and consumer-scoped plugins', () => {
  const report = JSON.stringify([
    { call: 'kong.client.get_consumer', save: 'consumer' },
    { report: 'header' },
  ]);

  beforeAll(async () => {
    await kong.reload(
      withPlugins([{ name: 'key-auth', route: 'v1', config: { hide_credentials: true } }], {
        consumers: [
          {
            username: 'alice',
            custom_id: 'a-1',
            keyauth_credentials: [{ key: 'alice-key' }],
            plugins: [{ name: 'probe-b', config: { access: report } }],
          },
          { username: 'bob', keyauth_credentials: [{ key: 'bob-key' }] },
        ],
      }),
    );
  });

  test('no key or a wrong key: 401 with Kong messages', async () => {
    const none = await kong.request({ path: '/v1/x' });
    expect(none.status).toBe(401);
    expect(none.json()).toEqual({ message: 'No API key found in request', request_id: none.requestId });
    expect(none.headers['www-authenticate']).toBe('Key');
    const wrong = await kong.request({ path: '/v1/x', headers: { apikey: 'nope' } });
    expect(wrong.status).toBe(401);
    expect(wrong.json()).toEqual({ message: 'Unauthorized', request_id: wrong.requestId });
    const twice = await kong.request({ path: '/v1/x', headers: { apikey: ['a', 'b'] } });
    expect(twice.json<{ message: string }>().message).toBe('Duplicate API key found');
    expect(upstream.requests).toHaveLength(0);
  });

  test('a valid key sets the consumer headers and enables consumer-scoped plugins', async () => {
    const res = await kong.request({ path: '/v1/x', headers: { apikey: 'alice-key' } });
    expect(res.status).toBe(200);
    const alice = kong.config.consumers.find((c) => c.username === 'alice');
    const headers = upstream.requests[0].headers;
    expect(headers['x-consumer-username']).toBe('alice');
    expect(headers['x-consumer-custom-id']).toBe('a-1');
    expect(headers['x-consumer-id']).toBe(alice?.id);
    expect(headers['x-credential-identifier']).toBe(kong.config.keyauthCredentials[0].id);
    expect(headers.apikey).toBeUndefined(); // hide_credentials
    expect(JSON.parse(String(headers['x-probe-probe-b'])).consumer).toMatchObject({
      username: 'alice',
      id: alice?.id,
    });

    const bob = await kong.request({ path: '/v1/x?apikey=bob-key' });
    expect(bob.status).toBe(200);
    expect(upstream.requests[1].headers['x-consumer-username']).toBe('bob');
    expect(upstream.requests[1].headers['x-probe-probe-b']).toBeUndefined();
    expect(upstream.requests[1].url).toBe('/x'); // the query key is hidden too
  });

  test('key-auth cannot be scoped to a consumer (no_consumer)', async () => {
    const err = await kong
      .reload(withPlugins([{ name: 'key-auth', consumer: 'alice' }], { consumers: [{ username: 'alice' }] }))
      .catch((e: unknown) => e);
    expect((err as Error).message).toContain('plugins[1] (key-auth): consumer: value must be null');
  });
});
