import type { Target } from '../../lib/context';

export interface HedgeSettings {
  enabled: boolean;
  percentile: number;
  min_samples: number;
  default_delay_ms: number;
  min_delay_ms: number;
}

/** Recent answers kept per target. */
const SAMPLES = 256;
/** New samples before the percentile is computed again (a sort of 256 numbers). */
const RECOMPUTE_EVERY = 16;

interface Window {
  samples: number[];
  next: number;
  fresh: number;
  delayMs?: number;
}

/**
 * When to hedge: once an attempt has taken longer than the configured percentile of its
 * target's recent answers on this node (the time until the answer was ready to send: JSON
 * whole, stream's first event). Until `min_samples` answers are known, `default_delay_ms`.
 */
export class HedgeDelays {
  private readonly windows = new Map<string, Window>();

  constructor(private readonly settings: HedgeSettings) {}

  record(target: Target, readyMs: number): void {
    if (!this.settings.enabled) return;
    let w = this.windows.get(target.name);
    if (!w) {
      w = { samples: [], next: 0, fresh: 0 };
      this.windows.set(target.name, w);
    }
    if (w.samples.length < SAMPLES) w.samples.push(readyMs);
    else w.samples[w.next] = readyMs;
    w.next = (w.next + 1) % SAMPLES;
    w.fresh++;
  }

  delayMs(target: Target): number | undefined {
    const s = this.settings;
    if (!s.enabled) return undefined;
    const w = this.windows.get(target.name);
    if (!w || w.samples.length < s.min_samples) return s.default_delay_ms;
    if (w.delayMs === undefined || w.fresh >= RECOMPUTE_EVERY) {
      const sorted = [...w.samples].sort((a, b) => a - b);
      const rank = Math.min(sorted.length - 1, Math.ceil((s.percentile / 100) * sorted.length) - 1);
      w.delayMs = Math.max(s.min_delay_ms, Math.round(sorted[rank]!));
      w.fresh = 0;
    }
    return w.delayMs;
  }
}
