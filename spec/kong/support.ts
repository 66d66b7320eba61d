/**
 * Real-Kong harness for `npm run test:kong`: runs the suite under an unmodified Kong Gateway
 * 3.9.3 OSS built by the kong-lab scripts (/work/shared/kong-lab, see its README.txt).
 *
 * `startKong()` writes into a temp dir of its own
 *   kong.yml      the declarative config (written as is: Kong fills no placeholders),
 *   ps.conf       the pluginserver_* lines, from lib/kong/kong-conf.ts (the suite's settings
 *                 travel in the start_cmd through /usr/bin/env, as in production),
 *   sockets/      the plugin sockets,
 *   suite.log     the suite server's JSON log lines (AIGW_LOG_FILE),
 * picks free loopback ports for Kong's proxy and admin API and for the relay, and runs the
 * lab's start.sh (PLUGINSERVER_CONF, KONG_DECLARATIVE, NO_UPSTREAM=1). `stop()` runs stop.sh
 * and waits until the suite server Kong started is gone.
 *
 * Environment: KONG_LAB (the lab's output folder, default /work/kong-lab-out),
 * KONG_LAB_SCRIPTS (the lab's scripts, default /work/shared/kong-lab), AIGW_KONG_KEEP=1 keeps
 * the temp dirs for a look afterwards.
 *
 * The lab has one Kong prefix ($LAB/run/kong), so one Kong at a time, and others use it too
 * (the benchmark): a start waits until no Kong and no lab script of that lab runs (at most
 * KONG_LAB_WAIT_S, default 150 s), then fails with a message instead of touching it. stop.sh
 * runs only when the Kong running is the one this harness started.
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify as toYaml } from 'yaml';
import {
  installationRoot,
  kongConfLines,
  pluginServerDefs,
  SUITE_PLUGIN_NAMES,
} from '../../lib/kong/kong-conf';
import type { GatewayHandle, StartGateway } from '../e2e/scenarios';
import { freePort } from '../support/redis';

/** The installation root (from spec/ under jest, or from dist/spec/ when built). */
export const ROOT = installationRoot();
export const MAIN_JS = path.join(ROOT, 'dist', 'lib', 'kong', 'main.js');
export const LAB = path.resolve(process.env.KONG_LAB || '/work/kong-lab-out');
export const LAB_SCRIPTS = path.resolve(process.env.KONG_LAB_SCRIPTS || '/work/shared/kong-lab');
export const KONG_PLUGINS = ['bundled', ...SUITE_PLUGIN_NAMES].join(',');
const ERROR_LOG = path.join(LAB, 'run', 'kong', 'logs', 'error.log');
const NGINX_PID = path.join(LAB, 'run', 'kong', 'pids', 'nginx.pid');

const START_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 30_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Fails with the fix when the lab, its scripts or the build are missing. */
export function requireLab(): void {
  const kong = path.join(LAB, 'opt', 'bin', 'kong');
  const startSh = path.join(LAB_SCRIPTS, 'start.sh');
  try {
    accessSync(kong, constants.X_OK);
  } catch {
    throw new Error(
      [
        `No Kong lab build at KONG_LAB=${LAB} (${kong} is missing).`,
        'Build the lab first (Kong Gateway 3.9.3 OSS from source, offline, ~10 minutes on 2 cores):',
        `  LAB=${LAB} MIRRORS=$HOME/mirrors ${path.join(LAB_SCRIPTS, 'build.sh')}`,
        `(MIRRORS holds the GitHub mirrors listed in ${path.join(LAB_SCRIPTS, 'scripts', 'mirrors.txt')};`,
        `see ${path.join(LAB_SCRIPTS, 'README.txt')}), or point KONG_LAB at an existing build:`,
        '  KONG_LAB=/path/to/kong-lab-out npm run test:kong',
      ].join('\n'),
    );
  }
  if (!existsSync(startSh)) {
    throw new Error(
      `The kong-lab scripts are not at KONG_LAB_SCRIPTS=${LAB_SCRIPTS} (no start.sh): set KONG_LAB_SCRIPTS to the folder holding start.sh, stop.sh and README.txt`,
    );
  }
  if (!existsSync(MAIN_JS)) throw new Error(`${MAIN_JS} is missing: run \`npx tsc -p .\` first`);
}

