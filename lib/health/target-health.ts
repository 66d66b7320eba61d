import { createHash } from 'node:crypto';
import { Gauge, type Registry } from 'prom-client';
import type { Target } from '../context';

export type BreakerState = 'closed' | 'open' | 'half_open';

const STATE_VALUE: Record<BreakerState, number> = { closed: 0, half_open: 1, open: 2 };

export interface TargetHealthEntry {
  /** Name of the target as its ai-router config calls it (the last one that reported). */
  target: string;
  provider: string;
  model: string;
  state: BreakerState;
  /** While open: when the target may be probed again (epoch ms). */
  open_until?: number;
  /** When the state last changed (epoch ms). */
  changed_at: number;
}

interface Entry {
  target: string;
  provider: string;
  model: string;
  tripped: boolean;
  openUntil: number;
  changedAt: number;
}

/**
 * This node's view of every target's circuit breaker, written by ai-fallback and read by
 * whoever needs it: ai-router to steer away from open targets, the admin endpoint and
 * metrics to show it. A target is identified by provider, base URL and model, so two routes
 * naming the same model at the same endpoint share one entry.
 */
export class TargetHealth {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly now: () => number = Date.now) {}

  /** The breaker opened (until `openUntil`), or a probe is allowed (`half_open`), or it closed. */
  update(target: Target, state: 'open' | 'closed', openUntil = 0): void {
    const id = targetIdentity(target);
    const previous = this.entries.get(id);
    const tripped = state === 'open';
    if (previous?.tripped === tripped && previous.openUntil === openUntil) return;
    this.entries.set(id, {
      target: target.name,
      provider: target.provider,
      model: target.model,
      tripped,
      openUntil: tripped ? openUntil : 0,
      changedAt: this.now(),
    });
  }

  state(target: Target): BreakerState {
    const entry = this.entries.get(targetIdentity(target));
    return entry ? this.stateOf(entry) : 'closed';
  }

  /** Every target a breaker has reported on, for the admin endpoint and metrics. */
  snapshot(): TargetHealthEntry[] {
    return [...this.entries.values()].map((e) => ({
      target: e.target,
      provider: e.provider,
      model: e.model,
      state: this.stateOf(e),
      ...(e.openUntil > this.now() ? { open_until: e.openUntil } : {}),
      changed_at: e.changedAt,
    }));
  }

  /** `aigw_target_breaker_state{target,provider,model}`: 0 closed, 1 half open, 2 open, read at each scrape. */
  exportTo(registry: Registry): void {
    const snapshot = () => this.snapshot();
    new Gauge({
      name: 'aigw_target_breaker_state',
      help: 'Circuit breaker of each target on this node (ai-fallback): 0 closed, 1 half open, 2 open.',
      labelNames: ['target', 'provider', 'model'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const e of snapshot()) {
          this.set({ target: e.target, provider: e.provider, model: e.model }, STATE_VALUE[e.state]);
        }
      },
    });
  }

  private stateOf(e: Entry): BreakerState {
    if (!e.tripped) return 'closed';
    return e.openUntil > this.now() ? 'open' : 'half_open';
  }
}

/** Targets are built once per config and read on every request: their identity is hashed once. */
const identities = new WeakMap<Target, string>();

/** A target's identity for health: the same model at the same endpoint, whatever route names it. */
export function targetIdentity(target: Target): string {
  let id = identities.get(target);
  if (id === undefined) {
    id = createHash('sha256')
      .update(`${target.provider}\n${target.base_url}\n${target.model}`)
      .digest('base64url')
      .slice(0, 22);
    identities.set(target, id);
  }
  return id;
}
