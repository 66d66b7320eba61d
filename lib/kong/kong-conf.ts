import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** Suite plugin names, in the order Kong should list them (the first entry starts the server). */
export const SUITE_PLUGIN_NAMES = [
  'ai-router',
  'ai-semantic-cache',
  'ai-budget',
  'ai-fallback',
  'ai-metrics',
] as const;

export interface PluginServerDef {
  name: string;
  socket: string;
  start_cmd?: string;
  query_cmd: string;
}

export interface PluginServerDefsOptions {
  /** Where the suite server creates its sockets; keep it outside the folders Kong's entrypoint wipes. */
  socketDir: string;
  /** Absolute path of node (Kong starts commands with an empty environment and no PATH). */
  node?: string;
  /** Root of this installation (holds dist/). */
  root?: string;
  /** Environment for the suite server, passed through `/usr/bin/env` since Kong passes none. */
  env?: Record<string, string>;
}

export function defaultSocketDir(): string {
  return join(tmpdir(), 'kong-ai-gateway');
}

/** The installation root: the nearest folder above this file holding package.json (from dist/ or source). */
export function installationRoot(): string {
  let dir = __dirname;
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('installation root not found (no package.json above the suite)');
    dir = parent;
  }
  return dir;
}

/** POSIX shell quoting: safe words stay bare. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * One Kong plugin server entry per plugin (Kong 3.9 registers only the first plugin a server
 * reports), all served by one process: the first entry carries the start_cmd, the others are
 * "externally managed" sockets of that same process (KONG.md §1).
 */
export function pluginServerDefs(options: PluginServerDefsOptions): PluginServerDef[] {
  const node = options.node ?? process.execPath;
  const main = join(options.root ?? installationRoot(), 'dist', 'lib', 'kong', 'main.js');
  const env = Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`); // quoted below, once
  const start = [
    ...(env.length ? ['/usr/bin/env', ...env] : []),
    node,
    main,
    '--socket-dir',
    options.socketDir,
    // Kong's worker 0 starts it; a worker that dies without stopping it gets a replacement.
    '--exit-with-parent',
  ];
  return SUITE_PLUGIN_NAMES.map((name, i) => ({
    name,
    socket: join(options.socketDir, `${name}.sock`),
    ...(i === 0 ? { start_cmd: start.map(shellQuote).join(' ') } : {}),
    query_cmd: [node, main, '--dump', name].map(shellQuote).join(' '),
  }));
}

const confKey = (name: string) => name.replace(/-/g, '_');

/** `[key, value]` pairs of the kong.conf settings. */
function confSettings(defs: PluginServerDef[]): [string, string][] {
  const settings: [string, string][] = [['pluginserver_names', defs.map((d) => d.name).join(',')]];
  for (const d of defs) {
    const k = confKey(d.name);
    settings.push([`pluginserver_${k}_socket`, d.socket]);
    if (d.start_cmd) settings.push([`pluginserver_${k}_start_cmd`, d.start_cmd]);
    settings.push([`pluginserver_${k}_query_cmd`, d.query_cmd]);
  }
  return settings;
}

/** kong.conf lines (`#` starts a comment there; `\#` is a literal one). */
export function kongConfLines(defs: PluginServerDef[]): string[] {
  return confSettings(defs).map(([key, value]) => `${key} = ${value.replace(/#/g, '\\#')}`);
}

/** The same as KONG_* environment variables, as shell assignments. */
export function kongEnvLines(defs: PluginServerDef[]): string[] {
  return confSettings(defs).map(([key, value]) => `KONG_${key.toUpperCase()}=${shellQuote(value)}`);
}
