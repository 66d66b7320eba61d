/**
 * What the benchmark reads about other processes: CPU time and memory from /proc (Linux),
 * and the V8 heap of a Node process through its inspector (SIGUSR1 opens it on
 * 127.0.0.1:9229; one short CDP session forces a GC and reads `process.memoryUsage()`).
 */
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { WebSocket } from 'undici';

/** "2 × <cpu model>, 8 GiB, <distribution> (kernel ...)": the machine a run's numbers belong to. */
export function describeMachine(): string {
  const cpus = os.cpus();
  let distro = '';
  try {
    distro = /^PRETTY_NAME="?([^"\n]*)/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? '';
  } catch {
    // not Linux
  }
  return `${cpus.length} × ${cpus[0]?.model.trim() ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${distro || os.type()} (kernel ${os.release()})`;
}

/** Clock ticks per second for utime/stime (sysconf(_SC_CLK_TCK); 100 on Linux x86/arm). */
const CLK_TCK = 100;

interface Stat {
  ppid: number;
  /** utime + stime, milliseconds. */
  cpuMs: number;
}

function readStat(pid: number): Stat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may hold spaces and parentheses: fields start after the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    const ppid = Number(fields[1]);
    const ticks = Number(fields[11]) + Number(fields[12]);
    return { ppid, cpuMs: (ticks * 1000) / CLK_TCK };
  } catch {
    return undefined;
  }
}

/** utime + stime of one process in ms, or NaN when it is gone. */
export function cpuMs(pid: number | undefined): number {
  if (!pid) return Number.NaN;
  return readStat(pid)?.cpuMs ?? Number.NaN;
}

/** Sum of utime + stime over several processes. */
export function cpuMsOf(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + (readStat(pid)?.cpuMs ?? 0), 0);
}

/** Busy CPU time of the whole machine (all processes, all cores), ms. */
export function machineBusyMs(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const [, ...fields] = line.trim().split(/\s+/);
    const t = fields.map(Number);
    // user nice system idle iowait irq softirq steal (guest time is inside user)
    const busy = t[0]! + t[1]! + t[2]! + t[5]! + t[6]! + t[7]!;
    return (busy * 1000) / CLK_TCK;
  } catch {
    return Number.NaN;
  }
}

export interface MemorySample {
  /** VmRSS, bytes. */
  rss: number;
  /** VmHWM (peak RSS), bytes. */
  hwm: number;
}

export function memory(pid: number): MemorySample | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) =>
      Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN);
    return { rss: kb('VmRSS') * 1024, hwm: kb('VmHWM') * 1024 };
  } catch {
    return undefined;
  }
}

export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

function allPids(): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

/** Processes whose command line contains every one of `parts`. */
export function findPids(...parts: string[]): number[] {
  return allPids().filter((pid) => {
    if (pid === process.pid) return false;
    const line = cmdline(pid);
    return line !== '' && parts.every((p) => line.includes(p));
  });
}

/** A process and all its descendants. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const pid of allPids()) {
    const s = readStat(pid);
    if (!s) continue;
    const list = children.get(s.ppid) ?? [];
    list.push(pid);
    children.set(s.ppid, list);
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length) {
    const pid = todo.pop()!;
    out.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return out;
}

export interface HeapSample {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

const INSPECTOR_PORT = 9229;

/** One CDP session on a Node process's inspector. */
export class InspectorSession {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  private constructor(private readonly ws: WebSocket) {
    ws.addEventListener('message', (ev: { data: unknown }) => {
      const msg = JSON.parse(String(ev.data)) as {
        id?: number;
        result?: unknown;
        error?: { message: string };
      };
      if (msg.id === undefined) return; // an event
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.error) p?.reject(new Error(msg.error.message));
      else p?.resolve(msg.result);
    });
    ws.addEventListener('close', () => {
      for (const p of this.pending.values()) p.reject(new Error('inspector session closed'));
      this.pending.clear();
    });
  }

  /**
   * Opens the inspector of `pid` (SIGUSR1: 127.0.0.1:9229) and a session on it; an error text
   * when it cannot, or when port 9229 belongs to another process.
   */
  static async open(pid: number, waitMs = 5000): Promise<InspectorSession | { error: string }> {
    try {
      process.kill(pid, 'SIGUSR1');
    } catch (err) {
      return { error: `SIGUSR1 to ${pid}: ${(err as Error).message}` };
    }
    const until = Date.now() + waitMs;
    let last = 'no answer';
    while (Date.now() < until) {
      try {
        const res = await fetch(`http://127.0.0.1:${INSPECTOR_PORT}/json/list`);
        const list = (await res.json()) as Array<{ webSocketDebuggerUrl?: string }>;
        const url = list[0]?.webSocketDebuggerUrl;
        if (url) {
          const ws = new WebSocket(url);
          await new Promise<void>((resolve, reject) => {
            ws.addEventListener('open', () => resolve());
            ws.addEventListener('error', () => reject(new Error('inspector websocket failed')));
          });
          const session = new InspectorSession(ws);
          const seen = await session.evaluate<number>('process.pid');
          if (seen === pid) return session;
          session.close();
          return { error: `the inspector on port ${INSPECTOR_PORT} belongs to pid ${seen}, not ${pid}` };
        }
      } catch (err) {
        last = (err as Error).message;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return { error: `inspector of ${pid} not reachable on 127.0.0.1:${INSPECTOR_PORT}: ${last}` };
  }

  send<T = unknown>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = ++this.nextId;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`inspector: ${method} timed out`));
      }, 60_000);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  async evaluate<T>(expression: string): Promise<T> {
    const r = await this.send<{ result?: { value?: unknown } }>('Runtime.evaluate', {
      expression,
      returnByValue: true,
    });
    return r.result?.value as T;
  }

  /** Forces a full GC, then reads process.memoryUsage(). */
  async heap(): Promise<HeapSample> {
    await this.send('HeapProfiler.collectGarbage');
    return JSON.parse(await this.evaluate<string>('JSON.stringify(process.memoryUsage())')) as HeapSample;
  }

  close(): void {
    this.ws.close();
  }
}

