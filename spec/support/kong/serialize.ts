/**
 * kong.log.serialize() (kong/pdk/log.lua, http subsystem) and the per-plugin log snapshot
 * that kong/runloop/plugin_servers/plugin.lua build_phases hands to each external log
 * handler's timer.
 */
import { fromJs, isLuaString, LUA_NULL, LuaError, LuaTable, type LuaValue, luaToStringLoose } from './lua';
import type { LogSnapshot } from './pdk';
import { decodeArgs, type KongRequest } from './request-state';

const SOURCE_NAMES: Record<string, string> = { error: 'kong', exit: 'kong', service: 'upstream' };

function source(req: KongRequest): string {
  const c = req.ctx;
  const type = c.unexpected ? 'error' : c.exited ? 'exit' : c.proxied ? 'service' : 'error';
  return SOURCE_NAMES[type];
}

/** The table kong.log.serialize() returns, with kong.log.set_serialize_value edits applied. */
export function buildSerializeTable(req: KongRequest): LuaTable {
  const c = req.ctx;
  const requestHeaders = req.headers.toLuaTable();
  if (requestHeaders.get('authorization') !== undefined) requestHeaders.set('authorization', 'REDACTED');
  if (requestHeaders.get('proxy-authorization') !== undefined)
    requestHeaders.set('proxy-authorization', 'REDACTED');

  const request = new LuaTable();
  request.set('id', req.id);
  request.set('uri', req.requestUri);
  request.set('url', `${req.scheme}://${req.host}:${req.client.serverPort}${req.requestUri}`);
  request.set('querystring', decodeArgs(req.args));
  request.set('method', req.method);
  request.set('headers', requestHeaders);
  request.set('size', req.requestLength);

  const response = new LuaTable();
  response.set('status', req.status);
  response.set('headers', req.responseHeaders.toLuaTable());
  response.set('size', req.bytesSent);

  const latencies = new LuaTable();
  latencies.set('kong', c.proxyLatency ?? c.responseLatency ?? 0);
  latencies.set('proxy', c.waitingTime ?? -1);
  latencies.set('request', Date.now() - req.startTime);
  latencies.set('receive', c.receiveTime ?? 0);

  const root = new LuaTable();
  root.set('request', request);
  root.set('upstream_uri', req.upstreamUri);
  root.set('upstream_status', req.upstreamStatus);
  root.set('response', response);
  root.set('latencies', latencies);
  if (c.balancer.tries.length > 0) root.set('tries', fromJs(c.balancer.tries));
  const credential = c.authenticatedCredential;
  if (credential instanceof LuaTable) {
    // build_authenticated_entity reads credential.consumer_id, then ctx.authenticate_consumer (sic):
    // with 3.x credentials neither exists, so only the id is logged.
    const entity = new LuaTable();
    entity.set('id', credential.get('id'));
    entity.set('consumer_id', credential.get('consumer_id'));
    root.set('authenticated_entity', entity);
  }
  if (c.route) root.set('route', deepCopy(c.route));
  if (c.service) root.set('service', deepCopy(c.service));
  if (c.authenticatedConsumer instanceof LuaTable) root.set('consumer', deepCopy(c.authenticatedConsumer));
  root.set('client_ip', req.client.remoteAddr);
  root.set('started_at', c.processingStart);
  root.set('source', source(req));
  root.set('workspace', c.route?.get('ws_id'));
  root.set('workspace_name', 'default');
  return editResult(root, c.serializeValues);
}

function deepCopy(value: LuaValue): LuaValue {
  if (!(value instanceof LuaTable)) return value;
  const t = new LuaTable(value.arrayHint);
  for (const [k, v] of value.entries()) t.set(k, deepCopy(v));
  return t;
}

function isValidValue(value: LuaValue, seen = new Set<LuaTable>()): boolean {
  if (value === undefined || value === LUA_NULL) return true;
  if (typeof value === 'number' || typeof value === 'boolean' || isLuaString(value)) return true;
  if (!(value instanceof LuaTable) || seen.has(value)) return false;
  seen.add(value);
  for (const [, v] of value.entries()) if (!isValidValue(v, seen)) return false;
  return true;
}

/** log.lua edit_result: dotted keys create sub-tables for set/add; replace needs the chain. */
function editResult(root: LuaTable, values: KongRequest['ctx']['serializeValues']): LuaTable {
  for (const item of values) {
    if (!isValidValue(item.value)) {
      throw new LuaError(
        'value must be nil, a number, string, boolean or a non-self-referencial table containing numbers, string and booleans',
      );
    }
    const parts = item.key.split('.');
    const last = parts.pop() as string;
    let node: LuaTable | undefined = root;
    for (const part of parts) {
      const next: LuaValue = node.get(part);
      if (next === undefined) {
        if (item.mode === 'replace') {
          node = undefined;
          break;
        }
        const created = new LuaTable();
        node.set(part, created);
        node = created;
      } else if (next instanceof LuaTable) node = next;
      else {
        throw new LuaError(
          `The key '${item.key}' could not be used as a serialize value. Subkey '${part}' is not a table. It's ${luaToStringLoose(next)}`,
        );
      }
    }
    if (!node) continue;
    const existing = node.get(last);
    if (
      item.mode === 'set' ||
      (item.mode === 'add' && existing === undefined) ||
      (item.mode === 'replace' && existing !== undefined)
    ) {
      node.set(last, item.value);
    }
  }
  return root;
}

/** build_phases' log wrapper: what the timer of one external log handler will see. */
export function takeLogSnapshot(req: KongRequest, pluginName: string, pluginId: string): LogSnapshot {
  const ngxCtx = new LuaTable();
  for (const [k, v] of req.ngxCtx.entries()) ngxCtx.set(k, v);
  return {
    pluginName,
    serializeData: buildSerializeTable(req),
    ctx: { ...req.ctx, pluginId },
    ngxCtx,
    ctxShared: req.ctxShared,
    requestHeaders: req.headers.toLuaTable(),
    responseHeaders: req.responseHeaders.toLuaTable(),
    responseStatus: req.status,
    reqStartTime: req.startTime / 1000,
  };
}
