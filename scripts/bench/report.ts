/**
 * Results of a benchmark run and their presentation: per-phase tables, the suite-minus-
 * baseline summary, the targets (met / not met) and the memory checkpoints, as Markdown
 * (docs/benchmarks.md, and the same text on stdout).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

export type Mode = 'json' | 'stream';
export type TargetName = 'direct' | 'baseline' | 'suite' | 'suite-nolog';

export interface Shape {
  name: string;
  concurrency: number;
  thinkMs: number;
}

export interface Dist {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  n: number;
}

export interface PhaseResult {
  gateway: string;
  mode: Mode;
  shape: Shape;
  target: TargetName;
  requests: number;
  errors: number;
  firstError?: string;
  wallMs: number;
  rps: number;
  latency: Dist;
  ttfb?: Dist;
  ttft?: Dist;
  gap?: Dist;
  /** CPU µs per measured request, per process. */
  cpuUs: { suite: number; gateway: number; mock: number; generator: number };
  /** Sum of all CPU over wall time, in cores (the machine has `cores`). */
  coresBusy: number;
  /** CPU used by other processes on the machine during the phase, in cores. */
  foreignCores: number;
  /** Round trips per request: histogram {roundTrips: count}, from the emulator and from the ai-metrics line. */
  roundTrips: { emulator?: Record<string, number>; log?: Record<string, number> };
  logLines?: number;
  /** From the ai-metrics lines: Kong's own latency (latencies.kong, whole ms) and the relay's provider call. */
  logLatency?: { kong?: Dist; relay?: Dist };
  /** Connections open to the plugin sockets right after the phase (Kong keeps them alive between calls). */
  rpcConnections?: number;
}

export interface MemoryCheckpoint {
  requests: number;
  rss: number;
  hwm: number;
  heapUsed?: number;
  heapTotal?: number;
  external?: number;
}

export interface MemoryResult {
  gateway: string;
  requests: number;
  errors: number;
  firstError?: string;
  wallMs: number;
  rps: number;
  checkpoints: MemoryCheckpoint[];
  heapNote?: string;
  /** Heap growth after GC from the first checkpoint after warm-up to the end, bytes per request. */
  heapSlope?: number;
  rssGrowth: number;
  flat: boolean;
  suiteCpuUs: number;
}

export interface RunInfo {
  date: string;
  command: string;
  machine: string;
  node: string;
  kong?: string;
  settings: Record<string, string | number>;
  notes: string[];
}

export interface ProfileResult {
  gateway: string;
  mode: Mode;
  error?: string;
  requests?: number;
  durationMs?: number;
  functions?: Array<{ name: string; percent: number }>;
  areas?: Array<{ name: string; percent: number }>;
  /** The suite's own functions, self + callees. */
  inclusive?: Array<{ name: string; percent: number }>;
  /** Samples by the part of the suite nearest the top of the stack. */
  parts?: Array<{ name: string; percent: number }>;
}

export interface Run {
  info: RunInfo;
  phases: PhaseResult[];
  memory: MemoryResult[];
  profiles: ProfileResult[];
}

export const ms = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '–' : v.toFixed(2));
const signed = (v: number | undefined) =>
  v === undefined || Number.isNaN(v) ? '–' : `${v >= 0 ? '+' : ''}${v.toFixed(2)}`;
const int = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '–' : Math.round(v).toString());
const mib = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '–' : (v / 2 ** 20).toFixed(1));

