/**
 * ai-metrics request spans through the OpenTelemetry SDK to a loopback OTLP/HTTP receiver,
 * which decodes the JSON the exporter sends: GenAI attributes, span name and kind, the
 * client's trace joined through `traceparent`, sampling, errors, and the flush when the
 * suite closes.
 */
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { type RequestSpan, type TracesConfig, tracerFor } from '../../../plugins/ai-metrics/traces';
import { suiteStub, suiteStubs } from '../../support/suite-stub';

// ------------------------------------------------------------------ helpers

const newSuite = suiteStubs();

/** A span as the receiver decoded it from OTLP/JSON. */
interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  flags: number;
  startMs: number;
  endMs: number;
  statusCode: number;
  attributes: Record<string, unknown>;
  resource: Record<string, unknown>;
}

interface Receiver {
  endpoint: string;
  requests: Array<{ path?: string; headers: IncomingHttpHeaders }>;
  spans: ReceivedSpan[];
  close(): Promise<void>;
}

const receivers: Receiver[] = [];
afterAll(async () => {
  await Promise.all(receivers.map((r) => r.close()));
});

/** A loopback OTLP/HTTP traces endpoint that accepts JSON exports. */
async function startReceiver(): Promise<Receiver> {
  const requests: Receiver['requests'] = [];
  const spans: ReceivedSpan[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push({ path: req.url, headers: req.headers });
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      spans.push(...decodeExport(JSON.parse(body.toString('utf8')) as OtlpExport));
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  const receiver: Receiver = {
    endpoint: `http://127.0.0.1:${port}/v1/traces`,
    requests,
    spans,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  receivers.push(receiver);
  return receiver;
}

interface OtlpValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number | string;
  doubleValue?: number;
  arrayValue?: { values?: OtlpValue[] };
}
interface OtlpKeyValue {
  key: string;
  value: OtlpValue;
}
interface OtlpExport {
  resourceSpans: Array<{
    resource: { attributes: OtlpKeyValue[] };
    scopeSpans: Array<{
      spans: Array<{
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        kind: number;
        flags?: number;
        startTimeUnixNano: string | number;
        endTimeUnixNano: string | number;
        attributes?: OtlpKeyValue[];
        status?: { code?: number };
      }>;
    }>;
  }>;
}

function decodeValue(v: OtlpValue): unknown {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(decodeValue);
  return undefined;
}

const decodeAttributes = (kvs: OtlpKeyValue[] = []) =>
  Object.fromEntries(kvs.map((kv) => [kv.key, decodeValue(kv.value)]));

function decodeExport(body: OtlpExport): ReceivedSpan[] {
  return body.resourceSpans.flatMap((rs) =>
    rs.scopeSpans.flatMap((ss) =>
      ss.spans.map((s) => ({
        traceId: s.traceId,
        spanId: s.spanId,
        ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}),
        name: s.name,
        kind: s.kind,
        flags: s.flags ?? 0,
        startMs: Number(BigInt(s.startTimeUnixNano) / 1_000_000n),
        endMs: Number(BigInt(s.endTimeUnixNano) / 1_000_000n),
        statusCode: s.status?.code ?? 0,
        attributes: decodeAttributes(s.attributes),
        resource: decodeAttributes(rs.resource.attributes),
      })),
    ),
  );
}

function tracesConfig(extra: Partial<TracesConfig>): TracesConfig {
  return { enabled: true, service_name: 'kong-ai-gateway', sample_rate: 1, ...extra };
}

const START = Date.parse('2026-11-26T10:00:00.000Z');

function chatSpan(extra: Partial<RequestSpan> = {}): RequestSpan {
  return {
    startTimeMs: START,
    endTimeMs: START + 850,
    attributes: {
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'openai',
      'gen_ai.request.model': 'gpt-4o-mini',
      'gen_ai.response.model': 'gpt-4o-mini-2024-07-18',
      'gen_ai.usage.input_tokens': 12,
      'gen_ai.usage.output_tokens': 30,
      'gen_ai.request.max_tokens': 256,
      'gen_ai.request.temperature': 0.2,
      'gen_ai.response.finish_reasons': ['stop'],
      'aigw.route': 'route-1',
      'aigw.target': 'fast',
      'aigw.cache_status': 'miss',
      'aigw.fallbacks': 1,
      'aigw.ttft_ms': 120,
      'aigw.consumer': undefined,
    },
    ...extra,
  };
}

