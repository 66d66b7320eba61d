/**
 * Benchmark: what ai-metrics costs per request, side by side in one run, in the suite server's
 * process. ai-metrics works in Kong's log phase, after the answer has left, so it adds no
 * client latency; what it adds is CPU on the suite server's one thread, which the next
 * requests wait for. Variants, per request:
 *
 *   parse      JSON.parse of kong.log.serialize() (~2.5 KB): what any log handler pays
 *   metrics    parse + measure + count in every Prometheus family
 *   full       metrics + the JSON log line (pino, redaction, a real file) + prompt patterns
 *   content    full + prompt and answer logging with every PII detector (opt-in)
 *
 * "Added" is a variant minus `parse`, percentile by percentile.
 *
 * Then end to end, what a client sees: one gateway with four routes to the same instant
 * provider mock, `router` (ai-router alone), `twin` (the same: the two differ by noise only),
 * `metrics` (ai-router and ai-metrics with its defaults: metrics, the log line, prompt
 * patterns) and `logphase` (ai-metrics counting and logging nothing: Kong's external log
 * phase by itself), requests taking turns one at a time, 5 ms apart. The dev gateway, and a real
 * Kong 3.9.3 with --kong-lab DIR.
 *
 *   npm run bench:metrics                   20000 requests per variant, 3000 per route
 *   npm run bench:metrics -- --requests 50000 --kong-lab /work/kong-lab-out
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { Registry } from 'prom-client';
import { request } from 'undici';
import { type RelayOutcome, RequestContext } from '../lib/context';
import { createLogger } from '../lib/log/logger';
import { ContentLog } from '../plugins/ai-metrics/content';
import { buildLogRecord, type KongLogData } from '../plugins/ai-metrics/log-record';
import { measureRequest, RequestMetrics } from '../plugins/ai-metrics/metrics';
import { PromptPatterns, promptText } from '../plugins/ai-metrics/patterns';
import { metricsConfig } from '../schemas/ai-metrics';
import { freePort } from '../spec/support/redis';
import { closeChild, forkChild } from './bench/children';
import { type GatewayKind, startGateway } from './bench/gateways';
import { percentile } from './bench/load';

const TARGET_P99_MS = 0.1;
/** Requests in a row per variant, then the next variant: all see the same machine load. */
const BLOCK = 200;
const SHAPES = 64;

const PROMPTS = [
  'Summarise the following meeting notes for the team and list every action item with its owner.',
  'Write a TypeScript function that parses an ISO 8601 duration such as PT1H30M into milliseconds.',
  'Translate into French: "The invoice 4471 is due on 2026-12-01; please pay before then."',
  'My order 88120 never arrived. The tracking number is 1Z999AA10123456784. What can I do?',
];

