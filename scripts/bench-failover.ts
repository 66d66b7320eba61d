/**
 * Benchmark: ai-fallback with one of three targets failing, against its acceptance criterion:
 * with one of three targets failing 100 %, the p99 latency of successful requests stays
 * within 1.5× of the all-healthy run once the breaker is open.
 *
 *   npm run bench:failover                             default run (about 2 minutes)
 *   npm run bench:failover -- --faults 503 --rounds 5  one kind of failure, more rounds
 *   npm run bench:failover -- --cooldown-ms 250        probe the failing target 4 times a second
 *   npm run bench:failover -- --help                   every option
 *
 * Three OpenAI mocks a, b, c (spec/support/providers), each in its own process and answering
 * after a fixed latency; the dev gateway (Kong emulator + the real suite server) in its own
 * process with one route: ai-router (targets a, b, c, picked by the request's model),
 * ai-fallback (chains a→[b,c], b→[c,a], c→[a,b], a breaker per target) and ai-metrics. The
 * clients ask for models a, b, c in turn.
 *
 * Conditions: `healthy`, and per fault (`--faults`) mock a failing every request while b and
 * c stay healthy. Before a failing slice the bench sends the same mix until an answer for
 * model a comes from another target without a failed attempt (a's breaker is open); before
 * a healthy slice, requests for model a until a answers again (its breaker closed after a
 * probe). Per mode and load the conditions alternate in rounds, so background load drifting
 * over time hits them alike. Requests that reached mock a during a failing slice are the
 * breaker's probes (or worse); the ai-metrics lines give the attempts of every request.
 *
 * Results: a table on stdout and docs/benchmarks-failover.md (between the bench markers).
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { installationRoot } from '../lib/kong/kong-conf';
import type { Fault } from '../spec/support/providers';
import { freePort } from '../spec/support/redis';
import { ask, closeChild, forkChild } from './bench/children';
import { parseShapes, percentile, runLoad } from './bench/load';
import { cpuMs, cpuMsOf, describeMachine, machineBusyMs } from './bench/procstat';
import { type Mode, ms, type Shape, shapeText, table, writeMarkdownBlock } from './bench/report';
import { logSize, readLogRecords } from './bench/suite-log';

const USAGE = `usage: npm run bench:failover -- [options]
  --faults LIST         how target a fails: 503, reset, hang (default 503,reset)
  --rounds N            interleaved rounds per mode and load (default 3)
  --phase-requests N    measured requests per condition and load, all rounds together (default 3000)
  --phase-seconds S     time cap per condition and load, all rounds together (default 5)
  --warmup N            warm-up requests before a slice (default 100; a fifth after the first slice)
  --concurrency LIST    back-to-back concurrencies (default 8)
  --paced LIST          paced loads as CONC:PAUSE_MS (default 1:5)
  --modes LIST          json,stream (default both)
  --latency-ms N        delay of every healthy mock before its answer (default 5)
  --chunk-delay-ms N    delay between a mock's SSE chunks (default 1)
  --window-ms N         ai-fallback breaker.window_ms (default 5000)
  --cooldown-ms N       ai-fallback breaker.cooldown_ms (default 2000: probes happen while measuring;
                        a healthy slice waits for it, so keep it short)
  --attempt-timeout-ms N  ai-fallback attempt_timeout_ms (default 1000; what a hanging target costs)
  --limit X             largest p99 ratio (failing ÷ healthy) that passes (default 1.5)
  --out FILE            Markdown results (default docs/benchmarks-failover.md; "-" for none)
  --json FILE           raw results as JSON (default none)
  --keep                keep the work folder (the suite server's log)`;

const MOCK_KEY = 'sk-failover-mock-key-000000000000';
const TARGETS = ['a', 'b', 'c'] as const;
type TargetId = (typeof TARGETS)[number];
const FAILING: TargetId = 'a';
/** A stream carries one content chunk per word (plus the role chunk and the finish chunk). */
const ANSWER = 'Foxes are quick and dogs are lazy, or so the old sentence says.';
const ANSWER_WORDS = ANSWER.split(/\s+/).length;
const PROMPT = 'Say something short about foxes and dogs.';
/** Breaker: opens at 50 % failures over at least 10 attempts in the window. */
const MIN_REQUESTS = 10;
const FAILURE_RATE = 0.5;