export interface CpuProfile {
  nodes: Array<{
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    hitCount?: number;
    children?: number[];
  }>;
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/** Self time per function and per area (our code, a dependency, Node internals, GC...), in % of samples. */
export function summarizeProfile(profile: CpuProfile, root: string, top = 15) {
  const total = profile.nodes.reduce((s, n) => s + (n.hitCount ?? 0), 0) || 1;
  const byFn = new Map<string, number>();
  const byArea = new Map<string, number>();
  const area = (url: string, fn: string) => {
    if (fn === '(garbage collector)') return 'GC';
    if (fn === '(idle)') return 'idle';
    if (fn === '(program)') return '(program: native, outside JS)';
    if (!url) return `native: ${fn || '(anonymous)'}`;
    const path = url.replace(/^file:\/\//, '');
    const nm = path.lastIndexOf('node_modules/');
    if (nm !== -1)
      return `dep: ${path
        .slice(nm + 13)
        .split('/')
        .slice(0, path.slice(nm + 13).startsWith('@') ? 2 : 1)
        .join('/')}`;
    if (path.startsWith('node:')) return `node: ${path.slice(5).split('/').slice(0, 2).join('/')}`;
    if (path.startsWith(root)) return `suite: ${path.slice(root.length + 1).replace(/^dist\//, '')}`;
    return path;
  };
  for (const n of profile.nodes) {
    const hits = n.hitCount ?? 0;
    if (!hits) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    const a = area(url, functionName);
    byArea.set(a, (byArea.get(a) ?? 0) + hits);
    const fnKey = `${functionName || '(anonymous)'} ${a}${url ? `:${lineNumber + 1}` : ''}`;
    byFn.set(fnKey, (byFn.get(fnKey) ?? 0) + hits);
  }
  // Inclusive time of the suite's own functions (self + callees), each counted once per stack.
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const keyOf = (n: CpuProfile['nodes'][number]) => {
    const { functionName, url, lineNumber } = n.callFrame;
    return `${functionName || '(anonymous)'} ${area(url, functionName)}${url ? `:${lineNumber + 1}` : ''}`;
  };
  const inclusive = new Map<string, number>();
  for (const n of profile.nodes) {
    const hits = n.hitCount ?? 0;
    if (!hits) continue;
    const seen = new Set<string>();
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const node = byId.get(id)!;
      const k = keyOf(node);
      if (!k.includes(' suite: ') || seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + hits);
    }
  }
  // Each sample goes to the part of the suite nearest the top of its stack.
  const parts = new Map<string, number>();
  const dist = `${root}/dist/`;
  for (const n of profile.nodes) {
    const hits = n.hitCount ?? 0;
    if (!hits) continue;
    const fn = n.callFrame.functionName;
    let part = 'I/O callbacks with no suite frame (sockets, undici, http parser)';
    if (fn === '(idle)') part = 'idle';
    else if (fn === '(garbage collector)' || fn === '(program)') part = 'GC and native (program)';
    else {
      for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
        const url = byId.get(id)!.callFrame.url.replace(/^file:\/\//, '');
        if (!url.startsWith(dist)) continue;
        const rel = url.slice(dist.length);
        if (rel.startsWith('lib/log/') || rel.startsWith('plugins/ai-metrics/'))
          part = 'ai-metrics log handler and logging';
        else if (rel.startsWith('lib/relay/') || rel.startsWith('lib/llm/sse')) part = 'relay';
        else if (rel.startsWith('lib/') || rel.startsWith('plugins/'))
          part = 'plugin RPC (listener, plugin server, access handlers)';
        else continue;
        break;
      }
    }
    parts.set(part, (parts.get(part) ?? 0) + hits);
  }
  const sorted = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((x, y) => y[1] - x[1])
      .slice(0, top)
      .map(([name, hits]) => ({ name, percent: (100 * hits) / total }));
  return {
    functions: sorted(byFn),
    areas: sorted(byArea),
    inclusive: sorted(inclusive),
    parts: sorted(parts),
    durationMs: (profile.endTime - profile.startTime) / 1000,
  };
}
