/**
 * Benchmark: what the plugin suite adds to a Kong route, side by side in one run.
 *
 *   npm run bench                                  dev gateway (Kong emulator + real suite server)
 *   npm run bench -- --kong-lab /work/kong-lab-out also a real Kong 3.9.3 from the Kong lab (or KONG_LAB=...)
 *   npm run bench -- --requests 20000              shorter memory phase (default 100000)
 *
 * Per gateway, three routes on the same gateway and one mock (its own process):
 *   baseline     no plugins, the service is the OpenAI mock
 *   suite        all five plugins, the service is the relay (→ mock), ai-metrics logs each request
 *   suite-nolog  the same with ai-metrics `log_requests: false`
 * and `direct` (the mock without any gateway) for reference. Each is measured non-streaming
 * and streaming, back-to-back at each concurrency and paced (a pause after every answer),
 * each phase bounded in requests and seconds. Then a long phase on the suite route measures
 * the suite server's memory. Results: a table on stdout, docs/benchmarks.md (between the
 * bench markers) and docs/benchmarks.json.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { installationRoot } from '../lib/kong/kong-conf';
import { freePort } from '../spec/support/redis';
import { ask, closeChild, forkChild } from './bench/children';
import { KongLab, waitForLab } from './bench/kong-lab';
import { type LoadResult, type LoadSpec, parseShapes, percentile, runLoad } from './bench/load';
import {
  type CpuProfile,
  cmdline,
  cpuMs,
  cpuMsOf,
  describeMachine,
  InspectorSession,
  machineBusyMs,
  memory,
  summarizeProfile,
} from './bench/procstat';
import {
  type Dist,
  type MemoryCheckpoint,
  type MemoryResult,
  type Mode,
  type PhaseResult,
  type ProfileResult,
  type Run,
  renderMarkdown,
  type Shape,
  type TargetName,
  writeMarkdownBlock,
} from './bench/report';
import { logSize, readLogRecords } from './bench/suite-log';

const USAGE = `usage: npm run bench -- [options]
  --requests N          requests of the memory phase (default 100000; 0 skips it)
  --memory-seconds S    time cap of the memory phase (default 420)
  --memory-on G         dev, kong or both (default: kong when --kong-lab is given, else dev)
  --phase-requests N    measured requests per phase (default 2000)
  --phase-seconds S     time cap per phase (default 4)
  --warmup N            warm-up requests per phase (default 200; an eighth before later rounds)
  --rounds N            interleaved rounds per phase (default 3): requests and seconds are split
  --concurrency LIST    back-to-back concurrencies (default 8,32)
  --paced LIST          paced loads as CONC:PAUSE_MS (default 1:20; e.g. 1:20,8:20)
  --modes LIST          json,stream (default both)
  --chunk-delay-ms N    mock delay between SSE chunks (default 1)
  --kong-lab DIR        also measure a real Kong from this Kong lab (env KONG_LAB)
  --kong-lab-scripts D  folder of the lab's start.sh/stop.sh (default /work/shared/kong-lab)
  --kong-wait S         how long to wait for the lab to be free (default 900)
  --only dev|kong       one gateway only
  --out FILE            Markdown results (default docs/benchmarks.md; "-" for none)
  --json FILE           raw JSON (default docs/benchmarks.json; "-" for none)
  --no-profile          skip the CPU profiles of the suite server (taken after the measured phases)
  --keep                keep the work folder (logs, configs, .cpuprofile files)
  --render FILE.json    only write the Markdown again from the raw JSON of an earlier run`;

const MOCK_KEY = 'sk-bench-mock-key-0000000000000000';
const MODEL = 'gpt-4o-mini';
/** 16 words: 16 content chunks in a stream (plus the role chunk and the finish chunk). */
const ANSWER =
  'The quick brown fox jumps over the lazy dog while seven wizards quietly judge boxing matches tonight.';
const ANSWER_WORDS = ANSWER.split(/\s+/).length;
const PROMPT = 'Say something short about foxes and dogs.';
const HOSTS: Record<Exclude<TargetName, 'direct'>, string> = {
  baseline: 'baseline.bench',
  suite: 'suite.bench',
  'suite-nolog': 'suite-nolog.bench',
};

