/**
 * Benchmark: LocalEmbedder latency per prompt, for prompts of 200 B, 1 KB and 4 KB (UTF-8).
 *
 *   npx tsc -p . && node dist/scripts/bench-embed.js                 3000 calls per size
 *   npx tsc -p . && node dist/scripts/bench-embed.js --calls 10000
 *
 * Prompts are windows of the paraphrase set's own prompts (spec/fixtures/paraphrases: chat
 * prompts of every kind, a few non-English) cut at a word boundary to the size; 64 different
 * windows per size, taken in turn. Two runs per size:
 *   warm   one embedder for all calls: its cache of analysed words is filled, as in a server
 *   cold   a new embedder for every call: nothing is cached (a pessimistic bound)
 * Besides wall-clock percentiles it prints the process's CPU time per call, which a busy
 * machine disturbs less. Target: p50 well under 1 ms for 1-2 KB. docs/semantic-cache-eval.md
 * quotes the results.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { LocalEmbedder } from '../lib/embed/local';
import { loadPairs } from './eval-semantic-cache';

const SIZES = [200, 1024, 2048, 4096];
const WINDOWS = 64;
const TARGET_MS = 1;

function windows(corpus: string, bytes: number): string[] {
  const out: string[] = [];
  const step = Math.max(1, Math.floor((corpus.length - bytes * 2) / WINDOWS));
  for (let i = 0; out.length < WINDOWS; i += step) {
    let text = corpus.slice(i % corpus.length, (i % corpus.length) + bytes * 2);
    while (Buffer.byteLength(text) > bytes) text = text.slice(0, text.lastIndexOf(' ', text.length - 2));
    out.push(text);
  }
  return out;
}

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function measure(texts: string[], calls: number, fresh: boolean) {
  let embedder = new LocalEmbedder();
  for (let i = 0; i < 500; i++) await embedder.embed([texts[i % texts.length]!]); // JIT warm-up
  const times: number[] = [];
  const cpuStart = process.cpuUsage();
  for (let i = 0; i < calls; i++) {
    if (fresh) embedder = new LocalEmbedder();
    const text = texts[i % texts.length]!;
    const start = process.hrtime.bigint();
    await embedder.embed([text]);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  const cpu = process.cpuUsage(cpuStart);
  times.sort((a, b) => a - b);
  return {
    p50: percentile(times, 0.5),
    p99: percentile(times, 0.99),
    cpuPerCall: (cpu.user + cpu.system) / 1000 / calls,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { calls: { type: 'string', default: '3000' } } });
  const calls = Number(values.calls);
  const corpus = loadPairs()
    .flatMap((p) => [p.a, p.b])
    .join('\n\n');
  console.log(
    `LocalEmbedder latency, ${calls} calls per size and run; node ${process.version}, ` +
      `${os.cpus().length} CPUs (${os.cpus()[0]?.model.trim()}), load average ${os.loadavg()[0]!.toFixed(2)}`,
  );
  console.log('size     run     p50 ms   p99 ms   CPU ms/call');
  let pass = true;
  for (const size of SIZES) {
    const texts = windows(corpus, size);
    for (const run of ['warm', 'cold'] as const) {
      const r = await measure(texts, calls, run === 'cold');
      if (size <= 2048 && run === 'warm' && r.p50 >= TARGET_MS) pass = false;
      console.log(
        `${String(size).padStart(5)} B  ${run}  ${r.p50.toFixed(3).padStart(7)}  ${r.p99.toFixed(3).padStart(7)}  ` +
          `${r.cpuPerCall.toFixed(3).padStart(10)}`,
      );
    }
  }
  console.log(`${pass ? 'PASS' : 'FAIL'}: warm p50 below ${TARGET_MS} ms up to 2 KB`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
