import { createHash } from 'node:crypto';
import type { Capability, Endpoint, RouteDecision, Target } from '../../lib/context';
import { GatewayError } from '../../lib/errors';
import type { TargetHealth, TargetLoad } from '../../lib/health';
import { approximateTokens } from '../../lib/llm/usage';
import type { RouterConfig, Strategy } from '../../schemas/ai-router';
import type { AdaptiveConfig, AdaptiveRouting } from './bandit';
import { hash32, mix32 } from './hash';
import { type Candidate, type Demand, rank, type StrategyState } from './strategies';
import { isImagePart } from './tasks';

/** Answer tokens assumed for a request without `max_tokens`, when a strategy prices or times it. */
const DEFAULT_OUTPUT_TOKENS = 256;

/** What an adaptive pool learns under when the request has no task (no task routing). */
export const ANY_TASK = 'any';

/** The strategies that read the targets' live load; the others skip reading it. */
const LOAD_STRATEGIES: ReadonlySet<string> = new Set<Strategy>([
  'least-latency',
  'least-busy',
  'quota-aware',
]);
const NO_LOAD = Object.freeze({ inFlight: 0 });

/** A set of targets and how to choose among them: a configured pool, or one made for a name. */
interface Pool {
  name: string;
  targets: readonly Target[];
  /** Configured order, no strategy: the first eligible healthy target (a provider model name). */
  strategy: Strategy | 'ordered';
  healthAware: boolean;
  affinityChars?: number;
  /** For `adaptive` pools: the reward weights and exploration bounds. */
  adaptive?: AdaptiveConfig;
  state: StrategyState;
}

/** What the router needs to know of a request. */
export interface RouteRequest {
  endpoint: Endpoint;
  body?: Record<string, unknown>;
  /** Regions the request may be served from; undefined: anywhere. */
  regions?: ReadonlySet<string>;
  /** The request's task, when task routing classified it (adaptive pools learn per task). */
  task?: string;
}

/**
 * Resolves a pool, target or provider model name to the ordered targets of one request:
 * filter (region, capability) → health → affinity or strategy. Pure but for the live state it
 * reads (breakers, load) and the strategies' randomness.
 */
export class Router {
  private readonly pools = new Map<string, Pool>();
  private readonly byModel = new Map<string, Pool>();
  /** Each target's `weight` (strategies and affinity share traffic by it). */
  private readonly weights: ReadonlyMap<string, number>;
  readonly catalog: ReadonlyMap<string, Target>;

  constructor(
    config: Pick<RouterConfig, 'pools' | 'targets' | 'allow_model_names'>,
    targets: readonly Target[],
    private readonly live: {
      health?: TargetHealth;
      load?: TargetLoad;
      /** Orders `adaptive` pools; without it they are ordered by weight. */
      adaptive?: AdaptiveRouting;
      random?: () => number;
    } = {},
  ) {
    const byName = new Map(targets.map((t) => [t.name, t]));
    this.catalog = byName;
    this.weights = new Map(config.targets.map((t) => [t.name, t.weight]));
    for (const t of targets) {
      this.pools.set(t.name, {
        name: t.name,
        targets: [t],
        strategy: 'ordered',
        healthAware: false,
        state: { turn: 0 },
      });
    }
    for (const p of config.pools) {
      this.pools.set(p.name, {
        name: p.name,
        targets: p.targets.map((n) => byName.get(n)!),
        strategy: p.strategy,
        healthAware: p.health_aware,
        ...(p.prompt_affinity ? { affinityChars: p.prompt_affinity.min_prefix_chars } : {}),
        ...(p.strategy === 'adaptive' ? { adaptive: p.adaptive } : {}),
        state: { turn: 0 },
      });
    }
    if (config.allow_model_names) {
      for (const t of targets) {
        if (this.pools.has(t.model)) continue;
        const pool = this.byModel.get(t.model);
        if (pool) (pool.targets as Target[]).push(t);
        else
          this.byModel.set(t.model, {
            name: t.model,
            targets: [t],
            strategy: 'ordered',
            healthAware: true,
            state: { turn: 0 },
          });
      }
    }
  }

  /** Is `name` a pool, a target, or (when allowed) a provider model name? */
  knows(name: string): boolean {
    return this.pools.has(name) || this.byModel.has(name);
  }

