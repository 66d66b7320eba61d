/**
 * What nginx and Kong hold for one proxied request: the (mutable) client request as
 * ngx.req sees it, Kong's ngx.ctx fields, the upstream variables, and the response.
 * PDK functions (pdk.ts) read and write this state; runloop.ts drives the phases.
 */
import { randomBytes } from 'node:crypto';
import { LuaTable, type LuaValue } from './lua';
import type { PhaseName } from './phases';

/** Ordered header list with nginx's case-insensitive lookup (headers_in / headers_out). */
export class HeaderList {
  readonly entries: Array<[string, string]>;

  constructor(entries: Array<[string, string]> = []) {
    this.entries = entries.map(([n, v]) => [n, v]);
  }

  /** ngx.req.get_headers' metatable normalizes lookups: lower case, "_" → "-". */
  static normalize(name: string): string {
    return name.toLowerCase().replace(/_/g, '-');
  }

  getAll(name: string): string[] {
    const key = HeaderList.normalize(name);
    return this.entries.filter(([n]) => n.toLowerCase() === key).map(([, v]) => v);
  }

  first(name: string): string | undefined {
    return this.getAll(name)[0];
  }

  /** ngx.req.set_header / ngx.header[name] = value: replaces every value of the header. */
  set(name: string, values: string[]): void {
    this.clear(name);
    for (const v of values) this.entries.push([name, v]);
  }

  add(name: string, values: string[]): void {
    for (const v of values) this.entries.push([name, v]);
  }

  clear(name: string): void {
    const key = HeaderList.normalize(name);
    for (let i = this.entries.length - 1; i >= 0; i--) {
      if (this.entries[i][0].toLowerCase() === key) this.entries.splice(i, 1);
    }
  }

  clone(): HeaderList {
    return new HeaderList(this.entries);
  }

  /**
   * ngx.req.get_headers(max) / ngx.resp.get_headers(max): lower-case names, a string per
   * single header, a table for repeated ones; at most `max` (default 100) headers.
   */
  toLuaTable(max = 100): LuaTable {
    const t = new LuaTable();
    let count = 0;
    for (const [name, value] of this.entries) {
      if (count >= max) break;
      count++;
      addMultiValue(t, name.toLowerCase(), value);
    }
    return t;
  }
}

/** ngx.unescape_uri for query args: "+" is a space, bad escapes kept as they are. */
function unescapeArg(s: string): string {
  return s.replace(/\+/g, ' ').replace(/(%[0-9a-fA-F]{2})+/g, (m) => {
    try {
      return decodeURIComponent(m);
    } catch {
      return Buffer.from(m.match(/%[0-9a-fA-F]{2}/g)!.map((h) => Number.parseInt(h.slice(1), 16))).toString(
        'latin1',
      );
    }
  });
}

/** ngx.req.get_uri_args / ngx.decode_args: repeated keys give tables, bare keys `true`. */
export function decodeArgs(args: string, max = 100): LuaTable {
  const t = new LuaTable();
  let count = 0;
  for (const part of args.split('&')) {
    if (part === '') continue;
    if (count >= max) break;
    count++;
    const eq = part.indexOf('=');
    const key = unescapeArg(eq === -1 ? part : part.slice(0, eq));
    if (key === '') continue;
    addMultiValue(t, key, eq === -1 ? true : unescapeArg(part.slice(eq + 1)));
  }
  return t;
}

/** ngx's multi-value maps: the first value stays bare, a repeated key turns it into a list. */
function addMultiValue(t: LuaTable, key: string, value: LuaValue): void {
  const existing = t.get(key);
  if (existing === undefined) t.set(key, value);
  else if (existing instanceof LuaTable) existing.set(existing.size + 1, value);
  else {
    const list = new LuaTable();
    list.set(1, existing);
    list.set(2, value);
    t.set(key, list);
  }
}

