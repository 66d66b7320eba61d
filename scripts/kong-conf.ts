/**
 * Prints the kong.conf lines (and the same as KONG_* environment variables) that point an
 * existing Kong at this installation of the suite server.
 *
 *   npm run kong-conf -- --prefix /var/run/kong-ai-gateway \
 *     --env AIGW_STORE=redis://127.0.0.1:6379/0 --env AIGW_LOG_FILE=/var/log/kong-ai-gateway.log
 *
 *   --prefix DIR        folder of the plugin sockets (required); outside $KONG_PREFIX/ and
 *                       $KONG_PREFIX/sockets/, whose sockets docker-kong's entrypoint deletes
 *   --env KEY=VALUE     setting of the suite server, repeatable: Kong starts plugin servers with
 *                       an emptied environment, so they travel through /usr/bin/env in the start_cmd
 *   --format conf|env|both   kong.conf lines, shell `export KONG_...` lines, or both (default)
 *   --node PATH         absolute path of node (default: the node running this script)
 *   --root DIR          installation root as seen by Kong (default: this one), e.g. for an image
 *   --kong-prefix DIR   Kong's prefix, to refuse a socket folder its Docker entrypoint wipes
 *                       (checked anyway: $KONG_PREFIX and /usr/local/kong)
 */
import { existsSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  installationRoot,
  kongConfLines,
  kongEnvLines,
  type PluginServerDef,
  pluginServerDefs,
  SUITE_PLUGIN_NAMES,
  shellQuote,
} from '../lib/kong/kong-conf';
import { SUITE_VERSION } from '../lib/version';

const USAGE = `usage: npm run kong-conf -- --prefix DIR [--env KEY=VALUE]... [--format conf|env|both] [--node PATH] [--root DIR] [--kong-prefix DIR]`;

/** Kong's default prefix, and docker-kong's (docker-entrypoint.sh: PREFIX=${KONG_PREFIX:=/usr/local/kong}). */
export const DEFAULT_KONG_PREFIX = '/usr/local/kong';

/** nginx directives worth setting with the suite (KONG.md §5), printed as comments. */
export const BODY_LINES = [
  '# Bodies above the buffer go to a temp file, which the suite reads with getRawBody(0) (Kong 3.8+);',
  "# cap them a little above the suite server's AIGW_MAX_BODY_BYTES (10 MiB by default), so an",
  "# oversized body gets the suite's 413 in OpenAI shape rather than nginx's:",
  '# nginx_http_client_body_buffer_size = 1m',
  '# nginx_http_client_max_body_size = 11m',
];

export type Format = 'conf' | 'env' | 'both';

export interface KongConfOptions {
  /** Folder of the plugin sockets. */
  socketDir: string;
  /** Absolute path of node. */
  node: string;
  /** Installation root as Kong sees it (holds dist/). */
  root: string;
  /** Suite server settings, passed through /usr/bin/env in the start_cmd. */
  env?: Record<string, string>;
  /** Kong prefixes whose socket folders must not hold ours. */
  kongPrefixes?: string[];
}

export class KongConfError extends Error {
  override readonly name = 'KongConfError';
}

/** `KEY=VALUE` arguments of --env, in order; a later KEY wins. */
export function parseEnvPairs(pairs: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    const key = eq < 0 ? pair : pair.slice(0, eq);
    if (eq < 0 || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(key))
      throw new KongConfError(`--env ${pair}: expected KEY=VALUE with KEY a variable name`);
    const value = pair.slice(eq + 1);
    if (/[\n\r\0]/.test(value)) throw new KongConfError(`--env ${key}: the value holds a line break or NUL`);
    delete env[key];
    env[key] = value;
  }
  return env;
}

/**
 * Refuses a socket folder that docker-kong's entrypoint clears (it deletes every socket in
 * `$KONG_PREFIX/*` and `$KONG_PREFIX/sockets/*` before starting nginx), which would cut Kong
 * off from a running suite server.
 */
export function checkSocketDir(socketDir: string, kongPrefixes: readonly string[]): void {
  if (!isAbsolute(socketDir)) throw new KongConfError(`--prefix ${socketDir}: must be an absolute path`);
  for (const prefix of kongPrefixes) {
    const wiped = [resolve(prefix), resolve(prefix, 'sockets')];
    if (wiped.includes(resolve(socketDir)))
      throw new KongConfError(
        `--prefix ${socketDir}: Kong's Docker entrypoint deletes every socket in $KONG_PREFIX/ and ` +
          `$KONG_PREFIX/sockets/ (here ${wiped.join(' and ')}) at start; ` +
          'choose a folder outside them, e.g. /var/run/kong-ai-gateway',
      );
  }
}

