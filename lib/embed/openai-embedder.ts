import { Pool } from 'undici';
import { GatewayError } from '../errors';
import { scrubProviderText } from '../relay/upstream-error';
import type { Embedder } from './embedder';

export interface OpenAIEmbedderOptions {
  /** Base URL up to the API version, e.g. `https://api.openai.com/v1`; `/embeddings` is appended. */
  baseUrl: string;
  model: string;
  /** Vector length asked for (`dimensions`) and required of every answer. */
  dimensions: number;
  /** Resolved secret; never logged, scrubbed from every error. */
  apiKey?: string;
  /** Limit of one call, connection included. */
  timeoutMs: number;
  /** Most texts per call (OpenAI takes 2048). */
  maxBatch?: number;
}

const MAX_ERROR_BODY = 4096;

/**
 * Any OpenAI-compatible embeddings endpoint (OpenAI, Azure-style proxies, vLLM, Ollama, TEI...):
 * `POST {base_url}/embeddings` with `{model, input, dimensions, encoding_format: "float"}`.
 * Every failure becomes a GatewayError (`AIGW_UPSTREAM_TIMEOUT`, `AIGW_UPSTREAM_UNAVAILABLE`,
 * `AIGW_UPSTREAM_ERROR` with the provider's status, `AIGW_UPSTREAM_PROTOCOL` for an answer of
 * the wrong shape or size), its message free of the key. Vectors are normalised to unit length.
 */
export class OpenAIEmbedder implements Embedder {
  readonly id: string;
  readonly dimensions: number;
  private readonly pool: Pool;
  private readonly path: string;
  private readonly maxBatch: number;

  constructor(private readonly options: OpenAIEmbedderOptions) {
    const url = new URL(options.baseUrl.replace(/\/+$/, ''));
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new GatewayError('AIGW_CONFIG_INVALID', 'embedder base_url must be an http(s) URL');
    }
    this.path = `${url.pathname}/embeddings`;
    this.pool = new Pool(url.origin, { connect: { timeout: options.timeoutMs } });
    this.dimensions = options.dimensions;
    this.maxBatch = options.maxBatch ?? 256;
    this.id = `openai:${options.model}`;
  }

  async embed(texts: readonly string[]): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    for (let i = 0; i < texts.length; i += this.maxBatch) {
      out.push(...(await this.call(texts.slice(i, i + this.maxBatch))));
    }
    return out;
  }

  close(): Promise<void> {
    return this.pool.close();
  }

  private async call(input: readonly string[]): Promise<Float32Array[]> {
    if (input.length === 0) return [];
    const { apiKey, timeoutMs, model, dimensions } = this.options;
    const signal = AbortSignal.timeout(timeoutMs);
    let status: number;
    let text: string;
    try {
      const res = await this.pool.request({
        path: this.path,
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}),
        },
        body: JSON.stringify({ model, input, dimensions, encoding_format: 'float' }),
        signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      if (signal.aborted || isTimeout(err)) {
        throw new GatewayError(
          'AIGW_UPSTREAM_TIMEOUT',
          `the embeddings endpoint did not answer within ${timeoutMs} ms`,
        );
      }
      throw new GatewayError('AIGW_UPSTREAM_UNAVAILABLE', 'the embeddings endpoint is unreachable');
    }
    if (status !== 200) {
      throw new GatewayError(
        'AIGW_UPSTREAM_ERROR',
        `the embeddings endpoint answered ${status}: ${this.scrub(errorMessage(text))}`,
        { status: 502 },
      );
    }
    return this.vectors(text, input.length);
  }

  /** The vectors of an answer, in input order, each checked and made unit length. */
  private vectors(text: string, count: number): Float32Array[] {
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw protocol('the answer is not JSON');
    }
    const data = (body as { data?: unknown })?.data;
    if (!Array.isArray(data) || data.length !== count)
      throw protocol('the answer has not one vector per text');
    const out = new Array<Float32Array>(count);
    for (const item of data as Array<{ index?: unknown; embedding?: unknown }>) {
      const index = item?.index;
      const embedding = item?.embedding;
      if (
        typeof index !== 'number' ||
        !Number.isInteger(index) ||
        index < 0 ||
        index >= count ||
        out[index]
      ) {
        throw protocol('a vector has a bad index');
      }
      if (!Array.isArray(embedding) || embedding.length !== this.dimensions) {
        throw protocol(`a vector does not have ${this.dimensions} dimensions`);
      }
      const vector = Float32Array.from(embedding as number[]);
      if (!vector.every(Number.isFinite)) throw protocol('a vector holds something other than numbers');
      out[index] = normalize(vector);
    }
    return out;
  }

  private scrub(text: string): string {
    return scrubProviderText(text, this.options.apiKey);
  }
}

function normalize(vector: Float32Array): Float32Array {
  let sum = 0;
  for (const v of vector) sum += v * v;
  const norm = Math.sqrt(sum);
  if (norm > 0) for (let i = 0; i < vector.length; i++) vector[i]! /= norm;
  return vector;
}

function errorMessage(text: string): string {
  try {
    const message = (JSON.parse(text) as { error?: { message?: unknown } })?.error?.message;
    if (typeof message === 'string') return message;
  } catch {
    // not JSON: the start of the text says enough
  }
  return text.slice(0, MAX_ERROR_BODY) || 'no details';
}

function isTimeout(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return (
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_BODY_TIMEOUT' ||
    code === 'UND_ERR_CONNECT_TIMEOUT'
  );
}

function protocol(what: string): GatewayError {
  return new GatewayError('AIGW_UPSTREAM_PROTOCOL', `the embeddings endpoint answered badly: ${what}`);
}