function contextOf(i: number): { ctx: RequestContext; serialized: string } {
  const ctx = new RequestContext({
    requestId: `req-${i}`,
    method: 'POST',
    path: '/v1/chat/completions',
    headers: {},
    policies: [],
  });
  const stream = i % 2 === 0;
  ctx.endpoint = 'chat.completions';
  const history = Array.from({ length: 1 + (i % 6) }, (_, k) => [
    { role: 'user', content: `${PROMPTS[(i + k) % PROMPTS.length]} (${i}-${k})` },
    { role: 'assistant', content: 'Here is a short answer with a few sentences of text in it. '.repeat(3) },
  ]).flat();
  ctx.body = {
    model: 'fast',
    stream,
    max_tokens: 512,
    temperature: 0.2,
    messages: [{ role: 'system', content: 'You are a helpful assistant.' }, ...history.slice(0, -1)],
  };
  const target = {
    name: i % 5 === 0 ? 'backup' : 'fast',
    provider: 'openai' as const,
    model: i % 5 === 0 ? 'gpt-4.1-mini' : 'gpt-4o-mini',
    base_url: 'https://api.openai.com/v1',
    headers: {},
    timeouts: { connect_ms: 1, first_byte_ms: 1, idle_ms: 1, total_ms: 1 },
    prices: { input_per_1m: 0.15, output_per_1m: 0.6 },
  };
  ctx.route = { reason: 'target name', exposeTarget: true, targets: [target] };
  const outcome: RelayOutcome = {
    target: target.name,
    provider: 'openai',
    model: target.model,
    response_model: `${target.model}-2024-07-18`,
    status: 200,
    upstream_status: 200,
    usage: { input_tokens: 200 + i, output_tokens: 80 + (i % 50), total_tokens: 280 + i + (i % 50) },
    usage_source: 'provider',
    stream,
    started_at: Date.now(),
    ttft_ms: 150 + (i % 40),
    latency_ms: 900 + i,
    bytes_out: 4000,
    end: 'complete',
    answer: {
      body: {
        choices: [
          {
            message: { role: 'assistant', content: `Sure. Mail me at jo${i}@example.com.` },
            finish_reason: 'stop',
          },
        ],
      },
      bytes: 200,
    },
  };
  if (i % 5 === 0) {
    outcome.attempts = [
      { target: 'fast', failure: 'status', status: 503, latency_ms: 40 },
      { target: 'backup', latency_ms: 900 },
    ];
    outcome.fallbacks = 1;
  }
  ctx.outcome = outcome;
  ctx.pdkCalls = 6;
  ctx.settledAt = ctx.createdAt + 950;
  const kong = {
    request: {
      id: `kong-${i}`,
      uri: '/ai/v1/chat/completions',
      method: 'POST',
      size: 1800,
      url: 'http://gateway.example:8000/ai/v1/chat/completions',
      querystring: {},
      headers: {
        host: 'gateway.example:8000',
        'user-agent': 'OpenAI/JS 6.1.0',
        'content-type': 'application/json',
        authorization: 'REDACTED',
        accept: 'application/json',
        'x-stainless-lang': 'js',
        'x-stainless-runtime': 'node',
        'x-aigw-context': ['ticket-a', 'ticket-b', 'ticket-c'],
      },
    },
    response: {
      status: 200,
      size: 4200,
      headers: {
        'content-type': 'application/json',
        'x-kong-upstream-latency': '900',
        via: '1.1 kong/3.9.3',
      },
    },
    latencies: { kong: 2, proxy: 900, request: 905, receive: 0 },
    route: {
      id: 'c0b5d9f5-0000-4000-8000-000000000001',
      name: 'ai',
      paths: ['/ai'],
      protocols: ['http', 'https'],
    },
    service: { id: 'c0b5d9f5-0000-4000-8000-000000000002', name: 'relay', host: '127.0.0.1', port: 8900 },
    consumer: { id: 'c0b5d9f5-0000-4000-8000-000000000003', username: `team-${i % 8}` },
    upstream_uri: '/ai/v1/chat/completions',
    upstream_status: '200',
    client_ip: '10.0.0.7',
    started_at: Date.now(),
    tries: [{ ip: '127.0.0.1', port: 8900, balancer_latency: 0 }],
    workspace: '0b5d9f5c-0000-4000-8000-000000000000',
    workspace_name: 'default',
    source: 'upstream',
  };
  return { ctx, serialized: JSON.stringify(kong) };
}

type Variant = 'parse' | 'metrics' | 'full' | 'content';
const VARIANTS: Variant[] = ['parse', 'metrics', 'full', 'content'];

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      requests: { type: 'string', default: '20000' },
      'e2e-requests': { type: 'string', default: '3000' },
      'kong-lab': { type: 'string', default: process.env.KONG_LAB },
      'kong-lab-scripts': {
        type: 'string',
        default: process.env.KONG_LAB_SCRIPTS ?? '/work/shared/kong-lab',
      },
    },
  });
  inProcess(Number(values.requests));
  const lab = values['kong-lab'];
  const gateways: GatewayKind[] = [
    { kind: 'dev' },
    ...(lab ? [{ kind: 'kong' as const, lab, scripts: String(values['kong-lab-scripts']) }] : []),
  ];
  for (const gateway of gateways) await endToEnd(gateway, Number(values['e2e-requests']));
}