export function table(head: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

/** "7" or "7 (99.9%), 5 (0.1%)". */
export function histText(h: Record<string, number> | undefined): string {
  if (!h) return '–';
  const entries = Object.entries(h).sort((a, b) => b[1] - a[1]);
  const total = entries.reduce((s, [, n]) => s + n, 0);
  if (total === 0) return '–';
  if (entries.length === 1) return entries[0]![0];
  return entries
    .slice(0, 3)
    .map(([k, n]) => `${k} (${((100 * n) / total).toFixed(1)}%)`)
    .join(', ');
}

export function histMax(h: Record<string, number> | undefined): number | undefined {
  if (!h) return undefined;
  const keys = Object.entries(h)
    .filter(([, n]) => n > 0)
    .map(([k]) => Number(k));
  return keys.length ? Math.max(...keys) : undefined;
}

export const shapeText = (s: Shape) =>
  s.thinkMs > 0 ? `paced ${s.thinkMs} ms, c=${s.concurrency}` : `back-to-back, c=${s.concurrency}`;

export interface Comparison {
  gateway: string;
  mode: Mode;
  shape: Shape;
  base: PhaseResult;
  suite: PhaseResult;
  nolog?: PhaseResult;
  addedP50: number;
  addedP99: number;
  addedTtfbP50?: number;
  addedTtfbP99?: number;
  addedTtftP50?: number;
  addedTtftP99?: number;
  ratio: number;
  nologAddedP50?: number;
  nologAddedP99?: number;
  nologRatio?: number;
}

export function comparisons(phases: PhaseResult[]): Comparison[] {
  const out: Comparison[] = [];
  const key = (p: PhaseResult) => `${p.gateway}|${p.mode}|${p.shape.name}`;
  const groups = new Map<string, PhaseResult[]>();
  for (const p of phases) groups.set(key(p), [...(groups.get(key(p)) ?? []), p]);
  for (const group of groups.values()) {
    const base = group.find((p) => p.target === 'baseline');
    const suite = group.find((p) => p.target === 'suite');
    const nolog = group.find((p) => p.target === 'suite-nolog');
    if (!base || !suite) continue;
    out.push({
      gateway: base.gateway,
      mode: base.mode,
      shape: base.shape,
      base,
      suite,
      nolog,
      addedP50: suite.latency.p50 - base.latency.p50,
      addedP99: suite.latency.p99 - base.latency.p99,
      addedTtfbP50: suite.ttfb && base.ttfb ? suite.ttfb.p50 - base.ttfb.p50 : undefined,
      addedTtfbP99: suite.ttfb && base.ttfb ? suite.ttfb.p99 - base.ttfb.p99 : undefined,
      addedTtftP50: suite.ttft && base.ttft ? suite.ttft.p50 - base.ttft.p50 : undefined,
      addedTtftP99: suite.ttft && base.ttft ? suite.ttft.p99 - base.ttft.p99 : undefined,
      ratio: suite.rps / base.rps,
      nologAddedP50: nolog ? nolog.latency.p50 - base.latency.p50 : undefined,
      nologAddedP99: nolog ? nolog.latency.p99 - base.latency.p99 : undefined,
      nologRatio: nolog ? nolog.rps / base.rps : undefined,
    });
  }
  return out;
}

function summaryTable(cs: Comparison[]): string {
  return table(
    [
      'gateway',
      'mode',
      'load',
      'added p50 ms',
      'added p99 ms',
      'added TTFB p50 / p99 ms',
      'added TTFT p50 / p99 ms',
      'gap p50 / p99 ms base → suite',
      'req/s base → suite (ratio)',
      'no log line: added p50 / p99, ratio',
      'suite-server CPU µs/req',
      'round trips/req',
    ],
    cs.map((c) => [
      c.gateway,
      c.mode,
      shapeText(c.shape),
      signed(c.addedP50),
      signed(c.addedP99),
      c.mode === 'stream' ? `${signed(c.addedTtfbP50)} / ${signed(c.addedTtfbP99)}` : '–',
      c.mode === 'stream' ? `${signed(c.addedTtftP50)} / ${signed(c.addedTtftP99)}` : '–',
      c.mode === 'stream' && c.base.gap && c.suite.gap
        ? `${ms(c.base.gap.p50)} / ${ms(c.base.gap.p99)} → ${ms(c.suite.gap.p50)} / ${ms(c.suite.gap.p99)}`
        : '–',
      `${int(c.base.rps)} → ${int(c.suite.rps)} (${(100 * c.ratio).toFixed(0)} %)`,
      c.nolog
        ? `${signed(c.nologAddedP50)} / ${signed(c.nologAddedP99)}, ${(100 * c.nologRatio!).toFixed(0)} %`
        : '–',
      int(c.suite.cpuUs.suite),
      histText(c.suite.roundTrips.log ?? c.suite.roundTrips.emulator),
    ]),
  );
}

function cpuTable(cs: Comparison[]): string {
  const total = (p: PhaseResult) =>
    [p.cpuUs.suite, p.cpuUs.gateway, p.cpuUs.mock].filter((v) => !Number.isNaN(v)).reduce((a, b) => a + b, 0);
  return table(
    [
      'gateway',
      'mode',
      'load',
      'baseline: gateway + mock',
      'suite: suite server + gateway + mock',
      'suite ÷ baseline',
      'suite, no log line: suite server',
      'load generator (suite)',
      'busy · others (suite phase)',
    ],
    cs.map((c) => [
      c.gateway,
      c.mode,
      shapeText(c.shape),
      `${int(c.base.cpuUs.gateway)} + ${int(c.base.cpuUs.mock)} = ${int(total(c.base))}`,
      `${int(c.suite.cpuUs.suite)} + ${int(c.suite.cpuUs.gateway)} + ${int(c.suite.cpuUs.mock)} = ${int(total(c.suite))}`,
      `${(total(c.suite) / total(c.base)).toFixed(1)} ×`,
      c.nolog ? int(c.nolog.cpuUs.suite) : '–',
      int(c.suite.cpuUs.generator),
      `${c.suite.coresBusy.toFixed(2)} · ${c.suite.foreignCores.toFixed(2)}`,
    ]),
  );
}

function phaseTable(phases: PhaseResult[]): string {
  const stream = phases.some((p) => p.mode === 'stream');
  const head = [
    'load',
    'target',
    'requests',
    'errors',
    'req/s',
    'p50 ms',
    'p90 ms',
    'p99 ms',
    ...(stream ? ['TTFB p50 / p99', 'TTFT p50 / p99', 'gap p50 / p99'] : []),
    'CPU µs/req suite · gw · mock · gen',
    'cores busy ours · others',
    'RT/req emu · log',
    'RPC conns open',
    'Kong latency p50 / p99 (log)',
  ];
  return table(
    head,
    phases.map((p) => [
      shapeText(p.shape),
      p.target,
      String(p.requests),
      String(p.errors),
      int(p.rps),
      ms(p.latency.p50),
      ms(p.latency.p90),
      ms(p.latency.p99),
      ...(stream
        ? [
            `${ms(p.ttfb?.p50)} / ${ms(p.ttfb?.p99)}`,
            `${ms(p.ttft?.p50)} / ${ms(p.ttft?.p99)}`,
            `${ms(p.gap?.p50)} / ${ms(p.gap?.p99)}`,
          ]
        : []),
      `${int(p.cpuUs.suite)} · ${int(p.cpuUs.gateway)} · ${int(p.cpuUs.mock)} · ${int(p.cpuUs.generator)}`,
      `${p.coresBusy.toFixed(2)} · ${p.foreignCores.toFixed(2)}`,
      `${histText(p.roundTrips.emulator)} · ${histText(p.roundTrips.log)}`,
      p.rpcConnections === undefined ? '–' : String(p.rpcConnections),
      p.logLatency?.kong ? `${p.logLatency.kong.p50} / ${p.logLatency.kong.p99}` : '–',
    ]),
  );
}

function memoryTable(m: MemoryResult): string {
  return table(
    ['requests', 'RSS MiB', 'peak RSS MiB', 'heap used MiB (after GC)', 'heap total MiB', 'external MiB'],
    m.checkpoints.map((c) => [
      String(c.requests),
      mib(c.rss),
      mib(c.hwm),
      mib(c.heapUsed),
      mib(c.heapTotal),
      mib(c.external),
    ]),
  );
}

export interface TargetVerdict {
  target: string;
  gateway: string;
  measured: string;
  met: boolean | undefined;
}

export function verdicts(run: Run): TargetVerdict[] {
  const out: TargetVerdict[] = [];
  const cs = comparisons(run.phases);
  const gateways = [...new Set(run.phases.map((p) => p.gateway))];
  for (const gw of gateways) {
    const mine = cs.filter((c) => c.gateway === gw);
    const json = mine.filter((c) => c.mode === 'json');
    const streams = mine.filter((c) => c.mode === 'stream');
    if (json.length) {
      out.push({
        target: 'added latency p50 ≤ 1 ms (JSON)',
        gateway: gw,
        measured: json.map((c) => `${signed(c.addedP50)} (${shapeText(c.shape)})`).join('; '),
        met: json.every((c) => c.addedP50 <= 1),
      });
      out.push({
        target: 'added latency p99 ≤ 3 ms (JSON)',
        gateway: gw,
        measured: json.map((c) => `${signed(c.addedP99)} (${shapeText(c.shape)})`).join('; '),
        met: json.every((c) => c.addedP99 <= 3),
      });
    }
    if (streams.length) {
      out.push({
        target: 'added time to first byte ≤ 3 ms (streams, p50)',
        gateway: gw,
        measured: streams
          .map((c) => `${signed(c.addedTtfbP50)} (p99 ${signed(c.addedTtfbP99)}; ${shapeText(c.shape)})`)
          .join('; '),
        met: streams.every((c) => (c.addedTtfbP50 ?? Number.POSITIVE_INFINITY) <= 3),
      });
    }
    const b2b = mine.filter((c) => c.shape.thinkMs === 0);
    if (b2b.length) {
      out.push({
        target: 'throughput ≥ 20 % of Kong alone (back-to-back)',
        gateway: gw,
        measured: b2b
          .map((c) => `${(100 * c.ratio).toFixed(0)} % (${c.mode}, c=${c.shape.concurrency})`)
          .join('; '),
        met: b2b.every((c) => c.ratio >= 0.2),
      });
    }
    const rts = run.phases
      .filter((p) => p.gateway === gw && p.target.startsWith('suite'))
      .map((p) => Math.max(histMax(p.roundTrips.emulator) ?? 0, histMax(p.roundTrips.log) ?? 0));
    if (rts.length) {
      const max = Math.max(...rts);
      out.push({
        target: '≤ 10 round trips per request',
        gateway: gw,
        measured: max > 0 ? `max ${max}` : 'not measured',
        met: max > 0 ? max <= 10 : undefined,
      });
    }
    const mem = run.memory.find((m) => m.gateway === gw);
    if (mem) {
      const first = mem.checkpoints[1] ?? mem.checkpoints[0]!;
      const last = mem.checkpoints[mem.checkpoints.length - 1]!;
      out.push({
        target: `memory flat over ${mem.requests} requests`,
        gateway: gw,
        measured:
          `RSS ${mib(first.rss)} → ${mib(last.rss)} MiB` +
          (last.heapUsed !== undefined
            ? `, heap after GC ${mib(first.heapUsed)} → ${mib(last.heapUsed)} MiB (${mem.heapSlope?.toFixed(1)} B/request)`
            : ` (${mem.heapNote ?? 'heap not measured'})`),
        met: mem.flat,
      });
    }
  }
  return out;
}

export function renderMarkdown(run: Run): string {
  const { info } = run;
  const parts: string[] = [];
  parts.push(`Run of ${info.date}.`);
  parts.push(
    [
      `- Command: \`${info.command}\``,
      `- Machine: ${info.machine}`,
      `- Node ${info.node}; ${info.kong ?? 'no real Kong in this run'}`,
      `- Settings: ${Object.entries(info.settings)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
      ...info.notes.map((n) => `- ${n}`),
    ].join('\n'),
  );
  parts.push('### Targets');
  parts.push(
    table(
      ['target', 'gateway', 'measured', 'met'],
      verdicts(run).map((v) => [
        v.target,
        v.gateway,
        v.measured,
        v.met === undefined ? 'not measured' : v.met ? 'met' : '**not met**',
      ]),
    ),
  );
  parts.push('### Suite minus baseline');
  parts.push(
    'Added = suite percentile − baseline percentile (same gateway, same load; the baseline route has ' +
      'no plugins and points at the mock). Ratio = suite req/s ÷ baseline req/s.',
  );
  parts.push(summaryTable(comparisons(run.phases)));
  parts.push('### CPU per request');
  parts.push(
    'CPU time (all threads) per request, µs, on the measured part of each phase. The machine has 2 cores; ' +
      '"busy" is the CPU of our processes over wall time (suite phase), "others" the rest of the machine. ' +
      'When busy is near 2, the ratio of CPU per request is what sets the ratio of throughput.',
  );
  parts.push(cpuTable(comparisons(run.phases)));
  for (const m of run.memory) {
    parts.push(`### Memory of the suite server, ${m.gateway}`);
    parts.push(
      `${m.requests} requests (half JSON, half streams, back-to-back, c=32) in ${(m.wallMs / 1000).toFixed(0)} s ` +
        `(${int(m.rps)} req/s, ${m.errors} errors${m.firstError ? `: ${m.firstError}` : ''}), ` +
        `suite-server CPU ${int(m.suiteCpuUs)} µs/request. Checkpoints between load segments, ` +
        `heap after a forced full GC${m.heapNote ? ` (${m.heapNote})` : ''}.`,
    );
    parts.push(memoryTable(m));
  }
  for (const p of run.profiles) {
    parts.push(
      `### Where the suite server's CPU goes: ${p.gateway}, ${p.mode === 'json' ? 'non-streaming' : 'streaming'}`,
    );
    if (p.error) {
      parts.push(`No profile: ${p.error}`);
      continue;
    }
    parts.push(
      `V8 CPU profile (sampling every 200 µs) over ${p.requests} requests on the suite route, back-to-back, c=8 ` +
        `(a separate run after the measured phases; the profiler itself adds some cost). Self time, % of samples ` +
        `(idle included).`,
    );
    if (p.parts) {
      parts.push(
        `By part of the suite (the suite file nearest the top of each sampled stack): ${p.parts
          .map((x) => `${x.name} ${x.percent.toFixed(1)} %`)
          .join(', ')}.`,
      );
    }
    const cell = (list: Array<{ name: string; percent: number }> | undefined, i: number) => [
      list?.[i]?.name.replace(/\|/g, '\\|') ?? '',
      list?.[i] ? list[i]!.percent.toFixed(1) : '',
    ];
    const rows = Math.max(p.areas?.length ?? 0, p.functions?.length ?? 0, p.inclusive?.length ?? 0);
    parts.push(
      table(
        ['area (self)', '%', 'function (self)', '%', 'suite function (self + callees)', '%'],
        Array.from({ length: rows }, (_, i) => [
          ...cell(p.areas, i),
          ...cell(p.functions, i),
          ...cell(p.inclusive, i),
        ]),
      ),
    );
  }
  const gateways = [...new Set(run.phases.map((p) => p.gateway))];
  for (const gw of gateways) {
    for (const mode of ['json', 'stream'] as const) {
      const rows = run.phases.filter((p) => p.gateway === gw && p.mode === mode);
      if (!rows.length) continue;
      parts.push(`### All phases: ${gw}, ${mode === 'json' ? 'non-streaming' : 'streaming'}`);
      parts.push(phaseTable(rows));
      const failed = rows.filter((r) => r.firstError);
      for (const r of failed)
        parts.push(`- ${shapeText(r.shape)} ${r.target}: ${r.errors} errors, first: ${r.firstError}`);
    }
  }
  return `${parts.join('\n\n')}\n`;
}

/**
 * Replaces the generated part of a Markdown file (between the bench markers) with `body`,
 * keeping the hand-written text around it; appends the part, or writes a new file, when
 * there is none yet.
 */
export function writeMarkdownBlock(file: string, body: string, generator: string): void {
  const begin = `<!-- bench:begin (generated by ${generator}; edits inside are overwritten) -->`;
  const end = '<!-- bench:end -->';
  const block = `${begin}\n${body}${end}`;
  if (existsSync(file)) {
    const text = readFileSync(file, 'utf8');
    const i = text.indexOf('<!-- bench:begin');
    const j = text.indexOf(end);
    if (i !== -1 && j !== -1) {
      writeFileSync(file, text.slice(0, i) + block + text.slice(j + end.length));
      return;
    }
    writeFileSync(file, `${text.trimEnd()}\n\n${block}\n`);
    return;
  }
  writeFileSync(file, `# Benchmarks\n\n${block}\n`);
}
