/**
 * One request through Kong's phases (kong/init.lua Kong.rewrite/access/header_filter/log,
 * kong/runloop/handler.lua, kong/runloop/plugins_iterator.lua):
 *
 *   rewrite  global plugins only, descending priority; a Lua error → 500 (error page)
 *   access   route match (404), then plugins are collected in priority order with the
 *            consumer known so far (consumer-scoped configs apply after auth); responses
 *            are delayed: exit() stores the response and later handlers are skipped,
 *            a Lua error stores a 500; collection (hence the log list) goes on
 *   proxy    streamed to the service; connect failure → 502 (error page)
 *   log      after the response ended: each external log handler in its own task, on a
 *            snapshot taken when Kong's log phase ran
 */
import type http from 'node:http';
import type https from 'node:https';
import type { KongConfig, PluginEntity } from './declarative';
import { configRecordOf, DEFAULT_WORKSPACE_ID, type PluginSchemaInfo } from './declarative';
import { type ExternalPlugin, newTrace, type PluginConfig, type RequestTrace } from './external-plugin';
import { type KeyAuthDb, keyAuthAccess } from './key-auth';
import { fromJs, LuaError, LuaTable } from './lua';
import { CoroutineYield, type KongServices, NgxExit, type PdkCall, sendResponse } from './pdk';
import { proxyToUpstream, writeKongResponse } from './proxy';
import { type KongRequest, normalizePath } from './request-state';
import { errorBody, httpErrorMessage, responseType, SERVER_TOKENS } from './responses';
import type { Router } from './router';
import { type Json, selectView } from './schema';
import { takeLogSnapshot } from './serialize';
import { resolveVaultReference } from './vault';

export type Phase = 'rewrite' | 'access' | 'log';

/** A plugin handler as kong.db.plugins:get_handlers() lists it. */
export interface LoadedPlugin extends PluginSchemaInfo {
  name: string;
  priority: number;
  phases: ReadonlySet<string>;
  /** Runs one phase handler. Throws LuaError (handler failed) or NgxExit (response sent). */
  run(phase: Phase, conf: PluginConfig, call: PdkCall, trace: RequestTrace): Promise<void>;
}

export function externalLoadedPlugin(plugin: ExternalPlugin): LoadedPlugin {
  const fields = plugin.info.schema.fields ?? [];
  const eqNull = (name: string) => fields.some((f) => f[name] && (f[name] as { eq?: unknown }).eq === null);
  return {
    name: plugin.name,
    priority: plugin.priority,
    phases: plugin.phases,
    schema: plugin.info.schema,
    noConsumer: eqNull('consumer'),
    noRoute: eqNull('route'),
    noService: eqNull('service'),
    run: (phase, conf, call, trace) => plugin.handleEvent(conf, phase, call, trace),
  };
}

export function keyAuthLoadedPlugin(db: KeyAuthDb, schema: PluginSchemaInfo['schema']): LoadedPlugin {
  return {
    name: 'key-auth',
    priority: 1250,
    phases: new Set(['access']),
    schema,
    noConsumer: true,
    run: (phase, conf, call) =>
      phase === 'access' ? keyAuthAccess(call, conf as never, db) : Promise.resolve(),
  };
}

/** dao/plugins.lua sort_by_handler_priority: descending priority, equal priorities by name descending. */
export function sortByPriority(plugins: LoadedPlugin[]): LoadedPlugin[] {
  return [...plugins].sort((a, b) => {
    if (a.priority === b.priority && a.priority !== 0 && b.priority !== 0)
      return a.name < b.name ? 1 : a.name > b.name ? -1 : 0;
    return b.priority - a.priority;
  });
}

let seqCounter = 0;

/** plugins_iterator.lua new(): per plugin name, configs by route:service:consumer; globals per phase. */
export class PluginsIterator {
  readonly loaded: LoadedPlugin[];
  private readonly combos = new Map<string, Map<string, PluginConfig>>();
  readonly globals: Array<[LoadedPlugin, PluginConfig]> = [];

  constructor(
    config: KongConfig,
    loaded: LoadedPlugin[],
    env: Record<string, string | undefined>,
    log: KongServices['log'],
  ) {
    this.loaded = sortByPriority(loaded);
    const byName = new Map(loaded.map((p) => [p.name, p]));
    for (const entity of config.plugins) {
      const plugin = byName.get(entity.name);
      if (!plugin || !entity.enabled) continue;
      if (!entity.protocols.some((p) => ['http', 'https', 'grpc', 'grpcs'].includes(p))) continue;
      const cfg = pluginConfig(entity, plugin, env, log);
      const key = compoundKey(entity.route?.id, entity.service?.id, entity.consumer?.id);
      if (!this.combos.has(entity.name)) this.combos.set(entity.name, new Map());
      this.combos.get(entity.name)?.set(key, cfg);
    }
    for (const plugin of this.loaded) {
      const global = this.combos.get(plugin.name)?.get(compoundKey());
      if (global) this.globals.push([plugin, global]);
    }
  }