type FaultName = '503' | 'reset' | 'hang';
type Condition = 'healthy' | FaultName;

const FAULTS: Record<FaultName, { fault: Fault; text: string }> = {
  '503': {
    // The mock's request counter never refills: after 10 000 answers its rate-limit headers
    // say "spent, resets in 6 ms", which the relay takes as a Retry-After (docs/decisions.md
    // §9) and so opens the breaker for 6 ms instead of cooldown_ms. A provider that is down
    // is not one whose quota is spent, so this 503 says the quota is fine.
    fault: { kind: 'status', status: 503, headers: { 'x-ratelimit-remaining-requests': '9999' } },
    text: '503 without Retry-After, at once',
  },
  reset: { fault: { kind: 'reset' }, text: 'connection reset before any byte' },
  // Stopped by ai-fallback's attempt_timeout_ms.
  hang: { fault: { kind: 'latency', ms: 600_000 }, text: 'no answer (attempt timeout)' },
};

const log = (line: string) => process.stderr.write(`${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Settings {
  faults: FaultName[];
  rounds: number;
  phaseRequests: number;
  phaseSeconds: number;
  warmup: number;
  shapes: Shape[];
  modes: Mode[];
  latencyMs: number;
  chunkDelayMs: number;
  windowMs: number;
  cooldownMs: number;
  attemptTimeoutMs: number;
  limit: number;
}

interface Mock {
  id: TargetId;
  child: ChildProcess;
  origin: string;
  pid: number;
}

interface Gateway {
  child: ChildProcess;
  origin: string;
  logFile: string;
  emulatorPid: number;
  suitePid: number;
}

/** One route: the three targets, each failing over to the other two, and the per-request log line. */
function declarative(mocks: Mock[], relayPort: number, s: Settings): object {
  const others = (t: TargetId) => [
    ...TARGETS.slice(TARGETS.indexOf(t) + 1),
    ...TARGETS.slice(0, TARGETS.indexOf(t)),
  ];
  return {
    _format_version: '3.0',
    services: [
      {
        name: 'ai',
        url: `http://127.0.0.1:${relayPort}`,
        read_timeout: 600_000,
        write_timeout: 600_000,
        routes: [{ name: 'ai', paths: ['/v1'], strip_path: false }],
        plugins: [
          {
            name: 'ai-router',
            config: {
              // The router picks the target whose name is the request's model; every mock
              // gets the same provider model.
              targets: mocks.map((m) => ({
                name: m.id,
                model: 'gpt-4o-mini',
                base_url: `${m.origin}/v1`,
                api_key: MOCK_KEY,
              })),
            },
          },
          {
            name: 'ai-fallback',
            config: {
              chains: TARGETS.map((t) => ({ target: t, fallbacks: others(t) })),
              attempt_timeout_ms: s.attemptTimeoutMs,
              breaker: {
                window_ms: s.windowMs,
                min_requests: MIN_REQUESTS,
                failure_rate: FAILURE_RATE,
                cooldown_ms: s.cooldownMs,
              },
            },
          },
          { name: 'ai-metrics' },
        ],
      },
    ],
  };
}

async function startMock(id: TargetId, s: Settings): Promise<Mock> {
  const { child, ready } = await forkChild('mock-process.js', {
    type: 'start',
    apiKey: MOCK_KEY,
    chunkDelayMs: s.chunkDelayMs,
    latencyMs: s.latencyMs,
    answer: ANSWER,
  });
  return { id, child, origin: new URL(String(ready['url'])).origin, pid: ready['pid'] as number };
}

async function startGateway(mocks: Mock[], workDir: string, s: Settings): Promise<Gateway> {
  const port = await freePort();
  const relayPort = await freePort();
  const logFile = path.join(workDir, 'suite.log');
  const { child, ready } = await forkChild('gateway-process.js', {
    type: 'start',
    config: declarative(mocks, relayPort, s),
    port,
    relayPort,
    // No admin endpoint: its fixed default port may be taken by another suite server here.
    env: { AIGW_LOG_LEVEL: 'info', AIGW_LOG_FILE: logFile, AIGW_STORE: 'memory', AIGW_ADMIN_PORT: 'off' },
  });
  return {
    child,
    origin: `http://127.0.0.1:${port}`,
    logFile,
    emulatorPid: child.pid!,
    suitePid: ready['suitePid'] as number,
  };
}

