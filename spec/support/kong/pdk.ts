/**
 * The PDK as an external plugin reaches it through mp_rpc.lua's call_pdk_method: Kong's
 * PDK functions (kong/pdk/*.lua) with their phase checks and argument errors, the
 * `exposed_api` overrides of kong/runloop/plugin_servers/plugin.lua (ctx.shared, nginx ctx,
 * the log-phase snapshot), and the result fixes (fix_mmap, fix_raw) plus Step* method
 * choice of mp_rpc.lua. Only the first return value of a Lua function reaches the plugin.
 */
import {
  cjsonDecode,
  cjsonEncode,
  fromJs,
  isLuaString,
  LuaError,
  LuaTable,
  type LuaValue,
  luaToString,
  luaToStringLoose,
  luaType,
  WireValue,
} from './lua';
import { checkNotPhase, checkPhase, PHASES, type PhaseName, phaseSet, REQUEST_PHASES } from './phases';
import {
  decodeArgs,
  escapeUriComponent,
  HeaderList,
  type KongCtx,
  type KongRequest,
  normalizePath,
} from './request-state';
import { errorBody, httpErrorMessage, responseType } from './responses';
import { buildSerializeTable } from './serialize';
import { resolveVaultReference } from './vault';

export type LogLevel = 'debug' | 'info' | 'notice' | 'warn' | 'err' | 'crit' | 'alert' | 'emerg';

/** Driver-wide services the PDK needs (Kong's DB cache, node identity, error log). */
export interface KongServices {
  log(level: LogLevel, message: string, meta: { plugin?: string; requestId?: string }): void;
  findConsumer(key: string, byUsername: boolean): Record<string, unknown> | undefined;
  readonly nodeId: string;
  readonly hostname: string;
  readonly env: Record<string, string | undefined>;
  readonly clientBodyBufferSize: number;
}

/** The `saved` table build_phases hands to a log timer (plugin.lua). */
export interface LogSnapshot {
  pluginName: string;
  serializeData: LuaValue;
  /** clone(ngx.ctx): Kong's fields and the plugin-set keys, shallow-copied per plugin. */
  ctx: KongCtx;
  ngxCtx: LuaTable;
  /** kong.ctx.shared itself (not a copy). */
  ctxShared: LuaTable;
  requestHeaders: LuaTable;
  responseHeaders: LuaTable;
  responseStatus: number;
  reqStartTime: number;
}

export interface PdkCall {
  req: KongRequest;
  phase: PhaseName;
  plugin: { name: string; id: string };
  /** Present in the log phase: the handler runs in a timer on this snapshot. */
  saved?: LogSnapshot;
  kong: KongServices;
}

/** kong.response.exit in a collecting phase: `coroutine.yield()` — the handler never resumes. */
export class CoroutineYield {
  readonly kind = 'yield';
}

/** kong.response.exit/error outside delay_response: the response is sent and `ngx.exit` ends the phase. */
export class NgxExit {
  readonly kind = 'ngx-exit';
}

type PdkFunction = (call: PdkCall, args: LuaValue[]) => LuaValue | Promise<LuaValue>;

// ---------------------------------------------------------------- helpers

function ctxOf(call: PdkCall): KongCtx {
  return call.saved ? call.saved.ctx : call.req.ctx;
}

/** ngx.var / ngx.req in a log timer: the fake request has no connection. */
function ngxRequest(call: PdkCall): KongRequest {
  if (call.saved) throw new LuaError('API disabled in the current context');
  return call.req;
}

function check(call: PdkCall, accepted: number): void {
  checkPhase(call.phase, accepted);
}

function str(value: LuaValue): string | undefined {
  return isLuaString(value) ? luaToString(value) : undefined;
}

const REWRITE_ACCESS_HEADER = phaseSet(
  'rewrite',
  'access',
  'response',
  'balancer',
  'header_filter',
  'error',
  'admin_api',
);
const HEADER_BODY_LOG = phaseSet('response', 'header_filter', 'body_filter', 'log', 'error', 'admin_api');
const SERVICE_HEADER_BODY_LOG = phaseSet('response', 'header_filter', 'body_filter', 'log');
const BEFORE_CONTENT = phaseSet('rewrite', 'access', 'response', 'error', 'admin_api');
const AUTH_AND_LATER = phaseSet('access', 'header_filter', 'response', 'body_filter', 'log');
const ACCESS_AND_REWRITE = phaseSet('rewrite', 'access');
const ACCESS_REWRITE_BALANCER = phaseSet('rewrite', 'access', 'balancer');
const ACCESS_REWRITE_BALANCER_PREREAD = phaseSet('rewrite', 'access', 'balancer', 'preread');
const ROUTER_PHASES = phaseSet('access', 'header_filter', 'response', 'body_filter', 'log');
const PHASES_WITH_CTX = phaseSet('rewrite', 'access', 'header_filter', 'response', 'body_filter', 'log');

/** checks.normalize_multi_header: "" → " ", numbers/booleans → tostring. */
function normalizeMultiHeader(value: LuaValue): string[] {
  if (value instanceof LuaTable)
    return value.ipairs().map((v) => (str(v) === '' ? ' ' : luaToStringLoose(v)));
  const s = luaToStringLoose(value);
  return [s === '' ? ' ' : s];
}