  /** lookup_cfg: the most specific config for route/service/consumer, else the global one. */
  lookup(
    plugin: LoadedPlugin,
    routeId?: string,
    serviceId?: string,
    consumerId?: string,
  ): PluginConfig | undefined {
    const combos = this.combos.get(plugin.name);
    if (!combos) return undefined;
    const r = plugin.noRoute ? undefined : routeId;
    const s = plugin.noService ? undefined : serviceId;
    const c = plugin.noConsumer ? undefined : consumerId;
    const tries: Array<[string | undefined, string | undefined, string | undefined]> = [];
    if (r && s && c) tries.push([r, s, c]);
    if (r && c) tries.push([r, undefined, c]);
    if (s && c) tries.push([undefined, s, c]);
    if (r && s) tries.push([r, s, undefined]);
    if (c) tries.push([undefined, undefined, c]);
    if (r) tries.push([r, undefined, undefined]);
    if (s) tries.push([undefined, s, undefined]);
    tries.push([undefined, undefined, undefined]);
    for (const [a, b, d] of tries) {
      const cfg = combos.get(compoundKey(a, b, d));
      if (cfg) return cfg;
    }
    return undefined;
  }
}

function compoundKey(route?: string, service?: string, consumer?: string): string {
  return `${route ?? ''}:${service ?? ''}:${consumer ?? ''}`;
}

/** get_plugin_config: the config as read from the DB (select), plus Kong's extra keys. */
function pluginConfig(
  entity: PluginEntity,
  plugin: LoadedPlugin,
  env: Record<string, string | undefined>,
  log: KongServices['log'],
): PluginConfig {
  const selected = selectView(configRecordOf(plugin), entity.config, (reference) => {
    const r = resolveVaultReference(reference, env);
    if (r.error)
      log('warn', `unable to resolve reference ${reference} (${r.error})`, { plugin: entity.name });
    return r.value;
  });
  const cfg: { [key: string]: Json | undefined } = { ...selected };
  cfg.route_id = entity.route?.id;
  cfg.service_id = entity.service?.id;
  cfg.consumer_id = entity.consumer?.id;
  cfg.plugin_instance_name = entity.instance_name;
  cfg.__plugin_id = entity.id;
  cfg.__ws_id = DEFAULT_WORKSPACE_ID;
  cfg.__key__ = `plugins:${entity.name}:${entity.route?.id ?? ''}:${entity.service?.id ?? ''}:${entity.consumer?.id ?? ''}::${DEFAULT_WORKSPACE_ID}`;
  seqCounter += 1; // ngx.shared.kong:incr("plugins_iterator:__seq__", 1, 0, 0)
  cfg.__seq__ = seqCounter;
  for (const k of Object.keys(cfg)) if (cfg[k] === undefined) delete cfg[k];
  return cfg as unknown as PluginConfig;
}

export interface RunloopDeps {
  kong: KongServices;
  agents: { http: http.Agent; https: https.Agent };
}

/** The state one configuration version serves with. */
export interface ServingConfig {
  config: KongConfig;
  router: Router;
  iterator: PluginsIterator;
}

/** error_handlers.lua BODIES. */
const ERROR_PAGE_STATUSES = new Set([400, 404, 405, 408, 411, 412, 413, 414, 417, 494, 500, 502, 503, 504]);

/** error_handlers.lua: the body nginx's error page gets (Accept, then Content-Type, else text/plain). */
function sendErrorPage(req: KongRequest, status: number): void {
  const accept = req.headers.first('accept') ?? req.headers.first('content-type') ?? 'text/plain';
  const message = ERROR_PAGE_STATUSES.has(status)
    ? httpErrorMessage(status)
    : `The upstream server responded with ${status}`;
  const mime = responseType(accept);
  req.ctx.delayResponse = false;
  req.ctx.delayedResponse = undefined;
  req.responseHeaders.clear('Content-Length');
  sendResponse(
    req,
    status === 494 ? 400 : status,
    errorBody(mime, message, req.id),
    fromJs({ 'Content-Type': mime }),
    () => undefined,
  );
}

