/**
 * Shared machinery for the loopback provider mocks: the public types, the HTTP server with
 * request recording and fault injection, response writers, and the deterministic "model"
 * (token counting, answers) that every mock uses.
 *
 * Token counting, on purpose simple and documented so tests can compute expected usage:
 * one token = one whitespace-separated word (`countTokens`). Answers are streamed one token
 * (word, with its leading whitespace) per chunk, and `max_tokens: N` keeps the first N words.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON, or undefined when the body was empty or not JSON. */
  body: unknown;
  receivedAt: number;
}

export type Fault =
  /** Answer with this status. Default body: the provider's real error JSON for that status.
   * A status below 400 without a body answers normally and only adds `headers`. */
  | { kind: 'status'; status: number; headers?: Record<string, string>; body?: unknown }
  /** Destroy the socket (TCP RST) before any response byte. */
  | { kind: 'reset' }
  /** Delay before the response headers. */
  | { kind: 'latency'; ms: number }
  /** Headers at once, first body byte after `ms`. */
  | { kind: 'slow_first_byte'; ms: number }
  /** Delay between SSE chunks (overrides the mock's `chunkDelayMs`). */
  | { kind: 'chunk_delay'; ms: number }
  /** Stream: send N chunks then destroy the socket (no terminator). JSON: send half the body then destroy. */
  | { kind: 'cut_stream'; afterChunks: number }
  /** Omit usage (JSON) / the usage chunk or fields (SSE). */
  | { kind: 'no_usage' }
  /** The provider's content filter stopped the answer: no text, finish reason `content_filter` (HTTP 200). */
  | { kind: 'content_filter' };

export interface ProviderMock {
  /** Base URL including the version path, e.g. http://127.0.0.1:PORT/v1 */
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** Applies to the next request only; queued in order. */
  nextFault(fault: Fault): void;
  /** Applies to every request until cleared. */
  setFault(fault: Fault | undefined): void;
  /** Sets the text of answers (default: deterministic, derived from the last user message). */
  setAnswer(text: string | undefined): void;
  /** Clears requests, faults, answer. */
  reset(): void;
  close(): Promise<void>;
}

export interface MockOptions {
  /** When set, requests must carry this key (provider-specific header). */
  apiKey?: string;
  /** Default 0 (any free port). */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Delay between SSE chunks, default 5 ms, so each chunk leaves on its own. */
  chunkDelayMs?: number;
}

/** What the faults in force for one request add up to. */
export interface FaultPlan {
  status?: { status: number; body?: unknown };
  /** Extra response headers from a status fault. */
  headers: Record<string, string>;
  reset: boolean;
  latencyMs: number;
  slowFirstByteMs: number;
  chunkDelayMs: number;
  cutAfterChunks?: number;
  noUsage: boolean;
  contentFilter: boolean;
}

/** One request as a provider handler sees it. */
export interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly method: string;
  readonly path: string;
  readonly body: unknown;
  /** The body was not empty and not valid JSON. */
  readonly bodyInvalid: boolean;
  readonly plan: FaultPlan;
  /** The text set with setAnswer, if any. */
  readonly answer: string | undefined;
  readonly receivedAt: number;
  /** Aborted when the client goes away or the mock closes. */
  readonly signal: AbortSignal;
}

export interface ErrorAnswer {
  body: unknown;
  headers?: Record<string, string>;
}

export interface ProviderDefinition {
  /** Headers every answer carries (request id, rate limits...). */
  headers(ex: Exchange): Record<string, string>;
  /** The provider's real error for a status fault without a body. */
  errorFor(status: number, ex: Exchange): ErrorAnswer;
  handle(ex: Exchange): Promise<void>;
}

const DEFAULT_CHUNK_DELAY_MS = 5;
// Large enough for any test prompt; a bigger body is refused by closing the connection.
const MAX_BODY_BYTES = 32 * 1024 * 1024;

/** Later faults win over earlier ones of the same kind; different kinds combine. */
export function planFaults(faults: ReadonlyArray<Fault | undefined>, chunkDelayMs: number): FaultPlan {
  const plan: FaultPlan = {
    headers: {},
    reset: false,
    latencyMs: 0,
    slowFirstByteMs: 0,
    chunkDelayMs,
    noUsage: false,
    contentFilter: false,
  };
  for (const fault of faults) {
    if (!fault) continue;
    switch (fault.kind) {
      case 'status':
        plan.headers = { ...fault.headers };
        plan.status = fault.status < 400 && fault.body === undefined ? undefined : fault;
        break;
      case 'reset':
        plan.reset = true;
        break;
      case 'latency':
        plan.latencyMs = fault.ms;
        break;
      case 'slow_first_byte':
        plan.slowFirstByteMs = fault.ms;
        break;
      case 'chunk_delay':
        plan.chunkDelayMs = fault.ms;
        break;
      case 'cut_stream':
        plan.cutAfterChunks = fault.afterChunks;
        break;
      case 'no_usage':
        plan.noUsage = true;
        break;
      case 'content_filter':
        plan.contentFilter = true;
        break;
    }
  }
  return plan;
}

