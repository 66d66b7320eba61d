/**
 * Read and reset ai-budget usage through a suite server's admin endpoint (loopback):
 *
 *   npm run budget -- list
 *   npm run budget -- show  <limit> [scope-value]
 *   npm run budget -- reset <limit> [scope-value]
 *
 * Options: --admin URL (default http://127.0.0.1:$AIGW_ADMIN_PORT, port 8901). The scope
 * value is the consumer id, credential id, ACL group, route id, service id or header value
 * the limit is kept per (none for global limits; `anonymous` for requests without one).
 * Each Kong node has its own suite server; with Redis they all share the counters.
 */
import { parseArgs } from 'node:util';

const USAGE = 'usage: npm run budget -- list | show <limit> [scope] | reset <limit> [scope] [--admin URL]';

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    options: { admin: { type: 'string' } },
    allowPositionals: true,
  });
  const base = values.admin ?? `http://127.0.0.1:${process.env.AIGW_ADMIN_PORT || 8901}`;
  const [command, limit, scope] = positionals;
  const path =
    command === 'list'
      ? '/budgets'
      : limit && (command === 'show' || command === 'reset')
        ? `/budgets/${encodeURIComponent(limit)}${scope === undefined ? '' : `?scope=${encodeURIComponent(scope)}`}`
        : undefined;
  if (!path) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const res = await fetch(`${base}${path}`, { method: command === 'reset' ? 'DELETE' : 'GET' });
  process.stdout.write(`${JSON.stringify(await res.json(), null, 2)}\n`);
  return res.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`budget: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
