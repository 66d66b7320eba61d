import { Gauge, type Registry } from 'prom-client';
import { type AdminAnswer, type AdminRequest, adminError } from '../../lib/admin/routes';
import type { Endpoint } from '../../lib/context';
import { scrubText } from '../../lib/log/redact';
import { fingerprint, MAX_TEMPLATE_CHARS, templateId } from './fingerprint';

export interface PatternCount {
  /** `templateId(template)`: the metric's `pattern` label. */
  id: string;
  template: string;
  /** Requests counted for the template; may be over by up to `error` (see SpaceSaving). */
  count: number;
  /** Share of the route's requests, 0..1. */
  share?: number;
}

interface Counter {
  key: string;
  count: number;
  /** How much of `count` may belong to keys this counter held before (Space-Saving's overestimate). */
  error: number;
  /** Position in the heap. */
  pos: number;
  id?: string;
}

/**
 * The most frequent keys of a stream in `capacity` counters: Space-Saving (Metwally, Agrawal,
 * El Abbadi 2005). A new key takes over the smallest counter and inherits its count as its
 * possible error, so every key seen more than total/capacity times holds a counter, and no
 * count is ever below the key's true count nor above it by more than total/capacity.
 * The counters form a min-heap by count: one update is O(log capacity).
 *
 * Chosen over the TopK of `bloom-filters` (a count-min sketch under a sorted array): that
 * one's counts are count-min estimates with no per-key bound, its update searches and splices
 * the array, and each key is hashed several times; see scripts/bench-patterns.ts.
 */
export class SpaceSaving {
  private readonly index = new Map<string, Counter>();
  private readonly heap: Counter[] = [];
  /** Keys added, all counted. */
  total = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError('capacity must be a positive integer');
  }

  get size(): number {
    return this.heap.length;
  }

  add(key: string): void {
    this.total++;
    const known = this.index.get(key);
    if (known) {
      known.count++;
      this.siftDown(known.pos);
      return;
    }
    if (this.heap.length < this.capacity) {
      const counter: Counter = { key, count: 1, error: 0, pos: this.heap.length };
      this.heap.push(counter);
      this.index.set(key, counter);
      this.siftUp(counter.pos);
      return;
    }
    const smallest = this.heap[0]!;
    this.index.delete(smallest.key);
    smallest.key = key;
    smallest.error = smallest.count;
    smallest.count++;
    smallest.id = undefined;
    this.index.set(key, smallest);
    this.siftDown(0);
  }

  /** The `k` largest counters, largest first; ties by smaller error, then by key (stable output). */
  top(k: number): readonly Readonly<Counter>[] {
    return [...this.heap]
      .sort((a, b) => b.count - a.count || a.error - b.error || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      .slice(0, Math.max(0, k));
  }

  /** The template id of a counter, computed once while it holds the same key. */
  idOf(counter: Readonly<Counter>): string {
    const c = counter as Counter;
    c.id ??= templateId(c.key);
    return c.id;
  }

  private siftUp(pos: number): void {
    const heap = this.heap;
    const item = heap[pos]!;
    while (pos > 0) {
      const parent = (pos - 1) >> 1;
      if (heap[parent]!.count <= item.count) break;
      heap[pos] = heap[parent]!;
      heap[pos]!.pos = pos;
      pos = parent;
    }
    heap[pos] = item;
    item.pos = pos;
  }

  private siftDown(pos: number): void {
    const heap = this.heap;
    const item = heap[pos]!;
    const n = heap.length;
    for (;;) {
      let child = 2 * pos + 1;
      if (child >= n) break;
      if (child + 1 < n && heap[child + 1]!.count < heap[child]!.count) child++;
      if (heap[child]!.count >= item.count) break;
      heap[pos] = heap[child]!;
      heap[pos]!.pos = pos;
      pos = child;
    }
    heap[pos] = item;
    item.pos = pos;
  }
}

/** Where requests of routes past `maxRoutes` are counted. */
export const OTHER_ROUTE = 'other';

export interface PromptPatternsOptions {
  /** Templates reported per route (metric and admin endpoint). */
  topK: number;
  /**
   * Counters per route, at least `topK`. A template is sure to be counted once it is more than
   * 1/capacity of its route's prompts. Default: 5 × topK, at least 100.
   */
  capacity?: number;
  /** Routes counted apart; prompts of further routes are counted under `other`. Default 200. */
  maxRoutes?: number;
}

/**
 * Which kinds of prompts each route receives: prompts are fingerprinted into templates and
 * the most frequent templates are counted per route in bounded memory. At most
 * (maxRoutes + 1) × capacity templates of at most MAX_TEMPLATE_CHARS characters are held
 * (defaults: 201 × 100 × 2 KB ≈ 40 MB in the worst case; real templates are far shorter).
 *
 * Exposed as `aigw_prompt_pattern_requests{route,pattern}` (the template id, never its text)
 * and as JSON on the admin endpoint (`GET /patterns`, the text with secrets masked).
 */
export class PromptPatterns {
  readonly topK: number;
  readonly capacity: number;
  readonly maxRoutes: number;
  private readonly byRoute = new Map<string, SpaceSaving>();
  /** Templates reported for a route whose ai-metrics instance asked for another number than `topK`. */
  private readonly topKOf = new Map<string, number>();

