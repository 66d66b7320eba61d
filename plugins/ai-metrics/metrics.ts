import { Counter, Histogram, type Registry } from 'prom-client';
import type { RequestContext, Target } from '../../lib/context';
import { usageCost } from '../../lib/llm/prices';
import { type KongLogData, OPERATION } from './log-record';

/**
 * The request families mirror Kong's prometheus AI metrics (`kong_ai_llm_*`, same label
 * names and meanings) under the suite's prefix, so one dashboard reads both and a server
 * scraping both never sees a collision. Every label value comes from config or a closed set:
 * `ai_model` is the target's configured model, never the client's `model` string.
 */
const REQUEST_LABELS = [
  'ai_provider',
  'ai_model',
  'cache_status',
  'route',
  'request_type',
  'consumer',
] as const;
const MODEL_LABELS = ['ai_provider', 'ai_model'] as const;

type RequestLabel = (typeof REQUEST_LABELS)[number];
type ModelLabel = (typeof MODEL_LABELS)[number];

/** Kong's buckets for `ai_llm_provider_latency_ms` (plugins/prometheus/exporter.lua). */
const KONG_LATENCY_BUCKETS = [
  250, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000, 10000, 30000, 60000,
];
/** Finer at the low end, where cache hits, short answers and first tokens land. */
const LATENCY_BUCKETS = [5, 10, 25, 50, 100, 250, 500, 1000, 2000, 3000, 5000, 10000, 30000, 60000, 120000];
const TOKEN_BUCKETS = [16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576];
const RATE_BUCKETS = [1, 5, 10, 20, 40, 60, 80, 100, 150, 200, 400, 1000];
const ROUND_TRIP_BUCKETS = [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 24];

/** What one request contributes to the metrics, worked out from the context and Kong's log data. */
export interface RequestMeasure {
  labels: Partial<Record<RequestLabel, string>>;
  status: string;
  tokens?: { prompt: number; completion: number; cachedPrompt?: number };
  costUsd?: number;
  providerLatencyMs?: number;
  totalLatencyMs?: number;
  ttftMs?: number;
  outputTokensPerSecond?: number;
  /** Failed attempts before the answer: target name and reason. */
  fallbacks: Array<{ target: string; reason: string }>;
  errorCode?: string;
  roundTrips?: number;
}

/** Pure: the measure of one request (unit-tested without a registry). */
export function measureRequest(
  ctx: RequestContext | undefined,
  kong: KongLogData,
  options: { consumerLabel: boolean; logRoundTrips: number },
): RequestMeasure {
  const outcome = ctx?.outcome;
  const target = outcome ? findTarget(ctx, outcome.target) : undefined;
  const consumer = kong.consumer?.username ?? kong.consumer?.id;
  const labels: RequestMeasure['labels'] = {
    ai_provider: outcome?.provider ?? '',
    ai_model: outcome?.model ?? '',
    cache_status: ctx?.cache?.status ?? '',
    route: kong.route?.name ?? kong.route?.id ?? '',
    // The operation; ai-router's task class takes its place once the router classifies requests.
    request_type: ctx?.endpoint ? OPERATION[ctx.endpoint] : '',
  };
  if (options.consumerLabel) labels.consumer = consumer ?? '';
  const measure: RequestMeasure = {
    labels,
    status: String(kong.response?.status ?? outcome?.status ?? 0),
    fallbacks: [],
  };
  const usage = outcome?.usage;
  if (usage) {
    measure.tokens = { prompt: usage.input_tokens, completion: usage.output_tokens };
    if (usage.cached_input_tokens) measure.tokens.cachedPrompt = usage.cached_input_tokens;
    if (target?.prices) measure.costUsd = usageCost(target.prices, usage);
  }
  if (outcome?.latency_ms !== undefined && outcome.upstream_status !== undefined) {
    measure.providerLatencyMs = outcome.latency_ms;
  }
  if (kong.latencies?.request !== undefined) measure.totalLatencyMs = kong.latencies.request;
  if (outcome?.stream && outcome.ttft_ms !== undefined) measure.ttftMs = outcome.ttft_ms;
  if (usage && usage.output_tokens > 0 && outcome?.end === 'complete' && outcome.latency_ms !== undefined) {
    // A stream's tokens come after its first; a JSON answer's over the whole call.
    const generatingMs = outcome.latency_ms - (outcome.stream ? (outcome.ttft_ms ?? 0) : 0);
    if (generatingMs > 0) measure.outputTokensPerSecond = (usage.output_tokens * 1000) / generatingMs;
  }
  for (const attempt of outcome?.attempts ?? []) {
    if (!attempt.failure || attempt.failure === 'cancelled') continue;
    const reason = attempt.failure === 'status' ? `status_${attempt.status ?? 0}` : attempt.failure;
    measure.fallbacks.push({ target: attempt.target, reason });
  }
  const code = outcome?.error?.code ?? ctx?.refusal?.code;
  if (code) measure.errorCode = code;
  if (ctx) measure.roundTrips = ctx.pdkCalls + options.logRoundTrips;
  return measure;
}

function findTarget(ctx: RequestContext | undefined, name: string): Target | undefined {
  return ctx?.route?.catalog?.get(name) ?? ctx?.route?.targets.find((t) => t.name === name);
}

