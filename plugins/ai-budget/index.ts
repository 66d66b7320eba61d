import { randomBytes } from 'node:crypto';
import type { RequestContext } from '../../lib/context';
import { GatewayError } from '../../lib/errors';
import { gatherFacts } from '../../lib/kong/facts';
import { definePlugin, type Suite } from '../../lib/kong/plugin';
import { MemoryStore, type ReserveResult } from '../../lib/store';
import { type BudgetConfig, budgetConfig } from '../../schemas/ai-budget';
import { BudgetAdmin } from './admin';
import {
  type Counter,
  chargeFor,
  choicesOf,
  countersFor,
  type Identity,
  limitOutput,
  outputWanted,
} from './charges';
import { budgetHeaders, tightest } from './headers';
import { type BudgetStore, LeasedBudget, leaseSettings } from './leases';
import { BudgetMetrics } from './metrics';
import { Reservation } from './reservation';

/** Header listing the soft limits a request went past. */
export const SOFT_EXCEEDED_HEADER = 'x-ai-budget-soft-exceeded';

/** Per suite server: its admin resource, its metrics, and the store used while the shared one is down. */
const perSuite = new WeakMap<Suite, { admin: BudgetAdmin; local: MemoryStore; metrics: BudgetMetrics }>();

/**
 * Token and cost caps that hold under concurrency: before the provider call the request's
 * prompt tokens and answer limit are reserved on every limit that applies, atomically in one
 * store call (clamping `max_tokens` to what is left, or refusing with 429); after the
 * exchange the reservation is settled with the actual usage. Priority 740: after ai-router
 * (the reservation prices the chosen target), before ai-fallback.
 */
export default definePlugin({
  config: budgetConfig,
  priority: 740,
  phases: ['access'],
  create(config, kong, suite) {
    const logger = suite.logger.child({ plugin: 'ai-budget' });
    let shared = perSuite.get(suite);
    if (!shared) {
      shared = {
        admin: new BudgetAdmin(suite.store),
        local: new MemoryStore(),
        metrics: new BudgetMetrics(suite.metrics),
      };
      suite.admin.add('budgets', (req) => shared!.admin.handle(req));
      perSuite.set(suite, shared);
    }
    shared.admin.register(config.limits, config.time_zone);
    const { local, metrics } = shared;
    const needs = {
      consumer: config.limits.some((l) => l.scope === 'consumer') || config.priority.classes.length > 0,
      credential: config.limits.some((l) => l.scope === 'credential'),
      route: !kong.route_id && config.limits.some((l) => l.scope === 'route'),
      service: !kong.service_id && config.limits.some((l) => l.scope === 'service'),
    };
    const costs = config.limits.some((l) => l.unit === 'cost_usd');
    // Leases save round trips to a shared store; the memory store has none to save.
    const leases =
      config.lease.enabled && suite.store.kind !== 'memory'
        ? new LeasedBudget(suite.store, leaseSettings(config), logger, () => metrics.leasedReservations.inc())
        : undefined;
    const budgetStore: BudgetStore = leases ?? suite.store;

    return {
      gather: (pdk) => gatherFacts(pdk, needs),
      close: () => leases?.close(),

      async request(ctx) {
        const route = ctx.route;
        const endpoint = ctx.endpoint;
        if (
          !route ||
          route.targets.length === 0 ||
          !endpoint ||
          endpoint === 'models' ||
          endpoint === 'feedback'
        ) {
          return undefined;
        }
        const target = route.targets[0]!;
        if (costs && !target.prices) {
          throw new GatewayError(
            'AIGW_CONFIG_INVALID',
            `ai-budget counts cost, but target ${target.name} has no price: set prices on its ai-router target`,
          );
        }
        const now = Date.now();
        const counters = countersFor(config.limits, identityOf(ctx, kong), now, config.time_zone);
        const wanted = outputWanted(endpoint, ctx.body, config.default_max_tokens);
        const cost = {
          promptTokens: ctx.promptTokens(target.model).tokens,
          choices: choicesOf(ctx.body),
          ...(target.prices ? { prices: target.prices } : {}),
        };
        const minOutput =
          config.on_exceed === 'clamp' ? Math.min(wanted.tokens, config.min_output_tokens) : wanted.tokens;
        const id = `${ctx.requestId}:${randomBytes(6).toString('base64url')}`;

        let store: BudgetStore = budgetStore;
        let share = classShare(ctx, config);
        let charges = counters.map((c) => chargeFor(c, cost, share, now));
        const reserve = () =>
          store.reserve({ id, charges, output: wanted.tokens, minOutput, holdMs: config.hold_ms });
        let result: ReserveResult;
        try {
          result = await reserve();
        } catch (err) {
          if (!(err instanceof GatewayError) || err.code !== 'AIGW_STORE_UNAVAILABLE') throw err;
          if (!config.fault_tolerant) {
            throw new GatewayError(
              'AIGW_STORE_UNAVAILABLE',
              'the budget store is unavailable; try again later',
            );
          }
          // Each node counts alone against its share of every limit until the store is back.
          logger.warn({ err: err.message }, 'ai-budget: store unavailable, counting on this node only');
          store = local;
          share *= config.local_share;
          metrics.localReservations.inc();
          charges = counters.map((c) => chargeFor(c, cost, share, now));
          result = await reserve();
        }

        if (config.expose_headers)
          Object.assign(ctx.responseHeaders, budgetHeaders(counters, charges, result, now));
        const soft = softExceeded(counters, result);
        if (soft.length > 0) {
          for (const name of soft) metrics.softExceeded.inc({ limit: name });
          ctx.responseHeaders[SOFT_EXCEEDED_HEADER] = soft.join(',');
          logger.info({ request_id: ctx.requestId, limits: soft }, 'ai-budget: soft limit exceeded');
        }
        if (!result.ok) {
          const refusing = counters[result.refusedBy ?? 0]!;
          metrics.refused.inc({ limit: refusing.limit.name });
          throw exhausted(refusing, now);
        }
        if (result.output < wanted.tokens)
          metrics.clamped.inc({ limit: counters[tightest(charges, result) ?? 0]!.limit.name });

        if (ctx.body && (result.output < wanted.tokens || !wanted.given)) {
          limitOutput(endpoint, ctx.body, target.model, result.output);
        }
        ctx.budget = new Reservation({
          summary: {
            reserved_output: result.output,
            clamped: result.output < wanted.tokens,
            ...(soft.length > 0 ? { soft_exceeded: soft } : {}),
            ...(store === local ? { local: true as const } : {}),
          },
          store,
          id,
          counters,
          charges,
          cost,
          output: result.output,
          share,
          priced: target,
          route,
          holdMs: config.hold_ms,
          logger,
          now: Date.now,
        });
        return undefined;
      },
    };
  },
});

