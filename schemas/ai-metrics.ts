import { Type } from '@sinclair/typebox';
import { type ConfigOf, type ConfigProblem, definePluginConfig } from '../lib/config';

const HttpUrl = (description: string) =>
  Type.Optional(Type.String({ minLength: 1, maxLength: 2048, pattern: '^https?://', description }));

const LogSink = Type.Object(
  {
    type: Type.Union([Type.Literal('logger'), Type.Literal('file'), Type.Literal('http')], {
      default: 'logger',
      description:
        "Where request lines go. `logger`: the suite server's log (stdout, or `AIGW_LOG_FILE`); `file`: appended to `path`; `http`: batched JSON arrays POSTed to `url`.",
    }),
    path: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 1024,
        description: 'File the `file` sink appends JSON lines to (created with its folders).',
      }),
    ),
    url: HttpUrl('Collector the `http` sink POSTs batches to (a JSON array of lines per request).'),
    authorization: Type.Optional(
      Type.String({
        referenceable: true,
        description:
          'Authorization header value sent to the collector, as a vault reference such as `{vault://env/LOG_COLLECTOR_TOKEN}`.',
      }),
    ),
    batch_max_records: Type.Integer({
      minimum: 1,
      maximum: 10_000,
      default: 100,
      description: 'Lines per HTTP batch; a full batch is sent at once.',
    }),
    flush_interval_ms: Type.Integer({
      minimum: 10,
      maximum: 60_000,
      default: 1_000,
      description: 'Longest a line waits before its batch is sent.',
    }),
    queue_max_records: Type.Integer({
      minimum: 1,
      maximum: 1_000_000,
      default: 10_000,
      description:
        'Lines held while the collector is slow or down; past it the oldest are dropped and counted (`aigw_log_dropped_total`).',
    }),
    timeout_ms: Type.Integer({
      minimum: 100,
      maximum: 60_000,
      default: 5_000,
      description: 'Time allowed for one POST to the collector.',
    }),
  },
  { description: 'Where the per-request log lines are written.' },
);

const RedactPattern = Type.Object({
  name: Type.String({
    minLength: 1,
    maxLength: 64,
    pattern: '^[A-Za-z0-9_-]+$',
    description: 'Name shown in place of a match: `[REDACTED:<name>]`.',
  }),
  pattern: Type.String({
    minLength: 1,
    maxLength: 512,
    description: 'JavaScript regular expression (no flags; matched globally, case-sensitive).',
  }),
});

const Pii = Type.Union(
  [
    Type.Literal('email'),
    Type.Literal('phone'),
    Type.Literal('credit_card'),
    Type.Literal('iban'),
    Type.Literal('ip_address'),
    Type.Literal('us_ssn'),
  ],
  { description: 'A built-in detector.' },
);

const Content = Type.Object(
  {
    prompts: Type.Boolean({
      default: false,
      description: 'Add the prompt (the request messages) to the log line, redacted.',
    }),
    answers: Type.Boolean({
      default: false,
      description: 'Add the answer text to the log line, redacted.',
    }),
    sample_rate: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 1,
      description: 'Share of requests whose prompt and answer are logged.',
    }),
    max_chars: Type.Integer({
      minimum: 16,
      maximum: 1_000_000,
      default: 4_096,
      description: 'Longest prompt or answer logged, in characters; longer ones are cut and marked.',
    }),
    pii: Type.Array(Pii, {
      default: ['email', 'phone', 'credit_card', 'iban', 'ip_address', 'us_ssn'],
      uniqueItems: true,
      description:
        'Built-in PII detectors applied to logged prompts and answers. Provider keys and bearer tokens are always removed.',
    }),
    patterns: Type.Array(RedactPattern, {
      default: [],
      maxItems: 32,
      description: 'Your own patterns, removed from logged prompts and answers.',
    }),
  },
  { description: 'Prompt and answer logging: off by default; when on, sampled and redacted.' },
);

const Traces = Type.Object(
  {
    enabled: Type.Boolean({
      default: false,
      description: 'Send one OpenTelemetry span per request, with GenAI attributes, over OTLP/HTTP.',
    }),
    endpoint: HttpUrl('OTLP/HTTP traces endpoint, e.g. `http://otel-collector:4318/v1/traces`.'),
    authorization: Type.Optional(
      Type.String({
        referenceable: true,
        description: 'Authorization header value sent to the collector, as a vault reference.',
      }),
    ),
    service_name: Type.String({
      minLength: 1,
      maxLength: 128,
      default: 'kong-ai-gateway',
      description: '`service.name` of the spans.',
    }),
    sample_rate: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 1,
      description: 'Share of requests traced.',
    }),
  },
  { description: 'OpenTelemetry traces.' },
);

const PromptPatterns = Type.Object(
  {
    enabled: Type.Boolean({
      default: true,
      description:
        'Fingerprint prompts into templates (numbers, quoted strings, emails, ids, dates masked) and count the most frequent per route.',
    }),
    top_k: Type.Integer({
      minimum: 1,
      maximum: 200,
      default: 20,
      description: 'Templates kept and exported per route (`aigw_prompt_pattern_requests`, `GET /patterns`).',
    }),
  },
  { description: 'Prompt patterns: which kinds of prompts a route receives, in bounded memory.' },
);

export const metricsSchema = Type.Object({
  log_requests: Type.Boolean({
    default: true,
    description: 'Write one structured JSON line per request: target, model, tokens, latency and outcome.',
  }),
  log_consumer: Type.Boolean({
    default: false,
    description: 'Include the Kong consumer id in the per-request log line.',
  }),
  log_sink: LogSink,
  content: Content,
  metrics: Type.Boolean({
    default: true,
    description: "Count requests, tokens, cost and latency in the suite's Prometheus metrics (`/metrics`).",
  }),
  consumer_label: Type.Boolean({
    default: false,
    description:
      'Add a `consumer` label (the consumer username, else id) to the request and token metrics. One series per consumer: enable only for a bounded set of consumers.',
  }),
  traces: Traces,
  prompt_patterns: PromptPatterns,
});

export type MetricsConfig = ConfigOf<typeof metricsSchema>;

function checkMetrics(config: MetricsConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const sink = config.log_sink;
  if (sink.type === 'file' && !sink.path) {
    problems.push({ path: 'log_sink.path', message: 'required when `log_sink.type` is `file`' });
  }
  if (sink.type === 'http' && !sink.url) {
    problems.push({ path: 'log_sink.url', message: 'required when `log_sink.type` is `http`' });
  }
  if (config.traces.enabled && !config.traces.endpoint) {
    problems.push({ path: 'traces.endpoint', message: 'required when `traces.enabled` is true' });
  }
  config.content.patterns.forEach((p, i) => {
    const path = `content.patterns[${i}].pattern`;
    try {
      if (new RegExp(p.pattern).test('')) problems.push({ path, message: 'matches the empty string' });
    } catch {
      problems.push({ path, message: 'is not a valid regular expression' });
    }
  });
  return problems;
}

export const metricsConfig = definePluginConfig({
  name: 'ai-metrics',
  schema: metricsSchema,
  check: checkMetrics,
  rules: [
    '`log_sink.path` is required for the `file` sink, `log_sink.url` for the `http` sink.',
    '`traces.endpoint` is required when traces are enabled.',
    'Each `content.patterns[].pattern` must compile as a JavaScript regular expression that does not match the empty string.',
  ],
});
