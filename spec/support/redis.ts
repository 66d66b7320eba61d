/**
 * Real redis-server instances for tests, on free loopback ports, with no persistence.
 *
 * - `sharedRedisUrl()`: the instance global-setup.ts starts once per run. Tests share it, so
 *   each test file uses its own key prefix and never stops it or flushes it.
 * - `startRedis()`: a private instance for one test file, for fault tests: `stop()` it,
 *   `start()` it again on the same port, `pause()`/`resume()` it to make it hang.
 *
 * There is no skipping: without redis-server the run fails at once and says how to install it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const REDIS_NOT_FOUND =
  'redis-server not found on PATH. Install it: apt-get install -y redis-server (Debian/Ubuntu) or brew install redis (macOS)';

const STARTUP_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;

/** Absolute path of redis-server, or an error telling how to install it. */
export function findRedisServer(searchPath: string = process.env.PATH ?? ''): string {
  for (const dir of searchPath.split(path.delimiter)) {
    if (dir === '') continue;
    const file = path.join(dir, 'redis-server');
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // Not in this directory.
    }
  }
  throw new Error(REDIS_NOT_FOUND);
}

/** A loopback port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** The shared instance's URL; set by global-setup.ts (or by whoever runs the tests). */
export function sharedRedisUrl(): string {
  const url = process.env.AIGW_TEST_REDIS_URL;
  if (!url) {
    throw new Error(
      'AIGW_TEST_REDIS_URL is not set: run the tests with jest, whose globalSetup starts redis-server',
    );
  }
  return url;
}

export interface RedisServerOptions {
  /** Extra redis-server arguments, e.g. ['--requirepass', 'x'] or ['--cluster-enabled', 'yes']. */
  args?: string[];
  /** Run `redis-server --sentinel` (the config file is written to the instance's temp dir). */
  sentinelConfig?: string;
}

/** Live servers of this process, killed on exit so a failed test leaves no stray redis-server. */
const live = new Set<RedisServer>();
let exitHookInstalled = false;

export class RedisServer {
  private child: ChildProcess | undefined;
  private paused = false;

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly bin: string,
    private readonly options: RedisServerOptions,
  ) {}

  /** Starts an instance on a free port and waits until it answers. */
  static async create(options: RedisServerOptions = {}): Promise<RedisServer> {
    const bin = findRedisServer();
    let lastError: unknown;
    // A free port can be taken between probing and binding; try a few.
    for (let attempt = 0; attempt < 5; attempt++) {
      const server = new RedisServer(
        await freePort(),
        mkdtempSync(path.join(os.tmpdir(), 'aigw-redis-')),
        bin,
        options,
      );
      try {
        await server.start();
        return server;
      } catch (err) {
        lastError = err;
        await server.destroy();
      }
    }
    throw lastError;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** (Re)starts the server on its port; resolves once it answers PING. */
  async start(): Promise<void> {
    if (this.child) return;
    const args = this.options.sentinelConfig === undefined ? [] : [this.writeSentinelConfig(), '--sentinel'];
    args.push(
      ...['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      ...['--dir', this.dir, '--logfile', path.join(this.dir, 'redis.log'), '--daemonize', 'no'],
      ...(this.options.args ?? []),
    );
    const child = spawn(this.bin, args, { stdio: 'ignore' });
    this.child = child;
    this.paused = false;
    live.add(this);
    installExitHook();
    let exited: string | undefined;
    child.once('exit', (code, signal) => {
      exited = `exited with ${signal ?? `code ${code}`}`;
      if (this.child === child) this.child = undefined;
    });
    child.once('error', (err) => {
      exited = `failed to start: ${err.message}`;
    });

    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (exited !== undefined)
        throw new Error(`redis-server on port ${this.port} ${exited}${this.logTail()}`);
      if (await answers(this.port)) return;
      await sleep(20);
    }
    await this.stop();
    throw new Error(
      `redis-server on port ${this.port} did not answer within ${STARTUP_TIMEOUT_MS} ms${this.logTail()}`,
    );
  }

  /** Stops the server (SIGTERM, SIGKILL if it lingers) and waits until it is gone. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    if (this.paused) this.resume(); // a stopped process would not act on SIGTERM
    const gone = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await gone;
    clearTimeout(timer);
    this.child = undefined;
    live.delete(this);
  }

  /** Freezes the process (SIGSTOP): connections stay open and nothing answers, like a hung server. */
  pause(): void {
    this.child?.kill('SIGSTOP');
    this.paused = true;
  }

  resume(): void {
    this.child?.kill('SIGCONT');
    this.paused = false;
  }

  /** Stops the server and removes its temp dir. */
  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private writeSentinelConfig(): string {
    const file = path.join(this.dir, 'sentinel.conf');
    writeFileSync(file, this.options.sentinelConfig ?? '');
    return file;
  }

  private logTail(): string {
    try {
      const log = readFileSync(path.join(this.dir, 'redis.log'), 'utf8')
        .trim()
        .split('\n')
        .slice(-5)
        .join('\n');
      return log === '' ? '' : `; its log ends with:\n${log}`;
    } catch {
      return '';
    }
  }
}

/** Starts a private redis-server for this test file; `destroy()` it in afterAll. */
export function startRedis(options: RedisServerOptions = {}): Promise<RedisServer> {
  return RedisServer.create(options);
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const server of live) {
      try {
        if (server.pid !== undefined) process.kill(server.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  });
}

/** True when something on the port answers a RESP PING (even -NOAUTH counts: the server is up). */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    let reply = '';
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n')) done(reply.startsWith('+') || reply.startsWith('-'));
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
