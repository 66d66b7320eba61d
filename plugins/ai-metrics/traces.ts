import {
  type Attributes,
  type AttributeValue,
  defaultTextMapGetter,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type Tracer,
} from '@opentelemetry/api';
import { type ExportResult, ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  type ReadableSpan,
  type SpanExporter,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import type { Suite } from '../../lib/kong/plugin';
import type { Logger } from '../../lib/log/logger';
import { SUITE_VERSION } from '../../lib/version';
import type { MetricsConfig } from '../../schemas/ai-metrics';

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
    const exporter = new OTLPTraceExporter({
      url: config.endpoint,
      headers: config.authorization ? { authorization: config.authorization } : {},
    });
    const collector = new URL(config.endpoint).origin;
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({
        [ATTR_SERVICE_NAME]: config.service_name,
        [ATTR_SERVICE_VERSION]: SUITE_VERSION,
      }),
      sampler: new TraceIdRatioBasedSampler(config.sample_rate),
      spanProcessors: [new BatchSpanProcessor(new ReportingExporter(exporter, logger, collector))],
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

  flush(): Promise<void> {
    return this.provider.forceFlush();
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

/** The exporter, with its failures logged once per streak (the SDK reports them nowhere by default). */
class ReportingExporter implements SpanExporter {
  private failing = false;

  constructor(
    private readonly inner: SpanExporter,
    private readonly logger: Logger,
    private readonly collector: string,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.inner.export(spans, (result) => {
      if (result.code === ExportResultCode.SUCCESS) {
        if (this.failing)
          this.logger.info({ collector: this.collector }, 'trace collector accepts spans again');
        this.failing = false;
      } else if (!this.failing) {
        this.failing = true;
        this.logger.warn(
          { collector: this.collector, err: result.error?.name, spans: spans.length },
          'trace collector failing: spans are dropped',
        );
      }
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}
