import type { Endpoint, Target, Usage } from '../context';
import { GatewayError } from '../errors';
import { SseParser } from '../llm/sse';
import type { IncomingHeaders } from './headers';
import type {
  EventDecoder,
  ProviderAdapter,
  StreamStep,
  StreamTranslator,
  UpstreamRequest,
} from './providers';
import type { Abort, UpstreamClient, UpstreamResponse } from './upstream';
import { ProviderError } from './upstream-error';

/** Error answers are small; a provider that sends megabytes of HTML is cut here. */
const ERROR_BODY_BYTES = 64 * 1024;

export interface AttemptTimeouts {
  /** Time to the first byte of the answer (ai-fallback's `ttft_timeout_ms`), within the target's own. */
  ttftMs?: number;
  /** Time to start the answer (ai-fallback's `attempt_timeout_ms`); cleared by `committed`. */
  attemptMs?: number;
}

/**
 * One call to one target: its own abort, timers, and what the provider said and spent. An
 * attempt only talks to its provider; the exchange decides which attempt answers the client
 * (several may run at once when ai-fallback hedges).
 */
export class Attempt {
  private readonly controller = new AbortController();
  /** Why the relay stopped this call, if it did. */
  aborted?: Abort;
  /** The provider's HTTP status. */
  status?: number;
  headers: IncomingHeaders = {};
  /** The provider's error code (`context_length_exceeded`...), for the log. */
  providerCode?: string;
  /** The provider answered 2xx: tokens are being spent. */
  answered = false;
  /** Usage as the provider reported it. */
  usage?: Usage;
  /** Characters of generated text seen, for counting usage when the provider reports none. */
  contentChars = 0;
  /** The streamed text (first choice), counted when the provider reports no usage. */
  text = '';
  /** Model the provider says answered. */
  responseModel?: string;
  /** When the first generated text (stream) or the answer's headers (JSON) arrived (performance.now()). */
  firstContentAt?: number;
  readonly startedAt = performance.now();
  private response?: UpstreamResponse;
  /** [DONE] came: the rest of the body is read in the background, to keep the connection. */
  private draining = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private attemptTimer?: NodeJS.Timeout;
  private firstByte?: NodeJS.Timeout;
  private idle?: NodeJS.Timeout;

  constructor(
    readonly target: Target,
    readonly endpoint: Endpoint,
    private readonly upstream: UpstreamClient,
    /** Started as a hedge, racing the attempt before it. */
    readonly hedge = false,
  ) {}

  /** Stops the call; the first reason given is the one reported. */
  stop(abort: Abort): void {
    if (this.aborted) return;
    this.aborted = abort;
    this.controller.abort();
  }

  /** Sends the request; returns on a 2xx answer, throws the provider's error otherwise. */
  async send(request: UpstreamRequest, adapter: ProviderAdapter, timeouts: AttemptTimeouts): Promise<void> {
    const t = this.target.timeouts;
    // Own timers, because undici's headersTimeout/bodyTimeout tick at about one second
    // (its coarse "fast timers"); they stay set as a backstop. The first-byte timer runs
    // until the first body byte, so a stream whose headers come early is covered too.
    this.timers.push(this.after(t.total_ms, 'total'));
    this.firstByte = this.after(Math.min(t.first_byte_ms, timeouts.ttftMs ?? Infinity), 'first_byte');
    if (timeouts.attemptMs !== undefined) this.attemptTimer = this.after(timeouts.attemptMs, 'attempt');
    const response = await this.upstream.request(this.target, request, this.controller.signal);
    this.response = response;
    this.status = response.statusCode;
    this.headers = response.headers;
    this.armIdle();
    if (response.statusCode >= 400) {
      const text = (await this.readBody(ERROR_BODY_BYTES, 'truncate')).toString('utf8');
      const error = adapter.parseError(response.statusCode, text, response.headers);
      if (error instanceof ProviderError) this.providerCode = error.providerCode;
      throw error;
    }
    if (response.statusCode < 200 || response.statusCode >= 300) {
      // A redirect or 1xx means a wrong base_url; passing it on would confuse the client.
      throw new GatewayError('AIGW_UPSTREAM_PROTOCOL', `the provider answered HTTP ${response.statusCode}`);
    }
    this.answered = true;
  }

