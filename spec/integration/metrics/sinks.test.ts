/**
 * ai-metrics log sinks against real endpoints: a loopback HTTP collector (batching by count
 * and by interval, the authorization header, 5xx and a dead port, the bounded queue), files
 * on disk (JSON lines, an unwritable path, reopen on SIGHUP), the suite logger, redaction on
 * every sink, one sink per identical config, and the flush when the suite server closes.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Registry } from 'prom-client';
import type { SuitePlugin } from '../../../lib/kong/plugin';
import { startSuiteServer } from '../../../lib/kong/suite-server';
import { type LogSinkConfig, logSinkFor } from '../../../plugins/ai-metrics/sinks';
import { until } from '../../support/eventually';
import { freePort } from '../../support/redis';
import { captureLogger, tempDir } from '../../support/suite';
import { suiteStub, suiteStubs } from '../../support/suite-stub';

// ------------------------------------------------------------------ helpers

const newSuite = suiteStubs();

/** A sink config with the schema's defaults. */
function sinkConfig(extra: Partial<LogSinkConfig>): LogSinkConfig {
  return {
    type: 'logger',
    batch_max_records: 100,
    flush_interval_ms: 1_000,
    queue_max_records: 10_000,
    timeout_ms: 5_000,
    ...extra,
  };
}

async function counter(metrics: Registry, name: string, sink: string): Promise<number> {
  const metric = metrics.getSingleMetric(name);
  if (!metric) throw new Error(`${name} is not registered`);
  const { values } = await metric.get();
  return values.find((v) => v.labels.sink === sink)?.value ?? 0;
}

const lines = (m: Registry, sink: string) => counter(m, 'aigw_log_lines_total', sink);
const dropped = (m: Registry, sink: string) => counter(m, 'aigw_log_dropped_total', sink);
const errors = (m: Registry, sink: string) => counter(m, 'aigw_log_sink_errors_total', sink);

interface Post {
  headers: IncomingHttpHeaders;
  body: string;
  lines: Array<Record<string, unknown>>;
}

interface Collector {
  url: string;
  /** Every POST received, answered or not with a 2xx. */
  posts: Post[];
  /** Lines of the POSTs answered with a 2xx, in order. */
  accepted(): Array<Record<string, unknown>>;
  /** Status of the next answers (default 200). */
  status: number;
  close(): Promise<void>;
}

const collectors: Collector[] = [];
afterAll(async () => {
  await Promise.all(collectors.map((c) => c.close()));
});

