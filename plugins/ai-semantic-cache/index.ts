import { AnswerCache, type NamespaceSettings } from '../../lib/cache/answer-cache';
import { type ConversationScope, conversationText, exactIdOf, partitionOf } from '../../lib/cache/canonical';
import type { CacheEntry } from '../../lib/cache/entry';
import { namespaceOf, tenantOf } from '../../lib/cache/keys';
import { jsonAnswer, sseAnswer } from '../../lib/cache/replay';
import type { CacheSummary, PolicyAnswer, RequestContext } from '../../lib/context';
import { type Embedder, embedderFromConfig, LOCAL_EMBEDDER_DEFAULT_THRESHOLD } from '../../lib/embed';
import { gatherFacts } from '../../lib/kong/facts';
import { definePlugin, type Suite } from '../../lib/kong/plugin';
import { type SemanticCacheConfig, semanticCacheConfig } from '../../schemas/ai-semantic-cache';
import { CacheAdmin } from './admin';
import { CacheMetrics, ShadowStats } from './metrics';
import { answerText, cacheControl, fillDecision, planRequest, similarity } from './policy';

export const CACHE_STATUS_HEADER = 'x-cache-status';
export const CACHE_SIMILARITY_HEADER = 'x-cache-similarity';

interface Shared {
  cache: AnswerCache;
  metrics: CacheMetrics;
  shadow: ShadowStats;
  admin: CacheAdmin;
  /** One embedder per distinct embedder config: instances re-created by Kong reuse it (and its connections). */
  embedders: Map<string, Embedder>;
}

/** Per suite server: the cache's node state, its metrics and admin resource, and the embedders. */
const perSuite = new WeakMap<Suite, Shared>();

function shared(suite: Suite): Shared {
  let s = perSuite.get(suite);
  if (!s) {
    const metrics = new CacheMetrics(suite.metrics);
    const cache = new AnswerCache(suite.store, {
      storeError: (op) => metrics.storeError(op),
      corrupt: () => metrics.corruptEntries.inc(),
    });
    const shadow = new ShadowStats(metrics);
    const admin = new CacheAdmin(cache, shadow);
    s = { cache, metrics, shadow, admin, embedders: new Map() };
    const created = s;
    suite.admin.add('cache', (req) => created.admin.handle(req));
    perSuite.set(suite, s);
  }
  return s;
}

function embedderFor(config: SemanticCacheConfig['embedder'], s: Shared): Embedder {
  const id = JSON.stringify(config);
  let embedder = s.embedders.get(id);
  if (!embedder) {
    embedder = embedderFromConfig(config);
    s.embedders.set(id, embedder);
  }
  return embedder;
}

/** What a lookup found. */
interface Found {
  entry: CacheEntry;
  tier: 'exact' | 'semantic';
  similarity?: number;
}

/**
 * Exact and semantic answers for repeated prompts. Priority 760: the first of the suite, so a
 * hit spends no routing or budget work, yet after auth/ACL (the tenant is known) and after
 * Kong's AI prompt plugins (771–777, the cached prompt is the final one).
 *
 * In the relay, before any other policy: a hit is answered at once (JSON, or the stream
 * replayed as SSE); on a miss the relay records the answer it sends and, once the exchange
 * ended, the answer is stored if it may be (fillDecision). Never blocks a request on the
 * store: a lookup is bounded by `lookup_timeout_ms` and store trouble is a MISS.
 */
