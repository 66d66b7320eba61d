import { createWriteStream, close as fsClose, mkdir, open, type WriteStream, write, writev } from 'node:fs';
import { dirname } from 'node:path';
import { Counter, type Registry } from 'prom-client';
import { Agent, type Dispatcher, request } from 'undici';
import type { Suite } from '../../lib/kong/plugin';
import type { Logger } from '../../lib/log/logger';
import { redact } from '../../lib/log/redact';
import type { MetricsConfig } from '../../schemas/ai-metrics';

export type LogSinkConfig = MetricsConfig['log_sink'];
type SinkType = LogSinkConfig['type'];

/** Where the per-request lines go. Shared by every instance with the same sink config. */
export interface LogSink {
  /** Hands one line over: never throws, never waits; a line that cannot be kept is counted as dropped. */
  write(line: Record<string, unknown>): void;
  /** Resolves once every line handed over so far is delivered or counted as dropped. */
  flush(): Promise<void>;
  /** Flushes and frees the sink; lines written afterwards are dropped. */
  close(): Promise<void>;
}

/** Bytes a file sink holds while the disk is slow; past it lines are dropped, not buffered. */
const FILE_MAX_BUFFERED_BYTES = 16 * 1024 * 1024;
/** A file that failed to open or write is tried again on the first line after this. */
const FILE_RETRY_MS = 10_000;
/** POSTs of one body to a collector, the first included; then it is dropped and counted. */
const POST_MAX_ATTEMPTS = 3;
const POST_BACKOFF_MS = 200;
/** Longest a closing HTTP sink waits for the collector (the suite server allows its hooks 5 s). */
const HTTP_CLOSE_MS = 4_000;

/** The sink metrics of one suite, labelled by sink type. */
class SinkMetrics {
  readonly lines: Counter<'sink'>;
  readonly dropped: Counter<'sink'>;
  readonly errors: Counter<'sink'>;

  constructor(registry: Registry) {
    const registers = [registry];
    const labelNames = ['sink'] as const;
    this.lines = new Counter({
      name: 'aigw_log_lines_total',
      help: 'Request log lines delivered: written to the logger or the file, or accepted by the collector.',
      labelNames,
      registers,
    });
    this.dropped = new Counter({
      name: 'aigw_log_dropped_total',
      help: 'Request log lines lost: queue full, file unwritable, or collector failing after retries.',
      labelNames,
      registers,
    });
    this.errors = new Counter({
      name: 'aigw_log_sink_errors_total',
      help: 'Failures of a log sink: a file that cannot be opened or written, a POST that failed.',
      labelNames,
      registers,
    });
  }

  /** The counters of one sink type, its series present from the start (at 0). */
  tally(sink: SinkType): Tally {
    const lines = this.lines.labels(sink);
    const dropped = this.dropped.labels(sink);
    const errors = this.errors.labels(sink);
    for (const c of [lines, dropped, errors]) c.inc(0);
    return {
      delivered: (n) => lines.inc(n),
      dropped: (n) => dropped.inc(n),
      error: () => errors.inc(),
    };
  }
}

interface Tally {
  delivered(lines: number): void;
  dropped(lines: number): void;
  error(): void;
}

/** Per suite server: the metrics, and one sink per distinct sink config. */
const perSuite = new WeakMap<Suite, { metrics: SinkMetrics; sinks: Map<string, LogSink> }>();

/**
 * The sink for this config in this suite: routes with the same sink config share one (one
 * file stream, one collector queue). Sinks are flushed and closed when the suite server closes.
 */