const log = (line: string) => process.stderr.write(`${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The same routes for both gateways. */
function declarative(mockOrigin: string, relayPort: number): object {
  const suitePlugins = (logRequests: boolean) => [
    { name: 'ai-semantic-cache' },
    {
      name: 'ai-router',
      config: {
        // The mock's key (not a secret) as a literal, so both gateways resolve it alike.
        targets: [{ name: MODEL, model: MODEL, base_url: `${mockOrigin}/v1`, api_key: MOCK_KEY }],
        default_target: MODEL,
      },
    },
    { name: 'ai-budget' },
    { name: 'ai-fallback' },
    { name: 'ai-metrics', config: { log_requests: logRequests } },
  ];
  const route = (name: string) => ({
    name,
    hosts: [HOSTS[name as keyof typeof HOSTS]],
    paths: ['/v1'],
    strip_path: false,
  });
  const relay = `http://127.0.0.1:${relayPort}`;
  const timeouts = { read_timeout: 600_000, write_timeout: 600_000 };
  return {
    _format_version: '3.0',
    services: [
      { name: 'baseline', url: mockOrigin, ...timeouts, routes: [route('baseline')] },
      { name: 'suite', url: relay, ...timeouts, routes: [route('suite')], plugins: suitePlugins(true) },
      {
        name: 'suite-nolog',
        url: relay,
        ...timeouts,
        routes: [route('suite-nolog')],
        plugins: suitePlugins(false),
      },
    ],
  };
}

interface Gateway {
  kind: 'dev' | 'kong';
  name: string;
  origin: string;
  version: string;
  logFile: string;
  suitePid(): number | undefined;
  gatewayPids(): number[];
  /** Emulator round-trip counters (dev gateway only). */
  resetRoundTrips?(): Promise<void>;
  roundTrips?(): Promise<Record<string, number>>;
  close(): Promise<void>;
}

async function startDev(mockOrigin: string, workDir: string): Promise<Gateway> {
  const port = await freePort();
  const relayPort = await freePort();
  const logFile = path.join(workDir, 'suite-dev.log');
  const { child, ready } = await forkChild('gateway-process.js', {
    type: 'start',
    config: declarative(mockOrigin, relayPort),
    port,
    relayPort,
    env: { AIGW_LOG_LEVEL: 'info', AIGW_LOG_FILE: logFile, AIGW_STORE: 'memory' },
  });
  const suitePid = ready['suitePid'] as number;
  return {
    kind: 'dev',
    name: 'dev gateway',
    origin: `http://127.0.0.1:${port}`,
    version: 'Kong 3.9 emulator (spec/support/kong), Node',
    logFile,
    suitePid: () => suitePid,
    gatewayPids: () => [child.pid!],
    async resetRoundTrips() {
      await ask(child, { type: 'stats-reset' });
    },
    async roundTrips() {
      const stats = await ask(child, { type: 'stats-get' });
      return stats['roundTrips'] as Record<string, number>;
    },
    close: () => closeChild(child),
  };
}

async function startKong(
  mockOrigin: string,
  workDir: string,
  lab: string,
  scripts: string,
  waitS: number,
): Promise<Gateway | undefined> {
  if (!(await waitForLab(lab, waitS, log))) {
    log(`Kong lab still busy after ${waitS} s: real Kong skipped`);
    return undefined;
  }
  const relayPort = await freePort();
  const logFile = path.join(workDir, 'suite-kong.log');
  const kong = await KongLab.start({
    lab,
    scripts,
    workDir,
    socketDir: path.join(workDir, 'sockets'),
    proxyPort: await freePort(),
    adminPort: await freePort(),
    declarative: declarative(mockOrigin, relayPort),
    serverEnv: {
      AIGW_RELAY_PORT: String(relayPort),
      AIGW_LOG_FILE: logFile,
      AIGW_LOG_LEVEL: 'info',
      AIGW_STORE: 'memory',
    },
    log,
  });
  try {
    // Until every route answers (the plugin servers start asynchronously).
    let version = 'Kong';
    const until = Date.now() + 30_000;
    for (const target of ['baseline', 'suite'] as const) {
      for (;;) {
        // undici's request, not fetch: fetch drops the Host header the routes match on.
        const res = await request(`${kong.url}/v1/chat/completions`, {
          method: 'POST',
          headers: requestHeaders(target),
          body: JSON.stringify(requestBody(false)),
        }).catch((err: Error) => ({
          statusCode: 0,
          headers: {} as Record<string, string | string[] | undefined>,
          body: { text: async () => err.message },
        }));
        const text = await res.body.text();
        if (res.statusCode === 200) {
          const via = res.headers['via'] ?? res.headers['server'];
          if (via) version = String(via);
          break;
        }
        if (Date.now() > until)
          throw new Error(`real Kong: ${target} route answers ${res.statusCode}: ${text}`);
        await sleep(250);
      }
    }
    return {
      kind: 'kong',
      name: 'Kong 3.9.3',
      origin: kong.url,
      version: `${version.replace(/^1\.1 /, '')} (Kong lab, DB-less, 2 nginx workers)`,
      logFile,
      suitePid: () => kong.suitePid(),
      gatewayPids() {
        return kong.nginxPids(kong.suitePid());
      },
      close: () => kong.stop(),
    };
  } catch (err) {
    await kong.stop();
    throw err;
  }
}