/** ngx.escape_uri (component escaping): everything but alphanumerics and -._~. */
export function escapeUriComponent(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * kong.tools.uri normalize(path, merge_slashes): decodes percent-escapes of unreserved
 * characters, resolves dot segments, merges slashes.
 */
export function normalizePath(path: string): string {
  const decoded = path.replace(/%([0-9a-fA-F]{2})/g, (m, hex: string) => {
    const c = String.fromCharCode(Number.parseInt(hex, 16));
    return /[A-Za-z0-9\-._~]/.test(c) ? c : m.toUpperCase();
  });
  const merged = decoded.replace(/\/{2,}/g, '/');
  const out: string[] = [];
  const segments = merged.split('/');
  segments.forEach((seg, i) => {
    if (seg === '.') {
      if (i === segments.length - 1) out.push('');
    } else if (seg === '..') {
      if (out.length > 1) out.pop();
      if (i === segments.length - 1) out.push('');
    } else out.push(seg);
  });
  const result = out.join('/');
  return result.startsWith('/') ? result : `/${result}`;
}

export interface DelayedResponse {
  status: number;
  body: LuaValue;
  headers: LuaValue;
  /** exit/error store `flush` as delayed_response_callback; a Lua error stores none. */
  viaCallback: boolean;
}

export interface SerializeValue {
  key: string;
  value: LuaValue;
  mode: 'set' | 'add' | 'replace';
}

/** One upstream try (balancer_data.tries). */
export interface BalancerTry {
  ip: string;
  port: number;
  balancer_start: number;
  balancer_latency: number;
}

/** Kong's ngx.ctx fields the emulation uses (names follow kong/init.lua). */
export interface KongCtx {
  route?: LuaTable;
  service?: LuaTable;
  routeId?: string;
  serviceId?: string;
  authenticatedConsumer?: LuaValue;
  authenticatedCredential?: LuaValue;
  delayResponse: boolean;
  delayedResponse?: DelayedResponse;
  exited: boolean;
  proxied: boolean;
  unexpected: boolean;
  serializeValues: SerializeValue[];
  pluginId?: string;
  uriCaptures?: LuaTable;
  processingStart: number;
  accessStart?: number;
  accessEndedAt?: number;
  proxyLatency?: number;
  waitingTime?: number;
  receiveTime?: number;
  responseLatency?: number;
  balancer: {
    host?: string;
    port?: number;
    retries: number;
    connectTimeout: number;
    writeTimeout: number;
    readTimeout: number;
    tries: BalancerTry[];
  };
}

export interface ClientInfo {
  remoteAddr: string;
  remotePort: number;
  serverPort: number;
}

export class KongRequest {
  /** nginx $request_id: 32 hex characters, also X-Kong-Request-Id. */
  readonly id = randomBytes(16).toString('hex');
  phase: PhaseName = 'rewrite';
  readonly startTime = Date.now();
  readonly scheme = 'http';
  readonly httpVersion = 1.1;
  /** $request_uri: never changes. */
  readonly requestUri: string;
  readonly hostHeader: string;
  method: string;
  /** $args: ngx.req.set_uri_args / kong.service.request.set_query change it. */
  args: string;
  headers: HeaderList;
  body: Buffer;
  /** The body exceeded client_body_buffer_size, so nginx keeps it in a temp file. */
  bodyInFile: boolean;
  readonly requestLength: number;

  readonly ctx: KongCtx;
  /** ngx.ctx keys plugins set with kong.nginx.set_ctx. */
  readonly ngxCtx = new LuaTable();
  /** kong.ctx.shared. */
  readonly ctxShared = new LuaTable();

  upstreamUri = '';
  upstreamScheme = 'http';
  /** $upstream_host: set by preserve_host or set_target/set_header("host"). */
  upstreamHost = '';
  upstreamForwarded: Record<string, string | undefined> = {};

  status = 0;
  readonly responseHeaders = new HeaderList();
  headersSent = false;
  bytesSent = 0;
  upstreamStatus = '';
  /** The body kong.response.exit/error produced (nginx prints it before ngx.exit). */
  exitBody?: Buffer;

  constructor(
    readonly client: ClientInfo,
    init: {
      method: string;
      url: string;
      headers: Array<[string, string]>;
      body: Buffer;
      bodyBufferSize: number;
    },
  ) {
    this.requestUri = init.url;
    this.method = init.method;
    const q = init.url.indexOf('?');
    this.args = q === -1 ? '' : init.url.slice(q + 1);
    this.headers = new HeaderList(init.headers);
    this.hostHeader = this.headers.first('host') ?? '';
    this.body = init.body;
    this.bodyInFile = init.bodyBufferSize > 0 && init.body.length > init.bodyBufferSize;
    const headerBytes = init.headers.reduce((n, [k, v]) => n + k.length + v.length + 4, 0);
    this.requestLength =
      `${init.method} ${init.url} HTTP/1.1\r\n`.length + headerBytes + 2 + init.body.length;
    this.ctx = {
      delayResponse: false,
      exited: false,
      proxied: false,
      unexpected: false,
      serializeValues: [],
      processingStart: this.startTime,
      balancer: { retries: 5, connectTimeout: 60000, writeTimeout: 60000, readTimeout: 60000, tries: [] },
    };
  }

  /** $host: the Host header without port, lower case (nginx falls back to the server name). */
  get host(): string {
    const h = this.headers.first('host') ?? this.hostHeader;
    return (h.replace(/:\d+$/, '') || 'localhost').toLowerCase();
  }

  /** $request_uri without its query string. */
  get rawPath(): string {
    const q = this.requestUri.indexOf('?', 1);
    return q === -1 ? this.requestUri : this.requestUri.slice(0, q);
  }

  /** ngx.var lookups the PDK performs, for kong.nginx.get_var. */
  ngxVar(name: string): LuaValue {
    switch (name) {
      case 'scheme':
        return this.scheme;
      case 'host':
        return this.host;
      case 'request_uri':
        return this.requestUri;
      case 'uri':
        return normalizePath(this.rawPath);
      case 'args':
        return this.args === '' ? undefined : this.args;
      case 'is_args':
        return this.args === '' ? '' : '?';
      case 'request_method':
        return this.method;
      case 'request':
        return `${this.method} ${this.requestUri} HTTP/1.1`;
      case 'remote_addr':
      case 'realip_remote_addr':
        return this.client.remoteAddr;
      case 'remote_port':
      case 'realip_remote_port':
        return String(this.client.remotePort);
      case 'server_port':
        return String(this.client.serverPort);
      case 'request_id':
      case 'kong_request_id':
        return this.id;
      case 'upstream_uri':
        return this.upstreamUri;
      case 'upstream_host':
        return this.upstreamHost;
      case 'upstream_scheme':
        return this.upstreamScheme;
      case 'upstream_status':
        return this.upstreamStatus === '' ? undefined : this.upstreamStatus;
      case 'request_length':
        return String(this.requestLength);
      case 'bytes_sent':
        return String(this.bytesSent);
      case 'content_type':
        return this.headers.first('content-type');
      default:
        if (name.startsWith('http_')) return this.headers.first(name.slice(5));
        if (name.startsWith('upstream_x_forwarded_')) return this.upstreamForwarded[name] ?? '';
        return undefined;
    }
  }
}
