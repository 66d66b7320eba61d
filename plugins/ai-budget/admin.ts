import { type AdminAnswer, type AdminRequest, adminError } from '../../lib/admin/routes';
import { NANO_USD } from '../../lib/llm/prices';
import type { Store } from '../../lib/store';
import type { BudgetLimit } from '../../schemas/ai-budget';
import { budgetKey, scopeValues } from './charges';
import { windowSlot } from './windows';

interface Known {
  limit: BudgetLimit;
  timeZone: string;
}

/**
 * The admin endpoint's `/budgets` (loopback, for operators):
 *
 *   GET    /budgets                          every limit the ai-budget instances enforce
 *   GET    /budgets/<limit>?scope=<value>    its current window: used, held, cap, remaining
 *   DELETE /budgets/<limit>?scope=<value>    resets the current window
 *
 * `scope` is the consumer id, credential id, ACL group, route id, service id or header
 * value (omitted for global limits; `anonymous` for requests without that identity).
 */
export class BudgetAdmin {
  private readonly limits = new Map<string, Known>();

  constructor(
    private readonly store: Store,
    private readonly now: () => number = Date.now,
  ) {}

  /** A limit of the same name in another instance shares the counters; the last config describes it. */
  register(limits: readonly BudgetLimit[], timeZone: string): void {
    for (const limit of limits) this.limits.set(limit.name, { limit, timeZone });
  }

  async handle(req: AdminRequest): Promise<AdminAnswer> {
    const name = decodeURIComponent(req.path.split('/')[2] ?? '');
    if (name === '') {
      if (req.method !== 'GET')
        return adminError(405, 'only GET lists the limits', 'AIGW_METHOD_NOT_ALLOWED');
      return [200, { object: 'list', data: [...this.limits.values()].map((k) => describe(k)) }];
    }
    const known = this.limits.get(name);
    if (!known) return adminError(404, `no budget limit named ${name}`, 'AIGW_NOT_FOUND');
    const { limit, timeZone } = known;
    const raw = req.query.get('scope') ?? undefined;
    if (limit.scope !== 'global' && raw === undefined) {
      return adminError(400, `limit ${name} is per ${limit.scope}: give ?scope=<value>`, 'AIGW_BAD_REQUEST');
    }
    // The same mapping the requests use, so a header value or group finds its counter.
    const [scope] = scopeValues(limit, {
      consumerId: raw,
      credentialId: raw,
      routeId: raw,
      serviceId: raw,
      groups: raw === undefined ? [] : [raw],
      header: () => raw,
    });
    const now = this.now();
    const slot = windowSlot(limit.window, now, timeZone, (limit.sliding_window_s ?? 0) * 1_000);
    const keys = slot.buckets.map((start) => budgetKey(limit.name, scope!, start));
    if (req.method === 'DELETE') {
      await Promise.all(keys.map((k) => this.store.resetBudget(k)));
      return [200, { limit: name, scope, reset: true }];
    }
    if (req.method !== 'GET') return adminError(405, 'use GET or DELETE', 'AIGW_METHOD_NOT_ALLOWED');
    const counts = await Promise.all(keys.map((k) => this.store.budgetUsage(k)));
    const used = counts.reduce((sum, c) => sum + c.used, 0);
    const held = counts.reduce((sum, c) => sum + c.held, 0);
    const cost = limit.unit === 'cost_usd';
    const inUnit = (n: number) => (cost ? n / NANO_USD : n);
    const cap = cost ? limit.limit * NANO_USD : limit.limit;
    return [
      200,
      {
        ...describe(known),
        scope_value: scope,
        window_start: new Date(slot.buckets.at(-1)!).toISOString(),
        resets_at: new Date(slot.resetsAt).toISOString(),
        used: inUnit(used),
        held: inUnit(held),
        remaining: inUnit(Math.max(0, cap - used - held)),
      },
    ];
  }
}

function describe({ limit, timeZone }: Known) {
  return {
    name: limit.name,
    scope: limit.scope,
    ...(limit.header ? { header: limit.header } : {}),
    window: limit.window,
    ...(limit.sliding_window_s ? { sliding_window_s: limit.sliding_window_s } : {}),
    time_zone: timeZone,
    unit: limit.unit,
    limit: limit.limit,
    mode: limit.mode,
  };
}