function identityOf(ctx: RequestContext, kong: { route_id?: string; service_id?: string }): Identity {
  return {
    consumerId: ctx.facts.consumer?.id,
    credentialId: ctx.facts.credentialId,
    groups: ctx.consumerGroups,
    routeId: kong.route_id ?? ctx.facts.routeId,
    serviceId: kong.service_id ?? ctx.facts.serviceId,
    header: (name) => ctx.header(name),
  };
}

/** The share of hard caps the request's priority class may use (1 without classes). */
function classShare(ctx: RequestContext, config: BudgetConfig): number {
  const { classes, header, consumer_tag_prefix, default_class } = config.priority;
  if (classes.length === 0) return 1;
  const byName = new Map(classes.map((c) => [c.name, c.share]));
  const tagged = ctx.facts.consumer?.tags
    ?.find((t) => t.startsWith(consumer_tag_prefix))
    ?.slice(consumer_tag_prefix.length);
  for (const name of [header ? ctx.header(header) : undefined, tagged, default_class]) {
    const share = name === undefined ? undefined : byName.get(name);
    if (share !== undefined) return share;
  }
  return 1;
}

function softExceeded(counters: Counter[], result: ReserveResult): string[] {
  const names = new Set<string>();
  counters.forEach((c, i) => {
    if (c.limit.mode === 'soft' && (result.used[i] ?? 0) > c.fullCap) names.add(c.limit.name);
  });
  return [...names];
}

function exhausted(counter: Counter, now: number): GatewayError {
  const seconds = Math.max(1, Math.ceil((counter.slot.resetsAt - now) / 1_000));
  return new GatewayError(
    'AIGW_BUDGET_EXCEEDED',
    `the ${counter.limit.unit === 'cost_usd' ? 'cost' : 'token'} budget "${counter.limit.name}" is spent for this window; it frees up in ${seconds} s`,
    { headers: { 'retry-after': String(seconds) } },
  );
}
