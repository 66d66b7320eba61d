import type { ServerResponse } from 'node:http';
import type {
  AttemptFailure,
  AttemptRecord,
  ContextStore,
  Endpoint,
  FailoverPlan,
  RelayOutcome,
  RequestContext,
  Target,
  Usage,
} from '../context';
import { type ErrorCode, GatewayError, toGatewayError } from '../errors';
import { SseParser, serializeSse } from '../llm/sse';
import { approximatePromptTokens, countedUsage } from '../llm/usage';
import type { Logger } from '../log/logger';
import { headerSafe, type IncomingHeaders, passThroughHeaders } from './headers';
import { adapterFor, type ProviderAdapter, type StreamStep } from './providers';
import { retryAfterMs } from './retry-after';
import { type Abort, type UpstreamClient, type UpstreamResponse, upstreamFailure } from './upstream';
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
 * One request through the relay: call the chosen targets in turn (one attempt, or as
 * ai-fallback's plan says), answer the client (JSON or SSE), record the outcome in the
 * context and settle it. Every path ends the response.
 *
 * Failover happens while nothing has reached the client: a JSON answer is sent once it is
 * whole, a stream once its first event arrived. After that, a broken stream ends with an
 * SSE error event, or (`midstream: continue`) the next target carries on in the same stream.
 */
export class Exchange {
  private readonly log: Logger;
  private readonly endpoint: Endpoint;
  private readonly plan?: FailoverPlan;
  private readonly stream: boolean;
  /** The current attempt's abort; a new one per attempt. */
  private abort = new AbortController();
  private aborted?: Abort;
  /** Set when no attempt may follow: the client left, or the request deadline passed. */
  private stopped?: Abort;
  private requestTimer?: NodeJS.Timeout;
  private total?: NodeJS.Timeout;
  private firstByte?: NodeJS.Timeout;
  private attemptTimer?: NodeJS.Timeout;
  private idle?: NodeJS.Timeout;
  private target?: Target;
  private outcome?: RelayOutcome;
  private readonly attempts: AttemptRecord[] = [];
  /** Refused before any provider call (unsupported endpoint, no body). */
  private rejected = false;
  /** The current attempt's provider answered 2xx: tokens were spent. */
  private answered = false;
  private callStart = 0;
  private firstWriteMs?: number;
  /** Usage of earlier attempts that spent tokens (a stream continued elsewhere). */
  private spent?: Usage;
  private providerUsage?: Usage;
  private contentChars = 0;
  /** Text already streamed to the client, for `midstream: continue`. */
  private streamedText = '';
  /** This attempt continues a stream another target started: its opening chunk is not sent again. */
  private continuing = false;
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
    this.plan = ctx.failover;
    this.stream = ctx.stream && ctx.endpoint !== 'embeddings';
    this.log = deps.logger.child({ request_id: ctx.requestId });
    // The client (Kong) went away before the answer was complete: stop paying for it.
    res.once('close', () => {
      if (!res.writableFinished) this.halt({ reason: 'client', ms: 0 });
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
      await this.failover(route.targets);
    } catch (err) {
      this.fail(err);
    } finally {
      this.clearTimers();
      clearTimeout(this.requestTimer);
      this.finish();
    }
  }

  /** Tries the targets in order until one answers, as far as the plan allows. */
  private async failover(targets: Target[]): Promise<void> {
    const plan = this.plan;
    const maxAttempts = plan?.maxAttempts ?? 1;
    if (plan) {
      const left = Math.max(0, plan.deadlineAt - Date.now());
      this.requestTimer = setTimeout(() => this.halt({ reason: 'deadline', ms: plan.deadlineMs }), left);
    }
    let lastError: GatewayError | undefined;
    let tries = 0;
    const queue = [...targets];
    let panic = false;
    while (queue.length > 0) {
      const target = queue.shift()!;
      if (tries >= maxAttempts || this.stopped) break;
      if (plan && !panic && !(await plan.admits(target))) {
        this.attempts.push({ target: target.name, failure: 'circuit_open', latency_ms: 0 });
        // Every breaker open: try the first target anyway (Envoy's "panic" rule). Breakers
        // steer traffic to healthy targets; on their own they must not cause an outage.
        if (queue.length === 0 && tries === 0) {
          panic = true;
          queue.push(targets[0]!);
        }
        continue;
      }
      if (plan && !this.fits(target)) {
        this.attempts.push({ target: target.name, failure: 'context_window', latency_ms: 0 });
        lastError = new GatewayError(
          'AIGW_BAD_REQUEST',
          `the prompt and max_tokens do not fit the context window of target ${target.name}`,
          { param: 'messages' },
        );
        if (!plan.triggers({ kind: 'context_window' })) break;
        continue;
      }
      if (tries > 0) {
        if (!plan?.takeRetry()) break; // the retry budget is spent: answer with the last failure
        if (!(await this.backoff(plan.backoffMs(tries + 1)))) break;
      }
      tries++;
      const started = performance.now();
      try {
        await this.call(target);
        plan?.report(target, undefined);
        this.record(target, undefined, started);
        return;
      } catch (err) {
        const error = upstreamFailure(err, target, this.aborted);
        if (this.rejected || this.clientGone() || error.code === 'AIGW_INTERNAL') throw error;
        const failure = this.classify(error);
        plan?.report(target, failure);
        this.record(target, failure, started);
        this.keepSpentUsage();
        lastError = error;
        if (this.res.headersSent) {
          // Mid-stream: the client has part of an answer; carry on elsewhere or say it broke.
          if (plan?.midstream !== 'continue' || this.endpoint !== 'chat.completions') throw error;
          this.continuing = true;
          continue;
        }
        if (this.stopped || !plan?.triggers(failure)) throw error;
      }
    }
    throw (
      lastError ?? new GatewayError('AIGW_UPSTREAM_UNAVAILABLE', 'no target of this request could be tried')
    );
  }

  /** An attempt ended: one entry for the log line and the metrics. */
  private record(target: Target, failure: AttemptFailure | undefined, started: number): void {
    this.attempts.push({
      target: target.name,
      ...(failure ? { failure: failure.kind } : {}),
      ...(this.outcome?.upstream_status !== undefined ? { status: this.outcome.upstream_status } : {}),
      latency_ms: Math.round((performance.now() - started) * 10) / 10,
    });
  }

  /** What kind of failure this is, for the plan's triggers and the target's breaker. */
  private classify(error: GatewayError): AttemptFailure {
    const retryAfter = retryAfterMs(this.upstreamHeaders);
    const status = this.outcome?.upstream_status;
    const base = retryAfter !== undefined ? { retryAfterMs: retryAfter } : {};
    if (error instanceof ProviderError) {
      if (error.providerCode === 'context_length_exceeded')
        return { kind: 'context_window', status, ...base };
      if (error.providerCode === 'content_filter' || error.providerCode === 'content_policy_violation') {
        return { kind: 'content_filter', status, ...base };
      }
      return { kind: 'status', status: error.status, ...base };
    }
    if (error.code === 'AIGW_CONTENT_FILTERED') return { kind: 'content_filter', status, ...base };
    if (error.code === 'AIGW_UPSTREAM_TIMEOUT') return { kind: 'timeout', ...base };
    if (error.code === 'AIGW_UPSTREAM_UNAVAILABLE') return { kind: 'connect', ...base };
    // A malformed answer or a stream that broke: the provider failed like a 502.
    return { kind: 'status', status: 502, ...base };
  }

  /** Estimated prompt + max_tokens against the target's context window, when it has one. */
  private fits(target: Target): boolean {
    if (!target.context_window) return true;
    const body = this.ctx.body;
    const maxTokens = Number(body?.max_completion_tokens ?? body?.max_tokens ?? 0) || 0;
    return approximatePromptTokens(this.endpoint, body) + maxTokens <= target.context_window;
  }

  /** Waits between attempts; false when the wait would pass the deadline or the request stopped. */
  private async backoff(ms: number): Promise<boolean> {
    if (ms <= 0) return !this.stopped;
    if (this.plan && Date.now() + ms >= this.plan.deadlineAt) return false;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.res.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    return !this.stopped;
  }

  private clientGone(): boolean {
    return this.stopped?.reason === 'client';
  }

  /** Stops the attempt in flight; `client` and `deadline` also stop any further attempt. */
  private halt(abort: Abort): void {
    if (abort.reason === 'client' || abort.reason === 'deadline') this.stopped ??= abort;
    this.stop(abort);
  }

  private stop(abort: Abort): void {
    if (this.aborted) return;
    this.aborted = abort;
    this.abort.abort();
  }

  private clearTimers(): void {
    clearTimeout(this.total);
    clearTimeout(this.firstByte);
    clearTimeout(this.attemptTimer);
    clearTimeout(this.idle);
  }

  /** The attempt has started its answer to the client (or finished it): its time limit is met. */
  private committed(): void {
    clearTimeout(this.attemptTimer);
    clearTimeout(this.requestTimer);
  }

  /** Tokens an earlier attempt spent stay on the bill when another target continues. */
  private keepSpentUsage(): void {
    if (!this.answered) return;
    const used = this.providerUsage ?? countedUsage(this.endpoint, this.ctx.body, this.contentChars);
    this.spent = addUsage(this.spent, used);
  }

  /** One attempt at one target; throws on failure, with nothing sent to the client unless committed. */
  private async call(target: Target): Promise<void> {
    const { endpoint, stream } = this;
    this.beginAttempt(target);
    const adapter = adapterFor(target.provider);
    if (!adapter) throw this.reject('AIGW_CONFIG_INVALID', `no adapter for provider ${target.provider}`);
    if (!adapter.supports(endpoint)) {
      throw this.reject(
        'AIGW_UNSUPPORTED_FEATURE',
        `${endpoint} is not supported by provider ${target.provider}`,
      );
    }
    const body = this.continuing ? this.continuationBody() : this.ctx.body;
    if (!body) throw this.reject('AIGW_BAD_REQUEST', 'the request has no JSON body');

    const request = adapter.buildRequest(endpoint, body, target, { stream });
    // Own timers, because undici's headersTimeout/bodyTimeout tick at about one second
    // (its coarse "fast timers"); they stay set below as a backstop. The first-byte timer
    // runs until the first body byte, so a stream whose headers come early is covered too.
    this.arm('total', target.timeouts.total_ms);
    this.arm('first_byte', Math.min(target.timeouts.first_byte_ms, this.plan?.ttftTimeoutMs ?? Infinity));
    if (this.plan?.attemptTimeoutMs !== undefined && !this.res.headersSent) {
      this.arm('attempt', this.plan.attemptTimeoutMs);
    }
    this.callStart = performance.now();
    let response: UpstreamResponse | undefined;
    try {
      response = await this.deps.upstream.request(target, request, this.abort.signal);
      this.outcome!.upstream_status = response.statusCode;
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
    } finally {
      this.clearTimers();
      // Unread bodies (early failures) must not hold the connection. undici reports the
      // destroy of an unread body as an 'error' event, which nobody else listens to.
      if (response && !response.body.destroyed && !this.drainingAfterDone) {
        response.body.on('error', () => {});
        response.body.destroy();
      }
    }
  }

  /** Fresh per-attempt state; the outcome names the target now being tried. */
  private beginAttempt(target: Target): void {
    this.target = target;
    this.abort = new AbortController();
    this.aborted = undefined;
    this.answered = false;
    this.providerUsage = undefined;
    this.contentChars = 0;
    this.upstreamHeaders = {};
    this.providerCode = undefined;
    const previous = this.outcome;
    this.outcome = {
      target: target.name,
      provider: target.provider,
      model: target.model,
      status: 0,
      stream: this.stream,
      started_at: previous?.started_at ?? Date.now(),
      bytes_out: previous?.bytes_out ?? 0,
      end: 'complete',
      ...(previous?.ttft_ms !== undefined ? { ttft_ms: previous.ttft_ms } : {}),
      ...(previous?.response_model !== undefined ? { response_model: previous.response_model } : {}),
    };
    this.ctx.outcome = this.outcome;
  }

  private arm(reason: 'total' | 'first_byte' | 'attempt', ms: number): void {
    const timer = setTimeout(() => this.stop({ reason, ms }), ms);
    if (reason === 'total') this.total = timer;
    else if (reason === 'first_byte') this.firstByte = timer;
    else this.attemptTimer = timer;
  }

  /** The request again, with what the client already has as the assistant's words to continue. */
  private continuationBody(): Record<string, unknown> | undefined {
    const body = this.ctx.body;
    if (!body) return undefined;
    const messages = Array.isArray(body.messages) ? body.messages : [];
    return { ...body, messages: [...messages, { role: 'assistant', content: this.streamedText }] };
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
    if (
      this.plan?.triggers({ kind: 'content_filter', status: 200 }) &&
      finishedBy(parsed.body, 'content_filter')
    ) {
      throw new GatewayError('AIGW_CONTENT_FILTERED', `target ${this.target!.name} filtered the answer`);
    }
    this.committed();

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
    if (this.plan?.midstream === 'continue' && step.content) this.streamedText += step.content;
    // A continuation's opening chunk (role only) would repeat what the client already has.
    if (this.continuing && !step.content && !step.done && step.usage === undefined) return false;
    this.continuing = false;
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
      this.committed();
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

  private failedAttempts(): number {
    return this.attempts.filter((a) => a.failure !== undefined && a.failure !== 'circuit_open').length;
  }

  private exposeHeaders(): Record<string, string> {
    const target = this.target;
    if (!target) return {};
    if (!this.ctx.route?.exposeTarget) {
      return this.plan?.exposeHeaders ? { 'x-ai-fallback-count': String(this.failedAttempts()) } : {};
    }
    const headers: Record<string, string> = {};
    const name = headerSafe(target.name);
    const model = headerSafe(this.outcome?.response_model ?? target.model);
    if (name !== undefined) headers['x-ai-target'] = name;
    if (model !== undefined) headers['x-ai-model'] = model;
    if (this.plan?.exposeHeaders) headers['x-ai-fallback-count'] = String(this.failedAttempts());
    return headers;
  }

  private fail(err: unknown): void {
    const outcome = this.outcome;
    if (this.clientGone()) {
      // Not a failure of the gateway or the provider: nobody is left to answer.
      if (outcome) outcome.end = 'client_aborted';
      return;
    }
    const error = toGatewayError(err);
    // The failure may come from any attempt: scrub every key of the route.
    let message = error.message;
    for (const t of this.ctx.route?.targets ?? []) {
      if (t.api_key) message = scrubProviderText(message, t.api_key);
    }
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
        outcome.usage = addUsage(this.spent, this.providerUsage);
        outcome.usage_source = 'provider';
      } else if (this.answered) {
        outcome.usage = addUsage(this.spent, countedUsage(this.endpoint, this.ctx.body, this.contentChars));
        outcome.usage_source = 'counted';
      } else if (this.spent) {
        outcome.usage = this.spent;
        outcome.usage_source = 'counted';
      }
      if (this.attempts.length > 1) outcome.attempts = this.attempts;
      if (this.plan) outcome.fallbacks = this.failedAttempts();
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
        attempts: outcome?.attempts,
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
    const ms = this.target!.timeouts.idle_ms;
    this.idle = setTimeout(() => this.stop({ reason: 'idle', ms }), ms);
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

function addUsage(a: Usage | undefined, b: Usage): Usage {
  if (!a) return b;
  return {
    input_tokens: a.input_tokens + b.input_tokens,
    output_tokens: a.output_tokens + b.output_tokens,
    total_tokens: a.total_tokens + b.total_tokens,
  };
}

/** An OpenAI-format answer whose first choice ended for this reason. */
function finishedBy(body: unknown, reason: string): boolean {
  const choices = (body as { choices?: unknown } | null)?.choices;
  const first = Array.isArray(choices) ? (choices[0] as { finish_reason?: unknown } | undefined) : undefined;
  return first?.finish_reason === reason;
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
