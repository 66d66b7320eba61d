import type { ServerResponse } from 'node:http';
import type {
  AttemptFailure,
  AttemptRecord,
  ContextStore,
  Endpoint,
  FailoverPlan,
  RelayEnd,
  RelayOutcome,
  RequestContext,
  Target,
  Usage,
} from '../context';
import { type ErrorCode, GatewayError, toGatewayError } from '../errors';
import type { TargetLoad } from '../health/target-load';
import { serializeSse } from '../llm/sse';
import { countOutputTokens } from '../llm/tokens';
import { approximateTokens, countedUsage } from '../llm/usage';
import type { Logger } from '../log/logger';
import { AnswerRecorder } from './answer-recorder';
import { Attempt, headerText } from './attempt';
import { headerSafe, passThroughHeaders } from './headers';
import {
  adapterFor,
  type ParsedResponse,
  type ProviderAdapter,
  type StreamStep,
  type UpstreamRequest,
} from './providers';
import { retryAfterMs } from './retry-after';
import { type Abort, type UpstreamClient, upstreamFailure } from './upstream';
import { ProviderError, scrubProviderText } from './upstream-error';

/** Attempts that never failed at a provider: skipped, or cancelled because another answered. */
const NOT_TRIED = new Set(['circuit_open', 'budget', 'cancelled']);

export interface ExchangeDeps {
  contexts: ContextStore;
  upstream: UpstreamClient;
  logger: Logger;
  maxResponseBytes: number;
  load: TargetLoad;
}

/** An attempt whose answer is ready for the client: a whole JSON answer, or a stream's first events. */
type Ready =
  | { kind: 'json'; bytes: Buffer; json: unknown; parsed: ParsedResponse }
  | { kind: 'stream'; first: StreamStep[]; rest: AsyncGenerator<StreamStep> };

/** How a racing attempt ended its preparation. */
type Settled = { attempt: Attempt; ready: Ready; readyMs: number } | { attempt: Attempt; error: unknown };