/** checks.validate_header. */
function validateHeader(name: LuaValue, value: LuaValue): void {
  if (!isLuaString(name))
    throw new LuaError(
      `invalid header name "${luaToStringLoose(name)}": got ${luaType(name)}, expected string`,
    );
  const n = luaToString(name);
  if (value instanceof LuaTable) {
    for (const v of value.ipairs()) {
      if (!isLuaString(v))
        throw new LuaError(`invalid header value in array "${n}": got ${luaType(v)}, expected string`);
    }
  } else if (!isLuaString(value) && typeof value !== 'number' && typeof value !== 'boolean') {
    throw new LuaError(
      `invalid header value for "${n}": got ${luaType(value)}, expected array of string, string, number or boolean`,
    );
  }
}

/** checks.validate_headers. */
function validateHeaders(headers: LuaValue): LuaTable {
  if (!(headers instanceof LuaTable)) throw new LuaError('headers must be a table');
  for (const [k, v] of headers.entries()) {
    if (typeof k !== 'string')
      throw new LuaError(`invalid header name "${String(k)}": got ${typeof k}, expected string`);
    if (v instanceof LuaTable) {
      for (const vv of v.ipairs()) {
        if (!isLuaString(vv))
          throw new LuaError(`invalid header value in array "${k}": got ${luaType(vv)}, expected string`);
      }
    } else if (!isLuaString(v) && typeof v !== 'number' && typeof v !== 'boolean') {
      throw new LuaError(
        `invalid header value for "${k}": got ${luaType(v)}, expected string, number, boolean or array of strings`,
      );
    }
  }
  return headers;
}

function checkMax(value: LuaValue, what: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number') throw new LuaError(`${what} must be a number`);
  if (value < min) throw new LuaError(`${what} must be >= ${min}`);
  if (value > max) throw new LuaError(`${what} must be <= ${max}`);
  return value;
}

/** mp_rpc.lua fix_mmap: every value becomes an array; an empty table an empty map. */
function fixMmap(value: LuaValue): LuaValue {
  if (!(value instanceof LuaTable)) return value;
  if (value.size === 0) return new WireValue({});
  const out = new LuaTable();
  for (const [k, v] of value.entries()) {
    if (v === true) out.set(k, new WireValue([]));
    else if (isLuaString(v)) {
      const list = new LuaTable();
      list.set(1, v);
      out.set(k, list);
    } else out.set(k, v);
  }
  return out;
}

/** mp_rpc.lua fix_raw: packs the string as msgpack bin; nil cannot be packed (Lua error at send time). */
function fixRaw(value: LuaValue): LuaValue {
  if (value === undefined) return new WireValue(null, "attempt to get length of local 'str' (a nil value)");
  return new WireValue(isLuaString(value) ? Buffer.from(value) : value);
}

const MUST_FIX: Record<string, (v: LuaValue) => LuaValue> = {
  'kong.request.get_query': fixMmap,
  'kong.request.get_headers': fixMmap,
  'kong.response.get_headers': fixMmap,
  'kong.service.response.get_headers': fixMmap,
  'kong.request.get_raw_body': fixRaw,
  'kong.response.get_raw_body': fixRaw,
  'kong.service.response.get_raw_body': fixRaw,
};

const STEP_BY_METHOD: Record<string, string> = {
  'kong.client.get_credential': 'plugin.StepCredential',
  'kong.client.load_consumer': 'plugin.StepConsumer',
  'kong.client.get_consumer': 'plugin.StepConsumer',
  'kong.client.authenticate': 'plugin.StepCredential',
  'kong.node.get_memory_stats': 'plugin.StepMemoryStats',
  'kong.router.get_route': 'plugin.StepRoute',
  'kong.router.get_service': 'plugin.StepService',
  'kong.request.get_query': 'plugin.StepMultiMap',
  'kong.request.get_headers': 'plugin.StepMultiMap',
  'kong.response.get_headers': 'plugin.StepMultiMap',
  'kong.service.response.get_headers': 'plugin.StepMultiMap',
};

/** get_step_method: StepError is unreachable because call_pdk_method keeps one return value. */
export function stepMethodFor(method: string): string {
  return STEP_BY_METHOD[method] ?? 'plugin.Step';
}

// ---------------------------------------------------------------- response sending

/** pdk/response.lua send(): status, headers, JSON-encoded table bodies, then ngx.exit. */
export function sendResponse(
  req: KongRequest,
  status: number,
  body: LuaValue,
  headers: LuaValue,
  log: (msg: string) => void,
): void {
  if (req.headersSent) throw new LuaError('headers have already been sent');
  req.status = status;
  let hasContentType = false;
  let hasContentLength = false;
  if (headers instanceof LuaTable) {
    for (const [name, value] of headers.entries()) {
      const lower = String(name).toLowerCase();
      if (lower === 'transfer-encoding' || lower === 'transfer_encoding') {
        log('manually setting Transfer-Encoding. Ignored.');
      } else req.responseHeaders.set(String(name), normalizeMultiHeader(value));
      if (lower === 'content-type' || lower === 'content_type') hasContentType = true;
      if (lower === 'content-length' || lower === 'content_length') hasContentLength = true;
    }
  }
  let bytes: Buffer | undefined;
  if (body instanceof LuaTable) {
    let json: string;
    try {
      json = cjsonEncode(body);
    } catch (err) {
      throw new LuaError(`body encoding failed while flushing response: ${(err as Error).message}`);
    }
    bytes = Buffer.from(json);
    if (!hasContentType) req.responseHeaders.set('Content-Type', ['application/json; charset=utf-8']);
  } else if (isLuaString(body)) {
    bytes = Buffer.from(body);
  }
  if (!hasContentLength) req.responseHeaders.set('Content-Length', [String(bytes?.length ?? 0)]);
  req.exitBody = bytes ?? Buffer.alloc(0);
}