function requestBody(stream: boolean): object {
  return { model: MODEL, messages: [{ role: 'user', content: PROMPT }], ...(stream ? { stream: true } : {}) };
}

function requestHeaders(target: TargetName): Record<string, string> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  // The baseline and direct calls carry the provider key themselves; the suite adds it from its config.
  if (target === 'direct' || target === 'baseline') headers['authorization'] = `Bearer ${MOCK_KEY}`;
  if (target !== 'direct') headers['host'] = HOSTS[target];
  return headers;
}

function dist(values: number[]): Dist | undefined {
  if (values.length === 0) return undefined;
  return {
    p50: percentile(values, 50),
    p90: percentile(values, 90),
    p99: percentile(values, 99),
    max: percentile(values, 100),
    n: values.length,
  };
}

/** ai-metrics lines written after `offset`: kong_round_trips histogram, Kong's and the relay's latencies. */
async function readMetricsLines(
  file: string,
  offset: number,
): Promise<{ hist: Record<string, number>; lines: number; kongMs: number[]; relayMs: number[] }> {
  const hist: Record<string, number> = {};
  const kongMs: number[] = [];
  const relayMs: number[] = [];
  let lines = 0;
  for (const rec of await readLogRecords(file, offset, '"kong_round_trips"')) {
    const { kong_round_trips: roundTrips, kong_latency_ms: kong, relay_latency_ms: relay } = rec;
    if (typeof roundTrips === 'number') {
      hist[roundTrips] = (hist[roundTrips] ?? 0) + 1;
      lines++;
    }
    if (typeof kong === 'number') kongMs.push(kong);
    if (typeof relay === 'number') relayMs.push(relay);
  }
  return { hist, lines, kongMs, relayMs };
}

/** Connections open to the suite server's plugin sockets now (listening sockets excluded). */
function rpcConnections(suitePid: number | undefined): number | undefined {
  if (!suitePid) return undefined;
  const dir = /--socket-dir (\S+)/.exec(cmdline(suitePid))?.[1];
  if (!dir) return undefined;
  try {
    return readFileSync('/proc/net/unix', 'utf8')
      .split('\n')
      .filter((l) => l.includes(`${dir}/`))
      .filter((l) => l.trim().split(/\s+/)[3] !== '00010000').length;
  } catch {
    return undefined;
  }
}

interface Settings {
  phaseRequests: number;
  phaseSeconds: number;
  warmup: number;
  rounds: number;
  modes: Mode[];
  shapes: Shape[];
  memoryRequests: number;
  profile: boolean;
  workDir: string;
  /** Gateways whose suite server gets the memory phase. */
  memoryOn: Array<'dev' | 'kong'>;
}

/** One slice of a phase: what was measured, before percentiles. Slices of one phase add up. */
interface RawPhase extends Omit<LoadResult, 'generatorCpuMs'> {
  /** CPU ms over the measured part. */
  cpu: { suite: number; gateway: number; mock: number; generator: number; machine: number };
  rtEmulator?: Record<string, number>;
  rtLog?: Record<string, number>;
  logLines?: number;
  kongMs: number[];
  relayMs: number[];
  rpcOpen?: number;
}