/** The suite's plugin server entries, after checking the paths Kong will run them with. */
export function suiteServerDefs(options: KongConfOptions): PluginServerDef[] {
  for (const [what, value] of [
    ['--prefix', options.socketDir],
    ['--node', options.node],
    ['--root', options.root],
  ] as const) {
    if (!isAbsolute(value))
      throw new KongConfError(
        `${what} ${value}: must be an absolute path (Kong's commands run with no PATH)`,
      );
    if (/[\n\r\0]/.test(value)) throw new KongConfError(`${what}: the path holds a line break or NUL`);
  }
  checkSocketDir(options.socketDir, options.kongPrefixes ?? []);
  return pluginServerDefs(options);
}

/** `plugins = bundled,...`: Kong loads only the plugins listed there. */
export function pluginsValue(): string {
  return ['bundled', ...SUITE_PLUGIN_NAMES].join(',');
}

function header(options: KongConfOptions): string[] {
  const lines = [
    `# Kong AI gateway plugin suite ${SUITE_VERSION} at ${options.root}, node ${options.node}.`,
    `# One process serves the five sockets in ${options.socketDir}; the ai-router entry starts it.`,
    '# Keep that folder outside $KONG_PREFIX/ and $KONG_PREFIX/sockets/ (docker-kong deletes their',
    "# sockets at start) and writable by the user of Kong's workers, which runs the server.",
  ];
  if (Object.keys(options.env ?? {}).length === 0)
    lines.push(
      '# Kong starts the server with an empty environment: pass its settings (AIGW_STORE,',
      '# AIGW_LOG_FILE, ...) with --env KEY=VALUE.',
    );
  return lines;
}

/** kong.conf lines, paste-ready. */
export function renderConf(options: KongConfOptions): string[] {
  const defs = suiteServerDefs(options);
  return [`plugins = ${pluginsValue()}`, ...kongConfLines(defs), ...BODY_LINES];
}

/** The same as shell `export KONG_...=` lines (Kong reads KONG_<KEY> for every kong.conf key). */
export function renderEnv(options: KongConfOptions): string[] {
  const defs = suiteServerDefs(options);
  const exportLine = (line: string) => `export ${line}`;
  return [
    exportLine(`KONG_PLUGINS=${shellQuote(pluginsValue())}`),
    ...kongEnvLines(defs).map(exportLine),
    ...BODY_LINES.map((l) =>
      l.replace(
        /^# (nginx_\w+) = (.*)$/,
        (_m, key: string, v: string) => `# export KONG_${key.toUpperCase()}=${v}`,
      ),
    ),
  ];
}

export function render(options: KongConfOptions, format: Format): string {
  const lines = header(options);
  if (format !== 'env') lines.push(...(format === 'both' ? ['', '# kong.conf'] : []), ...renderConf(options));
  if (format !== 'conf')
    lines.push(
      ...(format === 'both' ? ['', '# or the same as environment variables (sh)'] : []),
      ...renderEnv(options),
    );
  return `${lines.join('\n')}\n`;
}

/** Parses the command line into render() options; throws KongConfError with a usage hint. */
export function optionsFromArgs(
  args: readonly string[],
  environment: NodeJS.ProcessEnv = process.env,
): { options: KongConfOptions; format: Format } | 'help' {
  let values: ReturnType<typeof parse>['values'];
  try {
    values = parse(args).values;
  } catch (err) {
    throw new KongConfError(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
  }
  if (values.help) return 'help';
  if (!values.prefix)
    throw new KongConfError(`--prefix DIR is required (the folder of the sockets)\n${USAGE}`);
  const format = values.format ?? 'both';
  if (format !== 'conf' && format !== 'env' && format !== 'both')
    throw new KongConfError(`--format ${format}: expected conf, env or both`);
  const kongPrefixes = [values['kong-prefix'], environment.KONG_PREFIX, DEFAULT_KONG_PREFIX].filter(
    (p): p is string => typeof p === 'string' && p !== '',
  );
  return {
    format,
    options: {
      socketDir: resolve(values.prefix),
      node: values.node ?? process.execPath,
      root: values.root ?? installationRoot(),
      env: parseEnvPairs(values.env ?? []),
      kongPrefixes,
    },
  };
}

function parse(args: readonly string[]) {
  return parseArgs({
    args: [...args],
    options: {
      prefix: { type: 'string' },
      env: { type: 'string', multiple: true },
      format: { type: 'string' },
      node: { type: 'string' },
      root: { type: 'string' },
      'kong-prefix': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
}

function main(): void {
  try {
    const parsed = optionsFromArgs(process.argv.slice(2));
    if (parsed === 'help') {
      process.stdout.write(`${USAGE}\n`);
      return;
    }
    const main = join(parsed.options.root, 'dist', 'lib', 'kong', 'main.js');
    // With --root the paths may be another machine's (an image): nothing to check here.
    if (parsed.options.root === installationRoot() && !existsSync(main))
      process.stderr.write(`note: ${main} does not exist yet: run npm run build\n`);
    process.stdout.write(render(parsed.options, parsed.format));
  } catch (err) {
    if (!(err instanceof KongConfError)) throw err;
    process.stderr.write(`kong-conf: ${err.message}\n`);
    process.exit(2);
  }
}

if (require.main === module) main();