function exitOrDelay(call: PdkCall, status: number, body: LuaValue, headers: LuaValue): never {
  const ctx = call.req.ctx;
  ctx.exited = true;
  if (ctx.delayResponse && !ctx.delayedResponse) {
    ctx.delayedResponse = { status, body, headers, viaCallback: true };
    throw new CoroutineYield();
  }
  sendResponse(call.req, status, body, headers, (m) =>
    call.kong.log('warn', m, { plugin: call.plugin.name, requestId: call.req.id }),
  );
  throw new NgxExit();
}

function responseExit(call: PdkCall, [status, body, headers]: LuaValue[]): LuaValue {
  check(call, REWRITE_ACCESS_HEADER);
  if (call.req.headersSent) throw new LuaError('headers have already been sent');
  if (typeof status !== 'number') throw new LuaError('code must be a number');
  if (status < 100 || status > 599) throw new LuaError('code must be a number between 100 and 599');
  if (body !== undefined && !isLuaString(body) && !(body instanceof LuaTable)) {
    throw new LuaError('body must be a nil, string or table');
  }
  if (headers !== undefined && !(headers instanceof LuaTable))
    throw new LuaError('headers must be a nil or table');
  if (headers !== undefined) validateHeaders(headers);
  return exitOrDelay(call, status, body, headers);
}

function responseError(call: PdkCall, [status, message, headersArg]: LuaValue[]): LuaValue {
  check(call, REWRITE_ACCESS_HEADER);
  if (call.req.headersSent) throw new LuaError('headers have already been sent');
  if (typeof status !== 'number') throw new LuaError('code must be a number');
  if (status < 400 || status > 599) throw new LuaError('code must be a number between 400 and 599');
  let text: string | undefined;
  if (message !== undefined) {
    if (message instanceof LuaTable) text = cjsonEncode(message);
    else if (isLuaString(message)) text = luaToString(message);
    else throw new LuaError('message must be a nil, a string or a table');
  }
  if (headersArg !== undefined && !(headersArg instanceof LuaTable))
    throw new LuaError('headers must be a nil or table');
  const headers = headersArg instanceof LuaTable ? validateHeaders(headersArg) : new LuaTable();
  const given = headers.get('Content-Type');
  const contentType =
    given instanceof LuaTable
      ? str(given.get(1))
      : given !== undefined
        ? luaToStringLoose(given)
        : responseType(call.req.headers.getAll('accept').join(','));
  headers.set('Content-Type', contentType);
  const body = errorBody(contentType ?? '', text ?? httpErrorMessage(status), call.req.id);
  return exitOrDelay(call, status, body, headers);
}

// ---------------------------------------------------------------- request

function rawBody(call: PdkCall, max: LuaValue): LuaValue {
  check(call, BEFORE_CONTENT);
  const req = ngxRequest(call);
  if (req.body.length === 0) return '';
  if (!req.bodyInFile) return req.body;
  if (typeof max !== 'number' || max < 0) {
    return undefined; // nil, "request body did not fit into client body buffer, consider raising 'client_body_buffer_size'"
  }
  if (max > 0 && req.body.length > max) return undefined; // nil, "request body file too big"
  return req.body;
}

function requestBody(call: PdkCall, [mimetype, maxArgs, maxFile]: LuaValue[]): LuaValue {
  check(call, BEFORE_CONTENT);
  const req = ngxRequest(call);
  const contentType = str(mimetype) ?? req.headers.first('content-type');
  if (contentType === undefined) return undefined; // nil, "missing content type"
  const lower = contentType.toLowerCase().split(';')[0];
  if (lower.startsWith('application/x-www-form-urlencoded')) {
    const max = checkMax(maxArgs, 'max_args', 1, 1000);
    if (req.bodyInFile) return undefined; // get_post_args: "requesting body in temp file not supported"
    return decodeArgs(req.body.toString('latin1'), max ?? 100);
  }
  if (lower.startsWith('application/json')) {
    const raw = rawBody(call, maxFile);
    if (raw === undefined) return undefined;
    try {
      const value = cjsonDecode(Buffer.from(raw as Buffer | string).toString('utf8'));
      return value instanceof LuaTable ? value : undefined; // nil, "invalid json body"
    } catch {
      return undefined;
    }
  }
  if (lower.startsWith('multipart/form-data')) {
    call.kong.log('warn', 'kong driver: multipart bodies are not emulated; get_body returns nil', {
      requestId: req.id,
    });
    return undefined;
  }
  return undefined; // nil, "unsupported content type '...'"
}

function requestHeader(call: PdkCall, [name]: LuaValue[]): LuaValue {
  check(call, REQUEST_PHASES);
  if (!isLuaString(name)) throw new LuaError('header name must be a string');
  return ngxRequest(call).headers.first(luaToString(name));
}

function requestHeaders(call: PdkCall, [max]: LuaValue[]): LuaValue {
  check(call, REQUEST_PHASES);
  const m = checkMax(max, 'max_headers', 1, 1000);
  return ngxRequest(call).headers.toLuaTable(m ?? 100);
}

function requestQuery(call: PdkCall, [max]: LuaValue[]): LuaValue {
  check(call, REQUEST_PHASES);
  const m = checkMax(max, 'max_args', 1, 1000);
  return decodeArgs(ngxRequest(call).args, m ?? 100);
}

// ---------------------------------------------------------------- service.request

