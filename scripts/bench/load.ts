/**
 * The load generator: a fixed number of workers (the concurrency), each on its own
 * keep-alive connection (one undici Pool, pipelining 1), sending one request after another
 * (back-to-back) or with a pause after each answer (paced). Bounded by a request count and
 * a deadline. Records per request the latency to the last byte and, for streams, the time to
 * the first byte, to the first content token and every gap between SSE events.
 */
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import type { Shape } from './report';

export interface LoadSpec {
  /** http://host:port */
  origin: string;
  path: string;
  headers: Record<string, string>;
  /** Several bodies are sent in turn across all workers (e.g. one per model, to spread the load). */
  body: string | readonly string[];
  stream: boolean;
  concurrency: number;
  /** Measured requests (after warm-up). */
  requests: number;
  /** The measured part stops sending after this long. */
  maxSeconds: number;
  /** Pause after each answer, per worker (0: back-to-back). */
  thinkMs: number;
  /** Requests sent (and dropped from the numbers) before measuring, on the same connections. */
  warmup: number;
  /** Content events an answer must carry (streams) / content text (JSON), for the error count. */
  expectContentEvents: number;
  expectText: string;
}

export interface LoadResult {
  requests: number;
  errors: number;
  firstError?: string;
  wallMs: number;
  /** Milliseconds, unsorted. */
  latency: number[];
  ttfb: number[];
  ttft: number[];
  gaps: number[];
  /** CPU of this process (the generator) during the measured part, ms. */
  generatorCpuMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const CONTENT = /"content":"[^"]/;

/** One request; throws with a short reason when the answer is not the expected one. */
async function once(
  pool: Pool,
  spec: LoadSpec,
  body: string,
  out: { latency: number[]; ttfb: number[]; ttft: number[]; gaps: number[] } | undefined,
): Promise<void> {
  const t0 = performance.now();
  const res = await pool.request({
    path: spec.path,
    method: 'POST',
    headers: spec.headers,
    body,
  });
  if (res.statusCode !== 200) {
    const text = await res.body.text();
    throw new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`);
  }
  if (!spec.stream) {
    const text = await res.body.text();
    const latency = performance.now() - t0;
    const json = JSON.parse(text) as { choices?: Array<{ message?: { content?: string } }> };
    if (json.choices?.[0]?.message?.content !== spec.expectText) throw new Error('unexpected answer text');
    out?.latency.push(latency);
    return;
  }
  let firstByte = 0;
  let firstToken = 0;
  let lastEvent = 0;
  let contentEvents = 0;
  let done = false;
  let pending = '';
  const gaps: number[] = [];
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    const now = performance.now();
    if (firstByte === 0) firstByte = now;
    pending += chunk.toString('utf8');
    let end = pending.indexOf('\n\n');
    while (end !== -1) {
      const event = pending.slice(0, end);
      pending = pending.slice(end + 2);
      if (lastEvent !== 0) gaps.push(now - lastEvent);
      lastEvent = now;
      if (event.includes('[DONE]')) done = true;
      else if (CONTENT.test(event)) {
        contentEvents++;
        if (firstToken === 0) firstToken = now;
      }
      end = pending.indexOf('\n\n');
    }
  }
  const latency = performance.now() - t0;
  if (!done) throw new Error('stream ended without [DONE]');
  if (contentEvents !== spec.expectContentEvents)
    throw new Error(`stream had ${contentEvents} content events, expected ${spec.expectContentEvents}`);
  if (out) {
    out.latency.push(latency);
    out.ttfb.push(firstByte - t0);
    out.ttft.push(firstToken - t0);
    for (const g of gaps) out.gaps.push(g);
  }
}

export interface LoadHooks {
  /** After the warm-up, before the measured part (snapshots of CPU, counters). */
  beforeMeasure?(): Promise<void>;
  /** Right after the last measured answer. */
  afterMeasure?(): void;
}

export async function runLoad(spec: LoadSpec, hooks: LoadHooks = {}): Promise<LoadResult> {
  const pool = new Pool(spec.origin, {
    connections: spec.concurrency,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    keepAliveMaxTimeout: 600_000,
  });
  const samples = {
    latency: [] as number[],
    ttfb: [] as number[],
    ttft: [] as number[],
    gaps: [] as number[],
  };
  let errors = 0;
  let firstError: string | undefined;
  const bodies = typeof spec.body === 'string' ? [spec.body] : spec.body;
  let turn = 0;
  const nextBody = () => bodies[turn++ % bodies.length]!;
  try {
    // Warm-up: every connection opened, JIT warm on every side.
    let warm = 0;
    await Promise.all(
      Array.from({ length: spec.concurrency }, async () => {
        while (warm < spec.warmup) {
          warm++;
          await once(pool, spec, nextBody(), undefined).catch((err: unknown) => {
            firstError ??= `warm-up: ${(err as Error).message}`;
          });
        }
      }),
    );
    await hooks.beforeMeasure?.();
    let sent = 0;
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    const deadline = start + spec.maxSeconds * 1000;
    await Promise.all(
      Array.from({ length: spec.concurrency }, async (_, worker) => {
        // Paced workers start spread over one pause, not all at once.
        if (spec.thinkMs > 0) await sleep((spec.thinkMs * worker) / spec.concurrency);
        while (sent < spec.requests && performance.now() < deadline) {
          sent++;
          try {
            await once(pool, spec, nextBody(), samples);
          } catch (err) {
            errors++;
            firstError ??= (err as Error).message;
          }
          if (spec.thinkMs > 0 && sent < spec.requests) await sleep(spec.thinkMs);
        }
      }),
    );
    const wallMs = performance.now() - start;
    const cpu = process.cpuUsage(cpu0);
    hooks.afterMeasure?.();
    return {
      requests: sent,
      errors,
      firstError,
      wallMs,
      ...samples,
      generatorCpuMs: (cpu.user + cpu.system) / 1000,
    };
  } finally {
    await pool.close();
  }
}

/** Nearest-rank percentile of an unsorted sample (sorted in place). */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  values.sort((a, b) => a - b);
  const rank = Math.min(values.length - 1, Math.max(0, Math.ceil((p / 100) * values.length) - 1));
  return values[rank]!;
}

/** Loads from the command line: back-to-back concurrencies ("8,32") and paced CONC:PAUSE_MS ("1:20"). */
export function parseShapes(concurrencies: string, paced: string): Shape[] {
  return [
    ...concurrencies
      .split(',')
      .filter(Boolean)
      .map((c) => ({ name: `b2b-c${c}`, concurrency: Number(c), thinkMs: 0 })),
    ...paced
      .split(',')
      .filter(Boolean)
      .map((p) => {
        const [c, pause] = p.split(':').map(Number);
        return { name: `paced${pause}-c${c}`, concurrency: c!, thinkMs: pause ?? 20 };
      }),
  ];
}