/**
 * One request through the relay: call the chosen targets (one attempt, or as ai-fallback's
 * plan says: in turn, or a hedge racing a slow first attempt), answer the client (JSON or
 * SSE), record the outcome in the context and settle it. Every path ends the response.
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
  /** Attempts whose calls may still be open. */
  private readonly live = new Set<Attempt>();
  /** Attempts whose end was recorded (log line, target load). */
  private readonly recorded = new Set<Attempt>();
  private readonly attempts: AttemptRecord[] = [];
  /** The attempt whose answer the client gets (or got part of). */
  private answering?: Attempt;
  /** The attempt that ended last, for the outcome when none answered. */
  private last?: Attempt;
  /** Set when no attempt may follow: the client left, or the request deadline passed. */
  private stopped?: Abort;
  private deadlineTimer?: NodeJS.Timeout;
  /** Refused before any provider call (unsupported endpoint, no body). */
  private rejected = false;
  private ending: RelayEnd = 'complete';
  private error?: { code: ErrorCode; message: string };
  private readonly startedAt = Date.now();
  private firstCallAt?: number;
  private firstWriteAt?: number;
  private bytesOut = 0;
  /** Usage of attempts that spent tokens without giving the answer (broken, or a losing hedge). */
  private spent?: Usage;
  /** Text already streamed to the client, for `midstream: continue`. */
  private streamedText = '';
  /** Keeps the answer when a policy asked for it (ctx.recordAnswer). */
  private readonly recorder?: AnswerRecorder;

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
    if (ctx.recordAnswer) this.recorder = new AnswerRecorder(ctx.recordAnswer.maxBytes);
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
      clearTimeout(this.deadlineTimer);
      for (const attempt of this.live) {
        attempt.end();
        // An attempt still racing when the request ended (a hedge, the client gone) is no longer in flight.
        if (!this.recorded.has(attempt)) this.deps.load.ended(attempt.target, { ok: false });
      }
      this.finish();
    }
  }

  /**
   * Tries the targets in order until one answers, as far as the plan allows: attempts,
   * retry budget, backoff, deadline, breakers, and one hedge when the first attempt is slow.
   */
  private async failover(targets: Target[]): Promise<void> {
    const plan = this.plan;
    const maxAttempts = plan?.maxAttempts ?? 1;
    if (plan) {
      const left = Math.max(0, plan.deadlineAt - Date.now());
      this.deadlineTimer = setTimeout(() => this.halt({ reason: 'deadline', ms: plan.deadlineMs }), left);
    }
    const queue = [...targets];
    const racing = new Map<Attempt, Promise<Settled>>();
    let launched = 0;
    let panic = false;
    let hedged = false;
    let continuing = false;
    let lastError: GatewayError | undefined;

    /** The next target that may be tried now; records the ones skipped. */
    const pick = async (): Promise<Target | undefined> => {
      while (queue.length > 0) {
        const target = queue.shift()!;
        if (plan && !(await plan.admits(target, panic))) {
          this.attempts.push({ target: target.name, failure: 'circuit_open', latency_ms: 0 });
          // Every breaker open: try the first target anyway (Envoy's "panic" rule). Breakers
          // steer traffic to healthy targets; on their own they must not cause an outage.
          if (queue.length === 0 && launched === 0) {
            panic = true;
            queue.push(targets[0]!);
          }
          continue;
        }
        const budget = this.ctx.budget;
        if (budget && target !== targets[0] && !(await budget.retarget(target))) {
          // A pricier fallback the budget cannot cover is skipped, like an open breaker.
          this.attempts.push({ target: target.name, failure: 'budget', latency_ms: 0 });
          lastError ??= new GatewayError(
            'AIGW_BUDGET_EXCEEDED',
            `the budget left does not cover fallback target ${target.name}`,
          );
          continue;
        }
        if (plan && !this.fits(target)) {
          this.attempts.push({ target: target.name, failure: 'context_window', latency_ms: 0 });
          lastError = new GatewayError(
            'AIGW_BAD_REQUEST',
            `the prompt and max_tokens do not fit the context window of target ${target.name}`,
            { param: 'messages' },
          );
          if (!plan.triggers({ kind: 'context_window' })) return undefined;
          continue;
        }
        return target;
      }
      return undefined;
    };

    const launch = (target: Target, hedge: boolean) => {
      const attempt = new Attempt(target, this.endpoint, this.deps.upstream, hedge);
      this.deps.load.started(target);
      this.live.add(attempt);
      this.firstCallAt ??= attempt.startedAt;
      launched++;
      racing.set(
        attempt,
        this.prepare(attempt, continuing).then(
          (ready) => ({ attempt, ready, readyMs: performance.now() - attempt.startedAt }),
          (error: unknown) => ({ attempt, error }),
        ),
      );
    };

    for (;;) {
      if (racing.size === 0) {
        if (this.stopped || launched >= maxAttempts) break;
        const target = await pick();
        if (!target) break;
        if (launched > 0) {
          if (!plan?.takeRetry()) break; // the retry budget is spent: answer with the last failure
          if (!(await this.backoff(plan.backoffMs(launched + 1)))) break;
        }
        launch(target, false);
      }
      const mayHedge =
        !hedged && racing.size === 1 && queue.length > 0 && launched < maxAttempts && !this.res.headersSent;
      const settled = await this.next(racing, mayHedge ? this.hedgeDelay([...racing.keys()][0]!) : undefined);
      if (settled === 'hedge') {
        hedged = true; // one hedge per request, taken or not
        const target = !this.stopped ? await pick() : undefined;
        if (target && plan?.takeRetry()) launch(target, true);
        else if (target) queue.unshift(target);
        continue;
      }
      racing.delete(settled.attempt);
      const { attempt } = settled;
      if ('ready' in settled) {
        // The first answer wins; a hedge still running is cancelled.
        for (const other of racing.keys()) this.cancel(other);
        racing.clear();
        try {
          await this.deliver(attempt, settled.ready);
          this.succeeded(attempt, settled.readyMs);
          return;
        } catch (err) {
          // The answer broke after it reached the client: carry on elsewhere, or say it broke.
          lastError = this.failed(attempt, err);
          if (this.clientGone() || lastError.code === 'AIGW_INTERNAL') throw lastError;
          if (plan?.midstream !== 'continue' || this.endpoint !== 'chat.completions') throw lastError;
          continuing = true;
          continue;
        }
      }
      lastError = this.failed(attempt, settled.error);
      if (this.rejected || this.clientGone() || lastError.code === 'AIGW_INTERNAL') throw lastError;
      if (this.res.headersSent) continue; // a continuation failed: the next target may carry on
      if (this.stopped || !plan?.triggers(this.classify(attempt, lastError))) throw lastError;
    }
    throw (
      lastError ?? new GatewayError('AIGW_UPSTREAM_UNAVAILABLE', 'no target of this request could be tried')
    );
  }

  /** The first racing attempt to settle, or `hedge` when the hedge delay passes first. */
  private next(
    racing: Map<Attempt, Promise<Settled>>,
    hedgeMs: number | undefined,
  ): Promise<Settled | 'hedge'> {
    if (hedgeMs === undefined) return Promise.race(racing.values());
    let timer: NodeJS.Timeout | undefined;
    const hedge = new Promise<'hedge'>((resolve) => {
      timer = setTimeout(() => resolve('hedge'), hedgeMs);
    });
    return Promise.race([...racing.values(), hedge]).finally(() => clearTimeout(timer));
  }

  /** How long the running attempt may take before a hedge is sent; undefined: no hedge. */
  private hedgeDelay(attempt: Attempt): number | undefined {
    const after = this.plan?.hedgeAfterMs(attempt.target);
    if (after === undefined) return undefined;
    return Math.max(0, after - (performance.now() - attempt.startedAt));
  }

  /**
   * One attempt until its answer is ready for the client: sent, and the JSON answer whole or
   * the stream's first events read. Nothing reaches the client here.
   */
  private async prepare(attempt: Attempt, continuing: boolean): Promise<Ready> {
    const { endpoint, stream } = this;
    const target = attempt.target;
    const adapter = adapterFor(target.provider);
    if (!adapter) {
      throw this.reject(
        new GatewayError('AIGW_CONFIG_INVALID', `no adapter for provider ${target.provider}`),
      );
    }
    if (!adapter.supports(endpoint)) {
      throw this.reject(
        new GatewayError(
          'AIGW_UNSUPPORTED_FEATURE',
          `${endpoint} is not supported by target ${target.name} (${target.provider})`,
        ),
      );
    }
    const body = continuing ? this.continuationBody() : this.ctx.body;
    if (!body) throw this.reject(new GatewayError('AIGW_BAD_REQUEST', 'the request has no JSON body'));

    // An untrusted target gets the prompt with personal data masked, and its answer is restored.
    const redactor = target.trusted === false ? this.ctx.route?.redactor : undefined;
    const masked = redactor?.mask(endpoint, body);
    const built = this.buildRequest(adapter, masked?.body ?? body, target);
    const request = adapter.sign ? await adapter.sign(built, target) : built;
    await attempt.send(request, adapter, {
      ttftMs: this.plan?.ttftTimeoutMs,
      // Once the client has part of the answer, its time limit was met.
      attemptMs: this.res.headersSent ? undefined : this.plan?.attemptTimeoutMs,
    });
    if (!stream) {
      const { bytes, json } = await attempt.readJson(this.deps.maxResponseBytes);
      const parsed = adapter.parseResponse(endpoint, json, {
        model: target.model,
        base64Embeddings: body.encoding_format === 'base64',
      });
      if (masked) parsed.body = redactor!.restoreAnswer(parsed.body, masked.vault);
      attempt.usage = parsed.usage;
      attempt.contentChars = parsed.contentChars;
      attempt.responseModel = parsed.model;
      if (
        this.plan?.triggers({ kind: 'content_filter', status: 200 }) &&
        finishedBy(parsed.body, 'content_filter')
      ) {
        throw new GatewayError('AIGW_CONTENT_FILTERED', `target ${target.name} filtered the answer`);
      }
      return { kind: 'json', bytes, json, parsed };
    }
    const options = body.stream_options as { include_usage?: unknown } | null | undefined;
    const clientWantsUsage = typeof options === 'object' && options?.include_usage === true;
    const translator = adapter.streamTranslator(endpoint, { clientWantsUsage, model: target.model });
    const rest = attempt.steps(
      masked ? redactor!.restoringTranslator(translator, masked.vault) : translator,
      this.deps.maxResponseBytes,
      adapter.eventDecoder?.(),
    );
    const first: StreamStep[] = [];
    for (;;) {
      const { value: step, done } = await rest.next();
      if (done) throw new GatewayError('AIGW_STREAM_BROKEN', 'the provider ended the stream without [DONE]');
      // A continuation's opening chunk (role only) would repeat what the client already has.
      if (continuing && !step.content && !step.done && step.usage === undefined) continue;
      first.push(step);
      if (step.emit.length > 0 || step.done) return { kind: 'stream', first, rest };
    }
  }

  /** Sends a ready answer to the client; throws when a stream breaks on the way. */
  private async deliver(attempt: Attempt, ready: Ready): Promise<void> {
    this.answering = attempt;
    if (ready.kind === 'stream') {
      for (const step of ready.first) if (await this.forward(attempt, step)) return;
      for await (const step of ready.rest) if (await this.forward(attempt, step)) return;
      return;
    }
    this.commit(attempt);
    // An untranslated answer goes out as the provider's bytes.
    const passthrough = ready.parsed.body === ready.json;
    const out = passthrough ? ready.bytes : Buffer.from(JSON.stringify(ready.parsed.body));
    const upstreamType = headerText(attempt.headers['content-type']);
    this.res.writeHead(attempt.status!, {
      ...passThroughHeaders(attempt.headers),
      ...this.ctx.responseHeaders,
      ...this.exposeHeaders(),
      'content-type': passthrough && upstreamType?.includes('json') ? upstreamType : 'application/json',
      'content-length': String(out.length),
    });
    this.res.end(out);
    this.bytesOut = out.length;
    this.recorder?.json(ready.parsed.body, out.length);
  }

  /** Writes one stream step; true once the stream is complete and ended. */
  private async forward(attempt: Attempt, step: StreamStep): Promise<boolean> {
    if (this.plan?.midstream === 'continue' && step.content) this.streamedText += step.content;
    for (const text of step.emit) await this.write(attempt, text);
    if (step.done) this.res.end();
    return step.done === true;
  }

  /** One write per event, as soon as it is known: no batching, so tokens reach the client live. */
  private async write(attempt: Attempt, text: string): Promise<void> {
    if (this.res.destroyed) return; // client gone; the abort ends the upstream loop
    if (!this.res.headersSent) {
      this.res.writeHead(200, {
        ...passThroughHeaders(attempt.headers),
        ...this.ctx.responseHeaders,
        ...this.exposeHeaders(),
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        // nginx (Kong) would otherwise buffer the stream.
        'x-accel-buffering': 'no',
      });
      this.firstWriteAt = performance.now();
      this.commit(attempt);
    }
    this.bytesOut += Buffer.byteLength(text);
    this.recorder?.stream(text);
    if (!this.res.write(text)) {
      // Waiting for a slow client is not provider silence: no idle timeout meanwhile.
      attempt.pauseIdle();
      await drained(this.res);
      attempt.armIdle();
    }
  }

  /** The answer has started reaching the client: the attempt's and the request's time limits are met. */
  private commit(attempt: Attempt): void {
    attempt.committed();
    clearTimeout(this.deadlineTimer);
  }

  /** An attempt that failed: recorded, reported to its breaker, its spent tokens kept. */
  private failed(attempt: Attempt, err: unknown): GatewayError {
    const error = upstreamFailure(err, attempt.target, attempt.aborted);
    attempt.end();
    this.last = attempt;
    if (this.rejected || this.clientGone() || error.code === 'AIGW_INTERNAL') return error;
    const failure = this.classify(attempt, error);
    this.plan?.report(attempt.target, failure);
    this.record(attempt, failure.kind);
    this.keepSpentUsage(attempt);
    return error;
  }

  /** The attempt that answered: reported as a success, with how long its answer took to be ready. */
  private succeeded(attempt: Attempt, readyMs: number): void {
    attempt.end();
    this.plan?.report(attempt.target, undefined, readyMs);
    this.record(attempt, undefined);
  }

  /** A hedge that lost the race (or the attempt it raced): stopped, its tokens kept on the bill. */
  private cancel(attempt: Attempt): void {
    attempt.stop({ reason: 'cancelled', ms: 0 });
    attempt.end();
    this.record(attempt, 'cancelled');
    this.keepSpentUsage(attempt);
  }

  /** An attempt ended: one entry for the log line and the metrics, one sample for the target's load. */
  private record(attempt: Attempt, failure: AttemptRecord['failure']): void {
    this.recorded.add(attempt);
    const end = performance.now();
    const first = attempt.firstContentAt;
    this.deps.load.ended(attempt.target, {
      ok: failure === undefined,
      ...(first !== undefined ? { ttftMs: first - attempt.startedAt } : {}),
      ...(this.stream && first !== undefined ? { streamMs: end - first } : {}),
      ...(attempt.usage ? { outputTokens: attempt.usage.output_tokens } : {}),
      ...(attempt.headers ? { headers: attempt.headers } : {}),
      ...(attempt.status !== undefined ? { status: attempt.status } : {}),
      ...(attempt.status === 429 && attempt.headers
        ? { retryAfterMs: retryAfterMs(attempt.headers, { spentLimits: true }) }
        : {}),
    });
    this.attempts.push({
      target: attempt.target.name,
      ...(failure ? { failure } : {}),
      ...(attempt.status !== undefined ? { status: attempt.status } : {}),
      ...(attempt.hedge ? { hedge: true } : {}),
      latency_ms: round(performance.now() - attempt.startedAt),
    });
  }

  /** What kind of failure this is, for the plan's triggers and the target's breaker. */
  private classify(attempt: Attempt, error: GatewayError): AttemptFailure {
    const retryAfter = retryAfterMs(attempt.headers, { spentLimits: attempt.status === 429 });
    const status = attempt.status;
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
    return this.ctx.promptTokens(target.model).tokens + maxTokens <= target.context_window;
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

  /** The client left or the deadline passed: every open call stops, and no attempt follows. */
  private halt(abort: Abort): void {
    this.stopped ??= abort;
    for (const attempt of this.live) attempt.stop(abort);
  }

  /** Tokens an attempt spent stay on the bill when another target gives the answer. */
  private keepSpentUsage(attempt: Attempt): void {
    if (!attempt.answered) return;
    this.spent = addUsage(this.spent, this.usageOf(attempt));
  }

  private usageOf(attempt: Attempt): Usage {
    if (attempt.usage) return attempt.usage;
    const model = attempt.target.model;
    const answer = attempt.text
      ? countOutputTokens(attempt.text, model)
      : approximateTokens(attempt.contentChars);
    return countedUsage(this.endpoint, this.ctx.promptTokens(model).tokens, answer);
  }

  /** The request again, with what the client already has as the assistant's words to continue. */
  private continuationBody(): Record<string, unknown> | undefined {
    const body = this.ctx.body;
    if (!body) return undefined;
    const messages = Array.isArray(body.messages) ? body.messages : [];
    return { ...body, messages: [...messages, { role: 'assistant', content: this.streamedText }] };
  }

  /** The provider's request; a feature the provider cannot serve refuses the request (400), no failover. */
  private buildRequest(
    adapter: ProviderAdapter,
    body: Record<string, unknown>,
    target: Target,
  ): UpstreamRequest {
    try {
      return adapter.buildRequest(this.endpoint, body, target, { stream: this.stream });
    } catch (err) {
      // What the client asked is wrong or cannot be served here: its own 400, no failover.
      if (
        err instanceof GatewayError &&
        (err.code === 'AIGW_UNSUPPORTED_FEATURE' || err.code === 'AIGW_BAD_REQUEST')
      ) {
        throw this.reject(err);
      }
      throw err;
    }
  }

  private reject(error: GatewayError): GatewayError {
    this.rejected = true;
    return error;
  }

  private failedAttempts(): number {
    return this.attempts.filter((a) => a.failure !== undefined && !NOT_TRIED.has(a.failure)).length;
  }

  private exposeHeaders(): Record<string, string> {
    const attempt = this.answering ?? this.last;
    if (!attempt) return {};
    const count: Record<string, string> = this.plan?.exposeHeaders
      ? { 'x-ai-fallback-count': String(this.failedAttempts()) }
      : {};
    if (!this.ctx.route?.exposeTarget) return count;
    const headers: Record<string, string> = {};
    const name = headerSafe(attempt.target.name);
    const model = headerSafe(attempt.responseModel ?? attempt.target.model);
    if (name !== undefined) headers['x-ai-target'] = name;
    if (model !== undefined) headers['x-ai-model'] = model;
    headers['x-ai-provider'] = attempt.target.provider;
    return { ...headers, ...count };
  }

  private fail(err: unknown): void {
    if (this.clientGone()) {
      // Not a failure of the gateway or the provider: nobody is left to answer.
      this.ending = 'client_aborted';
      return;
    }
    const error = toGatewayError(err);
    // The failure may come from any attempt: scrub every key of the route.
    let message = error.message;
    for (const t of this.ctx.route?.targets ?? []) {
      for (const secret of [t.api_key, t.aws?.secret_access_key, t.aws?.session_token]) {
        if (secret) message = scrubProviderText(message, secret);
      }
    }
    if (error.code === 'AIGW_INTERNAL') this.log.error({ err: error.cause }, 'relay failed');

    const broken = this.res.headersSent;
    this.ending = this.rejected
      ? 'rejected'
      : broken
        ? 'stream_broken'
        : error.code === 'AIGW_UPSTREAM_TIMEOUT'
          ? 'timeout'
          : 'upstream_error';
    this.error = { code: broken ? 'AIGW_STREAM_BROKEN' : error.code, message };
    if (this.res.destroyed) return;

    if (broken) {
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
      this.bytesOut += Buffer.byteLength(event);
      this.res.end(event);
      return;
    }
    const json = error.toJSON();
    json.error.message = message;
    const body = JSON.stringify(json);
    this.res.writeHead(error.status, {
      ...passThroughHeaders(this.last?.headers ?? {}),
      ...this.ctx.responseHeaders,
      ...this.exposeHeaders(),
      ...error.headers,
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(body)),
    });
    this.res.end(body);
    this.bytesOut = Buffer.byteLength(body);
  }

  /** Records what happened in the context (for the log phase), and settles it. */
  private finish(): void {
    const outcome = this.outcome();
    if (outcome) this.ctx.outcome = outcome;
    for (const err of this.ctx.runOutcomeHooks()) this.log.warn({ err }, 'an outcome hook failed');
    this.deps.contexts.settle(this.ctx);
    // Metadata only: never keys, prompts or answers.
    const { started_at: _, answer: _answer, ...fields } = outcome ?? {};
    this.log.debug(
      {
        endpoint: this.endpoint,
        ...fields,
        status: outcome?.status ?? this.res.statusCode,
        provider_code: (this.answering ?? this.last)?.providerCode,
      },
      'relay exchange',
    );
  }

  private outcome(): RelayOutcome | undefined {
    const attempt = this.answering ?? this.last;
    if (!attempt) return undefined;
    const target = attempt.target;
    const since = (t: number | undefined) =>
      t !== undefined && this.firstCallAt !== undefined ? round(t - this.firstCallAt) : undefined;
    const outcome: RelayOutcome = {
      target: target.name,
      provider: target.provider,
      model: target.model,
      // 499: the client closed before any answer, as nginx logs it.
      status: this.res.headersSent ? this.res.statusCode : 499,
      stream: this.stream,
      started_at: this.startedAt,
      latency_ms: since(performance.now()) ?? 0,
      bytes_out: this.bytesOut,
      end: this.ending,
    };
    if (attempt.responseModel !== undefined) outcome.response_model = attempt.responseModel;
    if (attempt.status !== undefined) outcome.upstream_status = attempt.status;
    const ttft = since(this.answering?.firstContentAt) ?? since(this.firstWriteAt);
    if (ttft !== undefined) outcome.ttft_ms = ttft;
    if (this.error) outcome.error = this.error;
    if (this.answering?.answered) {
      outcome.usage = addUsage(this.spent, this.usageOf(this.answering));
      outcome.usage_source = this.answering.usage ? 'provider' : 'counted';
    } else if (this.spent) {
      outcome.usage = this.spent;
      outcome.usage_source = 'counted';
    }
    if (this.attempts.length > 1) outcome.attempts = this.attempts;
    if (this.plan) outcome.fallbacks = this.failedAttempts();
    const answer = this.ending === 'complete' && outcome.status === 200 ? this.recorder?.result() : undefined;
    if (answer) outcome.answer = answer;
    return outcome;
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

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