  constructor(options: PromptPatternsOptions) {
    const { topK, capacity = Math.max(5 * topK, 100), maxRoutes = 200 } = options;
    if (!Number.isInteger(topK) || topK < 1) throw new RangeError('topK must be a positive integer');
    if (!Number.isInteger(capacity) || capacity < topK) {
      throw new RangeError('capacity must be an integer of at least topK');
    }
    if (!Number.isInteger(maxRoutes) || maxRoutes < 1)
      throw new RangeError('maxRoutes must be a positive integer');
    this.topK = topK;
    this.capacity = capacity;
    this.maxRoutes = maxRoutes;
  }

  /**
   * Counts one prompt of a route. A prompt with no text once whitespace is removed is not
   * counted. `topK`: templates reported for the route (its instance's config), when it differs.
   */
  observe(route: string, prompt: string, topK = this.topK): void {
    const template = fingerprint(prompt);
    if (template === '') return;
    this.sketchOf(route, topK).add(template);
  }

  /** The route's most frequent templates, most frequent first. */
  top(route: string, k = this.topKOf.get(route) ?? this.topK): PatternCount[] {
    const sketch = this.byRoute.get(route);
    if (!sketch) return [];
    return sketch.top(k).map((c) => ({
      id: sketch.idOf(c),
      template: c.key,
      count: c.count,
      share: c.count / sketch.total,
    }));
  }

  routes(): string[] {
    return [...this.byRoute.keys()];
  }

  /** `aigw_prompt_pattern_requests{route,pattern}`: the top K templates of every route, set at each scrape. */
  exportTo(registry: Registry): void {
    const patterns = this;
    new Gauge({
      name: 'aigw_prompt_pattern_requests',
      help: 'Requests per prompt template since the suite server started, for the most frequent templates of each route (`pattern` is the template id; GET /patterns on the admin endpoint shows the text). Estimates that may count over by at most 1/capacity of the route requests.',
      labelNames: ['route', 'pattern'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const route of patterns.routes()) {
          for (const p of patterns.top(route)) this.set({ route, pattern: p.id }, p.count);
        }
      },
    });
  }

  /**
   * The admin endpoint's `/patterns`:
   *
   *   GET /patterns           every route's top templates: `{routes: {<route>: [{id, template, count, share}]}}`
   *   GET /patterns/<route>   one route: `{route, total, patterns: [...]}`
   *
   * Template text has provider keys and bearer tokens masked (`scrubText`).
   */
  readonly handle = async (req: AdminRequest): Promise<AdminAnswer> => {
    if (req.method !== 'GET')
      return adminError(405, 'only GET reads prompt patterns', 'AIGW_METHOD_NOT_ALLOWED');
    const segment = req.path.split('/')[2] ?? '';
    if (segment === '') {
      const routes = Object.fromEntries(this.routes().map((r) => [r, this.shown(r)]));
      return [200, { routes }];
    }
    let route: string;
    try {
      route = decodeURIComponent(segment);
    } catch {
      return adminError(400, 'the route name is not valid percent-encoding', 'AIGW_BAD_REQUEST');
    }
    const sketch = this.byRoute.get(route);
    if (!sketch) return adminError(404, 'no prompt patterns counted for this route', 'AIGW_NOT_FOUND');
    return [200, { route, total: sketch.total, patterns: this.shown(route) }];
  };

  private shown(route: string): PatternCount[] {
    return this.top(route).map((p) => ({ ...p, template: scrubText(p.template) }));
  }

  private sketchOf(route: string, topK: number): SpaceSaving {
    let sketch = this.byRoute.get(route);
    if (!sketch) {
      const name = this.byRoute.size < this.maxRoutes ? route : OTHER_ROUTE;
      sketch = this.byRoute.get(name);
      if (!sketch) {
        sketch = new SpaceSaving(Math.max(this.capacity, 5 * topK));
        this.byRoute.set(name, sketch);
        if (topK !== this.topK && name === route) this.topKOf.set(route, topK);
      }
    }
    return sketch;
  }
}

/**
 * The text of a request that is fingerprinted:
 *   chat.completions  the last user message (its text parts, joined by newlines): the system
 *                     prompt is mostly the same for every request of an application, and earlier
 *                     turns are history; the last user turn says what is asked now
 *   completions       `prompt`, or its first element when it is a list of strings
 *   embeddings        `input`, likewise
 * Undefined when there is no text (token arrays, image-only messages, `models`).
 */
export function promptText(endpoint: Endpoint | undefined, body: unknown): string | undefined {
  if (body === null || typeof body !== 'object') return undefined;
  const fields = body as Record<string, unknown>;
  switch (endpoint) {
    case 'chat.completions':
      return lastUserText(fields.messages);
    case 'completions':
      return firstText(fields.prompt);
    case 'embeddings':
      return firstText(fields.input);
    default:
      return undefined;
  }
}

function lastUserText(messages: unknown): string | undefined {
  if (!Array.isArray(messages)) return undefined;
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i] as { role?: unknown; content?: unknown } | null;
    if (m === null || typeof m !== 'object' || m.role !== 'user') continue;
    if (typeof m.content === 'string') return m.content;
    if (!Array.isArray(m.content)) return undefined;
    // Text parts until the fingerprint has enough: a long multi-part message is not copied whole.
    let text: string | undefined;
    for (const part of m.content as unknown[]) {
      const p = part as { type?: unknown; text?: unknown } | null;
      if (p === null || typeof p !== 'object' || p.type !== 'text' || typeof p.text !== 'string') continue;
      text = text === undefined ? p.text : `${text}\n${p.text}`;
      if (text.length >= MAX_TEMPLATE_CHARS) break;
    }
    return text;
  }
  return undefined;
}

function firstText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && typeof value[0] === 'string') return value[0];
  return undefined;
}