function setUpstreamHeader(call: PdkCall, name: string, values: string[], add: boolean): void {
  const req = call.req;
  if (name.toLowerCase() === 'host') req.upstreamHost = values[values.length - 1] ?? '';
  if (add) req.headers.add(name, values);
  else req.headers.set(name, values);
}

function makeOrderedArgs(args: LuaTable): string {
  const out: string[] = [];
  for (const [k, v] of args.entries()) {
    if (typeof k !== 'string') throw new LuaError('arg keys must be strings');
    const key = escapeUriComponent(k);
    if (v === true) out.push(key);
    else if (v === false) continue;
    else if (v instanceof LuaTable) {
      out.push(
        v
          .ipairs()
          .map((e) => (e === true ? key : `${key}=${escapeUriComponent(luaToStringLoose(e))}`))
          .join('&'),
      );
    } else if (isLuaString(v) || typeof v === 'number')
      out.push(`${key}=${escapeUriComponent(luaToStringLoose(v))}`);
    else throw new LuaError(`attempt to use ${luaType(v)} as query arg value`);
  }
  return out.sort().join('&');
}

const ACCEPTED_METHODS = new Set([
  'GET',
  'HEAD',
  'PUT',
  'POST',
  'DELETE',
  'OPTIONS',
  'MKCOL',
  'COPY',
  'MOVE',
  'PROPFIND',
  'PROPPATCH',
  'LOCK',
  'UNLOCK',
  'PATCH',
  'TRACE',
]);

// ---------------------------------------------------------------- the method table

const LOG_LEVELS: LogLevel[] = ['debug', 'info', 'notice', 'warn', 'err', 'crit', 'alert', 'emerg'];

function logFunction(level: LogLevel): PdkFunction {
  return (call, args) => {
    const pluginName = call.saved?.pluginName ?? call.plugin.name;
    call.kong.log(level, args.map(luaToStringLoose).join(''), { plugin: pluginName, requestId: call.req.id });
    return undefined;
  };
}

