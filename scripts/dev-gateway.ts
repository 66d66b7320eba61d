/**
 * Dev gateway: an HTTP port and a kong.yml in front of the suite server, through the Kong
 * emulator of spec/support/kong (no Kong needed). A development harness; production is Kong.
 *
 *   npm start                              kong/kong.dev.yml, memory store, built-in OpenAI mock, :8000
 *   node dist/scripts/dev-gateway.js --config my-kong.yml --no-mock --port 8080 --relay-port 8901
 *
 * Environment: AIGW_STORE (memory | redis://...), AIGW_LOG_LEVEL and any other AIGW_* variable
 * reach the suite server; the whole environment is Kong's for `{vault://env/...}` references.
 * `${NAME}` in the kong.yml is replaced from the environment before loading.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { installationRoot, pluginServerDefs } from '../lib/kong/kong-conf';
import { DeclarativeConfigError, KongDriver, type KongLogLine } from '../spec/support/kong';
import { type ProviderMock, startOpenAIMock } from '../spec/support/providers';

const USAGE = `usage: dev-gateway [--config kong.yml] [--host 127.0.0.1] [--port 8000] [--relay-port 8900] [--no-mock] [--socket-dir DIR]`;
const MOCK_KEY = 'sk-dev-mock-key';

/**
 * `${NAME}` and `${NAME:-default}` from env, outside comment lines; an unset name without a
 * default is an error.
 */
export function substituteEnv(text: string, env: Record<string, string | undefined>): string {
  const missing: string[] = [];
  const substitute = (line: string) =>
    line.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, fallback?: string) => {
      const value = env[name] ?? fallback;
      if (value === undefined) missing.push(name);
      return value ?? '';
    });
  const out = text
    .split('\n')
    .map((line) => (line.trimStart().startsWith('#') ? line : substitute(line)))
    .join('\n');
  if (missing.length > 0)
    throw new Error(`kong.yml uses unset environment variables: ${[...new Set(missing)].join(', ')}`);
  return out;
}

function aigwEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (k.startsWith('AIGW_') && v !== undefined) out[k] = v;
  return out;
}

function printLog(line: KongLogLine): void {
  if (line.level === 'debug' || line.level === 'info') return; // Kong's default log_level is notice
  const plugin = line.plugin ? ` [${line.plugin}]` : '';
  process.stderr.write(`[kong] [${line.level}]${plugin} ${line.message}\n`);
}

export interface DevGatewayOptions {
  /** kong.yml path (default kong/kong.dev.yml) or a parsed declarative config. */
  config?: string | object;
  host?: string;
  port?: number;
  relayPort?: number;
  /** Start the built-in OpenAI mock (default true). */
  mock?: boolean;
  socketDir?: string;
  /** Environment for Kong (vault references, `${NAME}`) and, for AIGW_* names, the suite server. */
  env?: NodeJS.ProcessEnv;
}

export interface DevGateway {
  url: string;
  kong: KongDriver;
  mock?: ProviderMock;
  configPath?: string;
  store: string;
  close(): Promise<void>;
}

