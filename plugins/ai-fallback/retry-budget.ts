/**
 * Retries across all traffic of one plugin instance on this node: at most
 * `min_retries_per_s × window + ratio × requests in the window`, so a full outage adds at
 * most `ratio` extra calls per request instead of multiplying load by the attempt count.
 * Counted in ten buckets over the window.
 */
export class RetryBudget {
  private readonly bucketMs: number;
  private readonly buckets: Array<{ start: number; requests: number; retries: number }> = [];

  constructor(
    private readonly settings: { ratio: number; window_ms: number; min_retries_per_s: number },
    private readonly now: () => number = Date.now,
  ) {
    this.bucketMs = Math.max(1, Math.floor(settings.window_ms / 10));
  }

  recordRequest(): void {
    this.current().requests++;
  }

  /** Takes one retry when the budget has room. */
  tryRetry(): boolean {
    const { requests, retries } = this.totals();
    const allowed = Math.floor(
      (this.settings.min_retries_per_s * this.settings.window_ms) / 1000 + this.settings.ratio * requests,
    );
    if (retries >= allowed) return false;
    this.current().retries++;
    return true;
  }

  private current() {
    const start = Math.floor(this.now() / this.bucketMs) * this.bucketMs;
    let last = this.buckets.at(-1);
    if (last?.start !== start) {
      last = { start, requests: 0, retries: 0 };
      this.buckets.push(last);
      this.prune(start);
    }
    return last;
  }

  private totals() {
    this.prune(Math.floor(this.now() / this.bucketMs) * this.bucketMs);
    let requests = 0;
    let retries = 0;
    for (const b of this.buckets) {
      requests += b.requests;
      retries += b.retries;
    }
    return { requests, retries };
  }

  private prune(currentStart: number): void {
    const oldest = currentStart - this.settings.window_ms + this.bucketMs;
    while (this.buckets.length > 0 && this.buckets[0]!.start < oldest) this.buckets.shift();
  }
}
