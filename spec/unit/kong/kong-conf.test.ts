/**
 * scripts/kong-conf.ts (the lines pointing Kong at the suite), and the files built on the same
 * values that CI cannot run: Dockerfile, docker-compose.yml, kong/kong.yml, kong/kong.mock.yml.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { kongConfLines, SUITE_PLUGIN_NAMES } from '../../../lib/kong/kong-conf';
import { pluginInfo } from '../../../lib/kong/plugin';
import { suitePlugins } from '../../../plugins';
import { pluginConfigs } from '../../../schemas';
import {
  checkSocketDir,
  DEFAULT_KONG_PREFIX,
  KongConfError,
  type KongConfOptions,
  optionsFromArgs,
  parseEnvPairs,
  pluginsValue,
  render,
  renderConf,
  renderEnv,
  suiteServerDefs,
} from '../../../scripts/kong-conf';
import { loadDeclarative, type PluginSchemaInfo } from '../../support/kong/declarative';
import { KEY_AUTH_SCHEMA } from '../../support/kong/key-auth';

const ROOT = path.resolve(__dirname, '..', '..', '..');

/** `key = value` lines of kong.conf output, as Kong's conf_loader reads them (comments stripped). */
function confValues(lines: string[]): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of lines) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const m = /^(\w+) = (.*)$/.exec(line);
    if (!m) throw new Error(`not a kong.conf line: ${line}`);
    // conf_loader.lua load_config: strip a trailing comment, then unescape \#.
    values.set(m[1]!, m[2]!.replace(/\s*(?<!\\)#.*$/, '').replace(/\\#/g, '#'));
  }
  return values;
}

/** What `sh` makes of export lines: the KONG_* variables they set. */
function shellEnv(lines: string[]): Record<string, string> {
  const script = `${lines.join('\n')}\nexec ${JSON.stringify(process.execPath)} -e 'process.stdout.write(JSON.stringify(process.env))'`;
  const out = spawnSync('/bin/sh', ['-c', script], { env: {}, encoding: 'utf8' });
  expect(out.stderr).toBe('');
  const env = JSON.parse(out.stdout) as Record<string, string>;
  return Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith('KONG_')));
}

/** Runs a command the way Kong does: `ngx.pipe.spawn("exec " .. cmd)` (sh -c), with an empty environment. */
function runLikeKong(cmd: string): { argv: string[]; env: Record<string, string> } {
  const out = spawnSync('/bin/sh', ['-c', `exec ${cmd}`], { env: {}, encoding: 'utf8' });
  expect(out.stderr).toBe('');
  expect(out.status).toBe(0);
  const seen = JSON.parse(out.stdout) as { argv: string[]; env: Record<string, string> };
  delete seen.env.PWD; // sh exports it
  return seen;
}