function addHist(a: Record<string, number> | undefined, b: Record<string, number> | undefined) {
  if (!a) return b;
  if (!b) return a;
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = (out[k] ?? 0) + v;
  return out;
}

function mergeRaw(a: RawPhase | undefined, b: RawPhase): RawPhase {
  if (!a) return b;
  return {
    requests: a.requests + b.requests,
    errors: a.errors + b.errors,
    firstError: a.firstError ?? b.firstError,
    wallMs: a.wallMs + b.wallMs,
    latency: a.latency.concat(b.latency),
    ttfb: a.ttfb.concat(b.ttfb),
    ttft: a.ttft.concat(b.ttft),
    gaps: a.gaps.concat(b.gaps),
    cpu: {
      suite: a.cpu.suite + b.cpu.suite,
      gateway: a.cpu.gateway + b.cpu.gateway,
      mock: a.cpu.mock + b.cpu.mock,
      generator: a.cpu.generator + b.cpu.generator,
      machine: a.cpu.machine + b.cpu.machine,
    },
    rtEmulator: addHist(a.rtEmulator, b.rtEmulator),
    rtLog: addHist(a.rtLog, b.rtLog),
    logLines:
      a.logLines === undefined && b.logLines === undefined
        ? undefined
        : (a.logLines ?? 0) + (b.logLines ?? 0),
    kongMs: a.kongMs.concat(b.kongMs),
    relayMs: a.relayMs.concat(b.relayMs),
    rpcOpen: b.rpcOpen ?? a.rpcOpen,
  };
}

/** One slice: warm-up, then the measured part with CPU and counters read around it. */
async function runSlice(
  gw: Gateway,
  mockOrigin: string,
  mockPid: number,
  target: TargetName,
  mode: Mode,
  shape: Shape,
  bounds: { requests: number; seconds: number; warmup: number },
): Promise<RawPhase> {
  const stream = mode === 'stream';
  const snapshot = () => ({
    suite: cpuMs(gw.suitePid()),
    gateway: cpuMsOf(gw.gatewayPids()),
    mock: cpuMs(mockPid),
    machine: machineBusyMs(),
  });
  let cpu0 = { suite: 0, gateway: 0, mock: 0, machine: 0 };
  let cpu1 = cpu0;
  let logOffset = 0;
  let rpcOpen: number | undefined;
  const spec: LoadSpec = {
    origin: target === 'direct' ? mockOrigin : gw.origin,
    path: '/v1/chat/completions',
    headers: requestHeaders(target),
    body: JSON.stringify(requestBody(stream)),
    stream,
    concurrency: shape.concurrency,
    requests: bounds.requests,
    maxSeconds: bounds.seconds,
    thinkMs: shape.thinkMs,
    warmup: bounds.warmup,
    expectContentEvents: ANSWER_WORDS,
    expectText: ANSWER,
  };
  const result: LoadResult = await runLoad(spec, {
    async beforeMeasure() {
      await sleep(100); // log phases of the warm-up finish
      await gw.resetRoundTrips?.();
      logOffset = logSize(gw.logFile);
      cpu0 = snapshot();
    },
    afterMeasure() {
      cpu1 = snapshot();
      rpcOpen = rpcConnections(gw.suitePid());
    },
  });
  const suite = target.startsWith('suite');
  const { generatorCpuMs, ...measured } = result;
  const raw: RawPhase = {
    ...measured,
    cpu: {
      suite: suite ? cpu1.suite - cpu0.suite : 0,
      gateway: target === 'direct' ? 0 : cpu1.gateway - cpu0.gateway,
      mock: cpu1.mock - cpu0.mock,
      generator: generatorCpuMs,
      machine: cpu1.machine - cpu0.machine,
    },
    kongMs: [],
    relayMs: [],
    rpcOpen: suite ? rpcOpen : undefined,
  };
  if (target !== 'direct' && gw.roundTrips) raw.rtEmulator = await gw.roundTrips();
  if (target === 'suite') {
    // The ai-metrics lines of the last requests are written after their answers.
    for (let i = 0; i < 30; i++) {
      const got = await readMetricsLines(gw.logFile, logOffset);
      Object.assign(raw, { rtLog: got.hist, logLines: got.lines, kongMs: got.kongMs, relayMs: got.relayMs });
      if (got.lines >= result.requests) break;
      await sleep(100);
    }
  }
  return raw;
}