const bodyFor = (model: TargetId, stream: boolean) =>
  JSON.stringify({
    model,
    messages: [{ role: 'user', content: PROMPT }],
    ...(stream ? { stream: true } : {}),
  });

/** Requests received by each mock since it started. */
async function mockCounts(mocks: Mock[]): Promise<Record<TargetId, number>> {
  const counts = await Promise.all(mocks.map((m) => ask(m.child, { type: 'count' })));
  return Object.fromEntries(mocks.map((m, i) => [m.id, Number(counts[i]!['requests'])])) as Record<
    TargetId,
    number
  >;
}

/** One JSON request for `model`: its status, and which target answered after how many failed attempts. */
async function chatOnce(
  origin: string,
  model: TargetId,
): Promise<{ status: number; target?: string; fallbacks?: number }> {
  try {
    const res = await request(`${origin}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: bodyFor(model, false),
    });
    await res.body.text();
    const header = (name: string) => {
      const v = res.headers[name];
      return Array.isArray(v) ? v[0] : v;
    };
    const fallbacks = header('x-ai-fallback-count');
    return {
      status: res.statusCode,
      target: header('x-ai-target'),
      fallbacks: fallbacks === undefined ? undefined : Number(fallbacks),
    };
  } catch {
    return { status: 0 };
  }
}

/** How the bench got a's breaker into the state a condition needs. */
interface Transition {
  from: Condition | 'start';
  to: Condition;
  requests: number;
  /** Answered with an error (the retry budget spent before the breaker opened...), by status. */
  errors: Record<string, number>;
  ms: number;
}

/**
 * Drives a's breaker into the state `to` needs. Open: four clients ask for models a, b, c in
 * turn, as the measured load does, until an answer for model a comes from another target
 * without a failed attempt (a was skipped); the errors on the way are what clients get
 * before the breaker opens. Closed: one client asks for model a until a answered three
 * times in a row (its probe succeeded).
 */
async function settleBreaker(
  origin: string,
  from: Transition['from'],
  to: Condition,
  s: Settings,
): Promise<Transition> {
  const open = to !== 'healthy';
  const maxMs = open ? 30_000 : s.cooldownMs + 30_000;
  const models: TargetId[] = open ? [...TARGETS] : [FAILING];
  const t0 = performance.now();
  let requests = 0;
  const errors: Record<string, number> = {};
  let answersFromA = 0;
  let settled = false;
  const client = async () => {
    while (!settled && performance.now() - t0 < maxMs) {
      const model = models[requests++ % models.length]!;
      const r = await chatOnce(origin, model);
      if (r.status !== 200) {
        errors[r.status] = (errors[r.status] ?? 0) + 1;
        answersFromA = 0;
        continue;
      }
      if (model !== FAILING) continue;
      if (open) {
        // Another target answered without a failed attempt: a was skipped.
        settled ||= r.target !== FAILING && r.fallbacks === 0;
        continue;
      }
      answersFromA = r.target === FAILING && r.fallbacks === 0 ? answersFromA + 1 : 0;
      settled ||= answersFromA >= 3;
      await sleep(20);
    }
  };
  await Promise.all(Array.from({ length: open ? 4 : 1 }, client));
  if (!settled) {
    throw new Error(
      `${FAILING}'s breaker did not ${open ? 'open' : 'close'} within ${maxMs} ms ` +
        `(${requests} requests, errors ${JSON.stringify(errors)})`,
    );
  }
  return { from, to, requests, errors, ms: performance.now() - t0 };
}

/** A slice's measured part, and what the ai-metrics lines and the mocks say about it. */
interface Slice {
  requests: number;
  errors: number;
  firstError?: string;
  wallMs: number;
  latency: number[];
  ttfb: number[];
  /** Requests each mock received during the measured part. */
  calls: Record<TargetId, number>;
  /** Provider calls per request (a target skipped by its open breaker is no call): {calls: requests}. */
  providerCalls: Record<string, number>;
  /** Requests answered after a failed attempt (they paid for it in latency). */
  paidFailure: number;
  /** Attempts skipped because the target's breaker was open. */
  skips: number;
  /** Breaker log lines during the measured part: {"a opened": n, ...}. */
  breakerEvents: Record<string, number>;
  /** CPU ms during the measured part, per process (mocks: the three together) and of the whole machine. */
  cpu: CpuMs;
}

