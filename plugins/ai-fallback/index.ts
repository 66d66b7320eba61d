import type { AttemptFailure, FailoverPlan, RequestContext, Target } from '../../lib/context';
import { GatewayError } from '../../lib/errors';
import { definePlugin } from '../../lib/kong/plugin';
import { type FallbackConfig, fallbackConfig } from '../../schemas/ai-fallback';
import { Breakers } from './breaker';
import { HedgeDelays } from './hedge';
import { RetryBudget } from './retry-budget';

/** Header a client may send to shorten the deadline (ms), when `deadline_header` allows it. */
export const DEADLINE_HEADER = 'x-ai-deadline-ms';

/**
 * Failover for requests ai-router has routed: the chain of targets to try after the chosen
 * one, which failures move on (triggers), how many attempts, by when, with what backoff,
 * which targets to skip (circuit breakers, shared through the store), and when a slow
 * attempt is raced by a hedge. The relay runs the attempts. Priority 730: after ai-router (the chain starts at its choice) and ai-budget.
 */
export default definePlugin({
  config: fallbackConfig,
  priority: 730,
  phases: ['access'],
  create(config, _keys, suite) {
    const logger = suite.logger.child({ plugin: 'ai-fallback' });
    const breakers = new Breakers(config.breaker, suite.store, suite.health, logger);
    const budget = new RetryBudget(config.retry_budget);
    const hedges = new HedgeDelays(config.hedge);
    const chains = new Map(config.chains.map((c, i) => [c.target, { names: c.fallbacks, index: i }]));
    const statuses = new Set(config.triggers.statuses);

    const triggers = (failure: AttemptFailure): boolean => {
      switch (failure.kind) {
        case 'status':
          return failure.status !== undefined && statuses.has(failure.status);
        case 'connect':
          return config.triggers.connect_error;
        case 'timeout':
          return config.triggers.timeout;
        case 'context_window':
          return config.triggers.context_window;
        case 'content_filter':
          return config.triggers.content_filter;
      }
    };

    return {
      request(ctx) {
        const route = ctx.route;
        if (!route || route.targets.length === 0) return undefined; // nothing routed: nothing to fail over
        const primary = route.targets[0]!;
        const chain = chains.get(primary.name) ?? chains.get('*');
        if (chain) {
          // The chain keeps to what the router allows this request (residency, access).
          const fallbacks = resolveChain(chain, primary, route.catalog).filter(
            (t) => route.admits?.(t) ?? true,
          );
          route.targets = [primary, ...fallbacks];
        }
        budget.recordRequest();
        const deadline = deadlineMs(ctx, config);
        const plan: FailoverPlan = {
          maxAttempts: config.max_attempts,
          deadlineMs: deadline,
          deadlineAt: Date.now() + deadline,
          ...(config.attempt_timeout_ms ? { attemptTimeoutMs: config.attempt_timeout_ms } : {}),
          ...(config.ttft_timeout_ms ? { ttftTimeoutMs: config.ttft_timeout_ms } : {}),
          midstream: config.midstream,
          exposeHeaders: config.expose_headers,
          triggers,
          takeRetry: () => budget.tryRetry(),
          backoffMs: (attempt) => backoffMs(config.backoff, attempt),
          admits: (target, panic) => breakers.admits(target, panic),
          report: (target, failure, readyMs) => {
            breakers.report(target, failure);
            if (!failure && readyMs !== undefined) hedges.record(target, readyMs);
          },
          hedgeAfterMs: (target) => hedges.delayMs(target),
        };
        ctx.failover = plan;
        return undefined;
      },
    };
  },
});

/** The chain's targets from ai-router's catalog; a name the router does not know is a config error. */
function resolveChain(
  chain: { names: readonly string[]; index: number },
  primary: Target,
  catalog: ReadonlyMap<string, Target> | undefined,
): Target[] {
  const out: Target[] = [];
  chain.names.forEach((name, j) => {
    if (name === primary.name) return; // a `*` chain may name the target that failed
    const target = catalog?.get(name);
    if (!target) {
      throw new GatewayError(
        'AIGW_CONFIG_INVALID',
        `ai-fallback config.chains[${chain.index}].fallbacks[${j}]: "${name}" is not a target of this route's ai-router`,
      );
    }
    out.push(target);
  });
  return out;
}

/** The configured deadline, shortened (never lengthened) by the client's header when allowed. */
export function deadlineMs(ctx: RequestContext, config: FallbackConfig): number {
  if (!config.deadline_header) return config.deadline_ms;
  const asked = Number(ctx.header(DEADLINE_HEADER));
  return Number.isInteger(asked) && asked > 0 ? Math.min(asked, config.deadline_ms) : config.deadline_ms;
}

/** Exponential backoff from base_ms, capped at max_ms; full jitter picks a time up to it. */
export function backoffMs(
  settings: { base_ms: number; max_ms: number; jitter: boolean },
  attempt: number,
  random: () => number = Math.random,
): number {
  if (attempt < 2 || settings.base_ms === 0) return 0;
  const ceiling = Math.min(settings.max_ms, settings.base_ms * 2 ** (attempt - 2));
  return settings.jitter ? Math.round(random() * ceiling) : ceiling;
}
