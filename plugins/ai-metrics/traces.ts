import {
  type Attributes,
  type AttributeValue,
  defaultTextMapGetter,
  type HrTime,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type Tracer,
} from '@opentelemetry/api';
import { type ExportResult, ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  type ReadableSpan,
  type SpanExporter,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import { Agent } from 'undici';
import type { Suite } from '../../lib/kong/plugin';
import type { Logger } from '../../lib/log/logger';
import { SUITE_VERSION } from '../../lib/version';
import type { MetricsConfig } from '../../schemas/ai-metrics';
import { postJson, postWithRetries } from './sinks';

export type TracesConfig = MetricsConfig['traces'];

/**
 * A request span's attributes: OpenTelemetry GenAI names (written out here, as the GenAI
 * conventions are still incubating), then the suite's own. Undefined values are left out.
 */
export interface RequestSpanAttributes {
  'gen_ai.operation.name'?: string;
  'gen_ai.provider.name'?: string;
  'gen_ai.request.model'?: string;
  'gen_ai.response.model'?: string;
  'gen_ai.response.id'?: string;
  'gen_ai.usage.input_tokens'?: number;
  'gen_ai.usage.output_tokens'?: number;
  'gen_ai.request.max_tokens'?: number;
  'gen_ai.request.temperature'?: number;
  'gen_ai.request.top_p'?: number;
  'gen_ai.response.finish_reasons'?: string[];
  'error.type'?: string;
  'server.address'?: string;
  'aigw.route'?: string;
  'aigw.target'?: string;
  'aigw.cache_status'?: string;
  'aigw.fallbacks'?: number;
  'aigw.ttft_ms'?: number;
  [name: string]: AttributeValue | undefined;
}

/** One request, told after it ended. */
export interface RequestSpan {
  /** Default `{gen_ai.operation.name} {gen_ai.request.model}`, as the GenAI conventions name spans. */
  name?: string;
  startTimeMs: number;
  endTimeMs: number;
  attributes: RequestSpanAttributes;
  /** The request failed: the span's status is ERROR. */
  error?: boolean;
  /** The client's W3C `traceparent` header: the span joins that trace. */
  traceparent?: string;
  tracestate?: string;
}

export interface RequestTracer {
  /** Hands a span to the batch processor: never throws, never waits. */
  record(span: RequestSpan): void;
  flush(): Promise<void>;
  close(): Promise<void>;
}

const propagator = new W3CTraceContextPropagator();

/** Per suite server: one tracer per distinct traces config. */
const perSuite = new WeakMap<Suite, Map<string, RequestTracer>>();

/**
 * The tracer for this config in this suite, undefined when traces are off. Routes with the
 * same traces config share one exporter and batch; spans are flushed when the suite server closes.
 */
export function tracerFor(suite: Suite, config: TracesConfig): RequestTracer | undefined {
  if (!config.enabled || !config.endpoint) return undefined;
  let tracers = perSuite.get(suite);
  if (!tracers) {
    const all = new Map<string, RequestTracer>();
    suite.onClose(async () => {
      await Promise.all([...all.values()].map((t) => t.close()));
    });
    perSuite.set(suite, all);
    tracers = all;
  }
  const key = JSON.stringify([
    config.endpoint,
    config.authorization ?? null,
    config.service_name,
    config.sample_rate,
  ]);
  let tracer = tracers.get(key);
  if (!tracer) {
    tracer = new OtlpRequestTracer(
      { ...config, endpoint: config.endpoint },
      suite.logger.child({ plugin: 'ai-metrics' }),
    );
    tracers.set(key, tracer);
  }
  return tracer;
}

/**
 * Spans through the OpenTelemetry SDK: a tracer provider of its own (nothing global is
 * registered), sampled by trace id at `sample_rate`, batched, exported as OTLP/HTTP JSON.
 * The client's sampled flag does not override `sample_rate`: the operator's share holds.
 */
class OtlpRequestTracer implements RequestTracer {
  private readonly provider: BasicTracerProvider;
  private readonly tracer: Tracer;
  private closing: Promise<void> | undefined;

  constructor(config: TracesConfig & { endpoint: string }, logger: Logger) {
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({
        [ATTR_SERVICE_NAME]: config.service_name,
        [ATTR_SERVICE_VERSION]: SUITE_VERSION,
      }),
      sampler: new TraceIdRatioBasedSampler(config.sample_rate),
      spanProcessors: [new BatchSpanProcessor(new OtlpJsonExporter(config, logger))],
    });
    this.tracer = this.provider.getTracer('kong-ai-gateway', SUITE_VERSION);
  }

  record(span: RequestSpan): void {
    if (this.closing) return;
    try {
      const parent = span.traceparent
        ? propagator.extract(
            ROOT_CONTEXT,
            { traceparent: span.traceparent, ...(span.tracestate ? { tracestate: span.tracestate } : {}) },
            defaultTextMapGetter,
          )
        : ROOT_CONTEXT;
      const attributes = definedOnly(span.attributes);
      const s = this.tracer.startSpan(
        span.name ?? spanName(span.attributes),
        { kind: SpanKind.CLIENT, startTime: span.startTimeMs, attributes },
        parent,
      );
      if (span.error) s.setStatus({ code: SpanStatusCode.ERROR });
      s.end(span.endTimeMs);
    } catch {
      // A span is never worth a failed request.
    }
  }

  /** Resolves once the spans recorded so far are exported or dropped (failures are logged by the exporter). */
  flush(): Promise<void> {
    return this.provider.forceFlush().catch(() => undefined);
  }

  close(): Promise<void> {
    this.closing ??= this.provider.shutdown().catch(() => undefined);
    return this.closing;
  }
}