export function logSinkFor(suite: Suite, config: LogSinkConfig): LogSink {
  let shared = perSuite.get(suite);
  if (!shared) {
    const sinks = new Map<string, LogSink>();
    shared = { metrics: new SinkMetrics(suite.metrics), sinks };
    suite.onClose(async () => {
      await Promise.all([...sinks.values()].map((s) => s.close()));
    });
    perSuite.set(suite, shared);
  }
  const key = sinkKey(config);
  let sink = shared.sinks.get(key);
  if (!sink) {
    sink = createSink(
      config,
      shared.metrics.tally(config.type),
      suite.logger.child({ plugin: 'ai-metrics' }),
    );
    shared.sinks.set(key, sink);
  }
  return sink;
}

/** What makes two sinks different: the fields their type reads, in a fixed order. */
function sinkKey(c: LogSinkConfig): string {
  switch (c.type) {
    case 'file':
      return JSON.stringify(['file', c.path]);
    case 'http':
      return JSON.stringify([
        'http',
        c.url,
        c.authorization ?? null,
        c.batch_max_records,
        c.flush_interval_ms,
        c.queue_max_records,
        c.timeout_ms,
      ]);
    default:
      return JSON.stringify(['logger']);
  }
}

function createSink(config: LogSinkConfig, tally: Tally, logger: Logger): LogSink {
  if (config.type === 'file' && config.path) return new FileSink(config.path, tally, logger);
  if (config.type === 'http' && config.url)
    return new HttpSink({ ...config, url: config.url }, tally, logger);
  return new LoggerSink(logger, tally);
}

/** The line as it leaves the process: redacted, one JSON text; undefined when it cannot be encoded. */
function encode(line: Record<string, unknown>): string | undefined {
  try {
    return JSON.stringify(redact(line));
  } catch {
    return undefined; // a BigInt or a cycle: the line is counted as dropped
  }
}

// ------------------------------------------------------------------ logger

/** The suite server's own log (stdout or AIGW_LOG_FILE), whose pino formatter redacts. */
class LoggerSink implements LogSink {
  constructor(
    private readonly logger: Logger,
    private readonly tally: Tally,
  ) {}

  write(line: Record<string, unknown>): void {
    this.logger.info(line, 'ai request');
    this.tally.delivered(1);
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {}
}

// ------------------------------------------------------------------ file

/** `mkdir -p` before the open, both asynchronous, so no write ever waits for the disk. */
const fileSystem = {
  open(
    path: string,
    flags: string,
    mode: number,
    cb: (err: NodeJS.ErrnoException | null, fd?: number) => void,
  ) {
    mkdir(dirname(path), { recursive: true }, (err) => (err ? cb(err) : open(path, flags, mode, cb)));
  },
  write,
  writev,
  close: fsClose,
};

/**
 * JSON lines appended to a file. A file that cannot be opened or written is logged once and
 * its lines are counted as dropped; it is tried again after FILE_RETRY_MS. SIGHUP reopens the
 * file (after logrotate has moved it away), as pino's `destination.reopen()` does.
 */
export class FileSink implements LogSink {
  private stream: WriteStream | undefined;
  private retryAt = 0;
  /** Lines written and not yet acknowledged by the stream. */
  private pending = 0;
  private idle: Array<() => void> = [];
  private warned = false;
  private closed = false;
  private readonly onHangup = () => this.reopen();

  constructor(
    private readonly path: string,
    private readonly tally: Tally,
    private readonly logger: Logger,
  ) {
    this.stream = this.open();
    process.on('SIGHUP', this.onHangup);
  }

  write(line: Record<string, unknown>): void {
    if (!this.closed && !this.stream && Date.now() >= this.retryAt) this.stream = this.open();
    const stream = this.stream;
    const text = encode(line);
    if (this.closed || !stream || text === undefined || stream.writableLength > FILE_MAX_BUFFERED_BYTES) {
      this.tally.dropped(1);
      return;
    }
    this.pending++;
    stream.write(`${text}\n`, (err) => {
      if (err) {
        this.tally.dropped(1);
      } else {
        this.tally.delivered(1);
        this.warned = false;
      }
      if (--this.pending === 0) for (const resolve of this.idle.splice(0)) resolve();
    });
  }