function inProcess(requests: number): void {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aigw-bench-metrics-'));
  const logger = createLogger({
    destination: pino.destination({ dest: path.join(dir, 'log.jsonl'), sync: false }),
  });
  const metrics = new RequestMetrics(new Registry());
  const quiet = metricsConfig.validate({}).config;
  const loud = metricsConfig.validate({ content: { prompts: true, answers: true } }).config;
  const contentLog = new ContentLog(loud.content);
  const patterns = new PromptPatterns({ topK: quiet.prompt_patterns.top_k });
  const shapes = Array.from({ length: SHAPES }, (_, i) => contextOf(i));

  const work: Record<Variant, (i: number) => void> = {
    parse: (i) => void JSON.parse(shapes[i % SHAPES]!.serialized),
    metrics: (i) => {
      const { ctx, serialized } = shapes[i % SHAPES]!;
      const kong = JSON.parse(serialized) as KongLogData;
      metrics.record(measureRequest(ctx, kong, { consumerLabel: false, logRoundTrips: 2 }));
    },
    full: (i) => {
      const { ctx, serialized } = shapes[i % SHAPES]!;
      const kong = JSON.parse(serialized) as KongLogData;
      const measure = measureRequest(ctx, kong, { consumerLabel: false, logRoundTrips: 2 });
      metrics.record(measure);
      patterns.observe('ai', promptText(ctx.endpoint, ctx.body) ?? '');
      logger.info(buildLogRecord(ctx, kong, measure, quiet), 'ai request');
    },
    content: (i) => {
      const { ctx, serialized } = shapes[i % SHAPES]!;
      const kong = JSON.parse(serialized) as KongLogData;
      const measure = measureRequest(ctx, kong, { consumerLabel: false, logRoundTrips: 2 });
      metrics.record(measure);
      patterns.observe('ai', promptText(ctx.endpoint, ctx.body) ?? '');
      const record = buildLogRecord(ctx, kong, measure, loud);
      Object.assign(record, contentLog.fields(ctx.endpoint, ctx.body, ctx.outcome?.answer));
      logger.info(record, 'ai request');
    },
  };

  // Warm up every path, then measure in alternating blocks.
  for (let i = 0; i < 2000; i++) for (const v of VARIANTS) work[v](i);
  const times: Record<Variant, number[]> = { parse: [], metrics: [], full: [], content: [] };
  for (let done = 0; done < requests; done += BLOCK) {
    for (const v of VARIANTS) {
      for (let k = 0; k < BLOCK; k++) {
        const start = process.hrtime.bigint();
        work[v](done + k);
        times[v].push(Number(process.hrtime.bigint() - start) / 1e6);
      }
    }
  }
  logger.flush();
  const stats = Object.fromEntries(VARIANTS.map((v) => [v, percentiles(times[v])])) as Record<Variant, Stats>;
  console.log(
    `ai-metrics per request, ${requests} requests per variant, ${os.cpus().length} CPUs (${os.cpus()[0]?.model})`,
  );
  console.log('variant    p50 ms   p99 ms   mean ms   added p50   added p99');
  for (const v of VARIANTS) {
    const s = stats[v];
    const added = (k: keyof Stats) => (v === 'parse' ? '' : (s[k] - stats.parse[k]).toFixed(4));
    console.log(
      `${v.padEnd(9)} ${s.p50.toFixed(4).padStart(7)} ${s.p99.toFixed(4).padStart(8)} ${s.mean.toFixed(4).padStart(9)} ${added('p50').padStart(11)} ${added('p99').padStart(11)}`,
    );
  }
  const fullAdded = stats.full.p99 - stats.parse.p99;
  console.log('Kong round trips of ai-metrics per request: 2 (log event + kong.log.serialize)');
  console.log(
    `CPU in the log phase, after the answer has left: metrics + logging take ${fullAdded.toFixed(4)} ms p99 over the parse (${TARGET_P99_MS} ms p99 is the target of the end-to-end part)`,
  );
  rmSync(dir, { recursive: true, force: true });
}

interface Stats {
  p50: number;
  p99: number;
  mean: number;
}

function percentiles(values: number[]): Stats {
  return {
    p50: percentile(values, 50),
    p99: percentile(values, 99),
    mean: values.reduce((s, v) => s + v, 0) / values.length,
  };
}

const MOCK_KEY = 'sk-bench-mock-key-0000000000000000';