  /** The whole JSON answer, parsed. */
  async readJson(maxBytes: number): Promise<{ bytes: Buffer; json: unknown }> {
    this.firstContentAt = performance.now();
    const bytes = await this.readBody(maxBytes, 'fail');
    try {
      return { bytes, json: JSON.parse(bytes.toString('utf8')) };
    } catch {
      throw new GatewayError('AIGW_UPSTREAM_PROTOCOL', 'the provider answered with a body that is not JSON');
    }
  }

  /**
   * The answer's events, translated, each as soon as it is parsed; ends after the step that
   * completes the stream. Throws when the stream breaks, reports an error, or ends early.
   */
  async *steps(
    translator: StreamTranslator,
    maxEventBytes: number,
    parser: EventDecoder = new SseParser(),
  ): AsyncGenerator<StreamStep> {
    const response = this.response!;
    if (headerText(response.headers['content-type'])?.includes('json')) {
      throw new GatewayError(
        'AIGW_UPSTREAM_PROTOCOL',
        'the provider answered a stream request without an event stream',
      );
    }
    // Leaving the loop at [DONE] must not destroy the body: undici would drop the connection.
    const chunks = response.body.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>;
    for await (const chunk of chunks) {
      this.onChunk();
      for (const event of parser.push(chunk)) {
        const step = this.account(translator.onEvent(event));
        // The consumer may stop at the last step: drain before handing it over.
        if (step.done) this.drain();
        yield step;
        if (step.done) return;
      }
      if (parser.pendingLength > maxEventBytes) {
        throw new GatewayError(
          'AIGW_STREAM_BROKEN',
          `the provider sent a stream event over ${maxEventBytes} bytes`,
        );
      }
    }
    for (const event of parser.end()) {
      const step = this.account(translator.onEvent(event));
      yield step;
      if (step.done) return;
    }
    throw new GatewayError('AIGW_STREAM_BROKEN', 'the provider ended the stream without [DONE]');
  }

  /** The answer has started reaching the client: the attempt's time limit is met. */
  committed(): void {
    clearTimeout(this.attemptTimer);
  }

  /** A slow client is not provider silence: no idle timeout while the client drains. */
  pauseIdle(): void {
    clearTimeout(this.idle);
  }

  armIdle(): void {
    clearTimeout(this.idle);
    const ms = this.target.timeouts.idle_ms;
    this.idle = setTimeout(() => this.stop({ reason: 'idle', ms }), ms);
  }

  /** Timers off, a call still open stopped, an unread body freed so it does not hold the connection. */
  end(): void {
    if (!this.draining) this.controller.abort();
    for (const t of this.timers) clearTimeout(t);
    clearTimeout(this.attemptTimer);
    clearTimeout(this.firstByte);
    clearTimeout(this.idle);
    const body = this.response?.body;
    if (body && !body.destroyed && !this.draining) {
      // undici reports the destroy of an unread body as an 'error' event nobody else hears.
      body.on('error', () => {});
      body.destroy();
    }
  }

  private account(step: StreamStep): StreamStep {
    if (step.model && this.responseModel === undefined) this.responseModel = step.model;
    if (step.usage) this.usage = step.usage;
    if (step.content) this.text += step.content;
    if (step.contentChars) {
      this.contentChars += step.contentChars;
      this.firstContentAt ??= performance.now();
    }
    if (step.error) throw step.error;
    return step;
  }

  /**
   * What the provider sends after [DONE] (usually nothing but the end of the body) is read
   * and dropped in the background, so undici can reuse the connection; a provider that keeps
   * it open past a second loses it instead.
   */
  private drain(): void {
    this.draining = true;
    this.response!.body.dump({ limit: 64 * 1024, signal: AbortSignal.timeout(1_000) }).catch(() => undefined);
  }

  /**
   * Reads the body up to `cap` bytes. `fail`: a larger body is an error (502);
   * `truncate`: the first `cap` bytes are kept (error answers).
   */
  private async readBody(cap: number, mode: 'fail' | 'truncate'): Promise<Buffer> {
    const response = this.response!;
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

  private onChunk(): void {
    clearTimeout(this.firstByte);
    this.idle?.refresh();
  }

  private after(ms: number, reason: Abort['reason']): NodeJS.Timeout {
    return setTimeout(() => this.stop({ reason, ms }), ms);
  }
}

export function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
