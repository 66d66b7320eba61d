/**
 * Plugin servers as kong.conf declares them (`pluginserver_names`, `_socket`, `_start_cmd`,
 * `_query_cmd`), managed as kong/runloop/plugin_servers/process.lua does in Kong 3.9:
 *   - query_external_plugin_info: run query_cmd through /bin/sh (io.popen), stdout must be
 *     pure JSON, an array or `{Protocol, Plugins}`; only the FIRST entry is registered.
 *   - load_plugin_handler (kong/db/dao/plugins.lua): integer Priority, "x.y.z" Version.
 *   - pluginserver_timer: `exec <start_cmd>`, stdout+stderr merged and logged, respawned
 *     after any exit, at most once a second. Servers without start_cmd are external.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { SchemaField } from './schema';

export interface PluginServerDef {
  name: string;
  socket: string;
  start_cmd?: string;
  query_cmd: string;
}

/** One plugin as a plugin server describes it (`--dump`). */
export interface ExternalPluginInfo {
  name: string;
  priority: number;
  version: string;
  phases: string[];
  schema: { name?: string; fields?: Array<Record<string, SchemaField>> };
  server: PluginServerDef;
}

export class PluginServerStartError extends Error {
  override readonly name = 'PluginServerStartError';
}

/** Runs a command like io.popen: /bin/sh -c, stdout collected, exit status ignored. */
function popen(command: string, env: Record<string, string>): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', () =>
      resolve({ stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }),
    );
  });
}

/** query_external_plugin_info + the load-time checks of load_plugin_handler. */
export async function queryPluginInfo(
  def: PluginServerDef,
  env: Record<string, string>,
): Promise<ExternalPluginInfo> {
  const { stdout } = await popen(def.query_cmd, env);
  let dump: unknown;
  try {
    dump = JSON.parse(stdout);
  } catch (err) {
    throw new PluginServerStartError(
      `failed loading external plugins: failed decoding plugin info: ${(err as Error).message}`,
    );
  }
  if (typeof dump !== 'object' || dump === null) {
    throw new PluginServerStartError(
      `failed loading external plugins: not a plugin info table: \n${def.query_cmd}\n${stdout}`,
    );
  }
  const list = (dump as { Plugins?: unknown }).Plugins ?? dump;
  const info = (Array.isArray(list) ? list[0] : undefined) as Record<string, unknown> | undefined;
  if (!info || typeof info.Name !== 'string') {
    throw new PluginServerStartError(`failed loading external plugins: no plugin info from [${def.name}]`);
  }
  const name = info.Name;
  const priority = info.Priority;
  if (typeof priority !== 'number' || !Number.isInteger(priority)) {
    throw new PluginServerStartError(
      `Plugin "${name}" cannot be loaded because its PRIORITY field is not a valid integer number, got: "${luaTostring(priority)}".\n`,
    );
  }
  const version = info.Version;
  if (typeof version !== 'string' || !/^\d+(\.\d+){0,2}$/.test(version)) {
    throw new PluginServerStartError(
      `Plugin "${name}" cannot be loaded because its VERSION field does not follow the "x.y.z" format, got: "${luaTostring(version)}".\n`,
    );
  }
  const phases = Array.isArray(info.Phases)
    ? info.Phases.filter((p): p is string => typeof p === 'string')
    : [];
  const schema = (
    typeof info.Schema === 'object' && info.Schema !== null ? info.Schema : {}
  ) as ExternalPluginInfo['schema'];
  return { name, priority, version, phases, schema, server: def };
}

function luaTostring(value: unknown): string {
  return value === undefined || value === null ? 'nil' : String(value);
}

export interface ServerOutputLine {
  server: string;
  pid: number;
  line: string;
}

/** One managed server process with Kong's respawn loop. */
class ManagedServer {
  child?: ChildProcess;
  private stopped = false;
  private nextSpawn = 0;
  private timer?: NodeJS.Timeout;

  constructor(
    readonly def: PluginServerDef & { start_cmd: string },
    private readonly env: Record<string, string>,
    private readonly events: EventEmitter,
    private readonly minRespawnMs: number,
  ) {}