/** `chat gpt-4o-mini`; the operation alone when the model is unknown. */
function spanName(attributes: RequestSpanAttributes): string {
  const operation = attributes['gen_ai.operation.name'] ?? 'chat';
  const model = attributes['gen_ai.request.model'];
  return model ? `${operation} ${model}` : operation;
}

function definedOnly(attributes: RequestSpanAttributes): Attributes {
  const out: Attributes = {};
  for (const [name, value] of Object.entries(attributes)) if (value !== undefined) out[name] = value;
  return out;
}

// ------------------------------------------------------------------ OTLP/HTTP JSON

/** Time allowed for one export POST. */
const EXPORT_TIMEOUT_MS = 10_000;

/**
 * Batches of spans POSTed as OTLP/HTTP JSON (`ExportTraceServiceRequest`) with undici.
 * OpenTelemetry's own HTTP exporter loads node:http with a dynamic `import()`, which the test
 * runner's module sandbox refuses; the encoding is small and documented, so it is done here.
 * Failures that may pass are retried with backoff (as for log batches), then the spans are
 * dropped; the first failure of a streak is logged.
 */
class OtlpJsonExporter implements SpanExporter {
  private readonly agent = new Agent({ connections: 1 });
  private readonly headers: Record<string, string>;
  /** Where failures are logged: the collector's origin, never its credentials. */
  private readonly collector: string;
  private readonly inFlight = new Set<Promise<void>>();
  private failing = false;
  private stopped = false;

  constructor(
    private readonly config: { endpoint: string; authorization?: string },
    private readonly logger: Logger,
  ) {
    this.headers = {
      'content-type': 'application/json',
      ...(config.authorization ? { authorization: config.authorization } : {}),
    };
    this.collector = new URL(config.endpoint).origin;
  }

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    if (this.stopped) {
      done({ code: ExportResultCode.FAILED });
      return;
    }
    const body = JSON.stringify(exportRequest(spans));
    const sent = postWithRetries(
      () =>
        postJson(this.config.endpoint, body, {
          headers: this.headers,
          dispatcher: this.agent,
          timeoutMs: EXPORT_TIMEOUT_MS,
        }),
      { stop: () => this.stopped },
    ).then((failure) => {
      if (!failure) {
        if (this.failing)
          this.logger.info({ collector: this.collector }, 'trace collector accepts spans again');
        this.failing = false;
        done({ code: ExportResultCode.SUCCESS });
        return;
      }
      if (!this.failing) {
        this.failing = true;
        this.logger.warn(
          { collector: this.collector, reason: failure.reason, spans: spans.length },
          'trace collector failing: spans are dropped',
        );
      }
      done({ code: ExportResultCode.FAILED });
    });
    this.inFlight.add(sent);
    void sent.finally(() => this.inFlight.delete(sent));
  }

  async forceFlush(): Promise<void> {
    await Promise.all(this.inFlight);
  }

  async shutdown(): Promise<void> {
    await this.forceFlush();
    this.stopped = true;
    await this.agent.close().catch(() => undefined);
  }
}