function finalize(gw: Gateway, target: TargetName, mode: Mode, shape: Shape, raw: RawPhase): PhaseResult {
  const n = Math.max(1, raw.requests);
  const wall = Math.max(1, raw.wallMs);
  const suite = target.startsWith('suite');
  const ours = raw.cpu.suite + raw.cpu.gateway + raw.cpu.mock + raw.cpu.generator;
  const none = { p50: Number.NaN, p90: Number.NaN, p99: Number.NaN, max: Number.NaN, n: 0 };
  return {
    gateway: gw.name,
    mode,
    shape,
    target,
    requests: raw.requests,
    errors: raw.errors,
    firstError: raw.firstError,
    wallMs: raw.wallMs,
    rps: (1000 * raw.requests) / wall,
    latency: dist(raw.latency) ?? none,
    ttfb: dist(raw.ttfb),
    ttft: dist(raw.ttft),
    gap: dist(raw.gaps),
    cpuUs: {
      suite: suite ? (1000 * raw.cpu.suite) / n : Number.NaN,
      gateway: target === 'direct' ? Number.NaN : (1000 * raw.cpu.gateway) / n,
      mock: (1000 * raw.cpu.mock) / n,
      generator: (1000 * raw.cpu.generator) / n,
    },
    coresBusy: ours / wall,
    // Whatever else ran on the machine meanwhile (other engineers' tests, the idle suite server...).
    foreignCores: Math.max(0, (raw.cpu.machine - ours) / wall),
    roundTrips: { emulator: raw.rtEmulator, log: raw.rtLog },
    logLines: raw.logLines,
    logLatency: target === 'suite' ? { kong: dist(raw.kongMs), relay: dist(raw.relayMs) } : undefined,
    rpcConnections: raw.rpcOpen,
  };
}

/**
 * Every target of one (mode, load) in interleaved rounds: round 1 runs direct, baseline,
 * suite, suite-nolog, round 2 again..., each slice with 1/rounds of the phase's requests and
 * seconds, so background load drifting over time hits every target alike.
 */
async function runGroup(
  gw: Gateway,
  mockOrigin: string,
  mockPid: number,
  mode: Mode,
  shape: Shape,
  s: Settings,
): Promise<PhaseResult[]> {
  const targets: TargetName[] = ['direct', 'baseline', 'suite', 'suite-nolog'];
  const raws = new Map<TargetName, RawPhase>();
  for (let round = 0; round < s.rounds; round++) {
    for (const target of round % 2 === 0 ? targets : [...targets].reverse()) {
      const slice = await runSlice(gw, mockOrigin, mockPid, target, mode, shape, {
        requests: Math.ceil(s.phaseRequests / s.rounds),
        seconds: s.phaseSeconds / s.rounds,
        warmup: round === 0 ? s.warmup : Math.ceil(s.warmup / 8),
      });
      raws.set(target, mergeRaw(raws.get(target), slice));
    }
  }
  return targets.map((t) => finalize(gw, t, mode, shape, raws.get(t)!));
}