/** The suite's request metrics, registered once per registry. */
export class RequestMetrics {
  private readonly requests: Counter<RequestLabel | 'status'>;
  private readonly tokens: Counter<RequestLabel | 'token_type'>;
  private readonly cost: Counter<RequestLabel>;
  private readonly providerLatency: Histogram<ModelLabel>;
  private readonly totalLatency: Histogram<ModelLabel>;
  private readonly ttft: Histogram<ModelLabel>;
  private readonly outputRate: Histogram<ModelLabel>;
  private readonly promptTokens: Histogram<ModelLabel>;
  private readonly completionTokens: Histogram<ModelLabel>;
  private readonly fallbacks: Counter<'target' | 'reason'>;
  private readonly errors: Counter<'code'>;
  private readonly roundTrips: Histogram;

  constructor(registry: Registry) {
    const registers = [registry];
    const model = (name: string, help: string, buckets: number[]) =>
      new Histogram({ name, help, labelNames: MODEL_LABELS, buckets, registers });
    this.requests = new Counter({
      name: 'aigw_ai_llm_requests_total',
      help: 'AI requests, by provider, model, cache status, route, request type and HTTP status (as kong_ai_llm_requests_total).',
      labelNames: [...REQUEST_LABELS, 'status'],
      registers,
    });
    this.tokens = new Counter({
      name: 'aigw_ai_llm_tokens_total',
      help: 'Tokens, by type: prompt_tokens, completion_tokens, total_tokens, cached_prompt_tokens (as kong_ai_llm_tokens_total).',
      labelNames: [...REQUEST_LABELS, 'token_type'],
      registers,
    });
    this.cost = new Counter({
      name: 'aigw_ai_llm_cost_total',
      help: "Cost in USD, from the target's prices or the model's list price (as kong_ai_llm_cost_total).",
      labelNames: REQUEST_LABELS,
      registers,
    });
    this.providerLatency = model(
      'aigw_ai_llm_provider_latency_ms',
      "Provider time, from the first call to the answer's end, fallbacks included (as kong_ai_llm_provider_latency_ms).",
      KONG_LATENCY_BUCKETS,
    );
    this.totalLatency = model(
      'aigw_ai_llm_total_latency_ms',
      "Kong's whole request time, client to client.",
      LATENCY_BUCKETS,
    );
    this.ttft = model(
      'aigw_ai_llm_time_to_first_token_ms',
      'Streams: time from the first provider call to the first generated token.',
      LATENCY_BUCKETS,
    );
    this.outputRate = model(
      'aigw_ai_llm_output_tokens_per_second',
      'Answer tokens per second of generation (a stream after its first token).',
      RATE_BUCKETS,
    );
    this.promptTokens = model('aigw_ai_llm_prompt_tokens', 'Prompt length in tokens.', TOKEN_BUCKETS);
    this.completionTokens = model('aigw_ai_llm_completion_tokens', 'Answer length in tokens.', TOKEN_BUCKETS);
    this.fallbacks = new Counter({
      name: 'aigw_fallbacks_total',
      help: 'Attempts that failed or were skipped before another target answered, by target and reason.',
      labelNames: ['target', 'reason'],
      registers,
    });
    this.errors = new Counter({
      name: 'aigw_relay_errors_total',
      help: 'Requests the gateway answered with an error, by error code.',
      labelNames: ['code'],
      registers,
    });
    this.roundTrips = new Histogram({
      name: 'aigw_kong_round_trips',
      help: 'Kong ↔ suite server round trips per request, all plugins and phases.',
      buckets: ROUND_TRIP_BUCKETS,
      registers,
    });
  }

  record(m: RequestMeasure): void {
    const { labels } = m;
    const byModel = { ai_provider: labels.ai_provider ?? '', ai_model: labels.ai_model ?? '' };
    this.requests.inc({ ...labels, status: m.status });
    if (m.tokens) {
      const { prompt, completion, cachedPrompt } = m.tokens;
      this.tokens.inc({ ...labels, token_type: 'prompt_tokens' }, prompt);
      this.tokens.inc({ ...labels, token_type: 'completion_tokens' }, completion);
      this.tokens.inc({ ...labels, token_type: 'total_tokens' }, prompt + completion);
      if (cachedPrompt) this.tokens.inc({ ...labels, token_type: 'cached_prompt_tokens' }, cachedPrompt);
      this.promptTokens.observe(byModel, prompt);
      this.completionTokens.observe(byModel, completion);
    }
    // As Kong: a cost series appears once something cost money.
    if (m.costUsd) this.cost.inc(labels, m.costUsd);
    if (m.providerLatencyMs !== undefined) this.providerLatency.observe(byModel, m.providerLatencyMs);
    if (m.totalLatencyMs !== undefined) this.totalLatency.observe(byModel, m.totalLatencyMs);
    if (m.ttftMs !== undefined) this.ttft.observe(byModel, m.ttftMs);
    if (m.outputTokensPerSecond !== undefined) this.outputRate.observe(byModel, m.outputTokensPerSecond);
    for (const f of m.fallbacks) this.fallbacks.inc(f);
    if (m.errorCode) this.errors.inc({ code: m.errorCode });
    if (m.roundTrips !== undefined) this.roundTrips.observe(m.roundTrips);
  }
}