/** OTLP JSON's AnyValue: 64-bit integers as decimal strings, ids as hex, enums as numbers. */
function anyValue(value: AttributeValue | undefined | null): Record<string, unknown> {
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (typeof value === 'number')
    return Number.isInteger(value) ? { intValue: String(value) } : { doubleValue: value };
  if (Array.isArray(value)) return { arrayValue: { values: value.map((v) => anyValue(v)) } };
  return {};
}

function keyValues(attributes: Attributes): Array<{ key: string; value: Record<string, unknown> }> {
  return Object.entries(attributes).map(([key, value]) => ({ key, value: anyValue(value) }));
}

/** Nanoseconds since the epoch, exactly (a double cannot hold them). */
function unixNano(time: HrTime): string {
  return (BigInt(time[0]) * 1_000_000_000n + BigInt(time[1])).toString();
}

/** W3C trace flags in the low byte; bits 8 and 9 say whether the parent (or link) is known remote, and is. */
function spanFlags(traceFlags: number, remote: boolean | undefined): number {
  return (traceFlags & 0xff) | 0x100 | (remote ? 0x200 : 0);
}

/** OTLP numbers its span kinds from 1 (SPAN_KIND_INTERNAL); the API from 0. */
const otlpKind = (kind: SpanKind) => kind + 1;

/** An `ExportTraceServiceRequest` (opentelemetry-proto, JSON mapping): spans grouped by resource and scope. */
export function exportRequest(spans: readonly ReadableSpan[]): { resourceSpans: unknown[] } {
  const byResource = new Map<ReadableSpan['resource'], Map<string, ReadableSpan[]>>();
  for (const span of spans) {
    const scopes = byResource.get(span.resource) ?? new Map<string, ReadableSpan[]>();
    byResource.set(span.resource, scopes);
    const scope = JSON.stringify([span.instrumentationScope.name, span.instrumentationScope.version ?? '']);
    const group = scopes.get(scope);
    if (group) group.push(span);
    else scopes.set(scope, [span]);
  }
  return {
    resourceSpans: [...byResource].map(([resource, scopes]) => ({
      resource: { attributes: keyValues(resource.attributes), droppedAttributesCount: 0 },
      scopeSpans: [...scopes.values()].map((group) => ({
        scope: {
          name: group[0]!.instrumentationScope.name,
          version: group[0]!.instrumentationScope.version ?? '',
        },
        spans: group.map(encodeSpan),
      })),
    })),
  };
}

function encodeSpan(span: ReadableSpan): Record<string, unknown> {
  const context = span.spanContext();
  const parent = span.parentSpanContext;
  return {
    traceId: context.traceId,
    spanId: context.spanId,
    ...(parent ? { parentSpanId: parent.spanId } : {}),
    ...(context.traceState ? { traceState: context.traceState.serialize() } : {}),
    flags: spanFlags(context.traceFlags, parent?.isRemote),
    name: span.name,
    kind: otlpKind(span.kind),
    startTimeUnixNano: unixNano(span.startTime),
    endTimeUnixNano: unixNano(span.endTime),
    attributes: keyValues(span.attributes),
    droppedAttributesCount: span.droppedAttributesCount,
    events: span.events.map((e) => ({
      timeUnixNano: unixNano(e.time),
      name: e.name,
      attributes: keyValues(e.attributes ?? {}),
      droppedAttributesCount: e.droppedAttributesCount ?? 0,
    })),
    droppedEventsCount: span.droppedEventsCount,
    links: span.links.map((l) => ({
      traceId: l.context.traceId,
      spanId: l.context.spanId,
      flags: spanFlags(l.context.traceFlags, l.context.isRemote),
      attributes: keyValues(l.attributes ?? {}),
      droppedAttributesCount: l.droppedAttributesCount ?? 0,
    })),
    droppedLinksCount: span.droppedLinksCount,
    status: { code: span.status.code, ...(span.status.message ? { message: span.status.message } : {}) },
  };
}