/** `kong version` of the lab, e.g. "3.9.3". */
export function kongVersion(): string {
  requireLab();
  const out = spawnSync('bash', ['-c', 'source ./env.sh && kong version'], {
    cwd: LAB_SCRIPTS,
    env: labEnv({}),
    encoding: 'utf8',
  });
  const m = /(\d+\.\d+\.\d+)/.exec(`${out.stdout}`);
  if (!m) throw new Error(`kong version failed: ${out.stdout}${out.stderr}`);
  return m[1]!;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Command lines of the live processes (zombies have none), by pid. */
function processes(): Array<{ pid: number; argv: string[] }> {
  const out: Array<{ pid: number; argv: string[] }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8')
        .split('\0')
        .filter((a) => a !== '');
      if (argv.length > 0) out.push({ pid: Number(entry), argv });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Why the lab is busy now (someone else's Kong or lab script), or undefined when it is free. */
export function labBusy(): string | undefined {
  const master = runningKongPid();
  if (master !== undefined) return `nginx master ${master} of ${NGINX_PID} is running`;
  const prefix = path.join(LAB, 'run', 'kong');
  const scripts = ['start.sh', 'stop.sh', 'test.sh', 'build.sh'].map((f) => path.join(LAB_SCRIPTS, f));
  for (const { pid, argv } of processes()) {
    const line = argv.join(' ');
    if (argv[0]?.startsWith('nginx') && line.includes(prefix))
      return `nginx process ${pid} of ${prefix} is running`;
    if (argv.some((a) => scripts.includes(a) || /kong-lab\/(start|stop|test|build)\.sh$/.test(a)))
      return `a Kong lab script is running (pid ${pid}: ${line})`;
  }
  return undefined;
}

const LAB_WAIT_MS = 1000 * (Number(process.env.KONG_LAB_WAIT_S) || 150);
/** Jest limit for a hook or test that starts Kong: the lab wait, start.sh and a margin. */
export const KONG_START_TIMEOUT_MS = LAB_WAIT_MS + 60_000;

/** Waits until the lab is free; fails with a message after KONG_LAB_WAIT_S. */
async function waitForLab(): Promise<void> {
  const deadline = Date.now() + LAB_WAIT_MS;
  let said = '';
  for (;;) {
    const busy = labBusy();
    if (busy === undefined) return;
    if (Date.now() > deadline) {
      throw new Error(
        `The Kong lab at ${LAB} is busy (${busy}) and stayed busy for ${LAB_WAIT_MS / 1000} s; ` +
          `the lab runs one Kong at a time. Wait for it, stop it (LAB=${LAB} ${path.join(LAB_SCRIPTS, 'stop.sh')}) ` +
          'if it is a leftover, or set KONG_LAB_WAIT_S.',
      );
    }
    if (busy !== said) {
      process.stderr.write(`[kong harness] Kong lab busy (${busy}); waiting up to ${LAB_WAIT_MS / 1000} s\n`);
      said = busy;
    }
    await sleep(1000);
  }
}

/** The nginx master of this lab's Kong, when one runs. */
function runningKongPid(): number | undefined {
  try {
    const pid = Number(readFileSync(NGINX_PID, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 && pidAlive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Environment for the lab scripts: ours, minus any KONG_* setting that would change Kong's config. */
function labEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^KONG_/i.test(k)) env[k] = v;
  return { ...env, LAB, ...extra };
}

interface ScriptResult {
  code: number | null;
  output: string;
}

function runScript(script: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<ScriptResult> {
  return new Promise((resolve) => {
    const child = spawn('bash', [path.join(LAB_SCRIPTS, script)], {
      cwd: LAB_SCRIPTS,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString('utf8');
    });
    child.stderr.on('data', (d: Buffer) => {
      output += d.toString('utf8');
    });
    const timer = setTimeout(() => {
      output += `\n[harness] ${script} timed out after ${timeoutMs} ms\n`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** Processes whose command line is `... main.js --socket-dir <socketDir>`, oldest first. */
export function suiteServerPids(socketDir: string): number[] {
  const found: Array<{ pid: number; started: number }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    let stat: string;
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    const i = argv.indexOf('--socket-dir');
    if (i < 0 || argv[i + 1] !== socketDir || !argv.some((a) => a.endsWith(path.join('kong', 'main.js'))))
      continue;
    // Field 22 (starttime) of /proc/PID/stat; fields after the ")" of the command name.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z') continue; // a zombie waiting for Kong to reap it
    found.push({ pid: Number(entry), started: Number(fields[19]) });
  }
  return found.sort((a, b) => a.started - b.started).map((p) => p.pid);
}

export interface KongStartOptions {
  /** DB-less config; a function receives the relay port (the route's service URL). */
  declarative: Record<string, unknown> | ((relayPort: number) => Record<string, unknown>);
  /** AIGW_* settings of the suite server (AIGW_RELAY_PORT and AIGW_LOG_FILE are added). */
  serverEnv?: Record<string, string>;
  /** Kong settings as KONG_* variables (they override kong.conf), e.g. KONG_NGINX_HTTP_CLIENT_MAX_BODY_SIZE. */
  kongEnv?: Record<string, string>;
}

export class KongStartError extends Error {
  constructor(
    message: string,
    readonly output: string,
  ) {
    super(message);
  }
}

/** A running Kong of the lab with the suite. */
export class KongLab {
  private stopped = false;

  private constructor(
    readonly dir: string,
    readonly socketDir: string,
    readonly logFile: string,
    readonly proxyPort: number,
    readonly adminPort: number,
    readonly relayPort: number,
    /** Byte offset of Kong's error.log when this Kong started (the lab's log is shared by starts). */
    private readonly errorLogOffset: number,
    readonly startOutput: string,
    /** The nginx master start.sh started. */
    readonly master: number,
  ) {}

  get proxyUrl(): string {
    return `http://127.0.0.1:${this.proxyPort}`;
  }

  get adminUrl(): string {
    return `http://127.0.0.1:${this.adminPort}`;
  }

  /** Starts Kong with the suite; throws KongStartError (with start.sh's output) when Kong refuses. */
  static async start(options: KongStartOptions): Promise<KongLab> {
    const prepared = await prepare(options);
    const { result, errorLogOffset, master } = await launch(prepared);
    if (result.code !== 0 || master === undefined) {
      await stopLab(master);
      await waitGone(prepared.socketDir);
      cleanupDir(prepared.dir);
      throw new KongStartError(
        `Kong did not start (start.sh exit ${result.code}):\n${result.output}\n${errorLogSince(errorLogOffset, 40)}`,
        result.output,
      );
    }
    const kong = new KongLab(
      prepared.dir,
      prepared.socketDir,
      prepared.logFile,
      prepared.proxyPort,
      prepared.adminPort,
      prepared.relayPort,
      errorLogOffset,
      result.output,
      master,
    );
    live.add(kong);
    try {
      await kong.waitReady();
    } catch (err) {
      await kong.stop();
      throw err;
    }
    return kong;
  }

  /** Runs start.sh with a config Kong should refuse; resolves with its exit code and output. */
  static async startExpectingFailure(
    options: KongStartOptions,
  ): Promise<ScriptResult & { errorLog: string }> {
    const prepared = await prepare(options);
    const { result, errorLogOffset, master } = await launch(prepared);
    const errorLog = errorLogSince(errorLogOffset, 200);
    await stopLab(master);
    await waitGone(prepared.socketDir);
    cleanupDir(prepared.dir);
    return { ...result, errorLog };
  }

  /** Pid of the suite server Kong runs now; waits up to `timeoutMs` for one to be up. */
  async suiteServerPid(timeoutMs = 15_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const pids = suiteServerPids(this.socketDir);
      if (pids.length > 0) return pids[pids.length - 1]!;
      if (Date.now() > deadline)
        throw new Error(`no suite server process for ${this.socketDir}\n${this.diagnostics()}`);
      await sleep(50);
    }
  }

  /** The suite server's JSON log lines (AIGW_LOG_FILE), parsed. */
  suiteLog(): Array<Record<string, unknown>> {
    if (!existsSync(this.logFile)) return [];
    return readFileSync(this.logFile, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return [];
        }
      });
  }

  /** Kong's error.log since this Kong started. */
  errorLog(lastLines = 1000): string {
    return errorLogSince(this.errorLogOffset, lastLines);
  }

  diagnostics(): string {
    const suite = existsSync(this.logFile)
      ? readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-20).join('\n')
      : '(no suite log)';
    return `--- Kong error.log (last lines) ---\n${this.errorLog(30)}\n--- suite server log (last lines) ---\n${suite}`;
  }

  /** Stops Kong (stop.sh) and waits until the suite server it started is gone. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    live.delete(this);
    await stopLab(this.master);
    await waitGone(this.socketDir);
    cleanupDir(this.dir);
  }

  private async waitReady(): Promise<void> {
    const deadline = Date.now() + 20_000;
    let last = '';
    for (;;) {
      try {
        // Kong answers an unknown path itself (404 "no Route matched"): the proxy is up.
        const res = await fetch(`${this.proxyUrl}/__aigw_harness_probe`);
        await res.arrayBuffer();
        const relay = await fetch(`http://127.0.0.1:${this.relayPort}/`).then(
          async (r) => {
            await r.arrayBuffer();
            return true;
          },
          () => false,
        );
        if (res.status === 404 && relay && suiteServerPids(this.socketDir).length > 0) return;
        last = `proxy ${res.status}, relay ${relay ? 'up' : 'down'}`;
      } catch (err) {
        last = String(err);
      }
      if (Date.now() > deadline)
        throw new Error(`Kong started but is not ready (${last})\n${this.diagnostics()}`);
      await sleep(100);
    }
  }
}

interface Prepared {
  dir: string;
  socketDir: string;
  logFile: string;
  proxyPort: number;
  adminPort: number;
  relayPort: number;
  psConf: string;
  kongYml: string;
  kongEnv: Record<string, string>;
}

async function prepare(options: KongStartOptions): Promise<Prepared> {
  requireLab();
  await waitForLab();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aigw-kong-'));
  const socketDir = path.join(dir, 'sockets');
  mkdirSync(socketDir);
  const logFile = path.join(dir, 'suite.log');
  const relayPort = await freePort();
  const proxyPort = await freePort();
  let adminPort = await freePort();
  while (adminPort === proxyPort || adminPort === relayPort) adminPort = await freePort();

  const defs = pluginServerDefs({
    socketDir,
    node: process.execPath,
    root: ROOT,
    env: { ...options.serverEnv, AIGW_RELAY_PORT: String(relayPort), AIGW_LOG_FILE: logFile },
  });
  const psConf = path.join(dir, 'ps.conf');
  writeFileSync(psConf, `${kongConfLines(defs).join('\n')}\n`);
  const declarative =
    typeof options.declarative === 'function' ? options.declarative(relayPort) : options.declarative;
  const kongYml = path.join(dir, 'kong.yml');
  writeFileSync(kongYml, toYaml(declarative));
  return {
    dir,
    socketDir,
    logFile,
    proxyPort,
    adminPort,
    relayPort,
    psConf,
    kongYml,
    kongEnv: options.kongEnv ?? {},
  };
}

async function launch(
  p: Prepared,
): Promise<{ result: ScriptResult; errorLogOffset: number; master: number | undefined }> {
  const errorLogOffset = existsSync(ERROR_LOG) ? statSync(ERROR_LOG).size : 0;
  installExitHook();
  const result = await runScript(
    'start.sh',
    labEnv({
      ...p.kongEnv,
      PLUGINSERVER_CONF: p.psConf,
      KONG_PLUGINS,
      KONG_DECLARATIVE: p.kongYml,
      NO_UPSTREAM: '1',
      PROXY_PORT: String(p.proxyPort),
      ADMIN_PORT: String(p.adminPort),
    }),
    START_TIMEOUT_MS,
  );
  // The nginx master start.sh started (none when `kong start` failed).
  return { result, errorLogOffset, master: runningKongPid() };
}

function errorLogSince(offset: number, lastLines: number): string {
  if (!existsSync(ERROR_LOG)) return '';
  const text = readFileSync(ERROR_LOG).subarray(offset).toString('utf8');
  return text.trimEnd().split('\n').slice(-lastLines).join('\n');
}

/**
 * stop.sh when `master` (the nginx master this harness started) still runs, then waits until it
 * is gone (`kong stop` returns while it still exits). Someone else's Kong is never touched.
 */
async function stopLab(master: number | undefined): Promise<void> {
  if (master === undefined || !pidAlive(master)) return;
  if (runningKongPid() !== master) {
    process.stderr.write(
      `[kong harness] ${NGINX_PID} no longer names our nginx ${master}: not running stop.sh\n`,
    );
    return;
  }
  const result = await runScript('stop.sh', labEnv({}), STOP_TIMEOUT_MS);
  if (result.code !== 0)
    process.stderr.write(`[kong harness] stop.sh exit ${result.code}: ${result.output}\n`);
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (pidAlive(master) && Date.now() < deadline) await sleep(50);
  if (pidAlive(master))
    process.stderr.write(`[kong harness] nginx master ${master} still runs after stop.sh\n`);
}

/** Waits until no suite server of this socket dir runs (Kong sends SIGTERM; drain is quick when idle). */
async function waitGone(socketDir: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (suiteServerPids(socketDir).length > 0 && Date.now() < deadline) await sleep(50);
  for (const pid of suiteServerPids(socketDir)) {
    process.stderr.write(`[kong harness] suite server ${pid} outlived Kong: SIGKILL\n`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

function cleanupDir(dir: string): void {
  if (process.env.AIGW_KONG_KEEP === '1') {
    process.stderr.write(`[kong harness] kept ${dir}\n`);
    return;
  }
  rmSync(dir, { recursive: true, force: true });
}

/** Kongs this process started and has not stopped: stopped at exit so a failed run leaves none. */
const live = new Set<KongLab>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    const ours = [...live].some((k) => runningKongPid() === k.master);
    if (!ours) return;
    spawnSync('bash', [path.join(LAB_SCRIPTS, 'stop.sh')], {
      cwd: LAB_SCRIPTS,
      env: labEnv({}),
      stdio: 'ignore',
    });
  });
}

/** The e2e scenarios' StartGateway for real Kong. */
export const startKongGateway: StartGateway = async (_mock, env, config): Promise<GatewayHandle> => {
  const kong = await KongLab.start({ declarative: config, serverEnv: env });
  return {
    url: kong.proxyUrl,
    kind: 'kong',
    suiteServerPid: () => kong.suiteServerPid(),
    diagnostics: () => kong.diagnostics(),
    close: () => kong.stop(),
  };
};
