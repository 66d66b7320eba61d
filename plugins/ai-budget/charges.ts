import { createHash } from 'node:crypto';
import type { Endpoint, Usage } from '../../lib/context';
import { NANO_USD, nanoUsdPerToken, type Prices, usageCost } from '../../lib/llm/prices';
import { type BudgetCharge, key } from '../../lib/store';
import type { BudgetLimit } from '../../schemas/ai-budget';
import { type WindowSlot, windowSlot } from './windows';

/** Who a request is, as far as the limits' scopes go. */
export interface Identity {
  consumerId?: string;
  credentialId?: string;
  /** ACL groups of the consumer (Kong's acl plugin sets `x-consumer-groups`). */
  groups: readonly string[];
  routeId?: string;
  serviceId?: string;
  header(name: string): string | undefined;
}

/** Scope value of requests that lack the scope's identity: they share one counter. */
export const ANONYMOUS = 'anonymous';

/** One limit for one scope value: the counter a request is charged to. */
export interface Counter {
  limit: BudgetLimit;
  scopeValue: string;
  slot: WindowSlot;
  /** Store keys of the slot's buckets, the current one first. */
  keys: string[];
  /** The cap in the counter's unit (tokens, or nano-USD), before any priority share. */
  fullCap: number;
}

/** Keys outlive their window by this much, so a late settlement still lands. */
const KEY_GRACE_MS = 3_600_000;

/**
 * A budget counter's key. Every budget key shares the hash tag `{budget}`: a reservation
 * touches the counters of several limits and scopes (a consumer's and the global one) in one
 * Lua script, which Redis Cluster only runs on keys of one slot.
 */
export function budgetKey(limitName: string, scopeValue: string, bucketStart: number): string {
  return key('budget', limitName, scopeValue, bucketStart);
}

/** The identity a limit's scope names, as store-safe values (one per ACL group). */
export function scopeValues(limit: BudgetLimit, who: Identity): string[] {
  const one = (value: string | undefined) => [value ? safeValue(value) : ANONYMOUS];
  switch (limit.scope) {
    case 'global':
      return ['global'];
    case 'consumer':
      return one(who.consumerId);
    case 'credential':
      return one(who.credentialId);
    case 'route':
      return one(who.routeId);
    case 'service':
      return one(who.serviceId);
    case 'header':
      return one(who.header(limit.header!));
    case 'consumer_group':
      return who.groups.length > 0 ? [...new Set(who.groups.map(safeValue))] : [ANONYMOUS];
  }
}

/** Long or odd values (a header is client-visible text) become a short hash. */
function safeValue(value: string): string {
  return /^[A-Za-z0-9._@-]{1,64}$/.test(value)
    ? value
    : `h:${createHash('sha256').update(value).digest('base64url').slice(0, 22)}`;
}

export function countersFor(
  limits: readonly BudgetLimit[],
  who: Identity,
  now: number,
  timeZone: string,
): Counter[] {
  const counters: Counter[] = [];
  for (const limit of limits) {
    const slot = windowSlot(limit.window, now, timeZone, (limit.sliding_window_s ?? 0) * 1_000);
    const fullCap = limit.unit === 'cost_usd' ? Math.floor(limit.limit * NANO_USD) : limit.limit;
    for (const scopeValue of scopeValues(limit, who)) {
      counters.push({
        limit,
        scopeValue,
        slot,
        keys: slot.buckets.map((start) => budgetKey(limit.name, scopeValue, start)),
        fullCap,
      });
    }
  }
  return counters;
}

/** What one request may cost: its prompt, and per answer token (times the choices asked for). */
export interface RequestCost {
  promptTokens: number;
  choices: number;
  prices?: Prices;
}

/** The store charge of a counter: hard limits get the request's priority share of the cap. */
export function chargeFor(counter: Counter, cost: RequestCost, share: number, now: number): BudgetCharge {
  const { fixed, perOutput } = unitCost(counter.limit.unit, cost);
  const hard = counter.limit.mode === 'hard';
  return {
    keys: counter.keys,
    cap: hard ? Math.floor(counter.fullCap * share) : counter.fullCap,
    hard,
    fixed,
    perOutput,
    ttlMs: counter.slot.expiresAt - now + KEY_GRACE_MS,
  };
}

function unitCost(unit: BudgetLimit['unit'], cost: RequestCost): { fixed: number; perOutput: number } {
  switch (unit) {
    case 'tokens':
      return { fixed: cost.promptTokens, perOutput: cost.choices };
    case 'input_tokens':
      return { fixed: cost.promptTokens, perOutput: 0 };
    case 'output_tokens':
      return { fixed: 0, perOutput: cost.choices };
    case 'cost_usd': {
      const p = cost.prices!;
      return {
        fixed: cost.promptTokens * nanoUsdPerToken(p.input_per_1m),
        perOutput: cost.choices * nanoUsdPerToken(p.output_per_1m),
      };
    }
  }
}

/** What a request really used, in a counter's unit. */
export function actualAmount(unit: BudgetLimit['unit'], usage: Usage | undefined, prices?: Prices): number {
  if (!usage) return 0;
  switch (unit) {
    case 'tokens':
      return usage.input_tokens + usage.output_tokens;
    case 'input_tokens':
      return usage.input_tokens;
    case 'output_tokens':
      return usage.output_tokens;
    case 'cost_usd':
      return prices ? usageCost(prices, usage, nanoUsdPerToken) : 0;
  }
}

/** Answer tokens a request asks for: its `max_completion_tokens` / `max_tokens`, or the default. */
export function outputWanted(
  endpoint: Endpoint,
  body: Record<string, unknown> | undefined,
  fallback: number,
) {
  if (endpoint === 'embeddings') return { tokens: 0, given: true };
  const asked = body?.max_completion_tokens ?? body?.max_tokens;
  return typeof asked === 'number' && Number.isInteger(asked) && asked > 0
    ? { tokens: asked, given: true }
    : { tokens: fallback, given: false };
}

/** Choices the request asks for (`n`): each may be as long as the answer limit. */
export function choicesOf(body: Record<string, unknown> | undefined): number {
  const n = body?.n;
  return typeof n === 'number' && Number.isInteger(n) && n > 1 ? Math.min(n, 128) : 1;
}

/**
 * Sets the answer limit the reservation covers, in the field the client used; when it used
 * none, `max_completion_tokens` for OpenAI reasoning models (they refuse `max_tokens`) and
 * `max_tokens` for everyone else (OpenAI-compatible servers know only that one).
 */
export function limitOutput(
  endpoint: Endpoint,
  body: Record<string, unknown>,
  model: string,
  tokens: number,
) {
  if (endpoint === 'embeddings') return;
  if (
    endpoint === 'chat.completions' &&
    (body.max_completion_tokens !== undefined || isReasoningModel(model))
  ) {
    body.max_completion_tokens = tokens;
    delete body.max_tokens;
  } else body.max_tokens = tokens;
}

function isReasoningModel(model: string): boolean {
  return /^(o\d|gpt-5)/.test(model.slice(model.lastIndexOf('/') + 1));
}
