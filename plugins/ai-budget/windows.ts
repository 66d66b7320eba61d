export type WindowKind = 'minute' | 'hour' | 'day' | 'month' | 'sliding';

/** Where a request's usage goes in a limit's window, and what counts toward its cap. */
export interface WindowSlot {
  /** Start (epoch ms) of each counted bucket, the current one first. */
  buckets: number[];
  /** When usage counted now stops counting (epoch ms): the key may expire then. */
  expiresAt: number;
  /** When some of the cap frees up next: the calendar window's end, or the oldest bucket leaving a sliding window. */
  resetsAt: number;
}

/** Buckets of a sliding window: usage is counted in tenths of it. */
export const SLIDING_BUCKETS = 10;

/**
 * The slot of `now` in a limit's window. Calendar windows start at the start of the minute,
 * hour, day or month in `timeZone` (DST and half-hour offsets included). A sliding window of
 * `slidingMs` counts its buckets that overlap the last `slidingMs`: the oldest one in full,
 * so the cap is never exceeded (a request may be refused up to a tenth of the window early).
 */
export function windowSlot(kind: WindowKind, now: number, timeZone: string, slidingMs = 0): WindowSlot {
  if (kind === 'sliding') {
    const size = Math.max(1, Math.ceil(slidingMs / SLIDING_BUCKETS));
    const current = Math.floor(now / size) * size;
    const buckets: number[] = [];
    for (let start = current; start > now - slidingMs - size; start -= size) buckets.push(start);
    return {
      buckets,
      expiresAt: current + size + slidingMs,
      resetsAt: buckets.at(-1)! + size + slidingMs,
    };
  }
  const start = calendarStart(kind, now, timeZone);
  const end = calendarStart(kind, nextInstant(kind, start), timeZone);
  return { buckets: [start], expiresAt: end, resetsAt: end };
}

/** Some instant inside the next window (a month is at least 28 days, at most 31). */
function nextInstant(kind: Exclude<WindowKind, 'sliding'>, start: number): number {
  const step = { minute: 60_000, hour: 3_600_000, day: 86_400_000, month: 32 * 86_400_000 }[kind];
  // A day can be 23 or 25 hours long at DST changes: aim a few hours into the next one.
  return start + step + (kind === 'day' ? 3 * 3_600_000 : 0);
}

interface LocalTime {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
}

const FORMATTERS = new Map<string, Intl.DateTimeFormat>();

function localTime(instant: number, timeZone: string): LocalTime {
  let f = FORMATTERS.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
    });
    FORMATTERS.set(timeZone, f);
  }
  const parts: Record<string, number> = {};
  for (const p of f.formatToParts(instant)) if (p.type !== 'literal') parts[p.type] = Number(p.value);
  return {
    year: parts.year!,
    month: parts.month!,
    day: parts.day!,
    hour: parts.hour!,
    minute: parts.minute!,
  };
}

/** The zone's offset from UTC at an instant, in ms (whole minutes). */
function offsetAt(instant: number, timeZone: string): number {
  const t = localTime(instant, timeZone);
  const asUtc = Date.UTC(t.year, t.month - 1, t.day, t.hour, t.minute);
  return asUtc - Math.floor(instant / 60_000) * 60_000;
}

function calendarStart(kind: Exclude<WindowKind, 'sliding'>, now: number, timeZone: string): number {
  const t = localTime(now, timeZone);
  const local = Date.UTC(
    t.year,
    t.month - 1,
    kind === 'month' ? 1 : t.day,
    kind === 'month' || kind === 'day' ? 0 : t.hour,
    kind === 'minute' ? t.minute : 0,
  );
  // Local wall time → instant: subtract the offset in force then (it may differ from now's
  // across a DST change, so look it up at the first guess, then once more).
  let instant = local - offsetAt(now, timeZone);
  instant = local - offsetAt(instant, timeZone);
  return Math.min(instant, Math.floor(now / 60_000) * 60_000);
}

/** OpenAI's style for reset durations: `1h2m3s`, `6m0s`, `20s`, `150ms`. */
export function resetText(ms: number): string {
  if (ms < 1_000) return `${Math.max(0, Math.ceil(ms))}ms`;
  const s = Math.ceil(ms / 1_000);
  const h = Math.floor(s / 3_600);
  const m = Math.floor((s % 3_600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h}h${m}m${sec}s`;
  if (m > 0) return `${m}m${sec}s`;
  return `${sec}s`;
}