/** Client latency of a route with ai-metrics and one without, on one gateway, taking turns. */
async function endToEnd(kind: GatewayKind, requests: number): Promise<void> {
  const mock = await forkChild('mock-process.js', {
    type: 'start',
    apiKey: MOCK_KEY,
    chunkDelayMs: 1,
    answer: 'A short answer of a few words.',
  });
  const relayPort = await freePort();
  const router = {
    name: 'ai-router',
    config: {
      targets: [{ name: 'fast', model: 'gpt-4o-mini', base_url: String(mock.ready.url), api_key: MOCK_KEY }],
    },
  };
  const route = (name: string, plugins: object[]) => ({
    name,
    paths: [`/${name}/v1`],
    strip_path: false,
    plugins,
  });
  const gateway = await startGateway(
    kind,
    {
      _format_version: '3.0',
      services: [
        {
          name: 'ai',
          url: `http://127.0.0.1:${relayPort}`,
          // `twin` is `router` again: the two differ by noise only, which shows what this machine resolves.
          routes: [
            route('router', [router]),
            route('twin', [router]),
            route('metrics', [router, { name: 'ai-metrics' }]),
            // An external log phase doing next to nothing: what Kong's log-phase machinery costs.
            route('logphase', [
              router,
              {
                name: 'ai-metrics',
                config: { metrics: false, log_requests: false, prompt_patterns: { enabled: false } },
              },
            ]),
          ],
        },
      ],
    },
    relayPort,
    { AIGW_LOG_LEVEL: 'info', AIGW_LOG_FILE: '/dev/null', AIGW_STORE: 'memory', AIGW_ADMIN_PORT: 'off' },
  );
  try {
    const post = async (name: string, i: number) => {
      const t = performance.now();
      const res = await request(`${gateway.origin}/${name}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'fast',
          messages: [{ role: 'user', content: `question ${i}: what is ${i} + 1?` }],
        }),
      });
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`${name} answered ${res.statusCode}`);
      return performance.now() - t;
    };
    const names = ['router', 'twin', 'metrics', 'logphase'] as const;
    type Name = (typeof names)[number];
    for (let i = 0; ; i++) {
      const ok = await Promise.all(names.map((name) => post(name, i))).then(
        () => true,
        () => false,
      );
      if (ok) break;
      if (i > 300) throw new Error('the gateway never answered');
      await new Promise((r) => setTimeout(r, 100));
    }
    const times: Record<Name, number[]> = { router: [], twin: [], metrics: [], logphase: [] };
    for (let i = 0; i < requests + 200; i++) {
      // Each route first, second and third in turn.
      for (let k = 0; k < names.length; k++) {
        const name = names[(i + k) % names.length]!;
        const ms = await post(name, i);
        if (i >= 200) times[name].push(ms);
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    const where = kind.kind === 'dev' ? 'dev gateway' : 'real Kong 3.9.3 (Kong lab)';
    const p = (name: Name, q: number) => percentile(times[name], q);
    console.log(
      `\nend to end, ${where}, ${requests} requests per route, taking turns 5 ms apart (client latency, ms)`,
    );
    console.log('route       p50      p99');
    for (const name of names) {
      console.log(
        `${name.padEnd(9)} ${p(name, 50).toFixed(3).padStart(7)} ${p(name, 99).toFixed(3).padStart(8)}`,
      );
    }
    const added = p('metrics', 99) - p('router', 99);
    const noise = Math.abs(p('twin', 99) - p('router', 99));
    console.log(
      `ai-metrics adds ${(p('metrics', 50) - p('router', 50)).toFixed(3)} ms p50, ${added.toFixed(3)} ms p99: ${added <= TARGET_P99_MS ? 'PASS' : 'FAIL'} (target ≤ ${TARGET_P99_MS} ms p99)`,
    );
    console.log(
      `an external log phase alone (ai-metrics counting and logging nothing) adds ${(p('logphase', 50) - p('router', 50)).toFixed(3)} ms p50`,
    );
    console.log(
      `two identical routes differ by ${(p('twin', 50) - p('router', 50)).toFixed(3)} ms p50, ${(p('twin', 99) - p('router', 99)).toFixed(3)} ms p99: p99 differences under ${noise.toFixed(3)} ms are noise in this run`,
    );
  } finally {
    await gateway.close();
    await closeChild(mock.child);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
