import { randomBytes } from 'node:crypto';
import { RequestContext, type RequestContextInit } from './request-context';

export interface ContextStoreOptions {
  /** Longest a context may live, whatever happens (covers requests Kong never proxied). */
  max_age_ms: number;
  /** How long a settled context waits for the log phase before it is dropped. */
  settled_grace_ms: number;
  /** Sweep period. */
  sweep_interval_ms: number;
}

const DEFAULTS: ContextStoreOptions = {
  max_age_ms: 15 * 60_000,
  settled_grace_ms: 30_000,
  sweep_interval_ms: 1_000,
};

/**
 * The in-process map of live request contexts. Ids are 128-bit random, so a client cannot
 * guess one; the relay accepts only ids found here. Entries are dropped by the log phase,
 * or by the sweeper when they outlive their grace, so nothing leaks.
 */
export class ContextStore {
  private readonly contexts = new Map<string, RequestContext>();
  private readonly settledAt = new Map<string, number>();
  private readonly options: ContextStoreOptions;
  private readonly timer: NodeJS.Timeout;

  constructor(options: Partial<ContextStoreOptions> = {}) {
    this.options = { ...DEFAULTS, ...options };
    this.timer = setInterval(() => this.sweep(), this.options.sweep_interval_ms);
    this.timer.unref();
  }

  create(init: RequestContextInit): RequestContext {
    const ctx = new RequestContext(randomBytes(16).toString('base64url'), init);
    this.contexts.set(ctx.id, ctx);
    return ctx;
  }

  get(id: unknown): RequestContext | undefined {
    return typeof id === 'string' ? this.contexts.get(id) : undefined;
  }

  /** Marks the exchange finished; the context then lives only for the log-phase grace. */
  settle(ctx: RequestContext): void {
    ctx.settled = true;
    if (this.contexts.has(ctx.id)) this.settledAt.set(ctx.id, Date.now());
  }

  delete(id: string): void {
    this.contexts.delete(id);
    this.settledAt.delete(id);
  }

  get size(): number {
    return this.contexts.size;
  }

  sweep(now = Date.now()): void {
    const { max_age_ms, settled_grace_ms } = this.options;
    for (const [id, ctx] of this.contexts) {
      const settled = this.settledAt.get(id);
      if (now - ctx.createdAt > max_age_ms || (settled !== undefined && now - settled > settled_grace_ms)) {
        this.delete(id);
      }
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.contexts.clear();
    this.settledAt.clear();
  }
}