  /** Pool and target names, for `GET /v1/models` (provider model names are accepted, not listed). */
  names(): string[] {
    return [...this.pools.keys()];
  }

  route(name: string, req: RouteRequest): Omit<RouteDecision, 'exposeTarget'> {
    const pool = this.pools.get(name) ?? this.byModel.get(name);
    if (!pool)
      throw new GatewayError('AIGW_UNKNOWN_MODEL', 'the requested model is not served here', {
        param: 'model',
      });
    const kind =
      pool.strategy === 'ordered'
        ? pool.targets.length === 1 && pool.name === pool.targets[0]!.name
          ? 'target'
          : 'model'
        : 'pool';

    let eligible = pool.targets.filter(
      (t) => req.regions === undefined || (t.region !== undefined && req.regions.has(t.region)),
    );
    if (eligible.length === 0) {
      throw new GatewayError(
        'AIGW_REGION_NOT_ALLOWED',
        `no target of ${pool.name} runs in a region this request may use (${[...(req.regions ?? [])].join(', ') || 'none'})`,
      );
    }
    const needs = needsOf(req.endpoint, req.body);
    for (const need of needs) {
      eligible = eligible.filter((t) => !t.capabilities?.length || t.capabilities.includes(need));
      if (eligible.length === 0) {
        throw new GatewayError('AIGW_UNSUPPORTED_FEATURE', `no target of ${pool.name} supports ${need}`);
      }
    }

    // Open breakers go last: the relay skips them, and tries them only when all are open.
    const health = this.live.health;
    const open = pool.healthAware && health ? eligible.filter((t) => health.state(t) === 'open') : [];
    const healthy = open.length > 0 ? eligible.filter((t) => !open.includes(t)) : eligible;
    const ranked = this.order(pool, healthy, req);
    const reasons = [
      kind === 'pool'
        ? `pool ${pool.name}: ${ranked.reason}`
        : kind === 'target'
          ? 'target name'
          : `model ${pool.name}`,
    ];
    if (open.length > 0 && healthy.length > 0)
      reasons.push(`${open.length} open breaker${open.length > 1 ? 's' : ''} passed over`);
    const targets = [...ranked.targets, ...open];
    const admitted = new Set(eligible);
    return {
      targets,
      catalog: this.catalog,
      pool: pool.name,
      reason: reasons.join('; '),
      ...(req.regions !== undefined || needs.length > 0
        ? { admits: (t: Target) => admitted.has(t) || this.fitsRequest(t, req, needs) }
        : {}),
    };
  }

  private order(
    pool: Pool,
    targets: readonly Target[],
    req: RouteRequest,
  ): { targets: Target[]; reason: string } {
    if (targets.length === 0) return { targets: [], reason: 'every breaker open' };
    if (pool.strategy === 'ordered') return { targets: [...targets], reason: 'configured order' };
    const adaptive = this.live.adaptive;
    if (pool.adaptive && adaptive) {
      const task = req.task ?? ANY_TASK;
      return {
        targets: adaptive.order(
          { name: pool.name, adaptive: pool.adaptive },
          task,
          targets,
          this.live.random,
        ),
        reason: 'adaptive',
      };
    }
    const load = LOAD_STRATEGIES.has(pool.strategy) ? this.live.load : undefined;
    const candidates: Candidate[] = targets.map((t) => ({
      target: t,
      weight: this.weights.get(t.name) ?? 1,
      load: load?.view(t) ?? NO_LOAD,
    }));
    const ranked = rank(pool.strategy, candidates, demandOf(req), pool.state, this.live.random).map(
      (c) => c.target,
    );
    if (pool.affinityChars !== undefined) {
      const key = prefixKey(req.body, pool.affinityChars);
      if (key !== undefined) {
        const sticky = rendezvous(key, candidates);
        return { targets: [sticky, ...ranked.filter((t) => t !== sticky)], reason: 'prompt affinity' };
      }
    }
    return { targets: ranked, reason: pool.strategy };
  }

  /** A target outside the pool (a fallback chain's) in the request's regions and with its capabilities. */
  private fitsRequest(t: Target, req: RouteRequest, needs: readonly Capability[]): boolean {
    if (req.regions !== undefined && (t.region === undefined || !req.regions.has(t.region))) return false;
    return needs.every((n) => !t.capabilities?.length || t.capabilities.includes(n));
  }
}

