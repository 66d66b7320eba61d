/**
 * The Kong driver against kong-pdk 0.6's own plugin server: phase order, exit(), PDK value
 * conversions, refused calls, bodies above the client body buffer, round-trip counts.
 * One server per fixture plugin, spawned by the driver through start_cmd.
 */
import { KongDriver } from '../../support/kong';
import { makeSocketDir, pdkServerDef, startUpstream, type TestUpstream } from '../../support/kong/fixtures';

type Step = Record<string, unknown>;
const script = (...steps: Step[]) => JSON.stringify(steps);

let kong: KongDriver;
let upstream: TestUpstream;
let sockets: ReturnType<typeof makeSocketDir>;

/** A service on the echo upstream with one route `/v1`, plus the given plugins. */
function declarative(plugins: Array<Record<string, unknown>>, extra: Record<string, unknown> = {}) {
  return {
    _format_version: '3.0',
    services: [{ name: 'echo', url: upstream.url, routes: [{ name: 'v1', paths: ['/v1'] }] }],
    plugins,
    ...extra,
  };
}

/** Waits until the driver logged a line matching `pattern` (log handlers run after the response). */
async function logLine(pattern: RegExp, timeoutMs = 3000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = kong.logs.find((l) => pattern.test(l.message));
    if (found) return found.message;
    if (Date.now() > deadline) throw new Error(`no log line matching ${pattern}:\n${kong.logText()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function probeReport(message: string): { plugin: string; phase: string; results: Record<string, unknown> } {
  return JSON.parse(message.replace(/^probe-report /, ''));
}

beforeAll(async () => {
  sockets = makeSocketDir();
  upstream = await startUpstream();
  kong = await KongDriver.start({
    pluginServers: ['probe-a', 'probe-b', 'probe-c'].map((p) => pdkServerDef(p, sockets.dir)),
    declarative: declarative([]),
    clientBodyBufferSize: 1024,
  });
}, 30_000);

afterAll(async () => {
  await kong?.close();
  await upstream?.close();
  sockets?.remove();
});

beforeEach(() => {
  kong.logs.splice(0);
  upstream.requests.splice(0);
});

test('access handlers run in descending priority; rewrite runs only for global plugins', async () => {
  const both = { rewrite: script({ append_shared: 'order' }), access: script({ append_shared: 'order' }) };
  await kong.reload(
    declarative([
      {
        name: 'probe-c',
        config: {
          ...both,
          access: script(
            { append_shared: 'order' },
            { call: 'kong.ctx.shared.get', args: ['order'], save: 'order' },
            { report: 'header' },
          ),
        },
      },
      { name: 'probe-a', route: 'v1', config: both },
      { name: 'probe-b', service: 'echo', config: both },
    ]),
  );
  const res = await kong.request({ path: '/v1/x' });
  expect(res.status).toBe(200);
  const seen = JSON.parse(String(upstream.requests[0].headers['x-probe-probe-c']));
  // probe-c is global (its rewrite runs first); probe-a (1000) and probe-b (900) are scoped, so no rewrite.
  expect(seen.order).toEqual(['probe-c:rewrite', 'probe-a:access', 'probe-b:access', 'probe-c:access']);
});

test('exit() in access skips later access handlers, but every log handler still runs', async () => {
  await kong.reload(
    declarative([
      {
        name: 'probe-a',
        config: {
          access: script({
            call: 'kong.response.exit',
            args: [403, { blocked: true }, { 'X-Why': 'probe' }],
          }),
          log: script({ call: 'kong.response.get_status', save: 'status' }, { report: 'log' }),
        },
      },
      {
        name: 'probe-b',
        config: {
          access: script({ call: 'kong.log.notice', args: ['probe-b access ran'] }),
          log: script({ call: 'kong.response.get_source', save: 'source' }, { report: 'log' }),
        },
      },
    ]),
  );
  const res = await kong.request({ path: '/v1/x' });
  expect(res.status).toBe(403);
  expect(res.json()).toEqual({ blocked: true });
  expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
  expect(res.headers['x-why']).toBe('probe');
  expect(res.headers['x-kong-response-latency']).toBeDefined();
  expect(upstream.requests).toHaveLength(0);

  const stats = await res.stats();
  expect(stats.plugins['probe-b'].calls.filter((c) => c.phase === 'access')).toEqual([]);
  expect(stats.plugins['probe-a'].calls.find((c) => c.phase === 'access')?.outcome).toBe('yield');
  const reports = kong.logs
    .filter((l) => l.message.startsWith('probe-report'))
    .map((l) => probeReport(l.message));
  expect(reports).toEqual(
    expect.arrayContaining([
      { plugin: 'probe-a', phase: 'log', results: { status: 403 } },
      { plugin: 'probe-b', phase: 'log', results: { source: 'exit' } },
    ]),
  );
  expect(kong.logText()).not.toContain('probe-b access ran');
});

test('exit() in rewrite responds at once: later rewrite handlers, routing and access are skipped', async () => {
  await kong.reload(
    declarative([
      {
        name: 'probe-a',
        config: {
          rewrite: script({ call: 'kong.response.exit', args: [418, 'short and stout'] }),
          log: script({ call: 'kong.response.get_status', save: 'status' }, { report: 'log' }),
        },
      },
      {
        name: 'probe-b',
        config: { rewrite: script({ call: 'kong.log.notice', args: ['probe-b rewrite ran'] }) },
      },
    ]),
  );
  const res = await kong.request({ path: '/no-route-needed' });
  expect(res.status).toBe(418);
  expect(res.text()).toBe('short and stout');
  expect(res.headers['content-type']).toBeUndefined();
  const stats = await res.stats();
  expect(stats.plugins['probe-a'].calls.map((c) => [c.phase, c.outcome])).toEqual([
    ['rewrite', 'exit'],
    ['log', 'answered'],
    ['log', 'answered'],
  ]);
  expect(stats.plugins['probe-b'].calls.map((c) => c.phase)).not.toContain('rewrite');
  expect(probeReport(await logLine(/^probe-report/)).results).toEqual({ status: 418 });
});

test('a table body given to exit() is JSON-encoded by Kong: empty tables become {}, nulls vanish', async () => {
  await kong.reload(
    declarative([
      {
        name: 'probe-a',
        config: {
          access: script({ call: 'kong.response.exit', args: [200, { e: [], o: {}, n: null, s: 'x/y' }] }),
        },
      },
    ]),
  );
  const res = await kong.request({ path: '/v1/x' });
  expect(res.text()).toContain('"s":"x\\/y"'); // cjson escapes "/"
  expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
  expect(res.json()).toEqual({ e: {}, o: {}, s: 'x/y' });
});

test('kong.ctx.shared values cross msgpack with Lua table semantics', async () => {
  const value = {
    a: 1,
    dropped: null,
    emptyObject: {},
    emptyArray: [],
    holes: [1, null, 3],
    list: ['x', 'y'],
  };
  await kong.reload(
    declarative([
      {
        name: 'probe-a',
        config: {
          access: script(
            { call: 'kong.ctx.shared.set', args: ['v', value] },
            { call: 'kong.ctx.shared.get', args: ['v'], save: 'v' },
            { call: 'kong.ctx.shared.get', args: ['missing'], save: 'missing' },
            { report: 'exit' },
          ),
        },
      },
    ]),
  );
  const res = await kong.request({ path: '/v1/x' });
  expect(res.status).toBe(200);
  const { results } = res.json<{ results: Record<string, unknown> }>();
  expect(results.v).toEqual({
    a: 1,
    emptyObject: [],
    emptyArray: [],
    holes: { '1': 1, '3': 3 },
    list: ['x', 'y'],
  });
  expect(results.missing).toEqual({ $undefined: true });
});

test('request getters return Kong shapes: multimap headers and query, bin raw body, serialize as a JSON string', async () => {
  await kong.reload(
    declarative([
      {
        name: 'probe-a',
        config: {
          access: script(
            { call: 'kong.request.get_headers', save: 'headers' },
            { call: 'kong.request.get_header', args: ['X-Multi'], save: 'header' },
            { call: 'kong.request.get_query', save: 'query' },
            { call: 'kong.request.get_raw_body', save: 'raw' },
            { call: 'kong.request.get_body', save: 'body' },
            { call: 'kong.request.get_path_with_query', save: 'pathWithQuery' },
            { call: 'kong.router.get_route', save: 'route' },
            { call: 'kong.node.get_id', save: 'node' },
            { report: 'exit' },
          ),
        },
      },
    ]),
  );
  const res = await kong.request({
    path: '/v1/x?a=1&a=2&flag&b=%20c',
    headers: { 'X-Multi': ['one', 'two'], 'Content-Type': 'application/json' },
    body: '{"model":"m","stream":true,"empty":{}}',
  });
  const { results } = res.json<{
    results: { headers: Record<string, string[]>; raw: { $bin: string } } & Record<string, unknown>;
  }>();
  expect(results.headers['x-multi']).toEqual(['one', 'two']);
  expect(results.headers['content-type']).toEqual(['application/json']);
  expect(results.header).toBe('one');
  expect(results.query).toEqual({ a: ['1', '2'], flag: [], b: [' c'] });
  expect(Buffer.from(results.raw.$bin, 'base64').toString()).toBe('{"model":"m","stream":true,"empty":{}}');
  expect(results.body).toEqual({ model: 'm', stream: true, empty: [] });
  expect(results.pathWithQuery).toBe('/v1/x?a=1&a=2&flag&b=%20c');
  expect(results.route).toMatchObject({
    name: 'v1',
    paths: ['/v1'],
    strip_path: true,
    protocols: ['http', 'https'],
  });
  expect(results.node).toBe(kong.nodeId);
});

test('the log phase works on a snapshot: serialize() is a JSON string, ngx.var users raise', async () => {
  await kong.reload(
    declarative([
      {
        name: 'probe-a',
        config: {
          access: script(
            { call: 'kong.ctx.shared.set', args: ['k', 'from-access'] },
            { call: 'kong.log.set_serialize_value', args: ['ai.test.meta', { n: 1 }] },
          ),
          log: script(
            { call: 'kong.log.serialize', save: 'serialized' },
            { call: 'kong.ctx.shared.get', args: ['k'], save: 'shared' },
            { call: 'kong.response.get_status', save: 'status' },
            { call: 'kong.response.get_header', args: ['content-type'], save: 'ctype' },
            { call: 'kong.request.get_header', args: ['x-a'], save: 'xa' },
            { report: 'log' },
            { call: 'kong.request.get_path', save: 'path' },
            { call: 'kong.log.notice', args: ['unreachable after get_path'] },
          ),
        },
      },
    ]),
  );
  const res = await kong.request({
    path: '/v1/x?q=1',
    headers: { 'x-a': 'b', Authorization: 'Bearer secret' },
  });
  expect(res.status).toBe(200);
  await res.stats();
  const { results } = probeReport(await logLine(/^probe-report/));
  expect(typeof results.serialized).toBe('string');
  const serialized = JSON.parse(results.serialized as string);
  expect(serialized.request).toMatchObject({ uri: '/v1/x?q=1', method: 'GET', querystring: { q: '1' } });
  expect(serialized.request.headers.authorization).toBe('REDACTED');
  expect(serialized.response.status).toBe(200);
  expect(serialized.upstream_uri).toBe('/x?q=1');
  expect(serialized.route.name).toBe('v1');
  expect(serialized.source).toBe('upstream');
  expect(serialized.ai).toEqual({ test: { meta: { n: 1 } } });
  expect(results).toMatchObject({ shared: 'from-access', status: 200, ctype: 'application/json', xa: 'b' });
  expect(await logLine(/API disabled in the current context/)).toContain('lua entry thread aborted');
  expect(kong.logText()).not.toContain('unreachable after get_path');
});

test('a PDK call Kong refuses fails the request with 500 and the event is never answered', async () => {
  await kong.reload(
    declarative([
      {
        name: 'probe-a',
        config: {
          access: script(
            { call: 'kong.response.get_status' }, // header_filter/log only: a Lua error in access
            { call: 'kong.log.notice', args: ['probe-a continued'] },
          ),
        },
      },
      { name: 'probe-b', config: { access: script({ call: 'kong.log.notice', args: ['probe-b ran'] }) } },
    ]),
  );
  const res = await kong.request({ path: '/v1/x' });
  expect(res.status).toBe(500);
  expect(res.json()).toEqual({ message: 'An unexpected error occurred', request_id: res.requestId });
  expect(upstream.requests).toHaveLength(0);
  const stats = await res.stats();
  expect(stats.plugins['probe-a'].calls).toEqual([
    { phase: 'access', method: 'kong.response.get_status', outcome: 'lua-error' },
  ]);
  expect(stats.plugins['probe-a'].steps).toBe(0);
  expect(kong.logText()).toContain(
    'function cannot be called in access phase (only in: response, header_filter, body_filter, log, error, admin_api)',
  );
  await new Promise((r) => setTimeout(r, 200));
  // The JS promise never settled, so the handler never reached its next call; later handlers were skipped.
  expect(kong.logText()).not.toContain('probe-a continued');
  expect(kong.logText()).not.toContain('probe-b ran');
});

test('a refused call in the log phase is only logged', async () => {
  await kong.reload(
    declarative([{ name: 'probe-a', config: { log: script({ call: 'kong.response.exit', args: [200] }) } }]),
  );
  const res = await kong.request({ path: '/v1/x' });
  expect(res.status).toBe(200);
  await res.stats();
  expect(await logLine(/function cannot be called in log phase/)).toContain('lua entry thread aborted');
});

test('an unknown PDK method answers nil and is logged', async () => {
  await kong.reload(
    declarative([
      {
        name: 'probe-a',
        config: {
          access: script(
            { call: 'kong.nope.method', args: [1], save: 'nope' },
            { call: 'kong.ctx.plugin.get', args: ['k'], save: 'plugin' },
            { report: 'exit' },
          ),
        },
      },
    ]),
  );
  const res = await kong.request({ path: '/v1/x' });
  expect(res.status).toBe(200);
  expect(res.json<{ results: unknown }>().results).toEqual({
    nope: { $undefined: true },
    plugin: { $undefined: true },
  });
  expect(kong.logText()).toContain('could not find pdk method: kong.nope.method');
  expect(kong.logText()).toContain('could not find pdk method: kong.ctx.plugin.get');
});

describe('bodies above client_body_buffer_size (1024 bytes in this driver)', () => {
  const big = JSON.stringify({ model: 'm', input: 'x'.repeat(2000) });

  test('get_raw_body(max) over its cap returns nil, which mp_rpc cannot pack: 500', async () => {
    await kong.reload(
      declarative([
        {
          name: 'probe-a',
          config: {
            access: script(
              { call: 'kong.request.get_body', save: 'body' },
              { call: 'kong.request.get_raw_body', args: [0], save: 'raw' },
              { call: 'kong.request.get_raw_body', args: [100], noawait: true, save: 'capped' },
              { report: 'header' },
            ),
          },
        },
      ]),
    );
    // get_raw_body(100) is over its cap: nil cannot be packed as bin → 500.
    const res = await kong.request({
      path: '/v1/x',
      body: big,
      headers: { 'Content-Type': 'application/json' },
    });
    expect(res.status).toBe(500);
    const stats = await res.stats();
    expect(stats.plugins['probe-a'].calls.map((c) => c.outcome)).toEqual([
      'answered',
      'answered',
      'lua-error',
    ]);
    expect(kong.logText()).toContain("attempt to get length of local 'str' (a nil value)");
  });

  test('get_raw_body(0) passes, the request proxies with the body intact', async () => {
    await kong.reload(
      declarative([
        {
          name: 'probe-a',
          config: {
            access: script(
              { call: 'kong.request.get_body', save: 'body' },
              { call: 'kong.request.get_raw_body', args: [0], save: 'raw' },
              { call: 'kong.service.request.set_header', args: ['X-Seen', 'yes'] },
              { call: 'kong.ctx.shared.set', args: ['len', 0] },
              { report: 'log' },
            ),
          },
        },
      ]),
    );
    const res = await kong.request({
      path: '/v1/x',
      body: big,
      headers: { 'Content-Type': 'application/json' },
    });
    expect(res.status).toBe(200);
    expect(upstream.requests[0].body).toBe(big);
    expect(upstream.requests[0].headers['x-seen']).toBe('yes');
    const { results } = probeReport(await logLine(/^probe-report/));
    expect(results.body).toEqual({ $undefined: true });
    expect(Buffer.from((results.raw as { $bin: string }).$bin, 'base64').toString()).toBe(big);
  });

  test('get_raw_body() without an argument fails the request with 500', async () => {
    await kong.reload(
      declarative([{ name: 'probe-a', config: { access: script({ call: 'kong.request.get_raw_body' }) } }]),
    );
    const res = await kong.request({
      path: '/v1/x',
      body: big,
      headers: { 'Content-Type': 'application/json' },
    });
    expect(res.status).toBe(500);
    expect(upstream.requests).toHaveLength(0);
    const small = await kong.request({
      path: '/v1/x',
      body: '{"a":1}',
      headers: { 'Content-Type': 'application/json' },
    });
    expect(small.status).toBe(200);
  });
});

test('round trips are counted per plugin: one HandleEvent plus one per PDK call', async () => {
  await kong.reload(
    declarative([
      {
        name: 'probe-a',
        route: 'v1',
        config: {
          access: script(
            { call: 'kong.request.get_header', args: ['a'] },
            { call: 'kong.ctx.shared.set', args: ['a', 1] },
          ),
          log: script({ call: 'kong.ctx.shared.get', args: ['a'] }),
        },
      },
      { name: 'probe-b', route: 'v1', config: {} },
    ]),
  );
  await kong.request({ path: '/v1/x' }); // starts the instances
  const res = await kong.request({ path: '/v1/x' });
  const stats = await res.stats();
  expect(stats.plugins['probe-a']).toMatchObject({ events: 2, steps: 3, roundTrips: 5 });
  expect(stats.plugins['probe-b']).toMatchObject({ events: 2, steps: 0, roundTrips: 2 });
  expect(stats.roundTrips).toBe(7);
  expect(stats.instanceRpcs).toBe(0);
  expect(kong.lastStats?.requestId).toBe(res.requestId);
});

test('a reload restarts instances: the new config reaches the plugin, the old instance is closed', async () => {
  const echo = (tag: string) =>
    declarative([{ name: 'probe-a', config: { access: script({ call: 'kong.log.notice', args: [tag] }) } }]);
  await kong.reload(echo('first'));
  await kong.request({ path: '/v1/x' });
  await kong.reload(echo('second'));
  const res = await kong.request({ path: '/v1/x' });
  const stats = await res.stats();
  expect(stats.instanceRpcs).toBe(2); // StartInstance + CloseInstance of the previous one
  const again = await (await kong.request({ path: '/v1/x' })).stats();
  expect(again.instanceRpcs).toBe(0);
  expect(kong.logs.filter((l) => l.plugin === 'probe-a').map((l) => l.message)).toEqual([
    'first',
    'second',
    'second',
  ]);
});

test('kong.service.request setters shape the upstream request; set_path and set_query too', async () => {
  await kong.reload(
    declarative([
      {
        name: 'probe-a',
        config: {
          access: script(
            { call: 'kong.service.request.set_path', args: ['/other/path'] },
            { call: 'kong.service.request.set_query', args: [{ z: '1', a: ['x', 'y'] }] },
            { call: 'kong.service.request.set_method', args: ['PUT'] },
            { call: 'kong.service.request.set_raw_body', args: ['replaced'] },
            { call: 'kong.service.request.add_header', args: ['X-Add', 'one'] },
            { call: 'kong.service.request.add_header', args: ['X-Add', 'two'] },
            { call: 'kong.service.request.clear_header', args: ['X-Drop'] },
            { call: 'kong.response.set_header', args: ['X-Down', 'to-client'] },
          ),
        },
      },
    ]),
  );
  const res = await kong.request({ path: '/v1/x?q=1', headers: { 'X-Drop': 'me' }, body: 'original' });
  expect(res.status).toBe(200);
  const seen = upstream.requests[0];
  expect(seen.method).toBe('PUT');
  expect(seen.url).toBe('/other/path?a=x&a=y&z=1');
  expect(seen.body).toBe('replaced');
  expect(seen.headers['x-add']).toBe('one, two');
  expect(seen.headers['x-drop']).toBeUndefined();
  expect(seen.headers['x-forwarded-path']).toBe('/v1/x');
  expect(seen.headers['x-forwarded-prefix']).toBe('/v1');
  expect(seen.headers['x-kong-request-id']).toBe(res.requestId);
  expect(res.headers['x-down']).toBe('to-client');
  expect(res.headers.via).toBe('1.1 kong/3.9.3');
  expect(res.headers['x-kong-upstream-latency']).toMatch(/^\d+$/);
  expect(res.headers['x-kong-proxy-latency']).toMatch(/^\d+$/);
});

test('set_target overrides the service host/port; a consumer authenticated from JS enables its scoped plugins', async () => {
  const carol = { id: '8a7c1e4e-2f7b-4c4f-9d0a-3d4b5c6e7f80', username: 'carol' };
  await kong.reload({
    _format_version: '3.0',
    services: [{ name: 'nowhere', url: 'http://127.0.0.1:9', routes: [{ name: 'v1', paths: ['/v1'] }] }],
    consumers: [carol, { username: 'dave' }],
    plugins: [
      {
        name: 'probe-a',
        config: {
          access: script(
            { call: 'kong.service.set_target', args: ['127.0.0.1', upstream.port] },
            { call: 'kong.client.authenticate', args: [carol] },
          ),
        },
      },
      {
        name: 'probe-b',
        consumer: 'carol',
        config: { access: script({ call: 'kong.client.get_consumer', save: 'c' }, { report: 'header' }) },
      },
      { name: 'probe-c', consumer: 'dave', config: { access: script({ report: 'header' }) } },
    ],
  });
  const res = await kong.request({ path: '/v1/x' });
  expect(res.status).toBe(200);
  const seen = upstream.requests[0].headers;
  expect(seen.host).toBe('127.0.0.1'); // set_target sets $upstream_host: no port
  expect(JSON.parse(String(seen['x-probe-probe-b'])).c).toEqual(carol);
  expect(seen['x-probe-probe-c']).toBeUndefined();
});