  /** Starts a new file at the same path; what was buffered goes on to the old one. */
  reopen(): void {
    if (this.closed) return;
    const old = this.stream;
    this.stream = this.open();
    old?.end();
  }

  flush(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    process.off('SIGHUP', this.onHangup);
    await this.flush();
    const stream = this.stream;
    this.stream = undefined;
    if (stream && !stream.destroyed) await new Promise<void>((resolve) => stream.end(resolve));
  }

  private open(): WriteStream {
    const stream = createWriteStream(this.path, { flags: 'a', fs: fileSystem });
    stream.on('error', (err: NodeJS.ErrnoException) => {
      // Lines buffered in it are answered with the error by their write callbacks.
      if (this.stream === stream) this.stream = undefined;
      this.retryAt = Date.now() + FILE_RETRY_MS;
      this.tally.error();
      if (!this.warned) {
        this.warned = true;
        this.logger.error(
          { sink: 'file', path: this.path, err: err.code ?? err.message },
          'log file not writable: lines are dropped and counted',
        );
      }
    });
    return stream;
  }
}

// ------------------------------------------------------------------ http

/** FIFO of encoded lines; dropping the oldest and taking a batch cost O(1) amortized. */
class LineQueue {
  private items: string[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(line: string): void {
    this.items.push(line);
  }

  dropOldest(): void {
    this.head++;
    this.compact();
  }

  take(n: number): string[] {
    const batch = this.items.slice(this.head, this.head + n);
    this.head += batch.length;
    this.compact();
    return batch;
  }

  /** Frees the slots before head once they are half the array. */
  private compact(): void {
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}

type HttpSinkConfig = LogSinkConfig & { url: string };

/**
 * Batches of lines POSTed as JSON arrays to a collector. A batch leaves when it is full or
 * `flush_interval_ms` after its first line; one POST at a time (a slow collector gets no
 * pile of parallel requests); a failed POST is retried with backoff, then its batch is
 * dropped and counted. The queue is bounded: when full, the oldest line makes room.
 */
export class HttpSink implements LogSink {
  private readonly queue = new LineQueue();
  private readonly agent = new Agent({ connections: 1 });
  private readonly headers: Record<string, string>;
  /** Where failures are logged: the collector's origin, never its credentials. */
  private readonly collector: string;
  private timer: NodeJS.Timeout | undefined;
  private timerDueAt = 0;
  /** When the oldest line still queued arrived (at the latest). */
  private firstQueuedAt = 0;
  private sending: Promise<void> | undefined;
  private failing = false;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly config: HttpSinkConfig,
    private readonly tally: Tally,
    private readonly logger: Logger,
  ) {
    this.headers = {
      'content-type': 'application/json',
      ...(config.authorization ? { authorization: config.authorization } : {}),
    };
    this.collector = new URL(config.url).origin;
  }

  write(line: Record<string, unknown>): void {
    const text = encode(line);
    if (this.closing || text === undefined) {
      this.tally.dropped(1);
      return;
    }
    if (this.queue.length >= this.config.queue_max_records) {
      this.queue.dropOldest();
      this.tally.dropped(1);
    }
    if (this.queue.length === 0) this.firstQueuedAt = Date.now();
    this.queue.push(text);
    this.schedule();
  }

  async flush(): Promise<void> {
    for (;;) {
      if (this.sending) await this.sending;
      else if (this.queue.length > 0) this.sendNext();
      else return;
    }
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.clearTimer();
    let timeout: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timeout = setTimeout(resolve, HTTP_CLOSE_MS).unref();
    });
    await Promise.race([this.flush(), deadline]);
    clearTimeout(timeout);
    // Whatever the collector did not take in time is lost: count it.
    const left = this.queue.take(this.queue.length).length;
    if (left > 0) this.tally.dropped(left);
    await this.agent.destroy().catch(() => undefined);
    await this.sending; // an aborted POST settles (and is counted) at once
  }

