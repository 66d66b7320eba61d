/**
 * Benchmark: what ai-semantic-cache costs and saves.
 *
 *   node dist/scripts/bench-cache.js                   both parts, results to docs/benchmarks-cache.md
 *   node dist/scripts/bench-cache.js --entries 20000   a smaller namespace for part 2
 *   node dist/scripts/bench-cache.js --redis           part 1 on Redis too, part 2 also rebuilds from Redis
 *
 * 1. Hit latency through the dev gateway (Kong emulator → real suite server → relay), the
 *    provider mock in its own process answering after 300 ms: p50 / p99 of misses (each a
 *    new prompt), exact hits and semantic hits (a paraphrase), JSON and replayed streams.
 *    Target: hit p99 ≤ 3 ms.
 * 2. Lookup cost at `--entries` (default 100000) in one namespace, in process, with the
 *    memory store: the exact tier (per-node LRU missed, store read and decode) and the
 *    semantic tier (nearest neighbour in the HNSW index, then the entry), embedding
 *    excluded and measured on its own (the local embedder, 384 dimensions). Target ≤ 2 ms p99.
 *    Entries carry random unit vectors (embedding 100k prompts would only make the fill slow).
 */
import { existsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { AnswerCache, type NamespaceSettings } from '../lib/cache/answer-cache';
import { namespaceOf } from '../lib/cache/keys';
import { LocalEmbedder } from '../lib/embed/local';
import { installationRoot } from '../lib/kong/kong-conf';
import { createLogger } from '../lib/log/logger';
import { createStore, MemoryStore, type Store, storeConfigFromEnv } from '../lib/store';
import { freePort, RedisServer } from '../spec/support/redis';
import { nudge, randomUnit } from '../spec/support/vectors';
import { closeChild, forkChild } from './bench/children';
import { type GatewayKind, type RunningGateway, startGateway } from './bench/gateways';
import { percentile } from './bench/load';
import { writeMarkdownBlock } from './bench/report';

const USAGE = `usage: node dist/scripts/bench-cache.js [options]
  --requests N      measured requests per hit phase (default 2000)
  --misses N        measured misses (default 30; each waits for the 300 ms provider)
  --latency-ms N    the provider mock's latency (default 300)
  --entries N       entries in the namespace of part 2 (default 100000)
  --lookups N       measured lookups of part 2 (default 5000)
  --redis           also run part 1 with Redis as the store, and rebuild part 2's index from Redis
  --kong-lab DIR    part 1 through a real Kong 3.9.3 of the Kong lab too (env KONG_LAB)
  --only 1|2        one part only
  --out FILE        Markdown results (default docs/benchmarks-cache.md; "-" for none)`;

const MOCK_KEY = 'sk-bench-mock-key-0000000000000000';
const MODEL = 'gpt-4o-mini';
const ANSWER =
  'The quick brown fox jumps over the lazy dog while seven wizards quietly judge boxing matches tonight.';
const DIMENSIONS = 384;

const log = (line: string) => process.stderr.write(`${line}\n`);

interface Dist {
  p50: number;
  p99: number;
  max: number;
  n: number;
}

function dist(samples: number[]): Dist {
  const r = (n: number) => Math.round(n * 1000) / 1000;
  return {
    p50: r(percentile(samples, 50)),
    p99: r(percentile(samples, 99)),
    max: r(Math.max(...samples)),
    n: samples.length,
  };
}

const row = (name: string, d: Dist) => `| ${name} | ${d.n} | ${d.p50} | ${d.p99} | ${d.max} |`;

// ------------------------------------------------------------------ part 1

function declarative(mockOrigin: string, instantOrigin: string, relayPort: number): object {
  return {
    _format_version: '3.0',
    services: [
      // Kong proxying to a provider that answers at once, no plugin: what any request costs here.
      {
        name: 'baseline',
        url: instantOrigin,
        routes: [{ name: 'baseline', paths: ['/baseline/v1'], strip_path: true }],
      },
      {
        name: 'ai',
        url: `http://127.0.0.1:${relayPort}`,
        read_timeout: 600_000,
        routes: [{ name: 'v1', paths: ['/v1'], strip_path: false }],
        plugins: [
          { name: 'ai-semantic-cache', config: { scope: 'global' } },
          {
            name: 'ai-router',
            config: {
              targets: [{ name: MODEL, model: MODEL, base_url: `${mockOrigin}/v1`, api_key: MOCK_KEY }],
            },
          },
          { name: 'ai-metrics', config: { log_requests: false } },
        ],
      },
    ],
  };
}

async function post(
  origin: string,
  body: object,
  prefix = '',
): Promise<{ ms: number; cache?: string; status: number }> {
  const t = performance.now();
  const res = await request(`${origin}${prefix}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${MOCK_KEY}` },
    body: JSON.stringify(body),
  });
  await res.body.text();
  const ms = performance.now() - t;
  const cache = res.headers['x-cache-status'];
  return { ms, status: res.statusCode, cache: typeof cache === 'string' ? cache : undefined };
}