async function memoryPhase(gw: Gateway, s: Settings, maxSeconds: number): Promise<MemoryResult> {
  const pid = gw.suitePid();
  if (!pid) throw new Error(`${gw.name}: suite server pid unknown`);
  const probe = await InspectorSession.open(pid);
  const heapNote = probe instanceof InspectorSession ? undefined : probe.error;
  const checkpoints: MemoryCheckpoint[] = [];
  const checkpoint = async (requests: number) => {
    const heap = probe instanceof InspectorSession ? await probe.heap().catch(() => undefined) : undefined;
    const m = memory(pid);
    checkpoints.push({
      requests,
      rss: m?.rss ?? Number.NaN,
      hwm: m?.hwm ?? Number.NaN,
      heapUsed: heap?.heapUsed,
      heapTotal: heap?.heapTotal,
      external: heap?.external,
    });
    log(
      `  memory after ${requests} requests: RSS ${((m?.rss ?? 0) / 2 ** 20).toFixed(1)} MiB` +
        (heap ? `, heap used ${(heap.heapUsed / 2 ** 20).toFixed(1)} MiB` : ''),
    );
  };
  await checkpoint(0);
  const segments = 10;
  const perSegment = Math.max(2, Math.ceil(s.memoryRequests / segments));
  const deadline = Date.now() + maxSeconds * 1000;
  let done = 0;
  let errors = 0;
  let firstError: string | undefined;
  let wallMs = 0;
  const cpu0 = cpuMs(pid);
  for (let i = 0; i < segments && Date.now() < deadline; i++) {
    const left = Math.max(1, (deadline - Date.now()) / 1000);
    const common = {
      origin: gw.origin,
      path: '/v1/chat/completions',
      headers: requestHeaders('suite'),
      concurrency: 16,
      maxSeconds: left,
      thinkMs: 0,
      warmup: 0,
      expectContentEvents: ANSWER_WORDS,
      expectText: ANSWER,
    };
    const results = await Promise.all([
      runLoad({
        ...common,
        body: JSON.stringify(requestBody(false)),
        stream: false,
        requests: Math.ceil(perSegment / 2),
      }),
      runLoad({
        ...common,
        body: JSON.stringify(requestBody(true)),
        stream: true,
        requests: Math.floor(perSegment / 2),
      }),
    ]);
    for (const r of results) {
      done += r.requests;
      errors += r.errors;
      firstError ??= r.firstError;
    }
    wallMs += Math.max(...results.map((r) => r.wallMs));
    await sleep(200); // in-flight log phases end
    await checkpoint(done);
  }
  const cpu1 = cpuMs(pid);
  if (probe instanceof InspectorSession) probe.close();
  const first = checkpoints[1] ?? checkpoints[0]!;
  const last = checkpoints[checkpoints.length - 1]!;
  const heapSlope =
    last.heapUsed !== undefined && first.heapUsed !== undefined && last.requests > first.requests
      ? (last.heapUsed - first.heapUsed) / (last.requests - first.requests)
      : undefined;
  const rssGrowth = last.rss - first.rss;
  // Flat: after warm-up (the first segment), the heap after GC grows by less than 10 bytes per
  // request (1 MB per 100k) and RSS by less than 16 MiB.
  const flat = (heapSlope === undefined || heapSlope < 10) && rssGrowth < 16 * 2 ** 20;
  return {
    gateway: gw.name,
    requests: done,
    errors,
    firstError,
    wallMs,
    rps: (1000 * done) / wallMs,
    checkpoints,
    heapNote,
    heapSlope,
    rssGrowth,
    flat,
    suiteCpuUs: (1000 * (cpu1 - cpu0)) / Math.max(1, done),
  };
}

