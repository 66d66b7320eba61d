import type { RequestContext } from '../../lib/context';

/** The part of `kong.log.serialize()` the log line uses. */
export interface KongLogData {
  request?: { id?: string; headers?: Record<string, string | string[]> };
  response?: { status?: number; size?: number };
  latencies?: { kong?: number; proxy?: number; request?: number };
  consumer?: { id?: string };
  route?: { id?: string };
  service?: { id?: string };
}

const OPERATION = {
  'chat.completions': 'chat',
  completions: 'text_completion',
  embeddings: 'embeddings',
  models: 'models',
} as const;

/**
 * One structured line per request, with OpenTelemetry GenAI attribute names where one exists.
 * Never holds prompts, answers or keys.
 */
export function buildLogRecord(
  ctx: RequestContext | undefined,
  kongData: KongLogData,
  options: { log_consumer: boolean },
  /** Round trips of the log event so far (HandleEvent and serialize). */
  logRoundTrips = 0,
): Record<string, unknown> {
  const outcome = ctx?.outcome;
  return {
    type: 'ai_request',
    request_id: ctx?.requestId,
    kong_request_id: kongData.request?.id,
    route_id: kongData.route?.id ?? ctx?.routeId,
    service_id: kongData.service?.id ?? ctx?.serviceId,
    ...(options.log_consumer && kongData.consumer?.id ? { consumer_id: kongData.consumer.id } : {}),
    status: kongData.response?.status,
    'gen_ai.operation.name': ctx?.endpoint ? OPERATION[ctx.endpoint] : undefined,
    'gen_ai.provider.name': outcome?.provider,
    'gen_ai.request.model': ctx?.model,
    'gen_ai.response.model': outcome?.response_model,
    'gen_ai.usage.input_tokens': outcome?.usage?.input_tokens,
    'gen_ai.usage.output_tokens': outcome?.usage?.output_tokens,
    usage_source: outcome?.usage_source,
    target: outcome?.target ?? ctx?.route?.targets[0]?.name,
    fallbacks: outcome?.fallbacks,
    budget: ctx?.budget?.summary,
    attempts: outcome?.attempts,
    route_reason: ctx?.route?.reason,
    stream: ctx?.stream,
    end: outcome?.end ?? (ctx?.refusal ? 'rejected' : ctx ? 'answered_by_gateway' : undefined),
    error_code: outcome?.error?.code ?? ctx?.refusal?.code,
    ttft_ms: outcome?.ttft_ms,
    relay_latency_ms: outcome?.latency_ms,
    kong_latency_ms: kongData.latencies?.kong,
    total_latency_ms: kongData.latencies?.request,
    bytes_out: outcome?.bytes_out,
    /** Kong ↔ suite server round trips for this request, all phases (HandleEvents and PDK calls). */
    kong_round_trips: ctx ? ctx.pdkCalls + logRoundTrips : undefined,
  };
}