export async function startMockServer(
  definition: ProviderDefinition,
  options: MockOptions = {},
): Promise<ProviderMock> {
  const host = options.host ?? '127.0.0.1';
  const chunkDelayMs = options.chunkDelayMs ?? DEFAULT_CHUNK_DELAY_MS;
  const requests: RecordedRequest[] = [];
  const queued: Fault[] = [];
  const inFlight = new Set<AbortController>();
  let standing: Fault | undefined;
  let answer: string | undefined;

  async function serve(
    req: IncomingMessage,
    res: ServerResponse,
    controller: AbortController,
  ): Promise<void> {
    const receivedAt = Date.now();
    const raw = await readBody(req);
    if (raw === undefined) return; // too large or aborted: connection already closed
    const { body, invalid } = parseJson(raw);
    const method = req.method ?? 'GET';
    const path = new URL(req.url ?? '/', 'http://mock').pathname;
    requests.push({ method, path, headers: { ...req.headers }, body, receivedAt });

    const plan = planFaults([standing, queued.shift()], chunkDelayMs);
    const ex: Exchange = {
      req,
      res,
      method,
      path,
      body,
      bodyInvalid: invalid,
      plan,
      answer,
      receivedAt,
      signal: controller.signal,
    };

    if (plan.reset) {
      resetSocket(req.socket);
      return;
    }
    if (plan.latencyMs > 0 && !(await pause(plan.latencyMs, ex.signal))) return;
    if (plan.status) {
      const fallback = definition.errorFor(plan.status.status, ex);
      const headers = { ...definition.headers(ex), ...fallback.headers };
      const faultBody = plan.status.body;
      if (typeof faultBody === 'string') {
        await sendText(
          ex,
          plan.status.status,
          { ...headers, 'content-type': 'text/plain; charset=utf-8' },
          faultBody,
        );
      } else {
        await sendJson(ex, plan.status.status, headers, faultBody === undefined ? fallback.body : faultBody);
      }
      return;
    }
    await definition.handle(ex);
  }

  const server = createServer((req, res) => {
    const controller = new AbortController();
    inFlight.add(controller);
    res.on('close', () => {
      controller.abort();
      inFlight.delete(controller);
    });
    serve(req, res, controller).catch((error: unknown) => {
      // A bug in the mock must show up in the test, not crash the process.
      if (!res.headersSent) {
        const message = error instanceof Error ? error.message : String(error);
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({ error: { message: `provider mock failed: ${message}`, type: 'mock_error' } }),
        );
      } else {
        res.destroy();
      }
    });
  });
  server.on('connection', (socket: Socket) => socket.setNoDelay(true));
  server.on('clientError', (_error, socket) => socket.destroy());

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const hostInUrl = host.includes(':') ? `[${host}]` : host;
  let closed: Promise<void> | undefined;

  return {
    url: `http://${hostInUrl}:${port}/v1`,
    requests,
    nextFault(fault) {
      queued.push(fault);
    },
    setFault(fault) {
      standing = fault;
    },
    setAnswer(text) {
      answer = text;
    },
    reset() {
      requests.length = 0;
      queued.length = 0;
      standing = undefined;
      answer = undefined;
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        for (const controller of inFlight) controller.abort();
        server.close(() => resolve());
        // Keep-alive and streaming sockets would otherwise hold close() open.
        server.closeAllConnections();
      });
      return closed;
    },
  };
}

function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        req.socket.destroy();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', () => resolve(undefined));
    req.on('close', () => resolve(req.complete ? Buffer.concat(chunks) : undefined));
  });
}

function parseJson(raw: Buffer): { body: unknown; invalid: boolean } {
  const text = raw.toString('utf8');
  if (text.trim() === '') return { body: undefined, invalid: false };
  try {
    return { body: JSON.parse(text) as unknown, invalid: false };
  } catch {
    return { body: undefined, invalid: true };
  }
}