// OTLP's SpanKind and StatusCode numbers.
const SPAN_KIND_CLIENT = 3;
const STATUS_CODE_ERROR = 2;

// ------------------------------------------------------------------ tests

it('exports one CLIENT span per request with the GenAI and suite attributes', async () => {
  const receiver = await startReceiver();
  const { suite } = newSuite();
  const token = 'Bearer otlp-token-0123456789';
  const tracer = tracerFor(
    suite,
    tracesConfig({ endpoint: receiver.endpoint, authorization: token, service_name: 'gw-test' }),
  )!;
  tracer.record(chatSpan());
  await tracer.flush();

  expect(receiver.spans).toHaveLength(1);
  const [span] = receiver.spans;
  expect(receiver.requests[0]).toEqual(
    expect.objectContaining({
      path: '/v1/traces',
      headers: expect.objectContaining({ authorization: token, 'content-type': 'application/json' }),
    }),
  );
  expect(span).toEqual(
    expect.objectContaining({
      name: 'chat gpt-4o-mini',
      kind: SPAN_KIND_CLIENT,
      startMs: START,
      endMs: START + 850,
    }),
  );
  expect(span!.statusCode).not.toBe(STATUS_CODE_ERROR);
  expect(span!.parentSpanId).toBeUndefined();
  expect(span!.attributes).toEqual({
    'gen_ai.operation.name': 'chat',
    'gen_ai.provider.name': 'openai',
    'gen_ai.request.model': 'gpt-4o-mini',
    'gen_ai.response.model': 'gpt-4o-mini-2024-07-18',
    'gen_ai.usage.input_tokens': 12,
    'gen_ai.usage.output_tokens': 30,
    'gen_ai.request.max_tokens': 256,
    'gen_ai.request.temperature': 0.2,
    'gen_ai.response.finish_reasons': ['stop'],
    'aigw.route': 'route-1',
    'aigw.target': 'fast',
    'aigw.cache_status': 'miss',
    'aigw.fallbacks': 1,
    'aigw.ttft_ms': 120,
  });
  expect(span!.resource).toEqual(
    expect.objectContaining({ 'service.name': 'gw-test', 'service.version': '0.1.0' }),
  );
});

