/**
 * Plugin-server processes as Kong 3.9 manages them: query_cmd checks, respawn after a
 * crash (start_cmd, at most once a second), and what a request gets while a server is
 * down or slow: no instance yet → 500; cached instance → the plugin is skipped.
 */
import type { ChildProcess } from 'node:child_process';
import { until } from '../../support/eventually';
import { KongDriver } from '../../support/kong';
import {
  makeSocketDir,
  pdkServerDef,
  spawnPdkServer,
  startUpstream,
  type TestUpstream,
} from '../../support/kong/fixtures';
import { canConnect, PluginServerManager, queryPluginInfo } from '../../support/kong/plugin-servers';

let upstream: TestUpstream;
let sockets: ReturnType<typeof makeSocketDir>;

const marker = JSON.stringify([{ call: 'kong.service.request.set_header', args: ['X-Probe', 'ran'] }]);

function declarative(plugin: string, extra: Record<string, unknown> = {}) {
  return {
    _format_version: '3.0',
    services: [{ name: 'echo', url: upstream.url, routes: [{ name: 'v1', paths: ['/v1'] }] }],
    plugins: [{ name: plugin, config: { access: marker, ...extra } }],
  };
}

beforeAll(async () => {
  upstream = await startUpstream();
});

afterAll(async () => {
  await upstream?.close();
});

beforeEach(() => {
  sockets = makeSocketDir();
  upstream.requests.splice(0);
});

afterEach(() => {
  sockets.remove();
});

describe('query_cmd', () => {
  const env = {};
  const def = (json: string) => ({ name: 'x', socket: '/nonexistent.sock', query_cmd: `echo '${json}'` });

  test('only the first plugin a server reports is registered (Kong 3.9)', async () => {
    const info = await queryPluginInfo(
      def(
        '{"Protocol":"MsgPack:1","Plugins":[{"Name":"first","Priority":1,"Version":"1.0.0"},{"Name":"second","Priority":2,"Version":"1.0.0"}]}',
      ),
      env,
    );
    expect(info).toMatchObject({ name: 'first', priority: 1, version: '1.0.0' });
  });

  test("a bad Priority or Version, or output that is not pure JSON, stops Kong's start", async () => {
    await expect(
      queryPluginInfo(def('[{"Name":"p","Priority":1.5,"Version":"1.0.0"}]'), env),
    ).rejects.toThrow(
      'Plugin "p" cannot be loaded because its PRIORITY field is not a valid integer number, got: "1.5".',
    );
    await expect(queryPluginInfo(def('[{"Name":"p","Priority":1}]'), env)).rejects.toThrow(
      'Plugin "p" cannot be loaded because its VERSION field does not follow the "x.y.z" format, got: "nil".',
    );
    await expect(queryPluginInfo(def('WARN loading\n[]'), env)).rejects.toThrow(
      'failed decoding plugin info',
    );
  });

  test('query commands and servers get an empty environment', async () => {
    const info = await queryPluginInfo(
      {
        name: 'x',
        socket: '/x.sock',
        query_cmd: `echo "[{\\"Name\\":\\"p$HOME\\",\\"Priority\\":1,\\"Version\\":\\"1.0.0\\"}]"`,
      },
      env,
    );
    expect(info.name).toBe('p');
  });
});

test('a start_cmd that keeps failing is respawned at most once a second', async () => {
  const manager = new PluginServerManager([
    {
      name: 'broken',
      socket: `${sockets.dir}/b.sock`,
      start_cmd: '/nonexistent/server',
      query_cmd: `echo '[{"Name":"b","Priority":1,"Version":"1.0.0"}]'`,
    },
  ]);
  const spawns: number[] = [];
  const errors: string[] = [];
  manager.on('spawn', () => spawns.push(Date.now()));
  manager.on('error-log', (m: string) => errors.push(m));
  await manager.start();
  await new Promise((r) => setTimeout(r, 2300));
  await manager.stop();
  expect(spawns).toHaveLength(3);
  expect(spawns[1] - spawns[0]).toBeGreaterThanOrEqual(990);
  expect(spawns[2] - spawns[1]).toBeGreaterThanOrEqual(990);
  expect(errors[0]).toBe(
    '[pluginserver] external pluginserver "broken" start command "/nonexistent/server" exited with "command not found"',
  );
});