/** A loopback collector that records every POST and answers with `status`. */
async function startCollector(): Promise<Collector> {
  const posts: Post[] = [];
  const answered: number[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      posts.push({ headers: req.headers, body, lines: JSON.parse(body) as Array<Record<string, unknown>> });
      answered.push(collector.status);
      res.writeHead(collector.status, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  const collector: Collector = {
    url: `http://127.0.0.1:${port}/logs`,
    posts,
    accepted: () => posts.filter((_, i) => answered[i]! < 300).flatMap((p) => p.lines),
    status: 200,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  collectors.push(collector);
  return collector;
}

const line = (n: number, extra: Record<string, unknown> = {}) => ({ type: 'ai_request', n, ...extra });
const ns = (ls: Array<Record<string, unknown>>) => ls.map((l) => l.n);

// ------------------------------------------------------------------ http

describe('http sink', () => {
  it('sends a batch as soon as batch_max_records lines are queued', async () => {
    const collector = await startCollector();
    const { suite, metrics } = newSuite();
    // An interval longer than the wait below: only a full batch can leave.
    const sink = logSinkFor(
      suite,
      sinkConfig({ type: 'http', url: collector.url, batch_max_records: 3, flush_interval_ms: 60_000 }),
    );
    for (let n = 0; n < 6; n++) sink.write(line(n));
    await until(() => (collector.accepted().length === 6 ? true : undefined), 'two full batches');
    expect(collector.posts.map((p) => ns(p.lines))).toEqual([
      [0, 1, 2],
      [3, 4, 5],
    ]);
    await sink.flush(); // the sink counts a batch once it has read the answer
    expect(await lines(metrics, 'http')).toBe(6);
    expect(await dropped(metrics, 'http')).toBe(0);
  });

  it('sends what is queued flush_interval_ms after the first line, in one batch', async () => {
    const collector = await startCollector();
    const { suite, metrics } = newSuite();
    const sink = logSinkFor(
      suite,
      sinkConfig({ type: 'http', url: collector.url, batch_max_records: 100, flush_interval_ms: 50 }),
    );
    for (let n = 0; n < 5; n++) sink.write(line(n));
    await until(() => (collector.posts.length > 0 ? true : undefined), 'the first batch');
    expect(collector.posts.map((p) => ns(p.lines))).toEqual([[0, 1, 2, 3, 4]]);
    sink.write(line(5));
    await until(() => (collector.posts.length > 1 ? true : undefined), 'the second batch');
    expect(ns(collector.posts[1]!.lines)).toEqual([5]);
    await sink.flush();
    expect(await lines(metrics, 'http')).toBe(6);
  });

  it('sends JSON with the configured authorization, and none when not configured', async () => {
    const collector = await startCollector();
    const { suite } = newSuite();
    const token = 'Bearer collector-token-0123456789';
    const withAuth = logSinkFor(
      suite,
      sinkConfig({ type: 'http', url: collector.url, authorization: token }),
    );
    withAuth.write(line(1));
    await withAuth.flush();
    const without = logSinkFor(suite, sinkConfig({ type: 'http', url: collector.url }));
    without.write(line(2));
    await without.flush();
    expect(collector.posts).toHaveLength(2);
    expect(collector.posts[0]!.headers['content-type']).toBe('application/json');
    expect(collector.posts[0]!.headers.authorization).toBe(token);
    expect(collector.posts[1]!.headers.authorization).toBeUndefined();
  });

  it('retries a batch the collector answers with 5xx, then drops and counts it; the token is never logged', async () => {
    const collector = await startCollector();
    collector.status = 503;
    const { suite, metrics, log } = newSuite();
    const token = 'Bearer collector-token-abcdef987654';
    const sink = logSinkFor(suite, sinkConfig({ type: 'http', url: collector.url, authorization: token }));
    sink.write(line(1));
    sink.write(line(2));
    await sink.flush();
    // Three POSTs of the same batch, then it is dropped.
    expect(collector.posts.map((p) => ns(p.lines))).toEqual([
      [1, 2],
      [1, 2],
      [1, 2],
    ]);
    expect(await dropped(metrics, 'http')).toBe(2);
    expect(await errors(metrics, 'http')).toBe(3);
    expect(await lines(metrics, 'http')).toBe(0);
    const warnings = log
      .records()
      .filter((r) => r.msg === 'log collector failing: batches are dropped and counted');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toEqual(expect.objectContaining({ sink: 'http', reason: 'status 503', dropped: 2 }));
    expect(log.text()).not.toContain('collector-token');

    // The collector recovers: the next lines are delivered.
    collector.status = 200;
    sink.write(line(3));
    await sink.flush();
    expect(ns(collector.accepted())).toEqual([3]);
    expect(await lines(metrics, 'http')).toBe(1);
    expect(log.records().some((r) => r.msg === 'log collector accepts lines again')).toBe(true);
  });

  it('drops a batch the collector refuses with 4xx without sending it again', async () => {
    const collector = await startCollector();
    collector.status = 400;
    const { suite, metrics } = newSuite();
    const sink = logSinkFor(suite, sinkConfig({ type: 'http', url: collector.url }));
    sink.write(line(1));
    await sink.flush();
    expect(collector.posts).toHaveLength(1);
    expect(await dropped(metrics, 'http')).toBe(1);
    expect(await errors(metrics, 'http')).toBe(1);
  });

  it('counts the lines as dropped when nothing listens on the collector port', async () => {
    const port = await freePort();
    const { suite, metrics, log } = newSuite();
    const sink = logSinkFor(suite, sinkConfig({ type: 'http', url: `http://127.0.0.1:${port}/logs` }));
    for (let n = 0; n < 4; n++) sink.write(line(n));
    await sink.flush();
    expect(await dropped(metrics, 'http')).toBe(4);
    expect(await errors(metrics, 'http')).toBe(3);
    expect(await lines(metrics, 'http')).toBe(0);
    const warning = log
      .records()
      .find((r) => r.msg === 'log collector failing: batches are dropped and counted');
    expect(warning).toEqual(
      expect.objectContaining({ reason: 'ECONNREFUSED', collector: `http://127.0.0.1:${port}` }),
    );
  });

  it('drops the oldest lines when the queue is full, and counts them', async () => {
    const collector = await startCollector();
    const { suite, metrics } = newSuite();
    const sink = logSinkFor(
      suite,
      sinkConfig({ type: 'http', url: collector.url, queue_max_records: 5, flush_interval_ms: 60_000 }),
    );
    for (let n = 0; n < 8; n++) sink.write(line(n));
    expect(await dropped(metrics, 'http')).toBe(3);
    await sink.flush();
    expect(ns(collector.accepted())).toEqual([3, 4, 5, 6, 7]);
    expect(await lines(metrics, 'http')).toBe(5);
  });

  it('never lets a provider key or a bearer token reach the collector', async () => {
    const collector = await startCollector();
    const { suite } = newSuite();
    const sink = logSinkFor(suite, sinkConfig({ type: 'http', url: collector.url }));
    sink.write(line(1, secretLine()));
    await sink.flush();
    const body = collector.posts.map((p) => p.body).join('\n');
    expectNoSecret(body);
    expect(collector.posts[0]!.lines[0]).toEqual(expect.objectContaining({ n: 1, model: 'gpt-4o-mini' }));
  });

  it('sends what is queued when the suite server closes', async () => {
    const collector = await startCollector();
    const sockets = tempDir();
    let sink: ReturnType<typeof logSinkFor> | undefined;
    // A plugin whose instance writes one line to a sink that would wait a minute to send it.
    const probe: SuitePlugin = {
      name: 'sink-probe',
      version: '0.1.0',
      priority: 1,
      phases: ['log'],
      kongSchema: () => ({}),
      createInstance(_raw, suite) {
        sink = logSinkFor(suite, sinkConfig({ type: 'http', url: collector.url, flush_interval_ms: 60_000 }));
        sink.write(line(42));
        return {};
      },
    };
    const server = await startSuiteServer({
      plugins: [probe],
      socketDir: sockets.dir,
      relayHost: '127.0.0.1',
      relayPort: 0,
      logger: captureLogger().logger,
      limits: { max_body_bytes: 1024, max_json_depth: 8 },
      env: { AIGW_STORE: 'memory' },
    });
    try {
      await server.plugins.dispatch('plugin.StartInstance', [{ Name: 'sink-probe', Config: '{}' }]);
      expect(sink).toBeDefined();
      expect(collector.posts).toHaveLength(0);
    } finally {
      await server.close(0);
      sockets.remove();
    }
    expect(ns(collector.accepted())).toEqual([42]);
    // A closed sink takes no more lines.
    sink!.write(line(43));
    await sink!.flush();
    expect(ns(collector.accepted())).toEqual([42]);
  });
});

// ------------------------------------------------------------------ file

describe('file sink', () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir('aigw-sink-');
  });
  afterEach(() => dir.remove());

  const readLines = (file: string) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);

  it('appends one JSON line per write, creating the folders', async () => {
    const file = path.join(dir.dir, 'a', 'b', 'requests.log');
    const { suite, metrics } = newSuite();
    const sink = logSinkFor(suite, sinkConfig({ type: 'file', path: file }));
    for (let n = 0; n < 50; n++) sink.write(line(n, { text: 'quote " and newline \n inside' }));
    await sink.flush();
    const written = readLines(file);
    expect(ns(written)).toEqual(Array.from({ length: 50 }, (_, n) => n));
    expect(written[0]!.text).toBe('quote " and newline \n inside');
    expect(await lines(metrics, 'file')).toBe(50);
    expect(await dropped(metrics, 'file')).toBe(0);
  });

  it('appends to a file that exists', async () => {
    const file = path.join(dir.dir, 'requests.log');
    writeFileSync(file, `${JSON.stringify({ before: true })}\n`);
    const { suite } = newSuite();
    const sink = logSinkFor(suite, sinkConfig({ type: 'file', path: file }));
    sink.write(line(1));
    await sink.flush();
    expect(readLines(file)).toEqual([{ before: true }, line(1)]);
  });

  it('drops and counts the lines of a path it cannot open, logging it once, without crashing', async () => {
    const blocker = path.join(dir.dir, 'not-a-folder');
    writeFileSync(blocker, 'a file where a folder should be');
    const { suite, metrics, log } = newSuite();
    const sink = logSinkFor(
      suite,
      sinkConfig({ type: 'file', path: path.join(blocker, 'sub', 'requests.log') }),
    );
    sink.write(line(1));
    sink.write(line(2));
    await sink.flush();
    await until(async () => ((await dropped(metrics, 'file')) === 2 ? true : undefined), 'two dropped lines');
    for (let n = 3; n <= 5; n++) sink.write(line(n));
    await sink.flush();
    expect(await dropped(metrics, 'file')).toBe(5);
    expect(await lines(metrics, 'file')).toBe(0);
    expect(await errors(metrics, 'file')).toBeGreaterThanOrEqual(1);
    const reports = log
      .records()
      .filter((r) => r.msg === 'log file not writable: lines are dropped and counted');
    expect(reports).toHaveLength(1);
    expect(reports[0]).toEqual(expect.objectContaining({ sink: 'file', err: 'ENOTDIR' }));
  });

  it('starts a new file on SIGHUP (log rotation); buffered lines stay in the old one', async () => {
    const file = path.join(dir.dir, 'requests.log');
    const { suite } = newSuite();
    const sink = logSinkFor(suite, sinkConfig({ type: 'file', path: file }));
    sink.write(line(1));
    await sink.flush();
    renameSync(file, `${file}.1`);
    sink.write(line(2));
    process.emit('SIGHUP', 'SIGHUP');
    sink.write(line(3));
    await sink.flush();
    expect(readLines(`${file}.1`)).toEqual([line(1), line(2)]);
    expect(readLines(file)).toEqual([line(3)]);
  });

  it('never writes a provider key or a bearer token', async () => {
    const file = path.join(dir.dir, 'requests.log');
    const { suite } = newSuite();
    const sink = logSinkFor(suite, sinkConfig({ type: 'file', path: file }));
    sink.write(line(1, secretLine()));
    await sink.flush();
    const text = readFileSync(file, 'utf8');
    expectNoSecret(text);
    expect(JSON.parse(text)).toEqual(expect.objectContaining({ n: 1, model: 'gpt-4o-mini' }));
  });

  it('flushes and closes with the suite; later lines are dropped', async () => {
    const file = path.join(dir.dir, 'requests.log');
    const s = suiteStub();
    const sink = logSinkFor(s.suite, sinkConfig({ type: 'file', path: file }));
    sink.write(line(1));
    await s.close();
    expect(readLines(file)).toEqual([line(1)]);
    sink.write(line(2));
    expect(await dropped(s.metrics, 'file')).toBe(1);
    expect(readLines(file)).toEqual([line(1)]);
  });
});