/** A CPU profile of the suite server under load (suite route, back-to-back, c=8): where its time goes. */
async function profilePhase(gw: Gateway, s: Settings, mode: Mode, workDir: string): Promise<ProfileResult> {
  const pid = gw.suitePid();
  const session = pid ? await InspectorSession.open(pid) : { error: 'suite server pid unknown' };
  if (!(session instanceof InspectorSession)) return { gateway: gw.name, mode, error: session.error };
  try {
    await session.send('Profiler.enable');
    await session.send('Profiler.setSamplingInterval', { interval: 200 });
    await session.send('Profiler.start');
    const stream = mode === 'stream';
    const r = await runLoad({
      origin: gw.origin,
      path: '/v1/chat/completions',
      headers: requestHeaders('suite'),
      body: JSON.stringify(requestBody(stream)),
      stream,
      concurrency: 8,
      requests: s.phaseRequests,
      maxSeconds: s.phaseSeconds,
      thinkMs: 0,
      warmup: 0,
      expectContentEvents: ANSWER_WORDS,
      expectText: ANSWER,
    });
    const { profile } = await session.send<{ profile: CpuProfile }>('Profiler.stop');
    await session.send('Profiler.disable');
    const file = path.join(workDir, `suite-${gw.name.replace(/\W+/g, '-')}-${mode}.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    return { gateway: gw.name, mode, requests: r.requests, ...summarizeProfile(profile, installationRoot()) };
  } finally {
    session.close();
  }
}

async function runGateway(
  gw: Gateway,
  mockOrigin: string,
  mockPid: number,
  s: Settings,
  memorySeconds: number,
): Promise<{ phases: PhaseResult[]; memory?: MemoryResult; profiles: ProfileResult[] }> {
  const phases: PhaseResult[] = [];
  for (const mode of s.modes) {
    for (const shape of s.shapes) {
      for (const p of await runGroup(gw, mockOrigin, mockPid, mode, shape, s)) {
        phases.push(p);
        log(
          `  ${gw.name} ${mode} ${shape.name} ${p.target}: ${p.requests} req, ${p.errors} err, ` +
            `${p.rps.toFixed(0)} req/s, p50 ${p.latency.p50.toFixed(2)} ms, p99 ${p.latency.p99.toFixed(2)} ms` +
            (p.ttfb ? `, TTFB p50 ${p.ttfb.p50.toFixed(2)} ms` : '') +
            (p.target.startsWith('suite') ? `, suite CPU ${p.cpuUs.suite.toFixed(0)} µs/req` : '') +
            `, others ${p.foreignCores.toFixed(2)} cores` +
            (p.firstError ? ` [${p.firstError}]` : ''),
        );
      }
    }
  }
  let mem: MemoryResult | undefined;
  if (s.memoryRequests > 0 && s.memoryOn.includes(gw.kind)) {
    log(`  ${gw.name}: memory phase, ${s.memoryRequests} requests`);
    mem = await memoryPhase(gw, s, memorySeconds);
  }
  const profiles: ProfileResult[] = [];
  if (s.profile) {
    for (const mode of ['json', 'stream'] as const) {
      log(`  ${gw.name}: CPU profile of the suite server, ${mode}`);
      profiles.push(await profilePhase(gw, s, mode, s.workDir));
    }
  }
  return { phases, memory: mem, profiles };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      requests: { type: 'string', default: '100000' },
      'phase-requests': { type: 'string', default: '2000' },
      'phase-seconds': { type: 'string', default: '4' },
      warmup: { type: 'string', default: '200' },
      rounds: { type: 'string', default: '3' },
      modes: { type: 'string', default: 'json,stream' },
      concurrency: { type: 'string', default: '8,32' },
      paced: { type: 'string', default: '1:20' },
      'chunk-delay-ms': { type: 'string', default: '1' },
      'kong-lab': { type: 'string', default: process.env.KONG_LAB },
      'kong-lab-scripts': {
        type: 'string',
        default: process.env.KONG_LAB_SCRIPTS ?? '/work/shared/kong-lab',
      },
      'kong-wait': { type: 'string', default: '900' },
      'memory-seconds': { type: 'string', default: '420' },
      'memory-on': { type: 'string' },
      only: { type: 'string' },
      out: { type: 'string', default: 'docs/benchmarks.md' },
      json: { type: 'string', default: 'docs/benchmarks.json' },
      keep: { type: 'boolean', default: false },
      'no-profile': { type: 'boolean', default: false },
      render: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (values.render) {
    // Presentation only: the Markdown again from a raw JSON of an earlier run.
    const earlier = JSON.parse(readFileSync(values.render, 'utf8')) as Run;
    const markdown = renderMarkdown(earlier);
    process.stdout.write(markdown);
    if (values.out !== '-')
      writeMarkdownBlock(path.resolve(installationRoot(), String(values.out)), markdown, 'npm run bench');
    return;
  }
  const num = (name: keyof typeof values) => {
    const n = Number(values[name]);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number\n${USAGE}`);
    return n;
  };
  const shapes = parseShapes(String(values.concurrency), String(values.paced));
  const settings: Settings = {
    phaseRequests: num('phase-requests'),
    phaseSeconds: num('phase-seconds'),
    warmup: num('warmup'),
    rounds: Math.max(1, Math.round(num('rounds'))),
    modes: String(values.modes)
      .split(',')
      .filter((m): m is Mode => m === 'json' || m === 'stream'),
    shapes,
    memoryRequests: num('requests'),
    profile: !values['no-profile'],
    workDir: '',
    memoryOn: [],
  };
  const chunkDelayMs = num('chunk-delay-ms');
  const lab = values['kong-lab'];
  const wantDev = values.only !== 'kong';
  const wantKong = values.only !== 'dev' && lab !== undefined && lab !== '';
  if (values.only === 'kong' && !lab) throw new Error('--only kong needs --kong-lab DIR');
  const memoryOn = values['memory-on'] ?? (wantKong ? 'kong' : 'dev');
  if (!['dev', 'kong', 'both'].includes(memoryOn)) throw new Error(`--memory-on dev|kong|both\n${USAGE}`);
  settings.memoryOn = memoryOn === 'both' ? ['dev', 'kong'] : [memoryOn as 'dev' | 'kong'];

  const root = installationRoot();
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'aigw-bench-'));
  settings.workDir = workDir;
  const started = new Date();
  const notes: string[] = [];
  const run: Run = {
    info: {
      date: started.toISOString(),
      command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
      machine: describeMachine(),
      node: process.version,
      settings: {
        'measured requests per phase ≤': settings.phaseRequests,
        'seconds per phase ≤': settings.phaseSeconds,
        'warm-up requests per phase': settings.warmup,
        'interleaved rounds per phase': settings.rounds,
        'mock chunk delay ms': chunkDelayMs,
        'stream chunks': ANSWER_WORDS + 2,
        'memory phase requests': settings.memoryRequests,
        'memory phase on': settings.memoryOn.join(' + '),
      },
      notes,
    },
    phases: [],
    memory: [],
    profiles: [],
  };

  let mockChild: ChildProcess | undefined;
  let current: Gateway | undefined;
  const cleanup = async () => {
    await current?.close().catch(() => undefined);
    current = undefined;
    await closeChild(mockChild);
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

  try {
    const mock = await forkChild('mock-process.js', {
      type: 'start',
      apiKey: MOCK_KEY,
      chunkDelayMs,
      answer: ANSWER,
    });
    mockChild = mock.child;
    const mockOrigin = new URL(String(mock.ready['url'])).origin;
    const mockPid = mock.ready['pid'] as number;
    log(`mock at ${mockOrigin} (pid ${mockPid}); work folder ${workDir}`);

    const measure = async (gw: Gateway) => {
      current = gw;
      log(`${gw.name} at ${gw.origin}: ${gw.version}; suite server pid ${gw.suitePid()}`);
      const {
        phases,
        memory: mem,
        profiles,
      } = await runGateway(gw, mockOrigin, mockPid, settings, num('memory-seconds'));
      run.phases.push(...phases);
      run.profiles.push(...profiles);
      if (mem) run.memory.push(mem);
      await gw.close();
      current = undefined;
    };
    if (wantDev) await measure(await startDev(mockOrigin, workDir));
    if (wantKong) {
      const kong = await startKong(
        mockOrigin,
        workDir,
        lab!,
        String(values['kong-lab-scripts']),
        num('kong-wait'),
      );
      if (kong) {
        run.info.kong = kong.version;
        await measure(kong);
      } else notes.push(`Real Kong skipped: the Kong lab at ${lab} stayed busy (another Kong ran from it).`);
    } else notes.push('No real Kong in this run (`--kong-lab DIR` adds it).');
  } finally {
    await cleanup();
    if (!values.keep) rmSync(workDir, { recursive: true, force: true });
    else log(`work folder kept: ${workDir}`);
  }

  notes.push(
    'Processes: the load generator (this process, undici, keep-alive), the mock (its own process), ' +
      'the gateway (emulator process, or Kong’s nginx master + workers) and the suite server share the 2 cores; ' +
      '"cores busy" is their summed CPU time over the wall time of the phase.',
    'Latency is to the last byte of the answer; TTFB to the first body byte; TTFT to the first SSE event ' +
      'with content; gap = time between SSE events as the client reads them. Suite-server log level info: ' +
      'the `suite` route writes one ai-metrics line per request to AIGW_LOG_FILE, `suite-nolog` has ' +
      '`log_requests: false`.',
  );
  const markdown = renderMarkdown(run);
  process.stdout.write(`\n${markdown}`);
  const outFile = String(values.out);
  if (outFile !== '-') writeMarkdownBlock(path.resolve(root, outFile), markdown, 'npm run bench');
  const jsonFile = String(values.json);
  if (jsonFile !== '-') writeFileSync(path.resolve(root, jsonFile), `${JSON.stringify(run, null, 1)}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(
      `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
