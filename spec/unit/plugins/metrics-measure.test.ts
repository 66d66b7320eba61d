import { Registry } from 'prom-client';
import { type RelayOutcome, RequestContext } from '../../../lib/context';
import { measureRequest, RequestMetrics } from '../../../plugins/ai-metrics/metrics';

function context(outcome: Partial<RelayOutcome> = {}, prices = true) {
  const ctx = new RequestContext({
    requestId: 'r',
    method: 'POST',
    path: '/v1/chat/completions',
    headers: {},
    policies: [],
  });
  ctx.endpoint = 'chat.completions';
  ctx.body = { model: 'whatever-the-client-says', messages: [] };
  ctx.route = {
    reason: 'test',
    exposeTarget: false,
    targets: [
      {
        name: 'main',
        provider: 'openai',
        model: 'gpt-4o-mini',
        base_url: 'http://x/v1',
        headers: {},
        timeouts: { connect_ms: 1, first_byte_ms: 1, idle_ms: 1, total_ms: 1 },
        ...(prices ? { prices: { input_per_1m: 10, output_per_1m: 20, cached_input_per_1m: 1 } } : {}),
      },
    ],
  };
  ctx.outcome = {
    target: 'main',
    provider: 'openai',
    model: 'gpt-4o-mini',
    status: 200,
    upstream_status: 200,
    stream: true,
    started_at: 0,
    ttft_ms: 100,
    latency_ms: 1100,
    bytes_out: 1,
    end: 'complete',
    usage: { input_tokens: 1000, output_tokens: 500, total_tokens: 1500, cached_input_tokens: 400 },
    ...outcome,
  };
  return ctx;
}

const kong = {
  response: { status: 200 },
  route: { id: 'rid', name: 'chat' },
  consumer: { id: 'cid', username: 'alice' },
};
const measure = (ctx: RequestContext | undefined, consumerLabel = false) =>
  measureRequest(ctx, kong, { consumerLabel, logRoundTrips: 2 });

describe('measureRequest', () => {
  it("labels with the target's configured model, never the client's string", () => {
    expect(measure(context()).labels).toEqual({
      ai_provider: 'openai',
      ai_model: 'gpt-4o-mini',
      cache_status: '',
      route: 'chat',
      request_type: 'chat',
    });
  });

  it('adds the consumer label only when the operator opts in', () => {
    expect(measure(context()).labels.consumer).toBeUndefined();
    expect(measure(context(), true).labels.consumer).toBe('alice');
  });

  it('prices cached prompt tokens at the cached price, and nothing without prices', () => {
    // 600 × 10 + 400 × 1 + 500 × 20 per 1M tokens.
    expect(measure(context()).costUsd).toBeCloseTo(0.0164, 10);
    expect(measure(context({}, false)).costUsd).toBeUndefined();
  });

  it('speed of a stream counts the time after its first token; of a JSON answer, the whole call', () => {
    expect(measure(context()).outputTokensPerSecond).toBeCloseTo(500);
    const json = measure(context({ stream: false, ttft_ms: 40 }));
    expect(json.outputTokensPerSecond).toBeCloseTo(500 / 1.1);
    expect(json.ttftMs).toBeUndefined();
    expect(measure(context({ end: 'stream_broken' })).outputTokensPerSecond).toBeUndefined();
  });

  it('counts failed and skipped attempts as fallbacks, not a hedge that lost the race', () => {
    const m = measure(
      context({
        attempts: [
          { target: 'a', failure: 'status', status: 503, latency_ms: 1 },
          { target: 'b', failure: 'circuit_open', latency_ms: 0 },
          { target: 'c', failure: 'cancelled', hedge: true, latency_ms: 5 },
          { target: 'main', latency_ms: 9 },
        ],
      }),
    );
    expect(m.fallbacks).toEqual([
      { target: 'a', reason: 'status_503' },
      { target: 'b', reason: 'circuit_open' },
    ]);
  });

  it('a request that never reached the relay is counted by status alone', () => {
    const m = measure(undefined);
    expect(m).toMatchObject({ status: '200', fallbacks: [] });
    expect(m.labels).toMatchObject({ ai_model: '', ai_provider: '' });
    expect(m.roundTrips).toBeUndefined();
  });
});

describe('RequestMetrics', () => {
  it('registers once per registry and records one request in every family', async () => {
    const registry = new Registry();
    const metrics = new RequestMetrics(registry);
    expect(() => new RequestMetrics(registry)).toThrow(/already been registered/);
    metrics.record(measure(context()));
    const text = await registry.metrics();
    expect(text).toContain(
      'aigw_ai_llm_requests_total{ai_provider="openai",ai_model="gpt-4o-mini",cache_status="",route="chat",request_type="chat",status="200"} 1',
    );
    expect(text).toContain('token_type="cached_prompt_tokens"} 400');
    expect(text).toContain(
      'aigw_ai_llm_time_to_first_token_ms_count{ai_provider="openai",ai_model="gpt-4o-mini"} 1',
    );
  });
});