// ------------------------------------------------------------------ logger and sharing

describe('logger sink', () => {
  it("writes 'ai request' lines through the suite logger, redacted", async () => {
    const { suite, metrics, log } = newSuite();
    const sink = logSinkFor(suite, sinkConfig({ type: 'logger' }));
    sink.write(line(7, secretLine()));
    const [record] = log.records().filter((r) => r.msg === 'ai request');
    expect(record).toEqual(expect.objectContaining({ plugin: 'ai-metrics', type: 'ai_request', n: 7 }));
    expectNoSecret(log.text());
    expect(await lines(metrics, 'logger')).toBe(1);
  });
});

describe('sharing', () => {
  it('gives instances with the same sink config one sink per suite', async () => {
    const collector = await startCollector();
    const a = newSuite();
    const b = newSuite();
    const config = sinkConfig({ type: 'http', url: collector.url, flush_interval_ms: 60_000 });
    const sink = logSinkFor(a.suite, config);
    expect(logSinkFor(a.suite, { ...config })).toBe(sink);
    expect(logSinkFor(a.suite, { ...config, batch_max_records: 5 })).not.toBe(sink);
    expect(logSinkFor(b.suite, config)).not.toBe(sink);
    // Fields the type does not read do not make another sink.
    const logger = logSinkFor(a.suite, sinkConfig({ type: 'logger' }));
    expect(logSinkFor(a.suite, sinkConfig({ type: 'logger', url: collector.url }))).toBe(logger);

    // Two routes writing through the shared sink fill one batch.
    logSinkFor(a.suite, config).write(line(1));
    logSinkFor(a.suite, { ...config }).write(line(2));
    await sink.flush();
    expect(collector.posts.map((p) => ns(p.lines))).toEqual([[1, 2]]);
  });

  it('registers the sink metrics once per suite, with every series from zero', async () => {
    const { suite, metrics } = newSuite();
    const dirA = tempDir('aigw-sink-');
    try {
      logSinkFor(suite, sinkConfig({ type: 'logger' }));
      logSinkFor(suite, sinkConfig({ type: 'file', path: path.join(dirA.dir, 'x.log') }));
      const text = await metrics.metrics();
      expect(text).toContain('aigw_log_lines_total{sink="logger"} 0');
      expect(text).toContain('aigw_log_dropped_total{sink="file"} 0');
      expect(text).toContain('aigw_log_sink_errors_total{sink="file"} 0');
    } finally {
      dirA.remove();
    }
  });
});

// ------------------------------------------------------------------ secrets

const SECRETS = [
  'sk-proj-Secret0123456789abcdef',
  'eyJhbGciOiJIUzI1NiJ9.payload.sig',
  'bearer-text-token-123',
];

/** A line that carries secrets where a careless caller might put them. */
function secretLine(): Record<string, unknown> {
  return {
    model: 'gpt-4o-mini',
    error_message: `upstream said: invalid key ${SECRETS[0]}`,
    headers: { authorization: `Bearer ${SECRETS[1]}`, 'x-request-id': 'r1' },
    note: `forwarded Bearer ${SECRETS[2]}`,
    api_key: 'plain-config-value',
  };
}

function expectNoSecret(text: string): void {
  for (const secret of [...SECRETS, 'plain-config-value']) expect(text).not.toContain(secret);
  expect(text).toContain('[REDACTED');
}