interface CpuMs {
  emulator: number;
  suite: number;
  mocks: number;
  generator: number;
  machine: number;
}

function addCounts<K extends string>(a: Record<K, number>, b: Record<K, number>): Record<K, number> {
  const out = { ...a };
  for (const [k, v] of Object.entries(b) as Array<[K, number]>) out[k] = (out[k] ?? 0) + v;
  return out;
}

function mergeSlices(a: Slice | undefined, b: Slice): Slice {
  if (!a) return b;
  return {
    requests: a.requests + b.requests,
    errors: a.errors + b.errors,
    firstError: a.firstError ?? b.firstError,
    wallMs: a.wallMs + b.wallMs,
    latency: a.latency.concat(b.latency),
    ttfb: a.ttfb.concat(b.ttfb),
    calls: addCounts(a.calls, b.calls),
    providerCalls: addCounts(a.providerCalls, b.providerCalls),
    paidFailure: a.paidFailure + b.paidFailure,
    skips: a.skips + b.skips,
    breakerEvents: addCounts(a.breakerEvents, b.breakerEvents),
    cpu: addCounts<keyof CpuMs>(a.cpu, b.cpu),
  };
}

/** The ai-metrics lines and breaker lines written after `offset` (waits for the last log phases). */
async function readSliceLog(file: string, offset: number, expected: number) {
  let lines: Array<Record<string, unknown>> = [];
  for (let i = 0; i < 30; i++) {
    lines = await readLogRecords(file, offset, '"ai_request"');
    if (lines.length >= expected) break;
    await sleep(100);
  }
  const providerCalls: Record<string, number> = {};
  let paidFailure = 0;
  let skips = 0;
  for (const line of lines) {
    // One attempt has no `attempts` list in the line.
    const attempts = (line['attempts'] as Array<{ failure?: string }> | undefined) ?? [{}];
    const calls = attempts.filter((a) => a.failure !== 'circuit_open').length;
    skips += attempts.length - calls;
    providerCalls[calls] = (providerCalls[calls] ?? 0) + 1;
    if (Number(line['fallbacks'] ?? 0) > 0) paidFailure++;
  }
  const breakerEvents: Record<string, number> = {};
  for (const line of await readLogRecords(file, offset, '"circuit breaker ')) {
    const event = `${String(line['target'])} ${String(line['msg']).replace('circuit breaker ', '')}`;
    breakerEvents[event] = (breakerEvents[event] ?? 0) + 1;
  }
  return { providerCalls, paidFailure, skips, breakerEvents };
}

async function runSlice(
  gw: Gateway,
  mocks: Mock[],
  mode: Mode,
  shape: Shape,
  bounds: { requests: number; seconds: number; warmup: number },
): Promise<Slice> {
  const stream = mode === 'stream';
  const cpuNow = () => ({
    emulator: cpuMs(gw.emulatorPid),
    suite: cpuMs(gw.suitePid),
    mocks: cpuMsOf(mocks.map((m) => m.pid)),
    machine: machineBusyMs(),
  });
  let cpu0 = cpuNow();
  let cpu1 = cpu0;
  let logOffset = 0;
  let before = {} as Record<TargetId, number>;
  const result = await runLoad(
    {
      origin: gw.origin,
      path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json' },
      body: TARGETS.map((t) => bodyFor(t, stream)),
      stream,
      concurrency: shape.concurrency,
      requests: bounds.requests,
      maxSeconds: bounds.seconds,
      thinkMs: shape.thinkMs,
      warmup: bounds.warmup,
      expectContentEvents: ANSWER_WORDS,
      expectText: ANSWER,
    },
    {
      async beforeMeasure() {
        await sleep(100); // log phases of the warm-up finish
        logOffset = logSize(gw.logFile);
        before = await mockCounts(mocks);
        cpu0 = cpuNow();
      },
      afterMeasure() {
        cpu1 = cpuNow();
      },
    },
  );
  const after = await mockCounts(mocks);
  const calls = Object.fromEntries(TARGETS.map((t) => [t, after[t] - before[t]])) as Record<TargetId, number>;
  return {
    requests: result.requests,
    errors: result.errors,
    firstError: result.firstError,
    wallMs: result.wallMs,
    latency: result.latency,
    ttfb: result.ttfb,
    calls,
    ...(await readSliceLog(gw.logFile, logOffset, result.requests)),
    cpu: {
      emulator: cpu1.emulator - cpu0.emulator,
      suite: cpu1.suite - cpu0.suite,
      mocks: cpu1.mocks - cpu0.mocks,
      generator: result.generatorCpuMs,
      machine: cpu1.machine - cpu0.machine,
    },
  };
}