function resetSocket(socket: Socket): void {
  // resetAndDestroy sends a TCP RST, which clients report as ECONNRESET like a real reset.
  if (typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy();
  else socket.destroy();
}

/** Waits `ms`; false when the exchange was aborted meanwhile. */
export async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  if (ms <= 0) return true;
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Writes one piece and resolves once it is handed to the socket. */
function write(res: ServerResponse, data: string | Buffer): Promise<void> {
  return new Promise((resolve) => {
    if (res.destroyed) resolve();
    else res.write(data, () => resolve());
  });
}

export function sendJson(
  ex: Exchange,
  status: number,
  headers: Record<string, string>,
  body: unknown,
): Promise<void> {
  return sendText(ex, status, { 'content-type': 'application/json', ...headers }, JSON.stringify(body));
}

/** A complete (non-stream) body, honouring slow_first_byte and cut_stream (half the body, then a cut). */
export async function sendText(
  ex: Exchange,
  status: number,
  headers: Record<string, string>,
  text: string,
): Promise<void> {
  const { res, plan } = ex;
  const bytes = Buffer.from(text, 'utf8');
  res.writeHead(status, { ...headers, ...plan.headers, 'content-length': String(bytes.length) });
  if (plan.slowFirstByteMs > 0) {
    res.flushHeaders();
    if (!(await pause(plan.slowFirstByteMs, ex.signal))) return;
  }
  if (plan.cutAfterChunks !== undefined) {
    await write(res, bytes.subarray(0, Math.floor(bytes.length / 2)));
    res.destroy();
    return;
  }
  res.end(bytes);
}

/**
 * An SSE answer: each frame is written and flushed on its own, `chunkDelayMs` apart, then the
 * terminator (`data: [DONE]` or Anthropic's message_stop). cut_stream sends `afterChunks`
 * frames and destroys the socket without the terminator.
 */
export async function sendSse(
  ex: Exchange,
  headers: Record<string, string>,
  frames: string[],
  terminator: string,
): Promise<void> {
  const { res, plan } = ex;
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', ...headers, ...plan.headers });
  res.flushHeaders();
  if (plan.slowFirstByteMs > 0 && !(await pause(plan.slowFirstByteMs, ex.signal))) return;
  const cutAt = plan.cutAfterChunks;
  for (let i = 0; i < frames.length; i++) {
    if (cutAt !== undefined && i >= cutAt) break;
    if (i > 0 && !(await pause(plan.chunkDelayMs, ex.signal))) return;
    await write(res, frames[i]!);
  }
  if (cutAt !== undefined) {
    res.destroy();
    return;
  }
  if (!(await pause(plan.chunkDelayMs, ex.signal))) return;
  res.end(terminator);
}

export function sseData(data: unknown): string {
  return `data: ${JSON.stringify(data)}\n\n`;
}

export function sseEvent(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** One token = one whitespace-separated word. */
export function countTokens(text: string): number {
  return splitTokens(text).length;
}

/** Words with their leading whitespace, so joining the pieces gives the text back. */
export function splitTokens(text: string): string[] {
  return text.match(/\s*\S+/g) ?? [];
}

/** Text of a message content: a string, or an array of `{type:'text', text}` parts. */
export function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part: unknown) => (isRecord(part) && typeof part['text'] === 'string' ? part['text'] : ''))
    .filter((text) => text !== '')
    .join('\n');
}

/**
 * The default answer: deterministic, different for different prompts, and without echoing the
 * prompt (answers end up in logs and caches).
 */
export function defaultAnswer(lastUserText: string): string {
  const digest = createHash('sha256').update(lastUserText).digest('hex').slice(0, 8);
  return `This is mock answer ${digest} to a message of ${countTokens(lastUserText)} words.`;
}

/** The answer pieces after applying a token limit. */
export function limitAnswer(
  text: string,
  maxTokens: number | undefined,
): { pieces: string[]; text: string; truncated: boolean } {
  const all = splitTokens(text);
  const truncated = maxTokens !== undefined && all.length > maxTokens;
  const pieces = truncated ? all.slice(0, maxTokens) : all;
  // Untruncated answers keep their exact text (including trailing whitespace).
  return { pieces, text: truncated ? pieces.join('') : text, truncated };
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Random id characters like the providers' ids. */
export function randomId(length: number): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = randomBytes(length);
  let id = '';
  for (const byte of bytes) id += alphabet[byte % alphabet.length];
  return id;
}

/** The bearer token or api key with all but its edges hidden, as providers show it. */
export function maskKey(key: string): string {
  if (key.length < 12) return '*'.repeat(key.length);
  return `${key.slice(0, 3)}${'*'.repeat(key.length - 7)}${key.slice(-4)}`;
}

export function header(ex: Exchange, name: string): string | undefined {
  const value = ex.req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