const METHODS: Record<string, PdkFunction> = {
  // ------------------------------------------------------------ kong.request
  'kong.request.get_scheme': (call) => {
    check(call, REQUEST_PHASES);
    return ngxRequest(call).scheme;
  },
  'kong.request.get_host': (call) => {
    check(call, REQUEST_PHASES);
    return ngxRequest(call).host;
  },
  'kong.request.get_port': (call) => {
    checkNotPhase(call.phase, PHASES.init_worker);
    return ngxRequest(call).client.serverPort;
  },
  'kong.request.get_forwarded_scheme': (call) => {
    check(call, REQUEST_PHASES);
    return ngxRequest(call).scheme; // trusted_ips = NONE: forwarded headers are ignored
  },
  'kong.request.get_forwarded_host': (call) => {
    check(call, REQUEST_PHASES);
    return ngxRequest(call).host;
  },
  'kong.request.get_forwarded_port': (call) => {
    check(call, REQUEST_PHASES);
    return ngxRequest(call).client.serverPort;
  },
  'kong.request.get_forwarded_path': (call) => {
    check(call, REQUEST_PHASES);
    return normalizePath(ngxRequest(call).rawPath);
  },
  'kong.request.get_forwarded_prefix': (call) => {
    check(call, REQUEST_PHASES);
    return ngxRequest(call).upstreamForwarded.upstream_x_forwarded_prefix ?? '';
  },
  'kong.request.get_http_version': (call) => {
    check(call, REQUEST_PHASES);
    return ngxRequest(call).httpVersion;
  },
  'kong.request.get_method': (call) => {
    check(call, REQUEST_PHASES);
    return ngxRequest(call).method;
  },
  'kong.request.get_path': (call) => {
    check(call, REQUEST_PHASES);
    return normalizePath(ngxRequest(call).rawPath);
  },
  'kong.request.get_raw_path': (call) => {
    check(call, REQUEST_PHASES);
    return ngxRequest(call).rawPath;
  },
  'kong.request.get_path_with_query': (call) => {
    check(call, REQUEST_PHASES);
    return ngxRequest(call).requestUri;
  },
  'kong.request.get_raw_query': (call) => {
    check(call, REQUEST_PHASES);
    return ngxRequest(call).args;
  },
  'kong.request.get_query_arg': (call, [name]) => {
    check(call, REQUEST_PHASES);
    if (!isLuaString(name)) throw new LuaError('query argument name must be a string');
    const value = decodeArgs(ngxRequest(call).args).get(luaToString(name));
    return value instanceof LuaTable ? value.get(1) : value;
  },
  'kong.request.get_query': requestQuery,
  'kong.request.get_header': requestHeader,
  'kong.request.get_headers': requestHeaders,
  'kong.request.get_raw_body': (call, [max]) => rawBody(call, max),
  'kong.request.get_body': requestBody,
  'kong.request.get_start_time': (call) => {
    check(call, REQUEST_PHASES);
    return ctxOf(call).processingStart;
  },
  'kong.request.get_uri_captures': (call) => {
    check(call, REQUEST_PHASES);
    const unnamed = new LuaTable(true);
    const named = new LuaTable();
    const captures = ctxOf(call).uriCaptures;
    if (captures) {
      for (const [k, v] of captures.entries()) {
        if (typeof k === 'number') unnamed.set(k, v);
        else named.set(k, v);
      }
    }
    const out = new LuaTable();
    out.set('unnamed', unnamed);
    out.set('named', named);
    return out;
  },

  // ------------------------------------------------------------ kong.response
  'kong.response.get_status': (call) => {
    check(call, HEADER_BODY_LOG);
    return call.req.status;
  },
  'kong.response.get_header': (call, [name]) => {
    check(call, HEADER_BODY_LOG);
    if (!isLuaString(name)) throw new LuaError('header name must be a string');
    return call.req.responseHeaders.first(luaToString(name));
  },
  'kong.response.get_headers': (call, [max]) => {
    check(call, HEADER_BODY_LOG);
    const m = checkMax(max, 'max_headers', 1, 1000);
    return call.req.responseHeaders.toLuaTable(m ?? 100);
  },
  'kong.response.get_source': (call, [ctx]) => {
    if (ctx === undefined) check(call, HEADER_BODY_LOG);
    return responseSource(ctxOf(call));
  },
  'kong.response.set_status': (call, [status]) => {
    check(call, REWRITE_ACCESS_HEADER);
    if (call.req.headersSent) throw new LuaError('headers have already been sent');
    if (typeof status !== 'number') throw new LuaError('code must be a number');
    if (status < 100 || status > 599) throw new LuaError('code must be a number between 100 and 599');
    call.req.status = status;
    return undefined;
  },
  'kong.response.set_header': (call, [name, value]) => {
    check(call, REWRITE_ACCESS_HEADER);
    if (call.req.headersSent) throw new LuaError('headers have already been sent');
    validateHeader(name, value);
    const n = luaToString(name as string);
    if (n.toLowerCase() === 'transfer-encoding' || n.toLowerCase() === 'transfer_encoding') {
      call.kong.log('warn', 'manually setting Transfer-Encoding. Ignored.', {
        plugin: call.plugin.name,
        requestId: call.req.id,
      });
      return undefined;
    }
    call.req.responseHeaders.set(n, normalizeMultiHeader(value));
    return undefined;
  },
  'kong.response.add_header': (call, [name, value]) => {
    check(call, REWRITE_ACCESS_HEADER);
    if (call.req.headersSent) throw new LuaError('headers have already been sent');
    validateHeader(name, value);
    call.req.responseHeaders.add(luaToString(name as string), normalizeMultiHeader(value));
    return undefined;
  },
  'kong.response.clear_header': (call, [name]) => {
    check(call, REWRITE_ACCESS_HEADER);
    if (call.req.headersSent) throw new LuaError('headers have already been sent');
    if (!isLuaString(name)) throw new LuaError('header name must be a string');
    call.req.responseHeaders.clear(luaToString(name));
    return undefined;
  },
  'kong.response.set_headers': (call, [headers]) => {
    check(call, REWRITE_ACCESS_HEADER);
    if (call.req.headersSent) throw new LuaError('headers have already been sent');
    for (const [k, v] of validateHeaders(headers).entries()) {
      const lower = String(k).toLowerCase();
      if (lower !== 'transfer-encoding' && lower !== 'transfer_encoding')
        call.req.responseHeaders.set(String(k), normalizeMultiHeader(v));
    }
    return undefined;
  },
  'kong.response.exit': responseExit,
  'kong.response.error': responseError,
  'kong.response.get_raw_body': (call) => {
    check(call, PHASES.body_filter);
    return undefined;
  },
  'kong.response.set_raw_body': (call) => {
    check(call, PHASES.body_filter);
    return undefined;
  },

  // ------------------------------------------------------------ kong.service
  'kong.service.set_upstream': (call, [host]) => {
    check(call, PHASES.access);
    if (!isLuaString(host)) throw new LuaError('host must be a string');
    return undefined; // nil, "could not find an Upstream named '...'": upstreams are not emulated
  },
  'kong.service.set_target': (call, [host, port]) => {
    check(call, ACCESS_REWRITE_BALANCER_PREREAD);
    if (!isLuaString(host)) throw new LuaError('host must be a string');
    if (typeof port !== 'number' || !Number.isInteger(port)) throw new LuaError('port must be an integer');
    if (port < 0 || port > 65535)
      throw new LuaError(`port must be an integer between 0 and 65535: given ${port}`);
    call.req.upstreamHost = luaToString(host);
    call.req.ctx.balancer.host = luaToString(host);
    call.req.ctx.balancer.port = port;
    return undefined;
  },
  'kong.service.set_retries': (call, [retries]) => {
    check(call, PHASES.access);
    if (typeof retries !== 'number' || !Number.isInteger(retries))
      throw new LuaError('retries must be an integer');
    if (retries < 0 || retries > 32767)
      throw new LuaError(`retries must be an integer between 0 and 32767: given ${retries}`);
    call.req.ctx.balancer.retries = retries;
    return undefined;
  },
  'kong.service.set_timeouts': (call, [connect, write, read]) => {
    check(call, PHASES.access);
    const names = ['connect_timeout', 'write_timeout', 'read_timeout'];
    [connect, write, read].forEach((v, i) => {
      if (typeof v !== 'number' || !Number.isInteger(v)) throw new LuaError(`${names[i]} must be an integer`);
      if (v < 1 || v > 2147483646)
        throw new LuaError(`${names[i]} must be an integer between 1 and 2147483646: given ${v}`);
    });
    const b = call.req.ctx.balancer;
    b.connectTimeout = connect as number;
    b.writeTimeout = write as number;
    b.readTimeout = read as number;
    return undefined;
  },
  'kong.service.request.enable_buffering': (call) => {
    check(call, ACCESS_REWRITE_BALANCER);
    call.kong.log('warn', 'kong driver: buffered proxying (response phase) is not emulated', {
      requestId: call.req.id,
    });
    return undefined;
  },
  'kong.service.request.set_scheme': (call, [scheme]) => {
    check(call, ACCESS_REWRITE_BALANCER);
    if (!isLuaString(scheme)) throw new LuaError('scheme must be a string');
    const s = luaToString(scheme);
    if (s !== 'http' && s !== 'https') throw new LuaError(`invalid scheme: ${s}`);
    call.req.upstreamScheme = s;
    return undefined;
  },
  'kong.service.request.set_path': (call, [path]) => {
    check(call, ACCESS_REWRITE_BALANCER);
    if (!isLuaString(path)) throw new LuaError('path must be a string');
    const p = luaToString(path);
    if (!p.startsWith('/')) throw new LuaError('path must start with /');
    call.req.upstreamUri = encodeURI(p).replace(/%25([0-9a-fA-F]{2})/g, '%$1');
    return undefined;
  },
  'kong.service.request.set_raw_query': (call, [query]) => {
    check(call, ACCESS_AND_REWRITE);
    if (!isLuaString(query)) throw new LuaError('query must be a string');
    call.req.args = luaToString(query);
    return undefined;
  },
  'kong.service.request.set_method': (call, [method]) => {
    check(call, ACCESS_AND_REWRITE);
    if (!isLuaString(method)) throw new LuaError('method must be a string');
    const m = luaToString(method);
    if (!ACCEPTED_METHODS.has(m)) throw new LuaError(`invalid method: ${m}`);
    call.req.method = m;
    return undefined;
  },
  'kong.service.request.set_query': (call, [args]) => {
    check(call, ACCESS_AND_REWRITE);
    if (!(args instanceof LuaTable)) throw new LuaError('args must be a table');
    call.req.args = makeOrderedArgs(args);
    return undefined;
  },
  'kong.service.request.clear_query_arg': (call, [name]) => {
    check(call, ACCESS_AND_REWRITE);
    if (!isLuaString(name)) throw new LuaError('query argument name must be a string');
    const n = luaToString(name);
    call.req.args = call.req.args
      .split('&')
      .filter((part) => decodeURIComponent(part.split('=')[0].replace(/\+/g, ' ')) !== n)
      .join('&');
    return undefined;
  },
  'kong.service.request.set_header': (call, [name, value]) => {
    check(call, ACCESS_REWRITE_BALANCER);
    validateHeader(name, value);
    const n = luaToString(name as string);
    if (n.toLowerCase() === ':authority') return undefined; // nil, "cannot set :authority pseudo-header on non-grpc requests"
    setUpstreamHeader(call, n, normalizeMultiHeader(value), false);
    return undefined;
  },
  'kong.service.request.add_header': (call, [name, value]) => {
    check(call, ACCESS_AND_REWRITE);
    validateHeader(name, value);
    setUpstreamHeader(call, luaToString(name as string), normalizeMultiHeader(value), true);
    return undefined;
  },
  'kong.service.request.clear_header': (call, [name]) => {
    check(call, ACCESS_AND_REWRITE);
    if (!isLuaString(name)) throw new LuaError('header must be a string');
    call.req.headers.clear(luaToString(name));
    return undefined;
  },
  'kong.service.request.set_headers': (call, [headers]) => {
    check(call, ACCESS_AND_REWRITE);
    if (!(headers instanceof LuaTable)) throw new LuaError('headers must be a table');
    for (const [k, v] of validateHeaders(headers).entries())
      setUpstreamHeader(call, String(k), normalizeMultiHeader(v), false);
    return undefined;
  },
  'kong.service.request.set_raw_body': (call, [body]) => {
    check(call, ACCESS_REWRITE_BALANCER);
    if (!isLuaString(body)) throw new LuaError('body must be a string');
    call.req.body = Buffer.from(body);
    call.req.bodyInFile = false; // ngx.req.set_body_data keeps it in memory
    return undefined;
  },
  'kong.service.request.set_body': (call, [args, mime]) => {
    check(call, ACCESS_AND_REWRITE);
    if (!(args instanceof LuaTable)) throw new LuaError('args must be a table');
    if (mime !== undefined && !isLuaString(mime)) throw new LuaError('mime must be a string');
    const contentType = mime !== undefined ? luaToString(mime) : call.req.headers.first('content-type');
    if (contentType === undefined) return undefined; // nil, "content type was neither explicitly given ..."
    const base = contentType.split(';')[0];
    let body: string;
    if (base === 'application/x-www-form-urlencoded') body = makeOrderedArgs(args);
    else if (base === 'application/json') body = cjsonEncode(args);
    else throw new LuaError(`unsupported content type ${contentType}`);
    call.req.body = Buffer.from(body);
    call.req.bodyInFile = false;
    call.req.headers.set('Content-Type', [contentType]);
    return true;
  },
  'kong.service.response.get_status': (call) => {
    check(call, SERVICE_HEADER_BODY_LOG);
    ngxRequest(call);
    return call.req.upstreamStatus === '' ? undefined : Number(call.req.upstreamStatus.slice(-3));
  },
  'kong.service.response.get_headers': (call) => {
    check(call, SERVICE_HEADER_BODY_LOG);
    ngxRequest(call);
    return call.req.responseHeaders.toLuaTable();
  },
  'kong.service.response.get_header': (call, [name]) => {
    check(call, SERVICE_HEADER_BODY_LOG);
    if (!isLuaString(name)) throw new LuaError('name must be a string');
    ngxRequest(call);
    return call.req.responseHeaders.first(luaToString(name));
  },
  'kong.service.response.get_raw_body': (call) => {
    check(call, SERVICE_HEADER_BODY_LOG);
    throw new LuaError(
      'service body is only available with buffered proxying (see: kong.service.request.enable_buffering function)',
    );
  },
  'kong.service.response.get_body': (call) => {
    check(call, SERVICE_HEADER_BODY_LOG);
    throw new LuaError(
      'service body is only available with buffered proxying (see: kong.service.request.enable_buffering function)',
    );
  },

  // ------------------------------------------------------------ kong.client
  'kong.client.get_ip': (call) => {
    checkNotPhase(call.phase, PHASES.init_worker);
    return ngxRequest(call).client.remoteAddr;
  },
  'kong.client.get_forwarded_ip': (call) => {
    checkNotPhase(call.phase, PHASES.init_worker);
    return ngxRequest(call).client.remoteAddr;
  },
  'kong.client.get_port': (call) => {
    checkNotPhase(call.phase, PHASES.init_worker);
    return ngxRequest(call).client.remotePort;
  },
  'kong.client.get_forwarded_port': (call) => {
    checkNotPhase(call.phase, PHASES.init_worker);
    return ngxRequest(call).client.remotePort;
  },
  'kong.client.get_credential': (call) => {
    check(call, AUTH_AND_LATER);
    return ctxOf(call).authenticatedCredential;
  },
  'kong.client.get_consumer': (call) => {
    check(call, AUTH_AND_LATER);
    return ctxOf(call).authenticatedConsumer;
  },
  'kong.client.load_consumer': (call, [id, byUsername]) => {
    check(call, AUTH_AND_LATER);
    if (!isLuaString(id)) throw new LuaError('consumer_id must be a string');
    const key = luaToString(id);
    const isUuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(key);
    const searchByUsername = byUsername !== undefined && byUsername !== false;
    if (!isUuid && !searchByUsername)
      throw new LuaError('cannot load a consumer with an id that is not a uuid');
    const found = call.kong.findConsumer(key, searchByUsername);
    return found ? fromJs(found) : undefined;
  },
  'kong.client.authenticate': (call, [consumer, credential]) => {
    check(call, PHASES.access);
    const ok = (v: LuaValue) => v === undefined || v instanceof LuaTable;
    if (!ok(consumer)) throw new LuaError('consumer must be a table or nil');
    if (!ok(credential)) throw new LuaError('credential must be a table or nil');
    if (consumer === undefined && credential === undefined)
      throw new LuaError('either credential or consumer must be provided');
    call.req.ctx.authenticatedConsumer = consumer;
    call.req.ctx.authenticatedCredential = credential;
    return undefined;
  },
  'kong.client.get_protocol': (call) => {
    check(call, AUTH_AND_LATER);
    const route = ctxOf(call).route;
    if (!route) return undefined; // nil, "No active route found"
    const protocols = route.get('protocols');
    if (protocols instanceof LuaTable && protocols.size === 1) return protocols.get(1);
    return 'http';
  },

  // ------------------------------------------------------------ kong.router, kong.node, kong.ip, kong.plugin
  'kong.router.get_route': (call) => {
    check(call, ROUTER_PHASES);
    return ctxOf(call).route;
  },
  'kong.router.get_service': (call) => {
    check(call, ROUTER_PHASES);
    return ctxOf(call).service;
  },
  'kong.node.get_id': (call) => call.kong.nodeId,
  'kong.node.get_hostname': (call) => call.kong.hostname,
  'kong.node.get_memory_stats': () => {
    const m = process.memoryUsage();
    return fromJs({
      lua_shared_dicts: {},
      workers_lua_vms: [{ http_allocated_gc: m.heapUsed, pid: process.pid }],
    });
  },
  'kong.ip.is_trusted': () => false, // trusted_ips = NONE
  'kong.plugin.get_id': (call) => ctxOf(call).pluginId,
  'kong.vault.is_reference': (_call, [value]) =>
    isLuaString(value) && /^\{vault:\/\/.*\}$/.test(luaToString(value)),
  'kong.vault.get': (call, [reference]) => {
    if (!isLuaString(reference)) return undefined;
    return resolveVaultReference(luaToString(reference), call.kong.env).value;
  },

  // ------------------------------------------------------------ kong.log
  ...Object.fromEntries(LOG_LEVELS.map((l) => [`kong.log.${l}`, logFunction(l)])),
  'kong.log.set_serialize_value': (call, [key, value, options]) => {
    check(call, PHASES_WITH_CTX);
    if (!isLuaString(key)) throw new LuaError('key must be a string');
    const mode = options instanceof LuaTable ? (str(options.get('mode')) ?? 'set') : 'set';
    if (mode !== 'set' && mode !== 'add' && mode !== 'replace')
      throw new LuaError("mode must be 'set', 'add' or 'replace'");
    ctxOf(call).serializeValues.push({ key: luaToString(key), value, mode });
    return undefined;
  },

  // ------------------------------------------------------------ kong.nginx
  'kong.nginx.get_subsystem': () => 'http',
  'kong.nginx.get_statistics': () =>
    fromJs({
      connections_active: 1,
      connections_reading: 0,
      connections_writing: 1,
      connections_waiting: 0,
      connections_accepted: 1,
      connections_handled: 1,
      total_requests: 1,
    }),
};