/** What a request needs of a target's model: image input, tools, JSON mode, embeddings. */
export function needsOf(endpoint: Endpoint, body: Record<string, unknown> | undefined): Capability[] {
  if (endpoint === 'embeddings') return ['embeddings'];
  if (!body) return [];
  const needs: Capability[] = [];
  if (hasImage(body.messages)) needs.push('vision');
  if (Array.isArray(body.tools) && body.tools.length > 0) needs.push('tools');
  const format = body.response_format as { type?: unknown } | undefined;
  if (format && (format.type === 'json_object' || format.type === 'json_schema')) needs.push('json');
  return needs;
}

function hasImage(messages: unknown): boolean {
  if (!Array.isArray(messages)) return false;
  for (const m of messages) {
    const content = (m as { content?: unknown } | null)?.content;
    if (!Array.isArray(content)) continue;
    for (const part of content) {
      if (isImagePart(part)) return true;
    }
  }
  return false;
}

/** The prompt's size from its characters (cheap: strategies only compare targets with it). */
function demandOf(req: RouteRequest): Demand {
  const body = req.body;
  let chars = 0;
  if (body) {
    const messages = Array.isArray(body.messages) ? body.messages : [];
    for (const m of messages) chars += textLength((m as { content?: unknown } | null)?.content);
    chars += textLength(body.prompt) + textLength(body.input);
  }
  const max = Number(body?.max_completion_tokens ?? body?.max_tokens);
  return {
    inputTokens: approximateTokens(chars),
    outputTokens:
      req.endpoint === 'embeddings' ? 0 : Number.isFinite(max) && max > 0 ? max : DEFAULT_OUTPUT_TOKENS,
  };
}

function textLength(value: unknown): number {
  if (typeof value === 'string') return value.length;
  if (!Array.isArray(value)) return 0;
  let n = 0;
  for (const v of value)
    n += typeof v === 'string' ? v.length : textLength((v as { text?: unknown } | null)?.text);
  return n;
}

/**
 * A key for the first `chars` characters of the prompt (tools, then messages in order), or
 * undefined when the prompt is shorter: only a long shared prefix is worth keeping together.
 */
export function prefixKey(body: Record<string, unknown> | undefined, chars: number): string | undefined {
  if (!body) return undefined;
  const pieces: string[] = [];
  let length = 0;
  const add = (text: string) => {
    pieces.push(text);
    length += text.length;
    return length >= chars;
  };
  if (Array.isArray(body.tools) && add(JSON.stringify(body.tools))) return digest(pieces, chars);
  const messages = Array.isArray(body.messages) ? body.messages : [];
  for (const m of messages) {
    const { role, content } = (m ?? {}) as { role?: unknown; content?: unknown };
    const text = typeof content === 'string' ? content : JSON.stringify(content ?? null);
    if (add(`\u0000${String(role)}\u0000${text}`)) return digest(pieces, chars);
  }
  if (typeof body.prompt === 'string' && add(body.prompt)) return digest(pieces, chars);
  return undefined;
}

function digest(pieces: string[], chars: number): string {
  return createHash('sha1').update(pieces.join('').slice(0, chars)).digest('hex');
}

/**
 * Weighted rendezvous hashing: the candidate with the highest score for this key. The same
 * key picks the same target while it stays eligible; when one leaves, only its keys move.
 */
function rendezvous(key: string, candidates: readonly Candidate[]): Target {
  const keyHash = hash32(key);
  let best = candidates[0]!;
  let bestScore = Number.NEGATIVE_INFINITY;
  for (const c of candidates) {
    const u = (mix32(keyHash ^ nameHash(c.target)) + 0.5) / 2 ** 32;
    const score = c.weight > 0 ? -c.weight / Math.log(u) : Number.NEGATIVE_INFINITY;
    if (score > bestScore) {
      best = c;
      bestScore = score;
    }
  }
  return best.target;
}

const nameHashes = new WeakMap<Target, number>();

function nameHash(target: Target): number {
  let h = nameHashes.get(target);
  if (h === undefined) {
    h = hash32(target.name);
    nameHashes.set(target, h);
  }
  return h;
}
