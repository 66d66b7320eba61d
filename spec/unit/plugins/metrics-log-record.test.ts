import { RequestContext } from '../../../lib/context';
import { buildLogRecord, type KongLogData, requestSpan } from '../../../plugins/ai-metrics/log-record';
import { measureRequest } from '../../../plugins/ai-metrics/metrics';

/** The log line as the plugin builds it: measured first, then written. */
function record(ctx: RequestContext | undefined, kong: KongLogData, logConsumer = false, logRoundTrips = 0) {
  const measure = measureRequest(ctx, kong, { consumerLabel: false, logRoundTrips });
  return buildLogRecord(ctx, kong, measure, { log_consumer: logConsumer });
}

function context() {
  const ctx = new RequestContext({
    requestId: 'req-1',
    method: 'POST',
    path: '/v1/chat/completions',
    headers: { authorization: ['Bearer sk-client-secret-123456'] },
    policies: [],
  });
  ctx.endpoint = 'chat.completions';
  ctx.body = { model: 'fast', stream: true, messages: [{ role: 'user', content: 'PROMPT-TEXT' }] };
  ctx.route = {
    reason: 'target name',
    exposeTarget: true,
    targets: [
      {
        name: 'fast',
        provider: 'openai',
        model: 'gpt-4o-mini',
        base_url: 'http://x/v1',
        api_key: 'sk-provider-secret-123456',
        headers: {},
        timeouts: { connect_ms: 1, first_byte_ms: 1, idle_ms: 1, total_ms: 1 },
      },
    ],
  };
  ctx.outcome = {
    target: 'fast',
    provider: 'openai',
    model: 'gpt-4o-mini',
    response_model: 'gpt-4o-mini-2024',
    status: 200,
    usage: { input_tokens: 3, output_tokens: 5, total_tokens: 8 },
    usage_source: 'provider',
    stream: true,
    started_at: 0,
    ttft_ms: 12,
    latency_ms: 40,
    bytes_out: 900,
    end: 'complete',
  };
  ctx.pdkCalls = 5;
  return ctx;
}

const kongData = {
  request: { id: 'kong-req' },
  response: { status: 200 },
  latencies: { kong: 2, request: 45 },
  consumer: { id: 'consumer-uuid' },
  route: { id: 'route-uuid' },
};

describe('ai-metrics log record', () => {
  it('carries GenAI attributes, the outcome and every round trip of the request', () => {
    expect(record(context(), kongData, false, 2)).toMatchObject({
      request_id: 'req-1',
      kong_request_id: 'kong-req',
      route_id: 'route-uuid',
      status: 200,
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'openai',
      'gen_ai.request.model': 'fast',
      'gen_ai.response.model': 'gpt-4o-mini-2024',
      'gen_ai.usage.input_tokens': 3,
      'gen_ai.usage.output_tokens': 5,
      target: 'fast',
      end: 'complete',
      ttft_ms: 12,
      kong_round_trips: 7,
    });
  });

  it('holds no prompt, no key, and the consumer only when asked', () => {
    const quiet = JSON.stringify(record(context(), kongData));
    for (const secret of ['PROMPT-TEXT', 'sk-client-secret', 'sk-provider-secret', 'consumer-uuid']) {
      expect(quiet).not.toContain(secret);
    }
    expect(record(context(), kongData, true)).toMatchObject({
      consumer_id: 'consumer-uuid',
    });
  });

  it('names the error of a request the relay refused before any provider call', () => {
    const ctx = context();
    ctx.outcome = undefined;
    ctx.refusal = { status: 404, code: 'AIGW_UNKNOWN_MODEL' };
    expect(record(ctx, { response: { status: 404 } })).toMatchObject({
      status: 404,
      end: 'rejected',
      error_code: 'AIGW_UNKNOWN_MODEL',
    });
  });

  it('still logs a request that never reached the relay', () => {
    expect(record(undefined, { response: { status: 400 } })).toMatchObject({
      status: 400,
      kong_round_trips: undefined,
    });
  });
});

describe('requestSpan', () => {
  const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

  it("carries the line's GenAI attributes (never messages) and the suite's, timed by Kong, joining the client's trace", () => {
    const line = {
      ...record(context(), kongData),
      'gen_ai.input.messages': [{ role: 'user', content: 'x' }],
    };
    const span = requestSpan(line, {
      ...kongData,
      started_at: 1_000,
      request: { id: 'k', headers: { traceparent, tracestate: 'vendor=1' } },
    });
    expect(span).toMatchObject({
      startTimeMs: 1_000,
      endTimeMs: 1_045,
      error: false,
      traceparent,
      tracestate: 'vendor=1',
    });
    expect(span.attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.request.model': 'fast',
      'gen_ai.usage.output_tokens': 5,
      'aigw.route': 'route-uuid', // no route name: its id
      'aigw.target': 'fast',
      'aigw.ttft_ms': 12,
    });
    expect(Object.keys(span.attributes)).not.toContain('gen_ai.input.messages');
  });

  it('is an error for a 5xx or an error code', () => {
    expect(
      requestSpan(record(undefined, { response: { status: 502 } }), { response: { status: 502 } }).error,
    ).toBe(true);
    const ctx = context();
    ctx.outcome = undefined;
    ctx.refusal = { status: 404, code: 'AIGW_UNKNOWN_MODEL' };
    const span = requestSpan(record(ctx, { response: { status: 404 } }), { response: { status: 404 } });
    expect(span).toMatchObject({ error: true, attributes: { 'error.type': 'AIGW_UNKNOWN_MODEL' } });
  });
});