/** plugin.lua exposed_api: consulted before the PDK itself (index_table checks the flat key first). */
const EXPOSED_API: Record<string, PdkFunction> = {
  'kong.log.serialize': (call) => {
    if (call.saved) return cjsonEncode(call.saved.serializeData);
    check(call, PHASES.log); // kong.log.serialize() outside a log timer
    return cjsonEncode(buildSerializeTable(call.req));
  },
  'kong.nginx.get_var': (call, [name]) => {
    const req = ngxRequest(call);
    return isLuaString(name) ? req.ngxVar(luaToString(name)) : undefined;
  },
  'kong.nginx.get_tls1_version_str': () => undefined,
  'kong.nginx.get_ctx': (call, [key]) => {
    const t = call.saved ? call.saved.ngxCtx : call.req.ngxCtx;
    return key === undefined ? undefined : t.get(key as string);
  },
  'kong.nginx.set_ctx': (call, [key, value]) => {
    const t = call.saved ? call.saved.ngxCtx : call.req.ngxCtx;
    if (key === undefined) throw new LuaError('table index is nil');
    t.set(key as string, value);
    return undefined;
  },
  'kong.ctx.shared.get': (call, [key]) => {
    const t = call.saved ? call.saved.ctxShared : call.req.ctxShared;
    return key === undefined ? undefined : t.get(key as string);
  },
  'kong.ctx.shared.set': (call, [key, value]) => {
    const t = call.saved ? call.saved.ctxShared : call.req.ctxShared;
    if (key === undefined) throw new LuaError('table index is nil');
    t.set(key as string, value);
    return undefined;
  },
  'kong.request.get_headers': (call, args) =>
    call.saved ? call.saved.requestHeaders : requestHeaders(call, args),
  'kong.request.get_header': (call, args) => {
    if (!call.saved) return requestHeader(call, args);
    const name = args[0];
    if (!isLuaString(name)) return undefined;
    const v = lookupHeader(call.saved.requestHeaders, luaToString(name));
    return v instanceof LuaTable ? v.get(1) : v;
  },
  'kong.response.get_status': (call, args) =>
    call.saved ? call.saved.responseStatus : METHODS['kong.response.get_status'](call, args),
  'kong.response.get_headers': (call, args) =>
    call.saved ? call.saved.responseHeaders : METHODS['kong.response.get_headers'](call, args),
  'kong.response.get_header': (call, args) => {
    if (!call.saved) return METHODS['kong.response.get_header'](call, args);
    const name = args[0];
    if (!isLuaString(name)) return undefined;
    const v = lookupHeader(call.saved.responseHeaders, luaToString(name));
    return v instanceof LuaTable ? v.get(1) : v;
  },
  'kong.response.get_source': (call) => {
    if (call.saved) return responseSource(call.saved.ctx);
    check(call, HEADER_BODY_LOG);
    return responseSource(call.req.ctx);
  },
  'kong.nginx.req_start_time': (call) => (call.saved ? call.saved.reqStartTime : call.req.startTime / 1000),
};