export default definePlugin({
  config: semanticCacheConfig,
  priority: 760,
  phases: ['access'],
  create(config, kong, suite) {
    const logger = suite.logger.child({ plugin: 'ai-semantic-cache' });
    const s = shared(suite);
    s.cache.ensureLocalCapacity(config.local_cache.max_entries);
    s.admin.register(config.ttl_s * 1000);
    const embedder = embedderFor(config.embedder, s);
    const threshold = config.semantic.threshold ?? LOCAL_EMBEDDER_DEFAULT_THRESHOLD;
    const settings: NamespaceSettings = {
      ttlMs: config.ttl_s * 1000,
      maxEntries: config.max_entries,
      dimensions: embedder.dimensions,
      localTtlMs: config.local_cache.ttl_ms,
      syncIntervalMs: config.sync_interval_ms,
    };
    const scope: ConversationScope =
      config.semantic.conversation === 'last_turns'
        ? { mode: 'last_turns', turns: config.semantic.turns }
        : { mode: 'last_user' };
    const needs = {
      consumer: config.scope === 'consumer',
      credential: config.scope === 'credential',
      route: config.scope === 'route' && !kong.route_id && !kong.service_id,
    };

    /** One embedding, or undefined when the embedder failed (the semantic tier then misses). */
    const embed = async (text: string): Promise<Float32Array | undefined> => {
      try {
        return (await embedder.embed([text]))[0];
      } catch (err) {
        logger.warn({ err: String(err) }, 'ai-semantic-cache: embedding failed');
        return undefined;
      }
    };

    return {
      gather: (pdk) => gatherFacts(pdk, needs),

      async request(ctx) {
        if (ctx.endpoint === 'models' || ctx.endpoint === 'feedback') return undefined;
        const control = cacheControl(ctx.header('cache-control'));
        const routeId = kong.route_id ?? ctx.routeId ?? ctx.facts.routeId ?? kong.service_id ?? ctx.serviceId;
        const tenant = tenantOf(config.scope, {
          consumerId: ctx.facts.consumer?.id,
          credentialId: ctx.facts.credentialId,
          routeId,
        });
        const plan = planRequest({
          endpoint: ctx.endpoint,
          body: ctx.body,
          control,
          tenant,
          maxTemperature: config.max_temperature,
        });
        if (plan.kind === 'bypass') {
          s.metrics.lookups.inc({ tier: 'none', result: 'bypass' });
          mark(ctx, { status: 'BYPASS' });
          return undefined;
        }
        const body = ctx.body!;
        const namespace = namespaceOf(tenant!, embedder);
        const route = routeId ?? '';
        const id = exactIdOf(body, route);
        const partition = partitionOf(body, route);
        const text = config.semantic.enabled ? conversationText(body, scope) : undefined;
        let vector: Float32Array | undefined;

        const lookup = async (): Promise<Found | undefined> => {
          if (config.exact.enabled) {
            const entry = await s.cache.get(namespace, id, settings);
            if (entry) return { entry, tier: 'exact' };
          }
          if (text === undefined) return undefined;
          vector = await embed(text);
          if (!vector) return undefined;
          const hit = await s.cache.nearest(namespace, partition, vector, threshold, settings);
          return hit && { entry: hit.entry, tier: 'semantic', similarity: hit.similarity };
        };

        const found = plan.lookup
          ? await within(
              lookup().catch((err: unknown) => {
                logger.error({ err, request_id: ctx.requestId }, 'ai-semantic-cache: lookup failed');
                return undefined;
              }),
              config.lookup_timeout_ms,
            )
          : undefined;
        if (found && (found.tier === 'exact' || !config.shadow)) {
          s.metrics.lookups.inc({ tier: found.tier, result: 'hit' });
          const summary: CacheSummary = { status: 'HIT', tier: found.tier };
          if (found.similarity !== undefined) summary.similarity = found.similarity;
          mark(ctx, summary);
          return hitAnswer(ctx, found);
        }
        if (found) {
          s.metrics.lookups.inc({ tier: 'semantic', result: 'shadow' });
          mark(ctx, { status: 'SHADOW', tier: 'semantic', similarity: found.similarity! });
          ctx.keepAnswer(config.max_answer_bytes);
          ctx.afterExchange(() => compareShadow(ctx, found.entry));
        } else if (plan.lookup) {
          // The last tier consulted: a semantic miss means the exact tier missed first.
          const tier = text !== undefined ? 'semantic' : config.exact.enabled ? 'exact' : 'none';
          s.metrics.lookups.inc({ tier, result: 'miss' });
          mark(ctx, { status: 'MISS' });
        } else {
          s.metrics.lookups.inc({ tier: 'none', result: 'bypass' });
          mark(ctx, { status: 'BYPASS' });
        }
        if (!plan.fill) {
          s.metrics.fills.inc({ result: 'no_store' });
          return undefined;
        }
        ctx.keepAnswer(config.max_answer_bytes);
        ctx.afterExchange(async () => {
          const decision = fillDecision(ctx.outcome, {
            cacheToolCalls: config.cache_tool_calls,
            maxAnswerBytes: config.max_answer_bytes,
          });
          if (decision !== 'store') {
            s.metrics.fills.inc({ result: decision });
            return;
          }
          if (text !== undefined && !vector) vector = await embed(text);
          const stored = await s.cache.put(
            namespace,
            id,
            {
              createdAt: Date.now(),
              partition,
              answer: ctx.outcome!.answer!.body,
              ...(vector ? { vector } : {}),
            },
            settings,
          );
          s.metrics.fills.inc({ result: stored ? 'stored' : 'store_error' });
        });
        return undefined;
      },
    };

    /** Records the cache's verdict on the context and, when configured, in the answer's headers. */
    function mark(ctx: RequestContext, summary: CacheSummary): void {
      ctx.cache = summary;
      if (!config.expose_headers) return;
      ctx.responseHeaders[CACHE_STATUS_HEADER] = summary.status;
      if (summary.similarity !== undefined) {
        ctx.responseHeaders[CACHE_SIMILARITY_HEADER] = summary.similarity.toFixed(4);
      }
    }

    function hitAnswer(ctx: RequestContext, found: Found): PolicyAnswer {
      const created = Math.floor(Date.now() / 1000);
      const headers: Record<string, string> = config.expose_headers
        ? { age: String(Math.max(0, Math.floor((Date.now() - found.entry.createdAt) / 1000))) }
        : {};
      if (!ctx.stream) return { status: 200, body: jsonAnswer(found.entry.answer, { created }), headers };
      const options = ctx.body?.stream_options as { include_usage?: unknown } | null | undefined;
      const includeUsage = typeof options === 'object' && options?.include_usage === true;
      return {
        status: 200,
        body: undefined,
        sse: sseAnswer(found.entry.answer, { created, includeUsage }),
        headers,
      };
    }

    /** Shadow mode: was the cached answer as good as the fresh one? Same text, or similar enough in meaning. */
    async function compareShadow(ctx: RequestContext, cached: CacheEntry): Promise<void> {
      const fresh = ctx.outcome?.answer?.body;
      if (!fresh || ctx.outcome?.end !== 'complete') return;
      const a = answerText(fresh);
      const b = answerText(cached.answer);
      const exactMatch = a === b;
      let sim = exactMatch ? 1 : 0;
      if (!exactMatch && a !== '' && b !== '') {
        const vectors = await embedder.embed([a, b]).catch(() => undefined);
        if (!vectors) return; // no evidence either way
        sim = similarity(vectors[0]!, vectors[1]!);
      }
      s.shadow.record(exactMatch || sim >= threshold ? 'agree' : 'disagree', exactMatch, sim);
    }
  },
});

/** The promise's value, or undefined once `ms` have passed (the work goes on, its result unused). */
function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}
