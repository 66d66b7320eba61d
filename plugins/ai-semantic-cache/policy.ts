import type { Endpoint, RelayOutcome } from '../../lib/context';
import type { FillResult } from './metrics';

/** What the client's `Cache-Control` asks: `no-cache` skips the lookup, `no-store` the fill. */
export interface CacheControl {
  noCache: boolean;
  noStore: boolean;
}

export function cacheControl(header: string | undefined): CacheControl {
  const directives = new Set(
    (header ?? '')
      .split(',')
      .map((d) => d.trim().toLowerCase().split('=')[0]!)
      .filter((d) => d !== ''),
  );
  return { noCache: directives.has('no-cache'), noStore: directives.has('no-store') };
}

/** Why a request is neither looked up nor stored. */
export type BypassReason = 'endpoint' | 'no_tenant' | 'temperature' | 'choices' | 'cache_control';

export type Plan =
  | { kind: 'bypass'; reason: BypassReason }
  /** `lookup` false: `x-cache-status: BYPASS`, the answer may still be stored. */
  | { kind: 'use'; lookup: boolean; fill: boolean };

export interface PlanInput {
  endpoint: Endpoint | undefined;
  body: Record<string, unknown> | undefined;
  control: CacheControl;
  /** The request's tenant under the configured scope; undefined: it has none. */
  tenant: string | undefined;
  maxTemperature: number;
}

/**
 * Whether the cache looks the request up and stores its answer. Only chat completions are
 * cached. Not at all: a request without a tenant under the configured scope (unidentified
 * clients would share one cache), a temperature above the configured maximum (an absent
 * temperature counts as 1, the providers' default), `n` above 1 (several choices ask for
 * variety), or `Cache-Control: no-cache, no-store`.
 */
export function planRequest(input: PlanInput): Plan {
  const { body, control } = input;
  if (input.endpoint !== 'chat.completions' || !body) return { kind: 'bypass', reason: 'endpoint' };
  if (input.tenant === undefined) return { kind: 'bypass', reason: 'no_tenant' };
  const temperature = typeof body.temperature === 'number' ? body.temperature : 1;
  if (temperature > input.maxTemperature) return { kind: 'bypass', reason: 'temperature' };
  if (typeof body.n === 'number' && body.n > 1) return { kind: 'bypass', reason: 'choices' };
  if (control.noCache && control.noStore) return { kind: 'bypass', reason: 'cache_control' };
  return { kind: 'use', lookup: !control.noCache, fill: !control.noStore };
}

/**
 * Whether the answer the relay recorded may be stored: a complete 200 (never an error, a
 * broken or truncated stream, an aborted client), recorded within the size limit, not a
 * content-filtered answer, and not a tool call unless `cacheToolCalls`.
 */
export function fillDecision(
  outcome: RelayOutcome | undefined,
  options: { cacheToolCalls: boolean; maxAnswerBytes: number },
): 'store' | Exclude<FillResult, 'stored' | 'no_store' | 'store_error'> {
  if (outcome && INCOMPLETE.has(outcome.end)) return 'incomplete';
  if (outcome?.status !== 200 || outcome.error || outcome.end !== 'complete') return 'error';
  const answer = outcome.answer;
  // A complete 200 is recorded unless above the largest size asked; another asker may want more.
  if (!answer || answer.bytes > options.maxAnswerBytes) return 'too_large';
  const choices = Array.isArray(answer.body.choices)
    ? (answer.body.choices as Array<Record<string, unknown>>)
    : [];
  if (choices.length === 0) return 'incomplete';
  for (const choice of choices) {
    if (choice.finish_reason === 'content_filter') return 'content_filter';
    const message = choice.message as { tool_calls?: unknown } | undefined;
    const calls = Array.isArray(message?.tool_calls) && message.tool_calls.length > 0;
    if ((calls || choice.finish_reason === 'tool_calls') && !options.cacheToolCalls) return 'tool_calls';
    if (choice.finish_reason === null || choice.finish_reason === undefined) return 'incomplete';
  }
  return 'store';
}

/** Exchanges that ended before the answer was whole. */
const INCOMPLETE: ReadonlySet<string> = new Set(['stream_broken', 'client_aborted', 'timeout']);

/** The text of an answer's first choice, for comparing two answers (shadow mode). */
export function answerText(answer: Record<string, unknown>): string {
  const choice = Array.isArray(answer.choices)
    ? (answer.choices[0] as Record<string, unknown> | undefined)
    : undefined;
  const message = choice?.message as { content?: unknown; tool_calls?: unknown } | undefined;
  if (typeof message?.content === 'string') return message.content;
  return message?.tool_calls !== undefined ? JSON.stringify(message.tool_calls) : '';
}

/** Cosine similarity of two unit vectors. */
export function similarity(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += a[i]! * b[i]!;
  return dot;
}