/** The ngx header tables look names up case-insensitively, "_" as "-" (their metatable). */
function lookupHeader(table: LuaTable, name: string): LuaValue {
  return table.get(HeaderList.normalize(name));
}

/** kong.response.get_source. */
export function responseSource(ctx: KongCtx): string {
  if (ctx.unexpected) return 'error';
  if (ctx.exited) return 'exit';
  if (ctx.proxied) return 'service';
  return 'error';
}

/** Tables that exist in Kong's PDK tree: calling one is "attempt to call a table value". */
const NAMESPACES = new Set([
  'kong',
  'kong.request',
  'kong.response',
  'kong.service',
  'kong.service.request',
  'kong.service.response',
  'kong.client',
  'kong.client.tls',
  'kong.router',
  'kong.node',
  'kong.log',
  'kong.ctx',
  'kong.ctx.shared',
  'kong.ctx.plugin',
  'kong.ctx.core',
  'kong.nginx',
  'kong.ip',
  'kong.vault',
  'kong.plugin',
  'kong.table',
  'kong.cluster',
  'kong.tracing',
  'kong.telemetry',
]);

export interface PdkResult {
  /** Value for the Step call, already fixed by must_fix. */
  value: LuaValue;
  stepMethod: string;
}

/**
 * call_pdk_method: find the function (exposed_api first), call it with the Lua-unpacked
 * args, keep the first result, apply must_fix. Throws LuaError, CoroutineYield or NgxExit.
 */
