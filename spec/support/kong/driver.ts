/**
 * KongDriver: a Kong 3.9 emulator for tests and the dev gateway. It reads plugin-server
 * definitions as kong.conf has them, loads a declarative kong.yml, listens on HTTP and
 * runs each request through Kong's phases against the real plugin servers over their
 * Unix sockets. See KONG.md §11 for the behaviours it reproduces.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { type KongConfig, loadDeclarative, readDeclarative } from './declarative';
import { ExternalPlugin, type PluginTrace } from './external-plugin';
import { KEY_AUTH_SCHEMA } from './key-auth';
import type { KongServices, LogLevel } from './pdk';
import { type PluginServerDef, PluginServerManager } from './plugin-servers';
import { KongRequest } from './request-state';
import { Router } from './router';
import { RpcPool } from './rpc';
import {
  externalLoadedPlugin,
  keyAuthLoadedPlugin,
  type LoadedPlugin,
  PluginsIterator,
  type ServingConfig,
  serveRequest,
} from './runloop';

export interface KongDriverOptions {
  /** kong.conf's plugin servers: `[{ name, socket, start_cmd?, query_cmd }]`. */
  pluginServers: PluginServerDef[];
  /** A kong.yml / kong.json path, or the parsed object. */
  declarative: unknown;
  /** Kong's own environment: what `{vault://env/NAME}` references resolve against. */
  env?: Record<string, string | undefined>;
  /** The environment spawned plugin servers and query commands get (Kong gives them none). */
  pluginServerEnv?: Record<string, string>;
  /** nginx_http_client_body_buffer_size in bytes (default 8k); 0 keeps every body in memory. */
  clientBodyBufferSize?: number;
  /** A fixed HTTP listen address; default 127.0.0.1 on a free port. */
  listen?: { host: string; port: number };
  /** Socket read/connect timeout of the RPC (Kong: nginx's 60 s default). */
  rpcTimeoutMs?: number;
  /** Minimum time between two spawns of a server (Kong: 1 s). */
  minRespawnMs?: number;
  /** How long start() waits for every plugin server socket (default 15 s; 0: do not wait). */
  socketWaitMs?: number;
}

export interface KongLogLine {
  time: number;
  level: LogLevel;
  message: string;
  plugin?: string;
  requestId?: string;
}

/** Round trips and PDK calls of one request, after its log handlers finished. */
export interface RequestStats {
  requestId: string;
  method: string;
  path: string;
  status: number;
  /** HandleEvent + every Step, all plugins, all phases. */
  roundTrips: number;
  plugins: Record<string, PluginTrace>;
  /** StartInstance/CloseInstance calls this request caused. */
  instanceRpcs: number;
  durationMs: number;
}

export interface DriverRequest {
  method?: string;
  path: string;
  headers?: Record<string, string | string[]>;
  /** An object is sent as JSON (with a JSON content type unless one is given). */
  body?: string | Buffer | object;
}

export interface DriverResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** False when the connection ended before the response was complete (a cut stream). */
  complete: boolean;
  requestId: string;
  text(): string;
  json<T = unknown>(): T;
  /** Resolves after the request's log handlers ran. */
  stats(): Promise<RequestStats>;
}

const MAX_KEPT = 2000;

export class KongDriver extends EventEmitter {
  readonly logs: KongLogLine[] = [];
  lastStats?: RequestStats;
  readonly nodeId = randomUUID();
  private serving!: ServingConfig;
  private server?: http.Server;
  private readonly statsWaiters = new Map<
    string,
    { promise: Promise<RequestStats>; resolve: (s: RequestStats) => void }
  >();
  private readonly agents = {
    http: new http.Agent({ keepAlive: true }),
    https: new https.Agent({ keepAlive: true }),
  };
  private readonly plugins = new Map<string, LoadedPlugin>();
  private readonly externals: ExternalPlugin[] = [];
  private readonly rpc = new RpcPool();
  private readonly services: KongServices;
  private address?: AddressInfo;

  private constructor(
    private readonly options: KongDriverOptions,
    readonly pluginServers: PluginServerManager,
  ) {
    super();
    const env = options.env ?? {};
    this.services = {
      log: (level, message, meta) => this.log(level, message, meta.plugin, meta.requestId),
      findConsumer: (key, byUsername) => this.findConsumer(key, byUsername),
      nodeId: this.nodeId,
      hostname: os.hostname(),
      env,
      clientBodyBufferSize: options.clientBodyBufferSize ?? 8192,
    };
  }