describe('kong-conf: the pure parts', () => {
  const base: KongConfOptions = {
    socketDir: '/var/run/kong-ai-gateway',
    node: '/usr/bin/node',
    root: '/opt/kong-ai-gateway',
  };

  it('gives every plugin its own entry, names with underscores, and exactly one start_cmd', () => {
    const lines = renderConf({ ...base, env: { AIGW_STORE: 'memory' } });
    const conf = confValues(lines);
    expect(conf.get('plugins')).toBe(`bundled,${SUITE_PLUGIN_NAMES.join(',')}`);
    expect(conf.get('pluginserver_names')).toBe(SUITE_PLUGIN_NAMES.join(','));
    for (const name of SUITE_PLUGIN_NAMES) {
      const key = name.replace(/-/g, '_');
      expect(conf.get(`pluginserver_${key}_socket`)).toBe(`/var/run/kong-ai-gateway/${name}.sock`);
      expect(conf.get(`pluginserver_${key}_query_cmd`)).toBe(
        `/usr/bin/node /opt/kong-ai-gateway/dist/lib/kong/main.js --dump ${name}`,
      );
    }
    expect(conf.has('pluginserver_ai_semantic_cache_socket')).toBe(true);
    expect([...conf.keys()].filter((k) => k.includes('-'))).toEqual([]);
    const starts = [...conf.keys()].filter((k) => k.endsWith('_start_cmd'));
    expect(starts).toEqual(['pluginserver_ai_router_start_cmd']); // the first of pluginserver_names
    expect(conf.get('pluginserver_ai_router_start_cmd')).toBe(
      '/usr/bin/env AIGW_STORE=memory /usr/bin/node /opt/kong-ai-gateway/dist/lib/kong/main.js --socket-dir /var/run/kong-ai-gateway --exit-with-parent',
    );
  });

  it('prints the body-buffer settings as comments only', () => {
    const text = render(base, 'both');
    expect(text).toMatch(/^# nginx_http_client_body_buffer_size = 1m$/m);
    expect(text).toMatch(/^# nginx_http_client_max_body_size = 11m$/m);
    expect(text).toMatch(/^# export KONG_NGINX_HTTP_CLIENT_BODY_BUFFER_SIZE=1m$/m);
    expect(text).not.toMatch(/^(export )?(KONG_)?nginx_http/im);
    expect(render(base, 'conf')).not.toContain('export ');
    expect(render(base, 'env')).not.toMatch(/^pluginserver_/m);
  });

  it('writes the start_cmd without env when no setting is given, and says how to pass them', () => {
    const conf = confValues(renderConf(base));
    expect(conf.get('pluginserver_ai_router_start_cmd')).toMatch(/^\/usr\/bin\/node /);
    expect(render(base, 'conf')).toContain('--env KEY=VALUE');
  });

  describe('paths with spaces, quotes and #, and the environment, survive Kong and sh', () => {
    let dir: string;
    let options: KongConfOptions;
    const env = {
      AIGW_STORE: 'redis://:p@ss w0rd@127.0.0.1:6379/0',
      AIGW_LOG_FILE: "/var/log/it's here/#1.log",
      AIGW_ODD: 'a=b $HOME `x` "q" \\ end',
      AIGW_EMPTY: '',
    };

    beforeAll(() => {
      // A fake installation whose main.js reports what it was started with; node behind a
      // link whose path needs quoting too.
      dir = mkdtempSync(path.join(os.tmpdir(), "kong conf 'q' #"));
      const root = path.join(dir, 'my root');
      mkdirSync(path.join(root, 'dist', 'lib', 'kong'), { recursive: true });
      writeFileSync(
        path.join(root, 'dist', 'lib', 'kong', 'main.js'),
        'process.stdout.write(JSON.stringify({ argv: process.argv.slice(1), env: process.env }))',
      );
      const node = path.join(dir, 'the node');
      symlinkSync(process.execPath, node);
      options = { socketDir: path.join(dir, 'sock dir'), node, root, env };
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('kong.conf: the start_cmd passes exactly the given environment and arguments', () => {
      const conf = confValues(renderConf(options));
      const seen = runLikeKong(conf.get('pluginserver_ai_router_start_cmd')!);
      expect(seen.argv).toEqual([
        path.join(options.root, 'dist', 'lib', 'kong', 'main.js'),
        '--socket-dir',
        options.socketDir,
        '--exit-with-parent',
      ]);
      expect(seen.env).toEqual(env);
      expect(conf.get('pluginserver_ai_router_socket')).toBe(path.join(options.socketDir, 'ai-router.sock'));
    });

    it('kong.conf: every query_cmd runs main.js --dump <its plugin>', () => {
      const conf = confValues(renderConf(options));
      for (const name of SUITE_PLUGIN_NAMES) {
        const seen = runLikeKong(conf.get(`pluginserver_${name.replace(/-/g, '_')}_query_cmd`)!);
        expect(seen.argv).toEqual([
          path.join(options.root, 'dist', 'lib', 'kong', 'main.js'),
          '--dump',
          name,
        ]);
        expect(seen.env).toEqual({});
      }
    });

    it('kong.conf escapes # (Kong reads it as a comment), the environment form does not', () => {
      const lines = renderConf(options);
      const start = lines.find((l) => l.startsWith('pluginserver_ai_router_start_cmd'))!;
      expect(start).not.toMatch(/[^\\]#/);
      expect(shellEnv(renderEnv(options)).KONG_PLUGINSERVER_AI_ROUTER_START_CMD).toContain('#1.log');
    });

    it('the environment form sets the same values as kong.conf, and KONG_PLUGINS', () => {
      const conf = confValues(renderConf(options));
      const fromShell = shellEnv(renderEnv(options));
      const expected: Record<string, string> = {};
      for (const [k, v] of conf) expected[`KONG_${k.toUpperCase()}`] = v;
      expect(fromShell).toEqual(expected);
      expect(fromShell.KONG_PLUGINS).toBe(pluginsValue());
    });
  });

  it('refuses a socket folder that docker-kong wipes, whatever the spelling', () => {
    for (const bad of [
      '/usr/local/kong',
      '/usr/local/kong/',
      '/usr/local/kong/sockets',
      '/usr/local/kong/x/../sockets/',
    ])
      expect(() => checkSocketDir(bad, [DEFAULT_KONG_PREFIX])).toThrow(/deletes every socket/);
    expect(() => checkSocketDir('/srv/kong/sockets', ['/srv/kong'])).toThrow(/\/srv\/kong\/sockets/);
    expect(() => checkSocketDir('/var/run/kong-ai-gateway', ['/usr/local/kong'])).not.toThrow();
    // Only the folder itself and sockets/ are cleared (not recursive).
    expect(() => checkSocketDir('/usr/local/kong/ai-gateway', ['/usr/local/kong'])).not.toThrow();
    expect(() => checkSocketDir('relative/dir', [])).toThrow(/absolute/);
  });

  it('reads the command line: defaults, prefixes to check, errors', () => {
    const parsed = optionsFromArgs(
      ['--prefix', '/run/aigw', '--env', 'A=1', '--env', 'B=x=y', '--env', 'A=2'],
      {},
    );
    expect(parsed).not.toBe('help');
    if (parsed === 'help') return;
    expect(parsed.format).toBe('both');
    expect(parsed.options.node).toBe(process.execPath);
    expect(parsed.options.root).toBe(ROOT);
    expect(parsed.options.env).toEqual({ A: '2', B: 'x=y' });
    expect(parsed.options.kongPrefixes).toEqual([DEFAULT_KONG_PREFIX]);

    const relative = optionsFromArgs(['--prefix', 'socks'], { KONG_PREFIX: '/k' });
    if (relative === 'help') throw new Error('unexpected');
    expect(relative.options.socketDir).toBe(path.resolve('socks'));
    expect(relative.options.kongPrefixes).toEqual(['/k', DEFAULT_KONG_PREFIX]);

    expect(optionsFromArgs(['--help'], {})).toBe('help');
    expect(() => optionsFromArgs([], {})).toThrow(/--prefix DIR is required/);
    expect(() => optionsFromArgs(['--prefix', '/a', '--format', 'yaml'], {})).toThrow(/--format yaml/);
    expect(() => optionsFromArgs(['--prefix', '/a', '--bogus'], {})).toThrow(KongConfError);
    // Detected through --kong-prefix, KONG_PREFIX or Kong's default prefix.
    const wiped = (args: string[], env: NodeJS.ProcessEnv) => {
      const p = optionsFromArgs(args, env);
      if (p !== 'help') suiteServerDefs(p.options);
    };
    expect(() => wiped(['--prefix', '/srv/k/sockets', '--kong-prefix', '/srv/k'], {})).toThrow(
      /deletes every socket/,
    );
    expect(() => wiped(['--prefix', '/srv/k'], { KONG_PREFIX: '/srv/k' })).toThrow(/deletes every socket/);
    expect(() => wiped(['--prefix', '/usr/local/kong/sockets'], {})).toThrow(/deletes every socket/);
    expect(() => wiped(['--prefix', '/a', '--node', 'node'], {})).toThrow(
      /--node node: must be an absolute path/,
    );
  });

  it('checks --env pairs', () => {
    expect(parseEnvPairs(['A=', 'B_1=x y'])).toEqual({ A: '', B_1: 'x y' });
    expect(() => parseEnvPairs(['FOO'])).toThrow(/--env FOO: expected KEY=VALUE/);
    expect(() => parseEnvPairs(['1A=b'])).toThrow(/expected KEY=VALUE/);
    expect(() => parseEnvPairs(['=b'])).toThrow(/expected KEY=VALUE/);
    expect(() => parseEnvPairs(['A=x\ny'])).toThrow(/line break/);
  });
});

// ------------------------------------------------------------- Docker files, by reading

/** The image's settings: the values Dockerfile and docker-compose.yml must hold. */
const IMAGE = {
  socketDir: '/var/run/kong-ai-gateway',
  node: '/usr/local/bin/node',
  root: '/opt/kong-ai-gateway',
  kongPrefixes: [DEFAULT_KONG_PREFIX],
};
const imageEnv = (store: string, extra: Record<string, string> = {}) => ({
  AIGW_RELAY_PORT: '8900',
  AIGW_LOG_FILE: '/proc/1/fd/1',
  AIGW_STORE: store,
  ...extra,
});

/** The ENV instructions of a Dockerfile, continuation lines joined. */
function dockerfileEnv(text: string): Record<string, string> {
  const logical = text.replace(/\\\n/g, ' ').split('\n');
  const env: Record<string, string> = {};
  for (const line of logical) {
    if (!/^ENV\s/.test(line)) continue;
    for (const m of line.slice(4).matchAll(/([A-Za-z_][A-Za-z0-9_]*)=(?:"([^"\\]*)"|(\S+))/g))
      env[m[1]!] = m[2] ?? m[3]!;
  }
  return env;
}

function expectedKongEnv(store: string, extra: Record<string, string> = {}): Record<string, string> {
  const defs = suiteServerDefs({ ...IMAGE, env: imageEnv(store, extra) });
  const out: Record<string, string> = { KONG_PLUGINS: pluginsValue() };
  for (const line of kongConfLines(defs)) {
    const [k, v] = line.split(' = ', 2) as [string, string];
    out[`KONG_${k.toUpperCase()}`] = v;
  }
  return out;
}

describe('Dockerfile and docker-compose.yml hold what kong-conf prints', () => {
  const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  const compose = parseYaml(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8')) as {
    services: Record<string, { environment?: Record<string, string | null>; profiles?: string[] }>;
  };

  it('Dockerfile: Kong 3.9.3, and KONG_PLUGINS / KONG_PLUGINSERVER_* equal to kong-conf', () => {
    expect(dockerfile).toMatch(/^FROM kong:3\.9\.3$/m);
    const env = dockerfileEnv(dockerfile);
    const kongPart = Object.fromEntries(
      Object.entries(env).filter(([k]) => k === 'KONG_PLUGINS' || k.startsWith('KONG_PLUGINSERVER_')),
    );
    expect(kongPart).toEqual(expectedKongEnv('memory'));
    expect(env.KONG_NGINX_HTTP_CLIENT_BODY_BUFFER_SIZE).toBe('1m');
    expect(env.KONG_NGINX_HTTP_CLIENT_MAX_BODY_SIZE).toBe('11m'); // just above AIGW_MAX_BODY_BYTES' default
    expect(dockerfile).toContain(`mkdir -p ${IMAGE.socketDir} && chown kong:0 ${IMAGE.socketDir}`);
    expect(dockerfile).toMatch(/^USER kong$/m);
    expect(dockerfile).toContain("connect(8900, '127.0.0.1')"); // healthcheck = AIGW_RELAY_PORT
  });

  it('docker-compose.yml: the same start_cmd with Redis as the store, admin endpoint on the compose network', () => {
    const kong = compose.services.kong!.environment!;
    // AIGW_ADMIN_HOST=0.0.0.0: the observability profile's Prometheus scrapes kong:8901.
    expect(kong.KONG_PLUGINSERVER_AI_ROUTER_START_CMD).toBe(
      expectedKongEnv('redis://redis:6379/0', { AIGW_ADMIN_HOST: '0.0.0.0' })
        .KONG_PLUGINSERVER_AI_ROUTER_START_CMD,
    );
    expect(compose.services.redis).toBeDefined();
    expect(kong.KONG_DATABASE).toBe('off');
  });

  it('docker-compose.yml: the declarative configs exist, and the mock profile matches kong.mock.yml', () => {
    const kong = compose.services.kong!.environment!;
    const m = /^\/opt\/kong-ai-gateway\/kong\/\$\{AIGW_KONG_YML:-(.+)\}$/.exec(
      kong.KONG_DECLARATIVE_CONFIG ?? '',
    );
    expect(m?.[1]).toBe('kong.yml');
    const mock = compose.services.mock!;
    expect(mock.profiles).toEqual(['mock']);
    const mockYml = parseYaml(
      readFileSync(path.join(ROOT, 'kong', 'kong.mock.yml'), 'utf8'),
    ) as DeclarativeDoc;
    const target = routerTargets(mockYml)[0]!;
    expect(target.base_url).toBe(`http://mock:${mock.environment!.MOCK_PORT}/v1`);
    expect(target.api_key).toBe('{vault://env/AIGW_MOCK_API_KEY}');
    expect(kong.AIGW_MOCK_API_KEY).toBe(mock.environment!.MOCK_API_KEY);
  });
});

// ------------------------------------------------------------- kong/*.yml against our schemas

interface DeclarativeDoc {
  services: Array<{
    url: string;
    read_timeout?: number;
    routes: Array<{ paths: string[]; strip_path: boolean }>;
    plugins: Array<{ name: string; config?: Record<string, unknown> }>;
  }>;
}

function routerTargets(doc: DeclarativeDoc): Array<Record<string, string>> {
  const router = doc.services[0]!.plugins.find((p) => p.name === 'ai-router')!;
  return router.config!.targets as Array<Record<string, string>>;
}

/** The plugins the emulator's declarative loader knows: the suite (as query_cmd reports it) and key-auth. */
function installedPlugins(): Map<string, PluginSchemaInfo> {
  const map = new Map<string, PluginSchemaInfo>();
  for (const plugin of suitePlugins)
    map.set(plugin.name, { schema: pluginInfo(plugin).Schema as PluginSchemaInfo['schema'] });
  map.set('key-auth', { schema: KEY_AUTH_SCHEMA, noConsumer: true });
  return map;
}

/** kong.yml with its commented examples switched on (the lines between the example markers). */
function withExamples(text: string): string {
  let inside = false;
  return text
    .split('\n')
    .flatMap((line) => {
      if (line.trim() === '# --- example: key-auth ---') {
        inside = true;
        return [];
      }
      if (line.trim() === '# --- end of example ---') {
        inside = false;
        return [];
      }
      return [inside ? line.replace(/^(\s*)# ?/, '$1') : line];
    })
    .join('\n');
}

describe('kong/kong.yml and kong/kong.mock.yml', () => {
  const files = {
    'kong.yml': readFileSync(path.join(ROOT, 'kong', 'kong.yml'), 'utf8'),
    'kong.yml with its key-auth example': withExamples(
      readFileSync(path.join(ROOT, 'kong', 'kong.yml'), 'utf8'),
    ),
    'kong.mock.yml': readFileSync(path.join(ROOT, 'kong', 'kong.mock.yml'), 'utf8'),
  };

  it.each(Object.entries(files))(
    '%s loads in the Kong emulator and passes every suite plugin check',
    (_name, text) => {
      const doc = parseYaml(text) as DeclarativeDoc;
      const config = loadDeclarative(doc, installedPlugins()); // throws DeclarativeConfigError naming the field
      for (const plugin of config.plugins) {
        const definition = pluginConfigs[plugin.name as keyof typeof pluginConfigs];
        if (definition) expect(() => definition.validate(plugin.config)).not.toThrow();
      }
      // The relay as upstream, /v1 kept, all five plugins on it.
      const [service] = config.services;
      expect(config.services).toHaveLength(1);
      expect(`${service!.protocol}://${service!.host}:${service!.port}`).toBe('http://127.0.0.1:8900');
      expect(service!.read_timeout).toBeGreaterThanOrEqual(600_000);
      expect(config.routes.map((r) => [r.paths, r.strip_path])).toEqual([[['/v1'], false]]);
      const names = config.plugins.filter((p) => p.service?.id === service!.id).map((p) => p.name);
      expect(names).toEqual(expect.arrayContaining([...SUITE_PLUGIN_NAMES]));
    },
  );

  it('kong.yml: OpenAI through a vault reference, and a local Ollama target', () => {
    const doc = parseYaml(files['kong.yml']) as DeclarativeDoc;
    const targets = routerTargets(doc);
    expect(targets.find((t) => t.base_url === undefined)?.api_key).toBe('{vault://env/OPENAI_API_KEY}');
    expect(targets.some((t) => /:11434\/v1$/.test(t.base_url ?? ''))).toBe(true);
    // key-auth is an example there (commented), and really on in the example version.
    expect(doc.services[0]!.plugins.some((p) => p.name === 'key-auth')).toBe(false);
    const withAuth = parseYaml(files['kong.yml with its key-auth example']) as DeclarativeDoc & {
      consumers?: unknown[];
    };
    expect(withAuth.services[0]!.plugins.some((p) => p.name === 'key-auth')).toBe(true);
    expect(withAuth.consumers).toHaveLength(1);
  });
});
