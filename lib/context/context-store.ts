import { randomBytes } from 'node:crypto';
import {
  type KongFacts,
  RequestContext,
  type RequestContextInit,
  type RequestPolicy,
} from './request-context';

export interface ContextStoreOptions {
  /** Longest a ticket may live, whatever happens (covers requests Kong never proxied). */
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

/** One plugin instance's claim on one request, issued in Kong's access phase. */
export interface Ticket {
  readonly id: string;
  readonly policy: RequestPolicy;
  readonly issuedAt: number;
  /** Round trips of the access event that issued it. */
  roundTrips: number;
  /** What the issuing plugin learned from Kong for its policy (consumer...). */
  readonly facts?: KongFacts;
  /** Set when the relay takes the ticket: a ticket serves one request, once. */
  ctx?: RequestContext;
}

/**
 * Live tickets and the request contexts built from them. Ticket ids are 128-bit random, so
 * a client cannot guess one; the relay accepts only tickets found here, each once. Entries
 * are dropped by the log phase, or by the sweeper when they outlive their grace, so
 * nothing leaks.
 */
export class ContextStore {
  private readonly tickets = new Map<string, Ticket>();
  private readonly openers: Array<(ctx: RequestContext) => void> = [];
  private readonly options: ContextStoreOptions;
  private readonly timer: NodeJS.Timeout;

  constructor(options: Partial<ContextStoreOptions> = {}) {
    this.options = { ...DEFAULTS, ...options };
    this.timer = setInterval(() => this.sweep(), this.options.sweep_interval_ms);
    this.timer.unref();
  }

  issue(policy: RequestPolicy, facts?: KongFacts): Ticket {
    const ticket: Ticket = {
      id: randomBytes(16).toString('base64url'),
      policy,
      issuedAt: Date.now(),
      roundTrips: 0,
      ...(facts ? { facts } : {}),
    };
    this.tickets.set(ticket.id, ticket);
    return ticket;
  }

  /**
   * The relay's side: takes the live, untaken tickets among `ids` and builds the request's
   * context from their policies. Undefined when none is: the request was not admitted by
   * the plugins, or is a replay.
   */
  open(
    ids: readonly string[],
    init: Omit<RequestContextInit, 'policies' | 'facts'>,
  ): RequestContext | undefined {
    const taken: Ticket[] = [];
    for (const id of ids) {
      const ticket = this.tickets.get(id);
      if (ticket && !ticket.ctx && !taken.includes(ticket)) taken.push(ticket);
    }
    if (taken.length === 0) return undefined;
    taken.sort((a, b) => b.policy.priority - a.policy.priority);
    const facts = Object.assign({}, ...taken.map((t) => t.facts)) as KongFacts;
    const ctx = new RequestContext({ ...init, policies: taken.map((t) => t.policy), facts });
    for (const ticket of taken) {
      ticket.ctx = ctx;
      ctx.pdkCalls += ticket.roundTrips;
    }
    for (const prepare of this.openers) prepare(ctx);
    return ctx;
  }

  /**
   * Runs `prepare` on every context as it opens, before its policies: how a plugin without a
   * policy of its own (ai-metrics, in the log phase) asks the relay for something in advance.
   */
  whenOpened(prepare: (ctx: RequestContext) => void): void {
    this.openers.push(prepare);
  }

  /** The log phase's side: the context the relay built from any of `ids`, if it got that far. */
  find(ids: readonly string[]): RequestContext | undefined {
    for (const id of ids) {
      const ctx = this.tickets.get(id)?.ctx;
      if (ctx) return ctx;
    }
    return undefined;
  }

  /** Marks the exchange finished; its tickets then live only for the log-phase grace. */
  settle(ctx: RequestContext): void {
    ctx.settledAt ??= Date.now();
  }

  /** Forgets the tickets (the request is over). */
  delete(ids: readonly string[]): void {
    for (const id of ids) this.tickets.delete(id);
  }

  get size(): number {
    return this.tickets.size;
  }

  sweep(now = Date.now()): void {
    const { max_age_ms, settled_grace_ms } = this.options;
    for (const [id, ticket] of this.tickets) {
      const settledAt = ticket.ctx?.settledAt;
      if (
        now - ticket.issuedAt > max_age_ms ||
        (settledAt !== undefined && now - settledAt > settled_grace_ms)
      ) {
        this.tickets.delete(id);
      }
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.tickets.clear();
  }
}
