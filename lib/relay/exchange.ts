import type { ServerResponse } from 'node:http';
import type { ContextStore, Endpoint, RelayOutcome, RequestContext, Target, Usage } from '../context';
import { type ErrorCode, GatewayError, toGatewayError } from '../errors';
import { SseParser, serializeSse } from '../llm/sse';
import { countedUsage } from '../llm/usage';
import type { Logger } from '../log/logger';
import { headerSafe, type IncomingHeaders, passThroughHeaders } from './headers';
import { adapterFor, type ProviderAdapter, type StreamStep } from './providers';
import { type AbortReason, type UpstreamClient, type UpstreamResponse, upstreamFailure } from './upstream';
import { ProviderError, scrubProviderText } from './upstream-error';

export interface ExchangeDeps {
  contexts: ContextStore;
  upstream: UpstreamClient;
  logger: Logger;
  maxResponseBytes: number;
}

/** Error answers are small; a provider that sends megabytes of HTML is cut here. */
const ERROR_BODY_BYTES = 64 * 1024;

/**
 * One request through the relay: call the chosen target, answer the client (JSON or SSE),
 * record the outcome in the context and settle it. Every path ends the response.
 */
export class Exchange {
  private readonly log: Logger;
  private readonly endpoint: Endpoint;
  private readonly abort = new AbortController();
  private aborted?: AbortReason;
  private deadline?: NodeJS.Timeout;
  private firstByte?: NodeJS.Timeout;
  private idle?: NodeJS.Timeout;
  private target?: Target;
  private outcome?: RelayOutcome;
  /** Refused before any provider call (unsupported endpoint, no body). */
  private rejected = false;
  /** The provider answered 2xx: tokens were spent, so usage is recorded even if it broke later. */
  private answered = false;
  private callStart = 0;
  private firstWriteMs?: number;
  private providerUsage?: Usage;
  private contentChars = 0;
  /** [DONE] came: the rest of the provider's body is being read to keep its connection. */
  private drainingAfterDone = false;
  private upstreamHeaders: IncomingHeaders = {};
  private providerCode?: string;

  constructor(
    private readonly ctx: RequestContext,
    private readonly res: ServerResponse,
    private readonly deps: ExchangeDeps,
  ) {
    if (!ctx.endpoint) throw new Error('an exchange needs a request the relay has read');
    this.endpoint = ctx.endpoint;
    this.log = deps.logger.child({ request_id: ctx.requestId });
    // The client (Kong) went away before the answer was complete: stop paying for it.
    res.once('close', () => {
      if (!res.writableFinished) this.stop('client');
    });
  }

  async run(): Promise<void> {
    try {
      const route = this.ctx.route;
      if (!route || route.targets.length === 0) {
        throw new GatewayError(
          'AIGW_NO_ROUTE',
          'no target chosen for this request: enable ai-router on the route',
        );
      }
      // Failover (ai-fallback) goes here: while nothing has reached the client
      // (`!this.res.headersSent`), a failed attempt may move on to route.targets[1..].
      await this.call(route.targets[0]!);
    } catch (err) {
      this.fail(err);
    } finally {
      clearTimeout(this.deadline);
      clearTimeout(this.firstByte);
      clearTimeout(this.idle);
      this.finish();
    }
  }

  private stop(reason: AbortReason): void {
    if (this.aborted) return;
    this.aborted = reason;
    this.abort.abort();
  }