test('a killed server is respawned; the stale instance id is reset and later requests work', async () => {
  const kong = await KongDriver.start({
    pluginServers: [pdkServerDef('probe-a', sockets.dir)],
    declarative: declarative('probe-a'),
  });
  try {
    expect((await kong.request({ path: '/v1' })).status).toBe(200);
    expect(upstream.requests[0].headers['x-probe']).toBe('ran');
    const pid = kong.pluginServers.pid('probe-a');
    expect(pid).toBeDefined();
    const respawned = new Promise<number>((resolve) =>
      kong.pluginServers.once('spawn', (e: { pid: number }) => resolve(e.pid)),
    );
    process.kill(pid as number, 'SIGKILL');
    expect(await respawned).not.toBe(pid);

    // While it restarts, the cached instance only needs HandleEvent: requests go on without the plugin
    // (the socket is refused, or missing while the new server replaces it). The server may come up between two phases of one request, so the
    // trace is summed over every request until one runs the plugin end to end.
    const failures: string[] = [];
    let instanceRpcs = 0;
    await until(async () => {
      const res = await kong.request({ path: '/v1' });
      expect(res.status).toBe(200);
      const stats = await res.stats();
      failures.push(...(stats.plugins['probe-a']?.failures ?? []).map((f) => f.reason));
      instanceRpcs += stats.instanceRpcs;
      return upstream.requests.at(-1)?.headers['x-probe'] === 'ran' ? true : undefined;
    }, 'requests to go through the restarted plugin');
    // The new server has no instance #0: "no plugin instance" resets the cache and starts one, once.
    const whileDown = ['connection refused', 'no such file or directory'];
    expect(failures.filter((r) => !whileDown.includes(r))).toEqual(['no plugin instance #0']);
    expect(instanceRpcs).toBe(1);
    expect(kong.pluginServers.outputText('probe-a')).toContain('instance #0 of probe-a started');
  } finally {
    await kong.close();
  }
}, 20_000);

describe('an externally managed server (no start_cmd) that dies', () => {
  let server: ChildProcess | undefined;

  afterEach(() => {
    server?.kill('SIGKILL');
  });

  test('cached instance → the request continues without the plugin; new instance needed → 500', async () => {
    server = spawnPdkServer('probe-b', sockets.dir);
    const def = pdkServerDef('probe-b', sockets.dir, false);
    await until(async () => ((await canConnect(def.socket)) ? true : undefined), 'the socket to accept');
    const kong = await KongDriver.start({ pluginServers: [def], declarative: declarative('probe-b') });
    try {
      expect(kong.logText()).toContain("no start_cmd for 'probe-b', assuming external process management");
      expect((await kong.request({ path: '/v1' })).status).toBe(200);
      expect(upstream.requests[0].headers['x-probe']).toBe('ran');

      const exited = new Promise((resolve) => server?.once('exit', resolve));
      server.kill('SIGKILL');
      await exited;
      const res = await kong.request({ path: '/v1' });
      expect(res.status).toBe(200);
      expect(upstream.requests[1].headers['x-probe']).toBeUndefined();
      expect(kong.logText('probe-b')).toMatch(
        /trying to connect: (connection refused|no such file or directory)/,
      );

      // A config change means a new instance, which cannot start: error(err) → 500. The plugin is
      // global, so this happens in rewrite: nginx's error page, text/plain unless Accept says otherwise.
      await kong.reload(declarative('probe-b'));
      const failed = await kong.request({ path: '/v1' });
      expect(failed.status).toBe(500);
      expect(failed.headers['content-type']).toBe('text/plain; charset=utf-8');
      expect(failed.text()).toBe(`An unexpected error occurred\nrequest_id: ${failed.requestId}\n`);
      const json = await kong.request({ path: '/v1', headers: { Accept: 'application/json' } });
      expect(json.json()).toEqual({ message: 'An unexpected error occurred', request_id: json.requestId });
      expect(kong.logText('probe-b')).toMatch(/starting instance: /);
      expect(upstream.requests).toHaveLength(2);
    } finally {
      await kong.close();
    }
  }, 20_000);
});

test('a plugin slower than the RPC read timeout is skipped: "no data" is logged, the request proceeds', async () => {
  const kong = await KongDriver.start({
    pluginServers: [pdkServerDef('probe-c', sockets.dir)],
    declarative: {
      _format_version: '3.0',
      services: [{ name: 'echo', url: upstream.url, routes: [{ name: 'v1', paths: ['/v1'] }] }],
      plugins: [
        {
          name: 'probe-c',
          config: {
            access: JSON.stringify([
              { sleep: 800 },
              { call: 'kong.service.request.set_header', args: ['X-Late', '1'] },
            ]),
          },
        },
      ],
    },
    rpcTimeoutMs: 300,
  });
  try {
    const started = Date.now();
    const res = await kong.request({ path: '/v1' });
    expect(res.status).toBe(200);
    expect(Date.now() - started).toBeLessThan(790);
    expect(upstream.requests[0].headers['x-late']).toBeUndefined();
    expect((await res.stats()).plugins['probe-c'].failures).toEqual([{ phase: 'access', reason: 'no data' }]);
    expect(kong.logText('probe-c')).toContain('no data');
  } finally {
    await kong.close();
  }
}, 20_000);