it("joins the client's trace when the request carries a W3C traceparent", async () => {
  const receiver = await startReceiver();
  const { suite } = newSuite();
  const tracer = tracerFor(suite, tracesConfig({ endpoint: receiver.endpoint }))!;
  const traceId = '0af7651916cd43dd8448eb211c80319c';
  const parentId = 'b7ad6b7169203331';
  tracer.record(chatSpan({ traceparent: `00-${traceId}-${parentId}-01` }));
  // A client flag saying "not sampled" does not override sample_rate.
  tracer.record(chatSpan({ traceparent: `00-${traceId}-${parentId}-00` }));
  tracer.record(chatSpan({ traceparent: 'not-a-traceparent' }));
  tracer.record(chatSpan());
  await tracer.flush();

  expect(receiver.spans).toHaveLength(4);
  const [joined, unsampled, malformed, fresh] = receiver.spans;
  // OTLP span flags: the W3C sampled bit, and "the parent is known to be remote, and is".
  for (const s of [joined, unsampled]) {
    expect(s).toEqual(expect.objectContaining({ traceId, parentSpanId: parentId, flags: 0x301 }));
    expect(s!.spanId).not.toBe(parentId);
  }
  for (const s of [malformed, fresh]) {
    expect(s!.parentSpanId).toBeUndefined();
    expect(s!.flags).toBe(0x101);
    expect(s!.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(s!.traceId).not.toBe(traceId);
  }
  expect(malformed!.traceId).not.toBe(fresh!.traceId);
});

it('marks a failed request with status ERROR, and names spans after the operation and model', async () => {
  const receiver = await startReceiver();
  const { suite } = newSuite();
  const tracer = tracerFor(suite, tracesConfig({ endpoint: receiver.endpoint }))!;
  tracer.record(chatSpan({ error: true }));
  tracer.record(
    chatSpan({
      attributes: { 'gen_ai.operation.name': 'embeddings', 'gen_ai.request.model': 'text-embedding-3-small' },
    }),
  );
  tracer.record(chatSpan({ attributes: { 'gen_ai.operation.name': 'chat' } }));
  tracer.record(chatSpan({ name: 'custom name' }));
  await tracer.flush();
  expect(receiver.spans.map((s) => s.name)).toEqual([
    'chat gpt-4o-mini',
    'embeddings text-embedding-3-small',
    'chat',
    'custom name',
  ]);
  expect(receiver.spans.map((s) => s.statusCode === STATUS_CODE_ERROR)).toEqual([true, false, false, false]);
});

it('samples by sample_rate: 0 sends no span', async () => {
  const receiver = await startReceiver();
  const { suite } = newSuite();
  const none = tracerFor(suite, tracesConfig({ endpoint: receiver.endpoint, sample_rate: 0 }))!;
  const all = tracerFor(suite, tracesConfig({ endpoint: receiver.endpoint, sample_rate: 1 }))!;
  expect(none).not.toBe(all);
  for (let i = 0; i < 20; i++) none.record(chatSpan({ name: 'unsampled' }));
  // Even a client that asks for sampling.
  none.record(
    chatSpan({ name: 'unsampled', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }),
  );
  all.record(chatSpan({ name: 'sampled' }));
  await Promise.all([none.flush(), all.flush()]);
  expect(receiver.spans.map((s) => s.name)).toEqual(['sampled']);
});

it('traces about the share sample_rate asks for', async () => {
  const receiver = await startReceiver();
  const { suite } = newSuite();
  const half = tracerFor(suite, tracesConfig({ endpoint: receiver.endpoint, sample_rate: 0.5 }))!;
  for (let i = 0; i < 400; i++) half.record(chatSpan());
  await half.flush();
  // Random trace ids: 400 draws at 0.5 stay within 120..280 except with odds below 1e-15.
  expect(receiver.spans.length).toBeGreaterThan(120);
  expect(receiver.spans.length).toBeLessThan(280);
});

it('is off unless enabled with an endpoint; one tracer per suite and config', async () => {
  const receiver = await startReceiver();
  const a = newSuite();
  const b = newSuite();
  expect(tracerFor(a.suite, tracesConfig({ enabled: false, endpoint: receiver.endpoint }))).toBeUndefined();
  expect(tracerFor(a.suite, tracesConfig({}))).toBeUndefined();
  const config = tracesConfig({ endpoint: receiver.endpoint });
  const tracer = tracerFor(a.suite, config);
  expect(tracerFor(a.suite, { ...config })).toBe(tracer);
  expect(tracerFor(a.suite, { ...config, service_name: 'other' })).not.toBe(tracer);
  expect(tracerFor(b.suite, config)).not.toBe(tracer);
});

it('sends the spans still batched when the suite closes', async () => {
  const receiver = await startReceiver();
  const s = suiteStub();
  const tracer = tracerFor(s.suite, tracesConfig({ endpoint: receiver.endpoint }))!;
  tracer.record(chatSpan());
  expect(receiver.spans).toHaveLength(0); // the batch processor waits seconds before an export
  await s.close();
  expect(receiver.spans).toHaveLength(1);
  // Closed: later spans go nowhere, and recording does not throw.
  tracer.record(chatSpan());
  await tracer.flush();
  expect(receiver.spans).toHaveLength(1);
});

it('logs a collector that refuses spans once, without its token, and never throws', async () => {
  const server = http.createServer((_req, res) => res.writeHead(400).end('bad'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  try {
    const { suite, log } = newSuite();
    const tracer = tracerFor(
      suite,
      tracesConfig({
        endpoint: `http://127.0.0.1:${port}/v1/traces`,
        authorization: 'Bearer otlp-secret-987654',
      }),
    )!;
    tracer.record(chatSpan());
    await tracer.flush();
    tracer.record(chatSpan());
    await tracer.flush();
    const warnings = log.records().filter((r) => r.msg === 'trace collector failing: spans are dropped');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toEqual(expect.objectContaining({ collector: `http://127.0.0.1:${port}` }));
    expect(log.text()).not.toContain('otlp-secret');
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