const chat = (content: string, extra: object = {}) => ({
  model: MODEL,
  messages: [{ role: 'user', content }],
  ...extra,
});

async function hitLatency(
  gatewayKind: GatewayKind,
  store: string,
  opts: { requests: number; misses: number; latencyMs: number },
): Promise<{ rows: string[]; hitP99: number; baselineP99: number; directP99: number }> {
  const mock = await forkChild('mock-process.js', {
    type: 'start',
    apiKey: MOCK_KEY,
    chunkDelayMs: 1,
    latencyMs: opts.latencyMs,
    answer: ANSWER,
  });
  const instant = await forkChild('mock-process.js', {
    type: 'start',
    apiKey: MOCK_KEY,
    chunkDelayMs: 1,
    answer: ANSWER,
  });
  let gateway: RunningGateway | undefined;
  try {
    const relayPort = await freePort();
    gateway = await startGateway(
      gatewayKind,
      declarative(new URL(String(mock.ready.url)).origin, String(instant.ready.url), relayPort),
      relayPort,
      { AIGW_LOG_LEVEL: 'warn', AIGW_STORE: store, AIGW_ADMIN_PORT: 'off' },
    );
    const origin = gateway.origin;
    // Kong starts its plugin servers after it answers: wait until the suite's route answers.
    for (let i = 0; (await post(origin, chat('warm up')).catch(() => ({ status: 0 }))).status !== 200; i++) {
      if (i > 300) throw new Error('the gateway never answered');
      await new Promise((r) => setTimeout(r, 100));
    }
    const expect = (r: { status: number; cache?: string }, cache: string) => {
      if (r.status !== 200 || r.cache !== cache)
        throw new Error(`expected 200 ${cache}, got ${r.status} ${r.cache}`);
    };

    const misses: number[] = [];
    for (let i = 0; i < opts.misses + 3; i++) {
      const r = await post(origin, chat(`Tell me one fact about the number ${i} (${Date.now()})`));
      expect(r, 'MISS');
      if (i >= 3) misses.push(r.ms);
    }
    const prompt = 'How do I reset my password?';
    await post(origin, chat(prompt));
    // The answer is stored after it has left: wait for the first hit.
    for (let i = 0; (await post(origin, chat(prompt))).cache !== 'HIT'; i++) {
      if (i > 200) throw new Error('no hit');
    }
    const phase = async (body: object, cache: string | undefined, prefix = '', at = origin) => {
      const samples: number[] = [];
      for (let i = 0; i < opts.requests + 200; i++) {
        const r = await post(at, body, prefix);
        if (cache) expect(r, cache);
        else if (r.status !== 200) throw new Error(`baseline answered ${r.status}`);
        if (i >= 200) samples.push(r.ms);
      }
      return dist(samples);
    };
    // The floor of any gateway here: one HTTP exchange with a server that answers at once.
    const direct = await phase(chat(prompt), undefined, '', new URL(String(instant.ready.url)).origin);
    const baseline = await phase(chat(prompt), undefined, '/baseline');
    const exactJson = await phase(chat(prompt), 'HIT');
    const exactStream = await phase(
      chat(prompt, { stream: true, stream_options: { include_usage: true } }),
      'HIT',
    );
    const semantic = await phase(chat('how can i reset my password'), 'HIT');
    return {
      rows: [
        row('reference: no gateway, that provider called directly', direct),
        row('reference: Kong alone, no plugin, a provider answering at once', baseline),
        row(`miss (provider ${opts.latencyMs} ms)`, dist(misses)),
        row('exact hit, JSON', exactJson),
        row('exact hit, replayed stream', exactStream),
        row('semantic hit (paraphrase), JSON', semantic),
      ],
      hitP99: Math.max(exactJson.p99, exactStream.p99, semantic.p99),
      baselineP99: baseline.p99,
      directP99: direct.p99,
    };
  } finally {
    await gateway?.close();
    await closeChild(mock.child);
    await closeChild(instant.child);
  }
}

// ------------------------------------------------------------------ part 2