  static async start(options: KongDriverOptions): Promise<KongDriver> {
    const manager = new PluginServerManager(options.pluginServers, {
      env: options.pluginServerEnv ?? {},
      minRespawnMs: options.minRespawnMs,
    });
    const driver = new KongDriver(options, manager);
    manager.on('notice', (m: string) => driver.log('notice', m));
    manager.on('error-log', (m: string) => driver.log('err', m));
    try {
      await manager.start();
      driver.loadPlugins();
      driver.serving = driver.buildServing(readDeclarative(options.declarative));
      await manager.waitForSockets(options.socketWaitMs);
      await driver.listen();
    } catch (err) {
      await manager.stop();
      throw err;
    }
    return driver;
  }

  /** http://host:port of the proxy listener. */
  get url(): string {
    const a = this.address;
    if (!a) throw new Error('KongDriver is not listening');
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return `http://${host}:${a.port}`;
  }

  get config(): KongConfig {
    return this.serving.config;
  }

  /** Stats of the requests served so far (most recent last). */
  get stats(): RequestStats[] {
    return this.allStats;
  }

  private readonly allStats: RequestStats[] = [];

  /** DB-less reload: a new config version; plugin instances restart on next use (`__seq__` changes). */
  async reload(declarative: unknown): Promise<void> {
    this.serving = this.buildServing(readDeclarative(declarative));
  }

  /** Captured kong.log / Kong error-log lines, optionally for one plugin. */
  logText(plugin?: string): string {
    return this.logs
      .filter((l) => plugin === undefined || l.plugin === plugin)
      .map((l) => `[${l.level}]${l.plugin ? ` [${l.plugin}]` : ''} ${l.message}`)
      .join('\n');
  }

  /** Waits for a request's log phase and returns its stats. */
  statsFor(requestId: string): Promise<RequestStats> {
    return this.waiter(requestId).promise;
  }