  /** Arms the timer for the next batch: now when one is full, else when the oldest line is due. */
  private schedule(): void {
    if (this.sending || this.queue.length === 0) return;
    const full = this.queue.length >= this.config.batch_max_records;
    const dueAt = full ? Date.now() : this.firstQueuedAt + this.config.flush_interval_ms;
    if (this.timer && this.timerDueAt <= dueAt) return;
    this.clearTimer();
    this.timerDueAt = dueAt;
    // Even a full batch leaves from a timer: the request path only queues.
    this.timer = setTimeout(() => this.sendNext(), Math.max(0, dueAt - Date.now())).unref();
  }

  private clearTimer(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private sendNext(): void {
    this.clearTimer();
    if (this.sending || this.queue.length === 0) return;
    const batch = this.queue.take(this.config.batch_max_records);
    this.sending = this.send(batch).finally(() => {
      this.sending = undefined;
      if (!this.closing) this.schedule();
    });
  }

  private async send(batch: string[]): Promise<void> {
    const body = `[${batch.join(',')}]`;
    const failure = await postWithRetries(
      () =>
        postJson(this.config.url, body, {
          headers: this.headers,
          dispatcher: this.agent,
          timeoutMs: this.config.timeout_ms,
        }),
      { stop: () => this.closing !== undefined, onFailure: () => this.tally.error() },
    );
    if (!failure) {
      this.tally.delivered(batch.length);
      if (this.failing) {
        this.failing = false;
        this.logger.info({ sink: 'http', collector: this.collector }, 'log collector accepts lines again');
      }
      return;
    }
    this.tally.dropped(batch.length);
    if (!this.failing) {
      this.failing = true;
      this.logger.warn(
        { sink: 'http', collector: this.collector, reason: failure.reason, dropped: batch.length },
        'log collector failing: batches are dropped and counted',
      );
    }
  }
}

// ------------------------------------------------------------------ posting to a collector

/** Why a POST failed, and whether sending it again may help. */
export interface PostFailure {
  reason: string;
  retryable: boolean;
}

/** One POST of a JSON body; undefined when the collector took it (2xx). */
export async function postJson(
  url: string,
  body: string | Uint8Array,
  options: { headers: Record<string, string>; dispatcher: Dispatcher; timeoutMs: number },
): Promise<PostFailure | undefined> {
  try {
    const res = await request(url, {
      method: 'POST',
      headers: options.headers,
      body,
      dispatcher: options.dispatcher,
      signal: AbortSignal.timeout(options.timeoutMs),
    });
    await res.body.dump();
    const status = res.statusCode;
    if (status >= 200 && status < 300) return undefined;
    // As OTLP does: only these may succeed when sent again.
    return { reason: `status ${status}`, retryable: status === 408 || status === 429 || status >= 500 };
  } catch (err) {
    return { reason: errorCode(err), retryable: true };
  }
}

/**
 * Runs post up to POST_MAX_ATTEMPTS times, with backoff, while its failures may pass and
 * stop() is false; resolves with the last failure, or undefined once a POST succeeded.
 */
export async function postWithRetries(
  post: () => Promise<PostFailure | undefined>,
  options: { stop?: () => boolean; onFailure?: (failure: PostFailure) => void } = {},
): Promise<PostFailure | undefined> {
  for (let attempt = 1; ; attempt++) {
    const failure = await post();
    if (!failure) return undefined;
    options.onFailure?.(failure);
    if (!failure.retryable || attempt >= POST_MAX_ATTEMPTS || options.stop?.()) return failure;
    await sleep(POST_BACKOFF_MS * 2 ** (attempt - 1) * (0.5 + Math.random()));
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** The errno / undici code of a failed POST, never its message (which may quote the URL). */
function errorCode(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown; cause?: { code?: unknown } };
  const code = e?.code ?? e?.cause?.code ?? e?.name;
  return typeof code === 'string' ? code : 'error';
}
