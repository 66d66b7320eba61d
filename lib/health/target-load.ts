import type { Target } from '../context';
import type { IncomingHeaders } from '../relay/headers';
import { durationMs } from '../relay/retry-after';
import { targetIdentity } from './target-health';

const IDLE: LoadView = Object.freeze({ inFlight: 0 });

/** Weight of the newest sample in the moving averages: about the last ten attempts count. */
const EWMA_ALPHA = 0.2;

/** What this node knows of a target's load, for ai-router's strategies. */
export interface LoadView {
  /** Attempts at the target running now, on this node. */
  inFlight: number;
  /** Moving average of the time to the first token (stream) or to the whole answer (JSON), ms. */
  ttftMs?: number | undefined;
  /** Moving average of the time per answer token after the first, ms (streams only). */
  msPerToken?: number | undefined;
  /**
   * Share of the provider's rate limit left (0 to 1), from its last answer's rate-limit
   * headers; undefined when it sent none or their reset time has passed.
   */
  quotaLeft?: number | undefined;
}

/** How one attempt ended, as the relay saw it. */
export interface AttemptSample {
  /** The attempt was answered (a 2xx answer delivered). */
  ok: boolean;
  ttftMs?: number;
  /** Time from the first token to the end of a streamed answer, and the answer tokens it carried. */
  streamMs?: number;
  outputTokens?: number;
  /** The provider's response headers, for its rate-limit state. */
  headers?: IncomingHeaders;
  status?: number;
  /** How long a 429 asked to wait. */
  retryAfterMs?: number;
}

interface Entry {
  inFlight: number;
  ttftMs?: number;
  msPerToken?: number;
  quotaLeft?: number;
  quotaUntil: number;
}

/**
 * This node's live view of every target's load: requests in flight, latency averages and
 * rate-limit headroom. The relay reports every attempt; ai-router reads it to rank targets.
 * Keyed like TargetHealth: the same model at the same endpoint shares one entry.
 */
export class TargetLoad {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly now: () => number = Date.now) {}

  started(target: Target): void {
    this.entry(target).inFlight++;
  }

  ended(target: Target, sample: AttemptSample): void {
    const e = this.entry(target);
    e.inFlight = Math.max(0, e.inFlight - 1);
    if (sample.ok && sample.ttftMs !== undefined) e.ttftMs = ewma(e.ttftMs, sample.ttftMs);
    if (sample.ok && sample.streamMs !== undefined && sample.outputTokens && sample.outputTokens > 1) {
      e.msPerToken = ewma(e.msPerToken, sample.streamMs / (sample.outputTokens - 1));
    }
    if (sample.status === 429) {
      e.quotaLeft = 0;
      e.quotaUntil = this.now() + (sample.retryAfterMs ?? 1_000);
    } else if (sample.headers) {
      const quota = quotaOf(sample.headers);
      if (quota) {
        e.quotaLeft = quota.left;
        e.quotaUntil = this.now() + quota.resetMs;
      }
    }
  }

  /** Read on every routing decision, for every candidate: one map lookup, one small object. */
  view(target: Target): LoadView {
    const e = this.entries.get(targetIdentity(target));
    if (!e) return IDLE;
    return {
      inFlight: e.inFlight,
      ttftMs: e.ttftMs,
      msPerToken: e.msPerToken,
      quotaLeft: e.quotaLeft !== undefined && e.quotaUntil > this.now() ? e.quotaLeft : undefined,
    };
  }

  private entry(target: Target): Entry {
    const id = targetIdentity(target);
    let e = this.entries.get(id);
    if (!e) {
      e = { inFlight: 0, quotaUntil: 0 };
      this.entries.set(id, e);
    }
    return e;
  }
}

function ewma(previous: number | undefined, sample: number): number {
  return previous === undefined ? sample : previous + EWMA_ALPHA * (sample - previous);
}

/**
 * The tightest rate limit a provider reports: OpenAI, Groq, Mistral, DeepSeek...
 * (`x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, reset as `6m0s`) and Anthropic
 * (`anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`, reset as a time).
 * `left` is the smallest remaining share; `resetMs` when that limit refills.
 */
export function quotaOf(
  headers: IncomingHeaders,
  now = Date.now(),
): { left: number; resetMs: number } | undefined {
  const first = (name: string) => {
    const v = headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  let tightest: { left: number; resetMs: number } | undefined;
  for (const kind of ['requests', 'tokens']) {
    const forms = [
      {
        limit: first(`x-ratelimit-limit-${kind}`),
        remaining: first(`x-ratelimit-remaining-${kind}`),
        resetMs: durationMs(first(`x-ratelimit-reset-${kind}`)),
      },
      {
        limit: first(`anthropic-ratelimit-${kind}-limit`),
        remaining: first(`anthropic-ratelimit-${kind}-remaining`),
        resetMs: untilMs(first(`anthropic-ratelimit-${kind}-reset`), now),
      },
    ];
    for (const { limit, remaining, resetMs } of forms) {
      const max = Number(limit);
      const left = Number(remaining);
      if (!(max > 0) || !Number.isFinite(left) || left < 0) continue;
      const share = Math.min(1, left / max);
      if (!tightest || share < tightest.left) tightest = { left: share, resetMs: resetMs ?? 60_000 };
    }
  }
  return tightest;
}

function untilMs(time: string | undefined, now: number): number | undefined {
  const at = time ? Date.parse(time) : Number.NaN;
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined;
}
