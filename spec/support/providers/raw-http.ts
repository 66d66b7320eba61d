/**
 * Test-side helpers for talking to the mocks without a client library: a raw HTTP request
 * that records when each body chunk arrived and never rejects (cuts and resets are results),
 * and a small SSE frame parser.
 */
import { request } from 'node:http';

export interface RawChunk {
  at: number;
  data: Buffer;
}

export interface RawResponse {
  /** 0 when no response arrived (e.g. the connection was reset). */
  status: number;
  headers: Record<string, string | string[] | undefined>;
  sentAt: number;
  headersAt: number;
  chunks: RawChunk[];
  text: string;
  /** The body ended cleanly. */
  complete: boolean;
  error?: NodeJS.ErrnoException;
}

export interface RawRequest {
  method?: string;
  headers?: Record<string, string>;
  /** Sent as is when a string, JSON-encoded otherwise. */
  body?: unknown;
}

export function rawRequest(url: string, options: RawRequest = {}): Promise<RawResponse> {
  const body =
    options.body === undefined
      ? undefined
      : typeof options.body === 'string' || Buffer.isBuffer(options.body)
        ? options.body
        : JSON.stringify(options.body);
  const result: RawResponse = {
    status: 0,
    headers: {},
    sentAt: Date.now(),
    headersAt: 0,
    chunks: [],
    text: '',
    complete: false,
  };
  return new Promise((resolve) => {
    const finish = (error?: NodeJS.ErrnoException) => {
      if (error && !result.error) result.error = error;
      result.text = Buffer.concat(result.chunks.map((c) => c.data)).toString('utf8');
      resolve(result);
    };
    // A fresh connection per request, so one test's cut cannot leak into the next.
    const req = request(url, {
      method: options.method ?? (body === undefined ? 'GET' : 'POST'),
      agent: false,
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...options.headers },
    });
    req.on('response', (res) => {
      result.status = res.statusCode ?? 0;
      result.headers = res.headers;
      result.headersAt = Date.now();
      res.on('data', (data: Buffer) => result.chunks.push({ at: Date.now(), data }));
      res.on('end', () => {
        result.complete = true;
      });
      res.on('error', (error) => finish(error));
      res.on('close', () => finish());
    });
    req.on('error', (error) => finish(error));
    req.end(body);
  });
}

export interface SseFrame {
  event?: string;
  data: string;
}

/** Splits an SSE body into frames (blank-line separated); multi-line data is joined with \n. */
export function parseSse(text: string): SseFrame[] {
  const frames: SseFrame[] = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    if (block.trim() === '') continue;
    let event: string | undefined;
    const data: string[] = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    frames.push(event === undefined ? { data: data.join('\n') } : { event, data: data.join('\n') });
  }
  return frames;
}

/** The JSON payloads of the frames, without the OpenAI `[DONE]` sentinel. */
export function sseJson(text: string): Record<string, unknown>[] {
  return parseSse(text)
    .filter((frame) => frame.data !== '[DONE]')
    .map((frame) => JSON.parse(frame.data) as Record<string, unknown>);
}