  private async call(target: Target): Promise<void> {
    const { endpoint } = this;
    const stream = this.ctx.stream && endpoint !== 'embeddings';
    this.target = target;
    this.outcome = {
      target: target.name,
      provider: target.provider,
      model: target.model,
      status: 0,
      stream,
      started_at: Date.now(),
      bytes_out: 0,
      end: 'complete',
    };
    this.ctx.outcome = this.outcome;

    const adapter = adapterFor(target.provider);
    if (!adapter) throw this.reject('AIGW_CONFIG_INVALID', `no adapter for provider ${target.provider}`);
    if (!adapter.supports(endpoint)) {
      throw this.reject(
        'AIGW_UNSUPPORTED_FEATURE',
        `${endpoint} is not supported by provider ${target.provider}`,
      );
    }
    const body = this.ctx.body;
    if (!body) throw this.reject('AIGW_BAD_REQUEST', 'the request has no JSON body');

    const request = adapter.buildRequest(endpoint, body, target, { stream });
    this.deadline = setTimeout(() => this.stop('deadline'), target.timeouts.total_ms);
    // Own timers, because undici's headersTimeout/bodyTimeout tick at about one second
    // (its coarse "fast timers"); they stay set below as a backstop. The first-byte timer
    // runs until the first body byte, so a stream whose headers come early is covered too.
    this.firstByte = setTimeout(() => this.stop('first_byte'), target.timeouts.first_byte_ms);
    this.callStart = performance.now();
    let response: UpstreamResponse | undefined;
    try {
      response = await this.deps.upstream.request(target, request, this.abort.signal);
      this.outcome.upstream_status = response.statusCode;
      this.upstreamHeaders = response.headers;
      this.armIdle();
      if (response.statusCode >= 400) {
        const text = (await this.readBody(response, ERROR_BODY_BYTES, 'truncate')).toString('utf8');
        const error = adapter.parseError(response.statusCode, text, response.headers);
        if (error instanceof ProviderError) this.providerCode = error.providerCode;
        throw error;
      }
      if (response.statusCode < 200 || response.statusCode >= 300) {
        // A redirect or 1xx means a wrong base_url; passing it on would confuse the client.
        throw new GatewayError('AIGW_UPSTREAM_PROTOCOL', `the provider answered HTTP ${response.statusCode}`);
      }
      this.answered = true;
      if (stream) await this.relayStream(adapter, response, body);
      else await this.relayJson(adapter, response);
    } catch (err) {
      throw upstreamFailure(err, target, this.aborted);
    } finally {
      // Unread bodies (early failures) must not hold the connection. undici reports the
      // destroy of an unread body as an 'error' event, which nobody else listens to.
      if (response && !response.body.destroyed && !this.drainingAfterDone) {
        response.body.on('error', () => {});
        response.body.destroy();
      }
    }
  }

  private reject(code: ErrorCode, message: string): GatewayError {
    this.rejected = true;
    return new GatewayError(code, message);
  }

  private async relayJson(adapter: ProviderAdapter, response: UpstreamResponse): Promise<void> {
    const outcome = this.outcome!;
    outcome.ttft_ms = this.elapsed();
    const bytes = await this.readBody(response, this.deps.maxResponseBytes, 'fail');
    let json: unknown;
    try {
      json = JSON.parse(bytes.toString('utf8'));
    } catch {
      throw new GatewayError('AIGW_UPSTREAM_PROTOCOL', 'the provider answered with a body that is not JSON');
    }
    const parsed = adapter.parseResponse(this.endpoint, json);
    this.providerUsage = parsed.usage;
    this.contentChars = parsed.contentChars;
    outcome.response_model = parsed.model;

    // An untranslated answer goes out as the provider's bytes.
    const passthrough = parsed.body === json;
    const out = passthrough ? bytes : Buffer.from(JSON.stringify(parsed.body));
    const upstreamType = headerText(response.headers['content-type']);
    this.res.writeHead(response.statusCode, {
      ...passThroughHeaders(response.headers),
      ...this.exposeHeaders(),
      'content-type': passthrough && upstreamType?.includes('json') ? upstreamType : 'application/json',
      'content-length': String(out.length),
    });
    this.res.end(out);
    outcome.bytes_out = out.length;
  }