  start(): void {
    if (this.stopped) return;
    const wait = this.nextSpawn - Date.now();
    if (wait > 0) {
      this.timer = setTimeout(() => this.start(), wait);
      return;
    }
    this.events.emit('notice', `[pluginserver] starting pluginserver process for ${this.def.name}`);
    const child = spawn('/bin/sh', ['-c', `exec ${this.def.start_cmd}`], {
      env: this.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.nextSpawn = Date.now() + this.minRespawnMs;
    const pid = child.pid ?? 0;
    this.events.emit('spawn', { server: this.def.name, pid });
    // Kong merges stderr into stdout and logs each line as `[name:pid] line` (grab_logs).
    const partial = { stdout: '', stderr: '' };
    const onData = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
      const text = partial[stream] + chunk.toString('utf8');
      const lines = text.split('\n');
      partial[stream] = lines.pop() ?? '';
      for (const line of lines)
        if (line !== '') this.events.emit('output', { server: this.def.name, pid, line });
    };
    child.stdout?.on('data', onData('stdout'));
    child.stderr?.on('data', onData('stderr'));
    child.on('close', (code, signal) => {
      for (const rest of [partial.stdout, partial.stderr]) {
        if (rest !== '') this.events.emit('output', { server: this.def.name, pid, line: rest });
      }
      if (this.child === child) this.child = undefined;
      if (code === 127) {
        this.events.emit(
          'error-log',
          `[pluginserver] external pluginserver "${this.def.name}" start command "${this.def.start_cmd}" exited with "command not found"`,
        );
      } else {
        this.events.emit(
          'notice',
          `external pluginserver '${this.def.name}' terminated: exit ${code ?? signal}`,
        );
      }
      this.events.emit('exit', { server: this.def.name, pid, code, signal });
      if (!this.stopped) this.start();
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    child.kill('SIGTERM');
    const killTimer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(killTimer);
  }
}

export interface PluginServerManagerOptions {
  /** The environment spawned servers and query commands get; Kong gives them an empty one. */
  env?: Record<string, string>;
  /** Kong's pluginserver_timer waits 1 s between spawns. */
  minRespawnMs?: number;
}

/**
 * Queries every server, spawns those with a start_cmd, and keeps them alive.
 * Events: `spawn` {server,pid}, `exit` {server,pid,code,signal}, `output` ServerOutputLine,
 * `notice`/`error-log` (Kong log lines as strings).
 */
export class PluginServerManager extends EventEmitter {
  readonly plugins = new Map<string, ExternalPluginInfo>();
  readonly output: ServerOutputLine[] = [];
  private readonly managed: ManagedServer[] = [];
  private readonly env: Record<string, string>;

  constructor(
    readonly defs: PluginServerDef[],
    private readonly options: PluginServerManagerOptions = {},
  ) {
    super();
    this.env = { ...(options.env ?? {}) };
    this.on('output', (line: ServerOutputLine) => {
      this.output.push(line);
      if (this.output.length > 5000) this.output.shift();
    });
  }

  /** init: query all servers (fails like Kong refuses to start), then start the managed ones. */
  async start(): Promise<void> {
    this.emit('notice', '[pluginserver] loading external plugins info');
    for (const def of this.defs) {
      const info = await queryPluginInfo(def, this.env);
      this.plugins.set(info.name, info);
    }
    for (const def of this.defs) {
      if (def.start_cmd) {
        const server = new ManagedServer(
          def as PluginServerDef & { start_cmd: string },
          this.env,
          this,
          this.options.minRespawnMs ?? 1000,
        );
        this.managed.push(server);
        server.start();
      } else {
        this.emit(
          'notice',
          `[pluginserver] no start_cmd for '${def.name}', assuming external process management`,
        );
      }
    }
  }

  /** Pid of the running process of a managed server, if any. */
  pid(serverName: string): number | undefined {
    return this.managed.find((m) => m.def.name === serverName)?.child?.pid;
  }

  /** Output lines of one server (or all), as Kong would log them at INFO. */
  outputText(serverName?: string): string {
    return this.output
      .filter((l) => serverName === undefined || l.server === serverName)
      .map((l) => `[${l.server}:${l.pid}] ${l.line}`)
      .join('\n');
  }

  /** Resolves once every socket accepts a connection (Kong would just fail requests meanwhile); 0 skips. */
  async waitForSockets(timeoutMs = 15_000): Promise<void> {
    if (timeoutMs <= 0) return;
    const deadline = Date.now() + timeoutMs;
    for (const def of this.defs) {
      while (!(await canConnect(def.socket))) {
        if (Date.now() > deadline) {
          throw new PluginServerStartError(
            `plugin server '${def.name}' did not accept connections on ${def.socket}:\n${this.outputText(def.name)}`,
          );
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.managed.map((m) => m.stop()));
  }
}

export function canConnect(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection(socket);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