/** Starts the dev gateway: the built-in mock, the Kong emulator and, through it, the suite server. */
export async function startDevGateway(options: DevGatewayOptions = {}): Promise<DevGateway> {
  const env = options.env ?? process.env;
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 8000;
  const relayPort = options.relayPort ?? 8900;
  const root = installationRoot();
  const config = options.config ?? path.join(root, 'kong', 'kong.dev.yml');
  const configPath = typeof config === 'string' ? path.resolve(config) : undefined;

  const mock = options.mock === false ? undefined : await startOpenAIMock({ apiKey: MOCK_KEY });
  const socketDir = options.socketDir ?? mkdtempSync(path.join(os.tmpdir(), 'aigw-dev-'));
  const ownSocketDir = options.socketDir === undefined;

  // Kong's environment: what vault references and ${NAME} resolve against.
  const kongEnv: Record<string, string | undefined> = {
    ...env,
    AIGW_RELAY_PORT: String(relayPort),
    ...(mock ? { AIGW_DEV_MOCK_URL: mock.url, AIGW_DEV_MOCK_KEY: MOCK_KEY } : {}),
  };
  // The suite server's: Kong passes none, so kong-conf puts these into the start_cmd.
  const serverEnv = { AIGW_STORE: 'memory', ...aigwEnv(env), AIGW_RELAY_PORT: String(relayPort) };
  delete (serverEnv as Record<string, string>).AIGW_DEV_MOCK_URL;
  delete (serverEnv as Record<string, string>).AIGW_DEV_MOCK_KEY;

  const cleanup = async () => {
    await mock?.close();
    if (ownSocketDir) rmSync(socketDir, { recursive: true, force: true });
  };

  let kong: KongDriver;
  try {
    const declarative = configPath
      ? (parseYaml(substituteEnv(readFileSync(configPath, 'utf8'), kongEnv)) as unknown)
      : config;
    kong = await KongDriver.start({
      pluginServers: pluginServerDefs({ socketDir, node: process.execPath, root, env: serverEnv }),
      declarative,
      env: kongEnv,
      listen: { host, port },
      socketWaitMs: 30_000,
    });
  } catch (err) {
    await cleanup();
    throw err;
  }
  const shown = host === '127.0.0.1' || host === '0.0.0.0' ? 'localhost' : host;
  return {
    url: `http://${shown}:${port}`,
    kong,
    mock,
    configPath,
    store: serverEnv.AIGW_STORE,
    close: () => kong.close().then(cleanup),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '8000' },
      'relay-port': { type: 'string', default: process.env.AIGW_RELAY_PORT ?? '8900' },
      'no-mock': { type: 'boolean', default: false },
      'socket-dir': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const port = Number(values.port);
  const relayPort = Number(values['relay-port']);
  if (!Number.isInteger(port) || !Number.isInteger(relayPort)) throw new Error(USAGE);

  // A signal while the gateway starts waits for it to be up, then stops it: exiting at once
  // would leave the suite server it spawned running. A second signal exits anyway.
  let early: string | undefined;
  const onEarlySignal = (signal: string) => {
    if (early) process.exit(130);
    early = signal;
  };
  process.on('SIGINT', onEarlySignal);
  process.on('SIGTERM', onEarlySignal);
  const gateway = await startDevGateway({
    config: values.config,
    host: values.host,
    port,
    relayPort,
    mock: !values['no-mock'],
    socketDir: values['socket-dir'],
  });
  const { kong, mock, url } = gateway;
  kong.on('log', printLog);
  for (const line of kong.logs) printLog(line);
  // The suite server logs JSON lines; Kong would copy them into its error log at INFO.
  kong.pluginServers.on('output', (line: { line: string }) => process.stdout.write(`${line.line}\n`));
  process.stdout.write(kong.pluginServers.output.map((l) => `${l.line}\n`).join(''));

  const model = kong.config.plugins
    .filter((p) => p.name === 'ai-router')
    .flatMap((p) => (p.config.targets as Array<{ name?: string }> | undefined) ?? [])[0]?.name;
  process.stdout.write(
    [
      '',
      `  Kong AI gateway (dev) on ${url}  — Kong 3.9 emulator, not Kong`,
      `  config      ${gateway.configPath}`,
      `  relay       http://127.0.0.1:${relayPort}   store: ${gateway.store}`,
      `  provider    ${mock ? `built-in OpenAI mock at ${mock.url}` : 'as configured (no mock)'}`,
      '',
      '  try:',
      `  curl ${url}/v1/chat/completions -H 'Content-Type: application/json' \\`,
      `    -d '{"model":"${model ?? 'gpt-4o-mini'}","messages":[{"role":"user","content":"Hello!"}]}'`,
      '',
    ].join('\n') + '\n',
  );

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`[kong] [notice] ${signal}: stopping\n`);
    gateway.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.off('SIGINT', onEarlySignal);
  process.off('SIGTERM', onEarlySignal);
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  if (early) stop(early);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    const message =
      err instanceof DeclarativeConfigError ? err.message : err instanceof Error ? err.message : String(err);
    process.stderr.write(`dev gateway failed to start: ${message}\n`);
    process.exit(1);
  });
}