async function lookupCost(opts: { entries: number; lookups: number; redisUrl?: string }): Promise<string[]> {
  const settings: NamespaceSettings = {
    ttlMs: 86_400_000,
    maxEntries: opts.entries,
    dimensions: DIMENSIONS,
    localTtlMs: 5000,
    syncIntervalMs: 3_600_000,
  };
  const namespace = namespaceOf('global', { id: `local-v1-${DIMENSIONS}`, dimensions: DIMENSIONS });
  const events = {
    storeError: (op: string, err: unknown) => log(`store error ${op}: ${String(err)}`),
    corrupt: () => undefined,
  };
  const store = new MemoryStore({ maxEntries: 10 });
  // No per-node LRU: every lookup reads the store and decodes, the cost of a lookup that misses memory.
  const cache = new AnswerCache(store, events, { localEntries: 0 });
  const answer = {
    object: 'chat.completion',
    model: MODEL,
    choices: [{ index: 0, message: { role: 'assistant', content: ANSWER }, finish_reason: 'stop' }],
  };
  await cache.nearest(namespace, 'p', randomUnit(0, DIMENSIONS), 0.99, settings); // creates the namespace's view
  log(`part 2: storing ${opts.entries} entries...`);
  let t = performance.now();
  for (let i = 1; i <= opts.entries; i++) {
    await cache.put(
      namespace,
      `id-${i}`,
      { createdAt: Date.now(), partition: 'p', answer, vector: randomUnit(i, DIMENSIONS) },
      settings,
    );
  }
  const fillS = (performance.now() - t) / 1000;

  const exact: number[] = [];
  const semantic: number[] = [];
  const far: number[] = [];
  let found = 0;
  for (let i = 0; i < opts.lookups + 500; i++) {
    const k = 1 + ((i * 7919) % opts.entries);
    t = performance.now();
    await cache.get(namespace, `id-${k}`, settings);
    const e = performance.now() - t;
    t = performance.now();
    const hit = await cache.nearest(
      namespace,
      'p',
      nudge(randomUnit(k, DIMENSIONS), i + 1e6, 0.3),
      0.8,
      settings,
    );
    const s = performance.now() - t;
    t = performance.now();
    await cache.nearest(namespace, 'p', randomUnit(i + 5e6, DIMENSIONS), 0.8, settings);
    const f = performance.now() - t;
    if (i < 500) continue;
    if (hit?.id === `id-${k}`) found++;
    exact.push(e);
    semantic.push(s);
    far.push(f);
  }

  const embedder = new LocalEmbedder();
  const prompts = Array.from(
    { length: 1000 },
    (_, i) =>
      `Could you explain, in a few sentences, how step ${i} of the ${i % 7 === 0 ? 'onboarding' : 'billing'} process works for a new customer account?`,
  );
  const embed: number[] = [];
  for (const [i, p] of [...prompts, ...prompts].entries()) {
    t = performance.now();
    await embedder.embed([p]);
    if (i >= 200) embed.push(performance.now() - t);
  }

  const rows = [
    row('exact lookup (store read + decode, LRU bypassed)', dist(exact)),
    row('semantic lookup, a near neighbour (HNSW + entry)', dist(semantic)),
    row('semantic lookup, nothing near (HNSW only)', dist(far)),
    row('embedding one prompt (local embedder, 384 dims), not in the lookups above', dist(embed)),
  ];
  const notes = [
    `fill: ${opts.entries} entries stored and indexed in ${fillS.toFixed(1)} s (${((fillS * 1e6) / opts.entries).toFixed(0)} µs each)`,
    `near neighbour found: ${found} of ${opts.lookups} (HNSW is approximate: a miss there is a cache miss, never a wrong answer)`,
  ];

  if (opts.redisUrl) {
    log('part 2: copying the namespace into Redis and rebuilding a fresh node from it...');
    const redis: Store = createStore(
      storeConfigFromEnv({ AIGW_STORE: opts.redisUrl }),
      createLogger({ level: 'silent' }),
    );
    await redis.ping();
    const writer = new AnswerCache(redis, events, { localEntries: 0 });
    for (let i = 1; i <= opts.entries; i++) {
      await writer.put(
        namespace,
        `id-${i}`,
        { createdAt: Date.now(), partition: 'p', answer, vector: randomUnit(i, DIMENSIONS) },
        settings,
      );
    }
    const fresh = new AnswerCache(redis, events, { localEntries: 0 });
    t = performance.now();
    await fresh.nearest(namespace, 'p', randomUnit(1, DIMENSIONS), 0.8, settings);
    notes.push(
      `rebuild after a restart: a fresh node loaded ${opts.entries} entries from Redis into its index in ${((performance.now() - t) / 1000).toFixed(1)} s (the first lookup of the namespace waits for it)`,
    );
    const redisExact: number[] = [];
    for (let i = 0; i < 2000; i++) {
      t = performance.now();
      await fresh.get(namespace, `id-${1 + ((i * 7919) % opts.entries)}`, settings);
      if (i >= 200) redisExact.push(performance.now() - t);
    }
    rows.splice(1, 0, row('exact lookup on Redis (one round trip + decode)', dist(redisExact)));
    await redis.close();
  }
  await store.close();
  return [...rows, '', ...notes.map((n) => `- ${n}`)];
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      requests: { type: 'string', default: '2000' },
      misses: { type: 'string', default: '30' },
      'latency-ms': { type: 'string', default: '300' },
      entries: { type: 'string', default: '100000' },
      lookups: { type: 'string', default: '5000' },
      redis: { type: 'boolean', default: false },
      'kong-lab': { type: 'string', default: process.env.KONG_LAB },
      'kong-lab-scripts': {
        type: 'string',
        default: process.env.KONG_LAB_SCRIPTS ?? '/work/shared/kong-lab',
      },
      only: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const redis = values.redis ? await RedisServer.create() : undefined;
  const header = ['| measure | n | p50 ms | p99 ms | max ms |', '|---|---|---|---|---|'];
  const lines = [
    `machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version}, ${new Date().toISOString().slice(0, 10)}`,
    '',
  ];
  try {
    if (values.only !== '2') {
      const opts = {
        requests: Number(values.requests),
        misses: Number(values.misses),
        latencyMs: Number(values['latency-ms']),
      };
      const lab = values['kong-lab'];
      const gateways: GatewayKind[] = [
        { kind: 'dev' },
        ...(lab ? [{ kind: 'kong' as const, lab, scripts: String(values['kong-lab-scripts']) }] : []),
      ];
      for (const [gatewayKind, store] of gateways.flatMap((g) =>
        ['memory', ...(redis ? [redis.url] : [])].map((st) => [g, st] as const),
      )) {
        const where = gatewayKind.kind === 'dev' ? 'the dev gateway' : 'real Kong 3.9.3 (Kong lab)';
        log(`part 1: hit latency through ${where}, store ${store === 'memory' ? 'memory' : 'redis'}...`);
        const { rows, hitP99, baselineP99, directP99 } = await hitLatency(gatewayKind, store, opts);
        lines.push(
          `### 1. Through ${where} (store: ${store === 'memory' ? 'memory' : 'Redis on loopback'})`,
          '',
          ...header,
          ...rows,
          '',
          `hit p99: ${hitP99} ms, target ≤ 3 ms: ${hitP99 <= 3 ? 'PASS' : 'FAIL'}; over Kong alone (p99 ${baselineP99} ms): +${(hitP99 - baselineP99).toFixed(2)} ms; a bare HTTP exchange, no gateway: p99 ${directP99} ms`,
          '',
        );
      }
    }
    if (values.only !== '1') {
      const rows = await lookupCost({
        entries: Number(values.entries),
        lookups: Number(values.lookups),
        ...(redis ? { redisUrl: redis.url } : {}),
      });
      lines.push(
        `### 2. Lookup cost at ${Number(values.entries).toLocaleString('en')} entries in one namespace (in process)`,
        '',
        ...header,
        ...rows,
        '',
      );
    }
  } finally {
    await redis?.destroy();
  }
  const text = lines.join('\n');
  process.stdout.write(`${text}\n`);
  const out = values.out ?? path.join(installationRoot(), 'docs', 'benchmarks-cache.md');
  if (out !== '-') {
    // The results go between the bench markers; what is written around them stays.
    if (!existsSync(out))
      writeFileSync(out, `# Benchmarks: ai-semantic-cache\n\n${METHOD}\n\n## Results\n\n`);
    writeMarkdownBlock(out, `${text}\n`, 'scripts/bench-cache.ts');
    log(`wrote ${out}`);
  }
}

const METHOD = `Produced by \`node dist/scripts/bench-cache.js\` (after \`npm run build\`). Part 1 runs the
dev gateway (the Kong emulator in front of the real suite server, in their own processes) with
ai-semantic-cache (\`scope: global\`), ai-router and ai-metrics on one route, and the OpenAI mock
in its own process answering after 300 ms; one client, requests one after another. Part 2 runs
the cache's node state (\`lib/cache/answer-cache.ts\`) in process on the memory store with the
per-node LRU off, so every lookup reads the store and decodes the borsh entry; the namespace
holds random 384-dimension unit vectors, looked up near an entry (a semantic hit) and far
from all (a miss). Embedding is measured on its own.`;

main().catch((err: unknown) => {
  process.stderr.write(`bench-cache failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
