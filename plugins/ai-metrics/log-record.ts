import type { RequestContext } from '../../lib/context';
import type { RequestMeasure } from './metrics';
import type { RequestSpan } from './traces';

/** The part of `kong.log.serialize()` the log line uses. */
export interface KongLogData {
  request?: { id?: string; headers?: Record<string, string | string[]> };
  response?: { status?: number; size?: number };
  route?: { id?: string; name?: string };
  latencies?: { kong?: number; proxy?: number; request?: number };
  /** When Kong started the request (epoch ms). */
  started_at?: number;
  consumer?: { id?: string; username?: string };
  service?: { id?: string };
}

/** OpenTelemetry's `gen_ai.operation.name` of each endpoint. */
export const OPERATION = {
  'chat.completions': 'chat',
  completions: 'text_completion',
  embeddings: 'embeddings',
  models: 'models',
  feedback: 'feedback',
} as const;

/**
 * One structured line per request, with OpenTelemetry GenAI attribute names where one exists.
 * Never holds keys; prompts and answers only through ContentLog (off by default).
 */
export function buildLogRecord(
  ctx: RequestContext | undefined,
  kongData: KongLogData,
  measure: RequestMeasure,
  options: { log_consumer: boolean },
): Record<string, unknown> {
  const outcome = ctx?.outcome;
  const body = ctx?.body;
  return {
    type: 'ai_request',
    /** When Kong received the request (epoch ms): the order a replay of the log follows. */
    started_at: kongData.started_at ?? ctx?.createdAt,
    request_id: ctx?.requestId,
    kong_request_id: kongData.request?.id,
    route: measure.labels.route || undefined,
    route_id: kongData.route?.id ?? ctx?.routeId,
    service_id: kongData.service?.id ?? ctx?.serviceId,
    ...(options.log_consumer && kongData.consumer?.id ? { consumer_id: kongData.consumer.id } : {}),
    status: kongData.response?.status,
    'gen_ai.operation.name': ctx?.endpoint ? OPERATION[ctx.endpoint] : undefined,
    'gen_ai.provider.name': outcome?.provider,
    'gen_ai.request.model': ctx?.model,
    'gen_ai.request.max_tokens': numberOf(body?.max_completion_tokens ?? body?.max_tokens),
    'gen_ai.request.temperature': numberOf(body?.temperature),
    'gen_ai.response.model': outcome?.response_model,
    'gen_ai.usage.input_tokens': outcome?.usage?.input_tokens,
    'gen_ai.usage.output_tokens': outcome?.usage?.output_tokens,
    cached_input_tokens: outcome?.usage?.cached_input_tokens,
    usage_source: outcome?.usage_source,
    cost_usd: measure.costUsd,
    target: outcome?.target ?? ctx?.route?.targets[0]?.name,
    fallbacks: outcome?.fallbacks,
    cache_status: ctx?.cache?.status,
    cache_similarity: ctx?.cache?.similarity,
    budget: ctx?.budget?.summary,
    attempts: outcome?.attempts,
    route_reason: ctx?.route?.reason,
    pool: ctx?.route?.pool,
    task: ctx?.route?.task,
    quality: ctx?.quality,
    experiment: ctx?.route?.experiment,
    stream: ctx?.stream,
    end: outcome?.end ?? (ctx?.refusal ? 'rejected' : ctx ? 'answered_by_gateway' : undefined),
    error_code: measure.errorCode,
    // The latency split: Kong's own work, the relay's (provider included), the provider's, first token.
    kong_latency_ms: kongData.latencies?.kong,
    relay_latency_ms: ctx?.settledAt !== undefined ? ctx.settledAt - ctx.createdAt : undefined,
    provider_latency_ms: outcome?.latency_ms,
    ttft_ms: outcome?.ttft_ms,
    total_latency_ms: kongData.latencies?.request,
    bytes_out: outcome?.bytes_out,
    /** Kong ↔ suite server round trips for this request, all phases (HandleEvents and PDK calls). */
    kong_round_trips: measure.roundTrips,
  };
}

function numberOf(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

/** The request's span for OpenTelemetry: the log line's GenAI attributes and the suite's own. */
export function requestSpan(record: Record<string, unknown>, kongData: KongLogData): RequestSpan {
  const attributes: RequestSpan['attributes'] = {};
  for (const [name, value] of Object.entries(record)) {
    if (name.startsWith('gen_ai.') && !name.endsWith('.messages')) attributes[name] = value as never;
  }
  attributes['aigw.route'] = record.route as string | undefined;
  attributes['aigw.target'] = record.target as string | undefined;
  attributes['aigw.cache_status'] = record.cache_status as string | undefined;
  attributes['aigw.fallbacks'] = record.fallbacks as number | undefined;
  attributes['aigw.ttft_ms'] = record.ttft_ms as number | undefined;
  if (typeof record.error_code === 'string') attributes['error.type'] = record.error_code;
  const status = kongData.response?.status ?? 0;
  const startTimeMs = kongData.started_at ?? Date.now() - (kongData.latencies?.request ?? 0);
  const headers = kongData.request?.headers ?? {};
  const first = (name: string) => {
    const v = headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  return {
    startTimeMs,
    endTimeMs: startTimeMs + (kongData.latencies?.request ?? 0),
    attributes,
    error: status >= 500 || record.error_code !== undefined,
    traceparent: first('traceparent'),
    tracestate: first('tracestate'),
  };
}