  private async relayStream(
    adapter: ProviderAdapter,
    response: UpstreamResponse,
    body: Record<string, unknown>,
  ): Promise<void> {
    if (headerText(response.headers['content-type'])?.includes('json')) {
      throw new GatewayError(
        'AIGW_UPSTREAM_PROTOCOL',
        'the provider answered a stream request without an event stream',
      );
    }
    const options = body.stream_options as { include_usage?: unknown } | null | undefined;
    const clientWantsUsage = typeof options === 'object' && options?.include_usage === true;
    const translator = adapter.streamTranslator(this.endpoint, { clientWantsUsage });
    const parser = new SseParser();
    // Leaving the loop at [DONE] must not destroy the body: undici would drop the connection.
    const chunks = response.body.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>;
    for await (const chunk of chunks) {
      this.onChunk();
      for (const event of parser.push(chunk)) {
        if (await this.forward(translator.onEvent(event))) return this.endStream(response);
      }
      if (parser.pendingLength > this.deps.maxResponseBytes) {
        throw new GatewayError(
          'AIGW_STREAM_BROKEN',
          `the provider sent a stream event over ${this.deps.maxResponseBytes} bytes`,
        );
      }
    }
    for (const event of parser.end()) {
      if (await this.forward(translator.onEvent(event))) return this.endStream(response);
    }
    throw new GatewayError('AIGW_STREAM_BROKEN', 'the provider ended the stream without [DONE]');
  }

  /** Applies one translated event; true once the stream is complete. */
  private async forward(step: StreamStep): Promise<boolean> {
    const outcome = this.outcome!;
    if (step.model && outcome.response_model === undefined) outcome.response_model = step.model;
    if (step.usage) this.providerUsage = step.usage;
    if (step.contentChars) {
      this.contentChars += step.contentChars;
      outcome.ttft_ms ??= this.elapsed();
    }
    if (step.error) throw step.error;
    for (const text of step.emit) await this.write(text);
    return step.done === true;
  }

  /** One write per event, as soon as it is known: no batching, so tokens reach the client live. */
  private async write(text: string): Promise<void> {
    if (this.res.destroyed) return; // client gone; the abort ends the upstream loop
    if (!this.res.headersSent) {
      this.res.writeHead(200, {
        ...passThroughHeaders(this.upstreamHeaders),
        ...this.exposeHeaders(),
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        // nginx (Kong) would otherwise buffer the stream.
        'x-accel-buffering': 'no',
      });
      this.firstWriteMs = this.elapsed();
    }
    this.outcome!.bytes_out += Buffer.byteLength(text);
    if (!this.res.write(text)) {
      // Waiting for a slow client is not provider silence: no idle timeout meanwhile.
      clearTimeout(this.idle);
      await drained(this.res);
      this.armIdle();
    }
  }

  /**
   * The client's stream ends at [DONE]. What the provider sends after it (usually nothing
   * but the end of the body) is read and dropped in the background, so undici can reuse
   * the connection; a provider that keeps it open past a second loses it instead.
   */
  private endStream(response: UpstreamResponse): void {
    this.res.end();
    this.drainingAfterDone = true;
    response.body.dump({ limit: 64 * 1024, signal: AbortSignal.timeout(1_000) }).catch(() => undefined);
  }

  private exposeHeaders(): Record<string, string> {
    const target = this.target;
    if (!this.ctx.route?.exposeTarget || !target) return {};
    const headers: Record<string, string> = {};
    const name = headerSafe(target.name);
    const model = headerSafe(this.outcome?.response_model ?? target.model);
    if (name !== undefined) headers['x-ai-target'] = name;
    if (model !== undefined) headers['x-ai-model'] = model;
    return headers;
  }