/** kong.response.error as Kong calls it itself (404 no route, flush of a Lua error). */
function kongError(req: KongRequest, status: number, message: string): void {
  const mime = responseType(req.headers.getAll('accept').join(','));
  sendResponse(
    req,
    status,
    errorBody(mime, message, req.id),
    fromJs({ 'Content-Type': mime }),
    () => undefined,
  );
}

export interface ServeResult {
  trace: RequestTrace;
  /** Resolves when every log handler finished. */
  logDone: Promise<void>;
}

export async function serveRequest(
  req: KongRequest,
  res: http.ServerResponse,
  serving: ServingConfig,
  deps: RunloopDeps,
): Promise<ServeResult> {
  const trace = newTrace();
  const { iterator, router } = serving;
  const callFor = (plugin: LoadedPlugin, cfg: PluginConfig): PdkCall => ({
    req,
    phase: req.phase,
    plugin: { name: plugin.name, id: cfg.__plugin_id },
    kong: deps.kong,
  });
  const logErr = (message: string, plugin?: string) =>
    deps.kong.log('err', message, { plugin, requestId: req.id });
  let collected: Array<[LoadedPlugin, PluginConfig]> | undefined;
  let responded = false;

  try {
    // ---------------------------------------------------------------- rewrite
    req.phase = 'rewrite';
    for (const [plugin, cfg] of iterator.globals) {
      if (!plugin.phases.has('rewrite')) continue;
      req.ctx.pluginId = cfg.__plugin_id;
      await plugin.run('rewrite', cfg, callFor(plugin, cfg), trace);
    }

    // ---------------------------------------------------------------- access
    req.phase = 'access';
    req.ctx.accessStart = Date.now();
    const match = router.match({
      method: req.method,
      path: normalizePath(req.rawPath),
      host: req.host,
      hostHeader: req.headers.first('host') ?? '',
      headers: (n) => req.headers.getAll(n),
    });
    if (!match) {
      kongError(req, 404, 'no Route matched with those values');
      throw new NgxExit();
    }
    const route = match.route;
    if (!route.protocols.includes('http')) {
      kongError(req, 426, 'Please use HTTPS protocol');
      req.responseHeaders.set('Connection', ['Upgrade']);
      req.responseHeaders.set('Upgrade', ['TLS/1.2, HTTP/1.1']);
      throw new NgxExit();
    }
    req.ctx.route = fromJs(route) as LuaTable;
    req.ctx.routeId = route.id;
    if (match.service) {
      req.ctx.service = fromJs(match.service) as LuaTable;
      req.ctx.serviceId = match.service.id;
      const b = req.ctx.balancer;
      b.retries = match.service.retries;
      b.connectTimeout = match.service.connect_timeout;
      b.writeTimeout = match.service.write_timeout;
      b.readTimeout = match.service.read_timeout;
      req.upstreamScheme = match.service.protocol === 'https' ? 'https' : 'http';
    }
    req.ctx.uriCaptures = match.uriCaptures;
    req.upstreamUri = match.upstreamUri;
    if (match.upstreamHost) req.upstreamHost = match.upstreamHost;
    setForwardedHeaders(req, match.prefix);

    req.ctx.delayResponse = true;
    collected = [];
    for (const plugin of iterator.loaded) {
      const consumer = req.ctx.authenticatedConsumer;
      const consumerId =
        consumer instanceof LuaTable ? String(consumer.get('id') ?? '') || undefined : undefined;
      const cfg = iterator.lookup(plugin, route.id, match.service?.id, consumerId);
      if (!cfg) continue;
      if (plugin.phases.has('log')) collected.push([plugin, cfg]);
      if (!plugin.phases.has('access') || req.ctx.delayedResponse) continue;
      req.ctx.pluginId = cfg.__plugin_id;
      try {
        await plugin.run('access', cfg, callFor(plugin, cfg), trace);
      } catch (err) {
        if (err instanceof NgxExit) throw err;
        if (err instanceof CoroutineYield) continue;
        logErr(err instanceof LuaError ? err.message : String(err), plugin.name);
        req.ctx.delayedResponse = {
          status: 500,
          body: 'An unexpected error occurred',
          headers: undefined,
          viaCallback: false,
        };
        req.ctx.unexpected = true;
      }
    }
    req.ctx.delayResponse = false;
    req.ctx.accessEndedAt = Date.now();
    const delayed = req.ctx.delayedResponse;
    if (delayed) {
      req.ctx.responseLatency = Date.now() - req.startTime;
      if (delayed.viaCallback)
        sendResponse(req, delayed.status, delayed.body, delayed.headers, (m) => logErr(m));
      else kongError(req, delayed.status, String(delayed.body));
      throw new NgxExit();
    }
    if (!match.service) {
      kongError(req, 503, 'no Service found with those values');
      throw new NgxExit();
    }

    // access.after: the query string joins the upstream URI after plugins had their say.
    if (req.args !== '' || req.requestUri.endsWith('?')) req.upstreamUri += `?${req.args}`;
    req.ctx.proxied = true;
    req.phase = 'header_filter';
    const outcome = await proxyToUpstream(req, res, match.service, deps.agents);
    if (outcome.kind === 'upstream-error') {
      logErr(`${outcome.reason}, request: "${req.method} ${req.requestUri}"`);
      req.ctx.unexpected = true;
      sendErrorPage(req, outcome.status);
      writeProxiedError(res, req);
    }
    responded = true;
  } catch (err) {
    if (!(err instanceof NgxExit)) {
      // A Lua error outside the collecting iterator (rewrite, or a driver bug): nginx's 500 error page.
      logErr(err instanceof LuaError ? err.message : `kong driver: ${(err as Error).stack ?? String(err)}`);
      req.ctx.unexpected = true;
      req.responseHeaders.entries.splice(0);
      sendErrorPage(req, 500);
    }
  }
  if (!responded && !res.headersSent) {
    req.phase = 'header_filter';
    writeKongResponse(res, req);
  }

  // ---------------------------------------------------------------- log
  await new Promise<void>((resolve) => {
    if (res.writableFinished || res.destroyed) resolve();
    else {
      res.once('finish', () => resolve());
      res.once('close', () => resolve());
    }
  });
  req.phase = 'log';
  const logList = collected ?? iterator.globals;
  const tasks: Array<Promise<void>> = [];
  for (const [plugin, cfg] of logList) {
    if (!plugin.phases.has('log')) continue;
    const saved = takeLogSnapshot(req, plugin.name, cfg.__plugin_id);
    const call: PdkCall = {
      req,
      phase: 'log',
      plugin: { name: plugin.name, id: cfg.__plugin_id },
      saved,
      kong: deps.kong,
    };
    // ngx.timer.at(0, ...): runs after Kong's log phase, concurrently with the other timers.
    tasks.push(
      new Promise<void>((resolve) => setImmediate(resolve))
        .then(() => plugin.run('log', cfg, call, trace))
        .catch((err: unknown) => {
          if (!(err instanceof CoroutineYield)) {
            logErr(
              `lua entry thread aborted: runtime error: ${err instanceof LuaError ? err.message : String(err)}`,
              plugin.name,
            );
          }
        }),
    );
  }
  return { trace, logDone: Promise.all(tasks).then(() => undefined) };
}