interface Summary {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

function summarize(values: number[]): Summary {
  return {
    n: values.length,
    p50: percentile(values, 50),
    p95: percentile(values, 95),
    p99: percentile(values, 99),
    max: percentile(values, 100),
  };
}

interface ConditionResult extends Omit<Slice, 'latency' | 'ttfb' | 'cpu'> {
  mode: Mode;
  shape: Shape;
  condition: Condition;
  rps: number;
  latency: Summary;
  ttfb?: Summary;
  /** CPU ms per measured request, per process. */
  cpuPerRequest: Omit<CpuMs, 'machine'>;
  /** CPU of everything else on the machine over wall time, in cores. */
  otherCores: number;
}

interface Verdict {
  mode: Mode;
  shape: Shape;
  fault: FaultName;
  healthy: ConditionResult;
  failing: ConditionResult;
  ratio: number;
  ttfbRatio?: number;
  pass: boolean;
}

interface Results {
  info: { date: string; command: string; machine: string; node: string; settings: Record<string, string> };
  conditions: ConditionResult[];
  verdicts: Verdict[];
  transitions: Transition[];
}

function finalize(mode: Mode, shape: Shape, condition: Condition, slice: Slice): ConditionResult {
  const { latency, ttfb, cpu, ...counts } = slice;
  const wall = Math.max(1, slice.wallMs);
  const n = Math.max(1, slice.requests);
  return {
    mode,
    shape,
    condition,
    ...counts,
    rps: (1000 * slice.requests) / wall,
    cpuPerRequest: {
      emulator: cpu.emulator / n,
      suite: cpu.suite / n,
      mocks: cpu.mocks / n,
      generator: cpu.generator / n,
    },
    otherCores: Math.max(0, (cpu.machine - cpu.emulator - cpu.suite - cpu.mocks - cpu.generator) / wall),
    latency: summarize(latency),
    ttfb: mode === 'stream' ? summarize(ttfb) : undefined,
  };
}

function judge(conditions: ConditionResult[], s: Settings): Verdict[] {
  const verdicts: Verdict[] = [];
  for (const healthy of conditions.filter((c) => c.condition === 'healthy')) {
    for (const failing of conditions.filter(
      (c) => c.condition !== 'healthy' && c.mode === healthy.mode && c.shape.name === healthy.shape.name,
    )) {
      const ratio = failing.latency.p99 / healthy.latency.p99;
      verdicts.push({
        mode: healthy.mode,
        shape: healthy.shape,
        fault: failing.condition as FaultName,
        healthy,
        failing,
        ratio,
        ttfbRatio: failing.ttfb && healthy.ttfb ? failing.ttfb.p99 / healthy.ttfb.p99 : undefined,
        // Every request must be answered, too: a healthy target was always there to answer it.
        pass: ratio <= s.limit && failing.errors === 0 && healthy.errors === 0,
      });
    }
  }
  return verdicts;
}

/**
 * Every condition of one (mode, load) in interleaved rounds: healthy, then the faults, then
 * the reverse order... Which fault follows `healthy` first rotates with `group`, so each
 * fault gets to open the breaker itself in some group.
 */
async function runGroup(
  gw: Gateway,
  mocks: Mock[],
  mode: Mode,
  shape: Shape,
  group: number,
  s: Settings,
  state: { current: Transition['from']; transitions: Transition[] },
): Promise<ConditionResult[]> {
  const shift = group % s.faults.length;
  const order: Condition[] = ['healthy', ...s.faults.slice(shift), ...s.faults.slice(0, shift)];
  const failing = mocks.find((m) => m.id === FAILING)!;
  const slices = new Map<Condition, Slice>();
  for (let round = 0; round < s.rounds; round++) {
    for (const condition of round % 2 === 0 ? order : [...order].reverse()) {
      const fault = condition === 'healthy' ? null : FAULTS[condition].fault;
      await ask(failing.child, { type: 'fault', fault });
      const transition = await settleBreaker(gw.origin, state.current, condition, s);
      if (transition.from !== condition) state.transitions.push(transition);
      state.current = condition;
      const slice = await runSlice(gw, mocks, mode, shape, {
        requests: Math.ceil(s.phaseRequests / s.rounds),
        seconds: s.phaseSeconds / s.rounds,
        warmup: round === 0 ? s.warmup : Math.ceil(s.warmup / 5),
      });
      log(
        `  ${mode} ${shape.name} ${condition} round ${round + 1}: ${slice.requests} req, ${slice.errors} err, ` +
          `p99 ${percentile(slice.latency, 99).toFixed(2)} ms, calls to ${FAILING} ${slice.calls[FAILING]}` +
          (Object.keys(slice.breakerEvents).length
            ? `, breaker ${JSON.stringify(slice.breakerEvents)}`
            : '') +
          (slice.firstError ? ` [${slice.firstError}]` : ''),
      );
      slices.set(condition, mergeSlices(slices.get(condition), slice));
    }
  }
  return (['healthy', ...s.faults] as Condition[]).map((c) => finalize(mode, shape, c, slices.get(c)!));
}

// ------------------------------------------------------------------ report

const modeText = (mode: Mode) => (mode === 'json' ? 'JSON' : 'stream');
const conditionText = (c: Condition) => (c === 'healthy' ? 'all healthy' : `${FAILING}: ${FAULTS[c].text}`);
const trio = (d: Summary) => `${ms(d.p50)} / ${ms(d.p95)} / ${ms(d.p99)}`;
const counts = (h: Record<string, number>) =>
  Object.entries(h)
    .sort((x, y) => y[1] - x[1])
    .map(([k, n]) => `${k}: ${n}`)
    .join(', ') || '–';

function transitionNotes(transitions: Transition[]): string[] {
  const kinds = new Map<string, Transition[]>();
  for (const t of transitions) {
    const kind = `${t.from} → ${t.to}`;
    kinds.set(kind, [...(kinds.get(kind) ?? []), t]);
  }
  const span = (values: number[], digits = 0) => {
    const lo = Math.min(...values).toFixed(digits);
    const hi = Math.max(...values).toFixed(digits);
    return lo === hi ? lo : `${lo}–${hi}`;
  };
  return [...kinds].map(([kind, ts]) => {
    const what = ts[0]!.to === 'healthy' ? `target ${FAILING} answering again` : `${FAILING}'s breaker open`;
    const errors = ts.reduce((sum, t) => addCounts(sum, t.errors), {} as Record<string, number>);
    return (
      `${kind} (${ts.length}×): ${what} after ${span(ts.map((t) => t.requests))} requests, ` +
      `${span(
        ts.map((t) => t.ms / 1000),
        1,
      )} s; answered with an error: ` +
      `${span(ts.map((t) => Object.values(t.errors).reduce((a, b) => a + b, 0)))}` +
      (Object.keys(errors).length ? ` (all together by status: ${counts(errors)})` : '')
    );
  });
}

function renderMarkdown(r: Results, s: Settings): string {
  const parts: string[] = [];
  const passed = r.verdicts.every((v) => v.pass);
  parts.push(`Run of ${r.info.date}.`);
  parts.push(
    [
      `- Command: \`${r.info.command}\``,
      `- Machine: ${r.info.machine}`,
      `- Node ${r.info.node}; dev gateway (Kong 3.9 emulator + the real suite server), memory store`,
      `- Settings: ${Object.entries(r.info.settings)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    ].join('\n'),
  );
  parts.push(
    `**${passed ? 'PASS' : 'FAIL'}**: ${
      passed
        ? `in every mode and load, p99 with target ${FAILING} failing is within ${s.limit}× of the all-healthy p99, and every request was answered.`
        : `${r.verdicts.filter((v) => !v.pass).length} of ${r.verdicts.length} comparisons exceed ${s.limit}× or had errors (below).`
    }`,
  );
  parts.push('### The criterion: p99 with one target failing ÷ p99 all healthy');
  parts.push(
    `Latency of successful requests to their last byte, ms, measured in the same run with rounds interleaved. ` +
      `Ratio = failing p99 ÷ healthy p99 (the criterion: ≤ ${s.limit}). Errors: requests not answered 200 with ` +
      `the full answer, healthy / failing.`,
  );
  parts.push(
    table(
      [
        'mode',
        'load',
        `${FAILING} fails with`,
        'healthy p50 / p95 / p99',
        'failing p50 / p95 / p99',
        'p99 ratio',
        'stream TTFB p99 ratio',
        'errors',
        'verdict',
      ],
      r.verdicts.map((v) => [
        modeText(v.mode),
        shapeText(v.shape),
        FAULTS[v.fault].text,
        trio(v.healthy.latency),
        trio(v.failing.latency),
        v.ratio.toFixed(2),
        v.ttfbRatio === undefined ? '–' : v.ttfbRatio.toFixed(2),
        `${v.healthy.errors} / ${v.failing.errors}`,
        v.pass ? 'pass' : '**FAIL**',
      ]),
    ),
  );
  parts.push('### Every condition');
  parts.push(
    `Calls = requests each mock received during the measured part (those to target ${FAILING} while it fails are the ` +
      `breaker's probes, or requests that met a closed breaker). Provider calls per request, and skips (an attempt ` +
      `left out because the target's breaker was open), from the ai-metrics lines. Breaker events = the suite ` +
      `server's "circuit breaker opened/closed" lines during the measured part. CPU per request: the Kong ` +
      `emulator's process, the suite server's, the three mocks together and the load generator (this process); ` +
      `other load: CPU of everything else on the machine over wall time (a busy machine makes a slice noisy).`,
  );
  parts.push(
    table(
      [
        'mode',
        'load',
        'condition',
        'requests',
        'errors',
        'req/s',
        'p50',
        'p95',
        'p99',
        'max',
        'TTFB p50 / p99',
        'calls a / b / c',
        'provider calls per request',
        'answered after a failed attempt',
        'skips',
        'breaker events',
        'CPU ms per request: emulator · suite · mocks · generator',
        'other load, cores',
      ],
      r.conditions.map((c) => [
        modeText(c.mode),
        shapeText(c.shape),
        conditionText(c.condition),
        String(c.requests),
        String(c.errors),
        c.rps.toFixed(0),
        ms(c.latency.p50),
        ms(c.latency.p95),
        ms(c.latency.p99),
        ms(c.latency.max),
        c.ttfb ? `${ms(c.ttfb.p50)} / ${ms(c.ttfb.p99)}` : '–',
        TARGETS.map((t) => c.calls[t]).join(' / '),
        counts(c.providerCalls),
        String(c.paidFailure),
        String(c.skips),
        counts(c.breakerEvents),
        Object.values(c.cpuPerRequest)
          .map((v) => v.toFixed(2))
          .join(' · '),
        c.otherCores.toFixed(2),
      ]),
    ),
  );
  const errors = r.conditions.filter((c) => c.firstError);
  for (const c of errors)
    parts.push(
      `- ${modeText(c.mode)} ${shapeText(c.shape)} ${c.condition}: ${c.errors} errors, first: ${c.firstError}`,
    );
  parts.push('### Getting there');
  parts.push(
    `Before each slice, not measured, the bench drove ${FAILING}'s breaker where the condition needs it. To open ` +
      `it, four clients asked for models a, b, c in turn (the measured mix) until an answer for model ${FAILING} ` +
      `came from another target without a failed attempt; the errors on the way are what clients get before ` +
      `the breaker opens. To close it, one client asked for model ${FAILING} until ${FAILING} answered three ` +
      `times in a row.`,
  );
  parts.push(
    transitionNotes(r.transitions)
      .map((n) => `- ${n}`)
      .join('\n'),
  );
  return `${parts.join('\n\n')}\n`;
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      faults: { type: 'string', default: '503,reset' },
      rounds: { type: 'string', default: '3' },
      'phase-requests': { type: 'string', default: '3000' },
      'phase-seconds': { type: 'string', default: '5' },
      warmup: { type: 'string', default: '100' },
      concurrency: { type: 'string', default: '8' },
      paced: { type: 'string', default: '1:5' },
      modes: { type: 'string', default: 'json,stream' },
      'latency-ms': { type: 'string', default: '5' },
      'chunk-delay-ms': { type: 'string', default: '1' },
      'window-ms': { type: 'string', default: '5000' },
      'cooldown-ms': { type: 'string', default: '2000' },
      'attempt-timeout-ms': { type: 'string', default: '1000' },
      limit: { type: 'string', default: '1.5' },
      out: { type: 'string', default: 'docs/benchmarks-failover.md' },
      json: { type: 'string', default: '-' },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const num = (name: keyof typeof values) => {
    const n = Number(values[name]);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number\n${USAGE}`);
    return n;
  };
  const faults = String(values.faults).split(',').filter(Boolean);
  const unknown = faults.filter((f) => !(f in FAULTS));
  if (faults.length === 0 || unknown.length > 0) throw new Error(`--faults: 503, reset, hang\n${USAGE}`);
  const s: Settings = {
    faults: faults as FaultName[],
    rounds: Math.max(1, Math.round(num('rounds'))),
    phaseRequests: num('phase-requests'),
    phaseSeconds: num('phase-seconds'),
    warmup: num('warmup'),
    shapes: parseShapes(String(values.concurrency), String(values.paced)),
    modes: String(values.modes)
      .split(',')
      .filter((m): m is Mode => m === 'json' || m === 'stream'),
    latencyMs: num('latency-ms'),
    chunkDelayMs: num('chunk-delay-ms'),
    windowMs: num('window-ms'),
    cooldownMs: num('cooldown-ms'),
    attemptTimeoutMs: num('attempt-timeout-ms'),
    limit: num('limit'),
  };

  const root = installationRoot();
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'aigw-bench-failover-'));
  const mocks: Mock[] = [];
  let gateway: Gateway | undefined;
  const cleanup = async () => {
    await closeChild(gateway?.child);
    await Promise.all(mocks.map((m) => closeChild(m.child)));
  };
  let interrupted = false;
  const onSignal = (sig: string) => {
    if (interrupted) return;
    interrupted = true;
    log(`${sig}: stopping`);
    void cleanup().finally(() => process.exit(130));
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  const results: Results = {
    info: {
      date: new Date().toISOString(),
      command: `npm run bench:failover${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
      machine: describeMachine(),
      node: process.version,
      settings: {
        'mock latency ms': String(s.latencyMs),
        'chunk delay ms': String(s.chunkDelayMs),
        'stream chunks': String(ANSWER_WORDS + 2),
        breaker: `window ${s.windowMs} ms, min ${MIN_REQUESTS} requests, failure rate ${FAILURE_RATE}, cooldown ${s.cooldownMs} ms`,
        'attempt timeout ms': String(s.attemptTimeoutMs),
        'retry budget': 'default (ratio 0.2, window 10 s, 1 retry/s)',
        rounds: String(s.rounds),
        'measured requests per condition ≤': String(s.phaseRequests),
        'seconds per condition ≤': String(s.phaseSeconds),
        'warm-up requests per slice': `${s.warmup}, then ${Math.ceil(s.warmup / 5)}`,
      },
    },
    conditions: [],
    verdicts: [],
    transitions: [],
  };
  try {
    for (const id of TARGETS) mocks.push(await startMock(id, s));
    gateway = await startGateway(mocks, workDir, s);
    log(`dev gateway at ${gateway.origin}; mocks ${mocks.map((m) => `${m.id} ${m.origin}`).join(', ')}`);
    const state = { current: 'start' as Transition['from'], transitions: results.transitions };
    let group = 0;
    for (const mode of s.modes) {
      for (const shape of s.shapes) {
        results.conditions.push(...(await runGroup(gateway, mocks, mode, shape, group++, s, state)));
      }
    }
  } finally {
    await cleanup();
    if (!values.keep) rmSync(workDir, { recursive: true, force: true });
    else log(`work folder kept: ${workDir}`);
  }
  results.verdicts = judge(results.conditions, s);

  const markdown = renderMarkdown(results, s);
  process.stdout.write(`\n${markdown}`);
  if (values.out !== '-')
    writeMarkdownBlock(path.resolve(root, String(values.out)), markdown, 'npm run bench:failover');
  if (values.json !== '-')
    writeFileSync(path.resolve(root, String(values.json)), `${JSON.stringify(results, null, 1)}\n`);
  if (!results.verdicts.every((v) => v.pass)) process.exitCode = 2;
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (err: unknown) => {
    process.stderr.write(
      `bench:failover failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