  private fail(err: unknown): void {
    const outcome = this.outcome;
    if (this.aborted === 'client') {
      // Not a failure of the gateway or the provider: nobody is left to answer.
      if (outcome) outcome.end = 'client_aborted';
      return;
    }
    const error = toGatewayError(err);
    const message = this.target?.api_key
      ? scrubProviderText(error.message, this.target.api_key)
      : error.message;
    if (error.code === 'AIGW_INTERNAL') this.log.error({ err: error.cause }, 'relay failed');

    if (outcome) {
      const broken = this.res.headersSent;
      outcome.end = this.rejected
        ? 'rejected'
        : broken
          ? 'stream_broken'
          : error.code === 'AIGW_UPSTREAM_TIMEOUT'
            ? 'timeout'
            : 'upstream_error';
      outcome.error = { code: broken ? 'AIGW_STREAM_BROKEN' : error.code, message };
    }
    if (this.res.destroyed) return;

    if (this.res.headersSent) {
      // The stream already started: say it broke, and never with a made-up [DONE].
      const event = serializeSse({
        data: JSON.stringify({
          error: {
            message: `the stream from the provider broke: ${message}`,
            type: 'server_error',
            code: 'AIGW_STREAM_BROKEN',
            param: null,
          },
        }),
      });
      if (outcome) outcome.bytes_out += Buffer.byteLength(event);
      this.res.end(event);
      return;
    }
    const json = error.toJSON();
    json.error.message = message;
    const body = JSON.stringify(json);
    this.res.writeHead(error.status, {
      ...passThroughHeaders(this.upstreamHeaders),
      ...this.exposeHeaders(),
      ...error.headers,
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(body)),
    });
    this.res.end(body);
    if (outcome) outcome.bytes_out = Buffer.byteLength(body);
  }

  private finish(): void {
    const outcome = this.outcome;
    if (outcome) {
      outcome.latency_ms = this.callStart > 0 ? this.elapsed() : 0;
      // 499: the client closed before any answer, as nginx logs it.
      outcome.status = this.res.headersSent ? this.res.statusCode : 499;
      outcome.ttft_ms ??= this.firstWriteMs;
      if (this.providerUsage) {
        outcome.usage = this.providerUsage;
        outcome.usage_source = 'provider';
      } else if (this.answered) {
        outcome.usage = countedUsage(this.endpoint, this.ctx.body, this.contentChars);
        outcome.usage_source = 'counted';
      }
    }
    this.deps.contexts.settle(this.ctx);
    // Metadata only: never keys, prompts or answers.
    this.log.debug(
      {
        endpoint: this.endpoint,
        target: outcome?.target,
        provider: outcome?.provider,
        model: outcome?.model,
        response_model: outcome?.response_model,
        stream: outcome?.stream,
        status: outcome?.status ?? this.res.statusCode,
        upstream_status: outcome?.upstream_status,
        end: outcome?.end,
        ttft_ms: outcome?.ttft_ms,
        latency_ms: outcome?.latency_ms,
        bytes_out: outcome?.bytes_out,
        usage: outcome?.usage,
        usage_source: outcome?.usage_source,
        error: outcome?.error,
        provider_code: this.providerCode,
      },
      'relay exchange',
    );
  }

  /**
   * Reads a body up to `cap` bytes. `fail`: a larger body is an error (502);
   * `truncate`: the first `cap` bytes are kept (error answers).
   */
  private async readBody(
    response: UpstreamResponse,
    cap: number,
    mode: 'fail' | 'truncate',
  ): Promise<Buffer> {
    const tooLarge = () =>
      new GatewayError('AIGW_UPSTREAM_ERROR', `the provider's answer is larger than ${cap} bytes`);
    if (mode === 'fail' && Number(headerText(response.headers['content-length'])) > cap) throw tooLarge();
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      this.onChunk();
      if (size + chunk.length > cap) {
        if (mode === 'fail') throw tooLarge();
        chunks.push(chunk.subarray(0, cap - size));
        break;
      }
      chunks.push(chunk);
      size += chunk.length;
    }
    return Buffer.concat(chunks);
  }

  private armIdle(): void {
    clearTimeout(this.idle);
    const idleMs = this.target!.timeouts.idle_ms;
    this.idle = setTimeout(() => this.stop('idle'), idleMs);
  }

  private onChunk(): void {
    clearTimeout(this.firstByte);
    this.idle?.refresh();
  }

  private elapsed(): number {
    return Math.round((performance.now() - this.callStart) * 10) / 10;
  }
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    if (res.destroyed) return resolve();
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