/** An error page after KONG_PROXIED: header_filter adds the proxy headers too. */
function writeProxiedError(res: http.ServerResponse, req: KongRequest): void {
  const h = req.responseHeaders;
  h.set('X-Kong-Upstream-Latency', [String(req.ctx.waitingTime ?? 0)]);
  h.set('X-Kong-Proxy-Latency', [String(req.ctx.proxyLatency ?? 0)]);
  h.set('Via', [`1.1 ${SERVER_TOKENS}`]);
  h.set('Server', [SERVER_TOKENS]);
  h.set('X-Kong-Request-Id', [req.id]);
  const body = req.exitBody ?? Buffer.alloc(0);
  const flat: string[] = [];
  for (const [n, v] of h.entries) flat.push(n, v);
  res.writeHead(req.status, flat);
  req.headersSent = true;
  res.end(body);
  req.bytesSent += body.length;
}

/** runloop/handler.lua access.before: X-Forwarded-* (trusted_ips NONE: the client's own values). */
function setForwardedHeaders(req: KongRequest, prefix: string | undefined): void {
  const xff = req.headers.first('x-forwarded-for');
  const via = req.headers.first('via');
  req.upstreamForwarded = {
    upstream_x_forwarded_for: xff ? `${xff}, ${req.client.remoteAddr}` : req.client.remoteAddr,
    upstream_x_forwarded_proto: req.scheme,
    upstream_x_forwarded_host: req.host,
    upstream_x_forwarded_port: String(req.client.serverPort),
    upstream_x_forwarded_path: req.rawPath,
    upstream_x_forwarded_prefix: prefix !== undefined && prefix !== '/' ? prefix : undefined,
    upstream_via: via ? `${via}, 1.1 ${SERVER_TOKENS}` : `1.1 ${SERVER_TOKENS}`,
  };
}
