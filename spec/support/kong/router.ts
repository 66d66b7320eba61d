/**
 * Route matching for the declarative subset (kong/router/atc.lua, traditional_compatible
 * flavor, simplified): paths (prefix, or `~` regex), methods, hosts, headers. More specific
 * routes win (more matching fields), then the longest path. The upstream URI follows
 * kong/router/utils.lua get_upstream_uri_v0 (path_handling "v0").
 */
import type { KongConfig, RouteEntity, ServiceEntity } from './declarative';
import { LuaTable } from './lua';

export interface RouteMatch {
  route: RouteEntity;
  service?: ServiceEntity;
  /** match_t.prefix: the matched path when strip_path is on. */
  prefix?: string;
  uriCaptures?: LuaTable;
  upstreamUri: string;
  /** match_t.upstream_host: the client's Host when preserve_host is on. */
  upstreamHost?: string;
}

interface Candidate {
  route: RouteEntity;
  path?: string;
  regex?: RegExp;
  weight: number;
  order: number;
}

export class Router {
  private readonly candidates: Candidate[] = [];
  private readonly services = new Map<string, ServiceEntity>();

  constructor(config: KongConfig) {
    for (const s of config.services) this.services.set(s.id, s);
    config.routes.forEach((route, order) => {
      const weight = [route.methods, route.hosts, route.headers && Object.keys(route.headers)].filter(
        (f) => Array.isArray(f) && f.length > 0,
      ).length;
      const paths = route.paths && route.paths.length > 0 ? route.paths : [undefined];
      for (const p of paths) {
        if (p?.startsWith('~')) {
          this.candidates.push({
            route,
            path: p,
            regex: new RegExp(`^(?:${p.slice(1)})`),
            weight: weight + 1,
            order,
          });
        } else this.candidates.push({ route, path: p, weight: p === undefined ? weight : weight + 1, order });
      }
    });
    // Regexes before prefixes of the same weight (by regex_priority), then longer prefixes first.
    this.candidates.sort(
      (a, b) =>
        b.weight - a.weight ||
        Number(Boolean(b.regex)) - Number(Boolean(a.regex)) ||
        (b.regex && a.regex ? b.route.regex_priority - a.route.regex_priority : 0) ||
        (b.path?.length ?? 0) - (a.path?.length ?? 0) ||
        a.order - b.order,
    );
  }

  /** `host` is $host (no port); `hostHeader` the Host header as sent, which preserve_host keeps. */
  match(request: {
    method: string;
    path: string;
    host: string;
    hostHeader: string;
    headers: (name: string) => string[];
  }): RouteMatch | undefined {
    for (const c of this.candidates) {
      const r = c.route;
      if (r.methods && r.methods.length > 0 && !r.methods.includes(request.method.toUpperCase())) continue;
      if (r.hosts && r.hosts.length > 0 && !r.hosts.some((h) => hostMatches(h, request.host))) continue;
      if (
        r.headers &&
        !Object.entries(r.headers).every(([n, vs]) =>
          request.headers(n).some((v) => vs.some((x) => x.toLowerCase() === v.toLowerCase())),
        )
      ) {
        continue;
      }
      let matchedPath: string | undefined;
      let captures: LuaTable | undefined;
      if (c.regex) {
        const m = c.regex.exec(request.path);
        if (!m) continue;
        matchedPath = m[0];
        if (m.length > 1 || m.groups) {
          captures = new LuaTable();
          captures.set(0, m[0]);
          m.slice(1).forEach((v, i) => {
            captures?.set(i + 1, v);
          });
          for (const [k, v] of Object.entries(m.groups ?? {})) captures.set(k, v);
        }
      } else if (c.path !== undefined) {
        if (!request.path.startsWith(c.path)) continue;
        matchedPath = c.path;
      }
      const service = r.service ? this.services.get(r.service.id) : undefined;
      const prefix = r.strip_path ? matchedPath : undefined;
      const postfix = sanitizePostfix(request.path.slice((prefix ?? '/').length));
      return {
        route: r,
        service,
        prefix,
        uriCaptures: captures,
        upstreamUri: upstreamUriV0(r.strip_path, postfix, request.path, service?.path ?? '/'),
        upstreamHost: r.preserve_host ? request.hostHeader : undefined,
      };
    }
    return undefined;
  }
}

function hostMatches(pattern: string, host: string): boolean {
  const p = pattern.toLowerCase();
  const h = host.toLowerCase();
  if (p.startsWith('*.')) return h.endsWith(p.slice(1));
  if (p.endsWith('.*')) return h.startsWith(p.slice(0, -1));
  return p === h;
}

/** utils.lua sanitize_uri_postfix. */
function sanitizePostfix(postfix: string): string {
  if (postfix === '.' || postfix === '..') return '';
  if (postfix.startsWith('./')) return postfix.slice(2);
  if (postfix.startsWith('../')) return postfix.slice(3);
  return postfix;
}

/** utils.lua get_upstream_uri_v0. */
export function upstreamUriV0(stripPath: boolean, postfix: string, reqUri: string, base: string): string {
  if (base.endsWith('/')) {
    if (stripPath) {
      if (postfix === '') {
        if (base === '/') return '/';
        if (reqUri.endsWith('/')) return base;
        return base.slice(0, -1);
      }
      if (postfix.startsWith('/')) return base.slice(0, -1) + postfix;
      return base + postfix;
    }
    return base + reqUri.slice(1);
  }
  if (stripPath) {
    if (postfix === '') {
      if (reqUri.length > 1 && reqUri.endsWith('/')) return `${base}/`;
      return base;
    }
    if (postfix.startsWith('/')) return base + postfix;
    return `${base}/${postfix}`;
  }
  if (reqUri === '/') return base;
  return base + reqUri;
}