export async function callPdkMethod(call: PdkCall, method: string, args: LuaValue): Promise<PdkResult> {
  const fn = EXPOSED_API[method] ?? METHODS[method];
  if (!fn) {
    if (NAMESPACES.has(method)) throw new LuaError(`attempt to call local 'method' (a table value)`);
    call.kong.log('err', `could not find pdk method: ${method}`, {
      plugin: call.plugin.name,
      requestId: call.req.id,
    });
    return { value: undefined, stepMethod: stepMethodFor(method) };
  }
  const list: LuaValue[] = args instanceof LuaTable ? unpackArgs(args) : args === undefined ? [] : [args];
  let value = await fn(call, list);
  const fix = MUST_FIX[method];
  if (fix) value = fix(value);
  return { value, stepMethod: stepMethodFor(method) };
}

/** A PDK call from a Lua plugin (key-auth): Kong's function itself, no exposed_api, no must_fix. */
export async function callLuaPdk(call: PdkCall, method: string, args: LuaValue[]): Promise<LuaValue> {
  const fn = METHODS[method];
  if (!fn) throw new LuaError(`attempt to call field '${method.split('.').pop()}' (a nil value)`);
  return fn(call, args);
}

/** unpack(args) stops at the first nil: a positional `undefined` truncates the call (measured in KONG.md §9). */
function unpackArgs(args: LuaTable): LuaValue[] {
  return args.ipairs();
}
