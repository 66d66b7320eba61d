import type { AttemptFailure, Target } from '../../lib/context';
import { type TargetHealth, targetIdentity } from '../../lib/health';
import type { Logger } from '../../lib/log/logger';
import { key, type Store } from '../../lib/store';

export interface BreakerSettings {
  enabled: boolean;
  window_ms: number;
  min_requests: number;
  failure_rate: number;
  cooldown_ms: number;
  max_cooldown_ms: number;
  half_open_probes: number;
}

/** How often a node re-reads a target's shared open state from the store. */
export const SHARED_STATE_REFRESH_MS = 500;

interface Health {
  buckets: Array<{ start: number; ok: number; failed: number }>;
  /** Open until (epoch ms), as this node decided or read from the store. */
  openUntil: number;
  /** The breaker has been open: the next admitted requests are probes. */
  tripped: boolean;
  probes: number;
  syncedAt: number;
  syncing?: Promise<void>;
}

/**
 * Circuit breakers per target for one ai-fallback instance. Each node measures the failure
 * rate over its own rolling window (ten buckets); when it opens a breaker it writes the
 * open-until time to the store, and every node re-reads that state at most every 500 ms
 * when it is about to use the target, so all nodes keep a failing target out within a
 * second. After the cooldown, `half_open_probes` requests per node probe the target: a
 * success closes the breaker (everywhere: the shared key is deleted), a failure reopens it.
 *
 * A provider that answers 429 (or 503) with Retry-After or a spent rate-limit reset opens
 * the breaker at once, for that long. Failures are 5xx, 429, connection errors and
 * timeouts; a 4xx is the request's problem, not the target's.
 */
export class Breakers {
  private readonly targets = new Map<string, Health>();
  private readonly bucketMs: number;
  /** How long the shared key outlives the cooldown, waiting for a probe to delete it. */
  private readonly sharedGraceMs: number;

  constructor(
    private readonly settings: BreakerSettings,
    private readonly store: Store,
    /** This node's view of every target, where the state is published for ai-router and the admin endpoint. */
    private readonly health: TargetHealth,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.bucketMs = Math.max(1, Math.floor(settings.window_ms / 10));
    this.sharedGraceMs = Math.max(settings.window_ms, 60_000);
  }

  /**
   * Whether the target may be tried now; takes a probe slot when the breaker is half open.
   * `panic` (every candidate is out): yes, and the attempt counts as a probe.
   */
  async admits(target: Target, panic = false): Promise<boolean> {
    if (!this.settings.enabled) return true;
    const h = this.entry(target);
    if (panic) {
      if (h.tripped) h.probes++;
      return true;
    }
    await this.sync(target, h);
    const now = this.now();
    if (h.openUntil > now) return false;
    if (!h.tripped) return true;
    if (h.probes >= this.settings.half_open_probes) return false;
    h.probes++;
    return true;
  }

  report(target: Target, failure: AttemptFailure | undefined): void {
    if (!this.settings.enabled) return;
    const h = this.entry(target);
    const failed = failure !== undefined && countsAgainstTarget(failure);
    if (h.tripped) {
      // Only a probe's result decides; requests let in before the breaker opened say nothing new.
      if (h.probes === 0) return;
      h.probes--;
      if (failed) this.open(target, h, failure?.retryAfterMs);
      else this.close(target, h);
      return;
    }
    const bucket = this.bucket(h);
    if (failed) bucket.failed++;
    else bucket.ok++;
    if (!failed) return;
    if (failure?.retryAfterMs !== undefined && (failure.status === 429 || failure.status === 503)) {
      this.open(target, h, failure.retryAfterMs);
      return;
    }
    let ok = 0;
    let bad = 0;
    for (const b of h.buckets) {
      ok += b.ok;
      bad += b.failed;
    }
    if (ok + bad >= this.settings.min_requests && bad / (ok + bad) >= this.settings.failure_rate) {
      this.open(target, h, failure?.retryAfterMs);
    }
  }

  private open(target: Target, h: Health, retryAfterMs: number | undefined): void {
    const cooldown = Math.min(retryAfterMs ?? this.settings.cooldown_ms, this.settings.max_cooldown_ms);
    const until = this.now() + Math.max(1, cooldown);
    h.openUntil = Math.max(h.openUntil, until);
    h.tripped = true;
    h.buckets = [];
    this.health.update(target, 'open', h.openUntil);
    this.logger.warn({ target: target.name, open_ms: h.openUntil - this.now() }, 'circuit breaker opened');
    // The key outlives the cooldown: while it exists the breaker is open or half open, and
    // only a successful probe deletes it (so a missing key means another node closed it).
    this.store
      .set(this.storeKey(target), String(h.openUntil), h.openUntil - this.now() + this.sharedGraceMs)
      .catch((err: unknown) =>
        this.logger.warn({ err: String(err), target: target.name }, 'breaker state not shared'),
      );
  }

  private close(target: Target, h: Health): void {
    h.tripped = false;
    h.openUntil = 0;
    h.probes = 0;
    h.buckets = [];
    this.health.update(target, 'closed');
    this.logger.info({ target: target.name }, 'circuit breaker closed');
    this.store
      .delete(this.storeKey(target))
      .catch((err: unknown) =>
        this.logger.warn({ err: String(err), target: target.name }, 'breaker state not shared'),
      );
  }

  /** Reads the shared open-until time, at most every SHARED_STATE_REFRESH_MS per target. */
  private sync(target: Target, h: Health): Promise<void> {
    const now = this.now();
    if (h.syncing) return h.syncing;
    if (now - h.syncedAt < SHARED_STATE_REFRESH_MS) return Promise.resolve();
    h.syncing = this.store
      .get(this.storeKey(target))
      .then((value) => {
        const shared = value ? Number(value.toString('latin1')) : 0;
        if (shared > this.now()) {
          h.openUntil = Math.max(h.openUntil, shared);
          h.tripped = true;
          this.health.update(target, 'open', h.openUntil);
        } else if (h.tripped && h.openUntil <= this.now() && value === null && h.probes === 0) {
          // Another node's probe closed it (the key is gone): close here too.
          h.tripped = false;
          h.buckets = [];
          this.health.update(target, 'closed');
        }
      })
      .catch(() => undefined) // store trouble: this node's own view decides
      .finally(() => {
        h.syncedAt = this.now();
        h.syncing = undefined;
      });
    return h.syncing;
  }

  private entry(target: Target): Health {
    const k = targetIdentity(target);
    let h = this.targets.get(k);
    if (!h) {
      h = { buckets: [], openUntil: 0, tripped: false, probes: 0, syncedAt: 0 };
      this.targets.set(k, h);
    }
    return h;
  }

  private bucket(h: Health) {
    const now = this.now();
    const start = Math.floor(now / this.bucketMs) * this.bucketMs;
    const oldest = start - this.settings.window_ms + this.bucketMs;
    while (h.buckets.length > 0 && h.buckets[0]!.start < oldest) h.buckets.shift();
    let last = h.buckets.at(-1);
    if (last?.start !== start) {
      last = { start, ok: 0, failed: 0 };
      h.buckets.push(last);
    }
    return last;
  }

  private storeKey(target: Target): string {
    return key('global', 'breaker', targetIdentity(target));
  }
}

function countsAgainstTarget(failure: AttemptFailure): boolean {
  if (failure.kind === 'connect' || failure.kind === 'timeout') return true;
  if (failure.kind !== 'status' || failure.status === undefined) return false;
  return failure.status >= 500 || failure.status === 429;
}