  async request(r: DriverRequest): Promise<DriverResponse> {
    const headers: Record<string, string | string[]> = { ...(r.headers ?? {}) };
    let body: Buffer | undefined;
    if (Buffer.isBuffer(r.body)) body = r.body;
    else if (typeof r.body === 'string') body = Buffer.from(r.body);
    else if (r.body !== undefined) {
      body = Buffer.from(JSON.stringify(r.body));
      if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type'))
        headers['Content-Type'] = 'application/json';
    }
    const url = new URL(r.path, this.url);
    return new Promise<DriverResponse>((resolve, reject) => {
      const req = http.request(
        url,
        { method: r.method ?? (body ? 'POST' : 'GET'), headers, agent: false },
        (res) => {
          const chunks: Buffer[] = [];
          let complete = false;
          res.on('data', (c: Buffer) => chunks.push(c));
          const done = () => {
            const buf = Buffer.concat(chunks);
            const requestId = String(res.headers['x-kong-request-id'] ?? '');
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: buf,
              complete,
              requestId,
              text: () => buf.toString('utf8'),
              json: <T>() => JSON.parse(buf.toString('utf8')) as T,
              stats: () => this.statsFor(requestId),
            });
          };
          res.on('end', () => {
            complete = res.complete;
            done();
          });
          res.on('error', () => undefined);
          res.on('close', () => {
            if (!complete) done();
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  async close(): Promise<void> {
    const server = this.server;
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    this.agents.http.destroy();
    this.agents.https.destroy();
    this.rpc.close();
    await this.pluginServers.stop();
  }

  // ------------------------------------------------------------------ internals

  private log(level: LogLevel, message: string, plugin?: string, requestId?: string): void {
    const line: KongLogLine = { time: Date.now(), level, message, plugin, requestId };
    this.logs.push(line);
    if (this.logs.length > 10 * MAX_KEPT) this.logs.shift();
    this.emit('log', line);
  }

  private loadPlugins(): void {
    this.plugins.set('key-auth', keyAuthLoadedPlugin(this.keyAuthDb(), KEY_AUTH_SCHEMA));
    for (const info of this.pluginServers.plugins.values()) {
      if (this.plugins.has(info.name)) {
        // Lua plugins win a name clash (dao/plugins.lua load_plugin_handler).
        this.log(
          'notice',
          `plugin '${info.name}' of plugin server '${info.server.name}' is shadowed by a bundled Lua plugin`,
        );
        continue;
      }
      if (info.phases.includes('response')) {
        // Kong would buffer every response this plugin applies to (KONG.md §3); not emulated.
        this.log(
          'warn',
          `kong driver: plugin '${info.name}' declares a response handler, which is not run here`,
        );
      }
      const ext = new ExternalPlugin(info, {
        log: (level, message, meta) => this.log(level, message, meta.plugin, meta.requestId),
        rpcTimeoutMs: this.options.rpcTimeoutMs,
        rpc: this.rpc,
      });
      this.externals.push(ext);
      this.plugins.set(info.name, externalLoadedPlugin(ext));
    }
  }

  private buildServing(input: unknown): ServingConfig {
    const config = loadDeclarative(input, this.plugins);
    return {
      config,
      router: new Router(config),
      iterator: new PluginsIterator(
        config,
        [...this.plugins.values()],
        this.options.env ?? {},
        this.services.log,
      ),
    };
  }

  private keyAuthDb() {
    return {
      credentialByKey: (key: string) =>
        this.serving.config.keyauthCredentials.find((c) => c.key === key) as
          | Record<string, unknown>
          | undefined,
      consumer: (key: string, byUsername: boolean) => this.findConsumer(key, byUsername),
    };
  }

  private findConsumer(key: string, byUsername: boolean): Record<string, unknown> | undefined {
    const consumers = this.serving.config.consumers;
    const found =
      consumers.find((c) => c.id === key) ??
      (byUsername ? consumers.find((c) => c.username === key) : undefined);
    return found as Record<string, unknown> | undefined;
  }

  private waiter(requestId: string) {
    let w = this.statsWaiters.get(requestId);
    if (!w) {
      let resolve!: (s: RequestStats) => void;
      const promise = new Promise<RequestStats>((r) => {
        resolve = r;
      });
      w = { promise, resolve };
      this.statsWaiters.set(requestId, w);
      if (this.statsWaiters.size > MAX_KEPT) {
        const oldest = this.statsWaiters.keys().next().value;
        if (oldest !== undefined) this.statsWaiters.delete(oldest);
      }
    }
    return w;
  }

  private async listen(): Promise<void> {
    const server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.log('err', `kong driver: ${(err as Error).stack ?? String(err)}`);
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
    server.keepAliveTimeout = 60_000; // keepalive_timeout 60s
    this.server = server;
    const listen = this.options.listen ?? { host: '127.0.0.1', port: 0 };
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listen.port, listen.host, () => resolve());
    });
    this.address = server.address() as AddressInfo;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    // proxy_request_buffering on: nginx reads the whole body before Kong runs.
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const headers: Array<[string, string]> = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2)
      headers.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
    const local = this.address?.port ?? 0;
    const kreq = new KongRequest(
      {
        remoteAddr: req.socket.remoteAddress ?? '127.0.0.1',
        remotePort: req.socket.remotePort ?? 0,
        serverPort: local,
      },
      {
        method: req.method ?? 'GET',
        url: req.url ?? '/',
        headers,
        body: Buffer.concat(chunks),
        bodyBufferSize: this.services.clientBodyBufferSize,
      },
    );
    const waiter = this.waiter(kreq.id);
    const serving = this.serving;
    const { trace, logDone } = await serveRequest(kreq, res, serving, {
      kong: this.services,
      agents: this.agents,
    });
    await logDone;
    const plugins = trace.plugins;
    const stats: RequestStats = {
      requestId: kreq.id,
      method: req.method ?? 'GET',
      path: kreq.requestUri,
      status: kreq.status,
      roundTrips: Object.values(plugins).reduce((n, p) => n + p.roundTrips, 0),
      plugins,
      instanceRpcs: trace.instanceRpcs,
      durationMs: Date.now() - kreq.startTime,
    };
    this.lastStats = stats;
    this.allStats.push(stats);
    if (this.allStats.length > MAX_KEPT) this.allStats.shift();
    waiter.resolve(stats);
    this.emit('request', stats);
  }
}
