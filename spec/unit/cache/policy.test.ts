import type { RelayOutcome } from '../../../lib/context';
import {
  answerText,
  cacheControl,
  fillDecision,
  planRequest,
} from '../../../plugins/ai-semantic-cache/policy';

describe('cacheControl', () => {
  it.each([
    [undefined, false, false],
    ['', false, false],
    ['no-cache', true, false],
    ['No-Store', false, true],
    ['max-age=0, no-cache, no-store', true, true],
    ['no-cache="set-cookie"', true, false],
    ['private', false, false],
  ])('%p → no-cache %p, no-store %p', (header, noCache, noStore) => {
    expect(cacheControl(header)).toEqual({ noCache, noStore });
  });
});

describe('planRequest', () => {
  const base = {
    endpoint: 'chat.completions' as const,
    body: { model: 'm', messages: [] },
    control: { noCache: false, noStore: false },
    tenant: 'consumer:a',
    maxTemperature: 1,
  };

  it('looks up and stores a plain chat request', () => {
    expect(planRequest(base)).toEqual({ kind: 'use', lookup: true, fill: true });
  });

  it.each([
    ['another endpoint', { endpoint: 'embeddings' as const }, 'endpoint'],
    ['no body', { body: undefined }, 'endpoint'],
    ['no tenant', { tenant: undefined }, 'no_tenant'],
    ['a temperature above the maximum', { body: { temperature: 1.2 } }, 'temperature'],
    ['no temperature when the maximum is below the default 1', { maxTemperature: 0.5 }, 'temperature'],
    ['n above 1', { body: { n: 3 } }, 'choices'],
    ['no-cache and no-store', { control: { noCache: true, noStore: true } }, 'cache_control'],
  ])('bypasses %s', (_, change, reason) => {
    expect(planRequest({ ...base, ...change })).toEqual({ kind: 'bypass', reason });
  });

  it('no-cache skips the lookup only; no-store the fill only', () => {
    expect(planRequest({ ...base, control: { noCache: true, noStore: false } })).toEqual({
      kind: 'use',
      lookup: false,
      fill: true,
    });
    expect(planRequest({ ...base, control: { noCache: false, noStore: true } })).toEqual({
      kind: 'use',
      lookup: true,
      fill: false,
    });
  });

  it('a temperature at the maximum, and n = 1, are cached', () => {
    expect(planRequest({ ...base, body: { temperature: 1, n: 1 } }).kind).toBe('use');
  });
});

describe('fillDecision', () => {
  const answer = (choice: Record<string, unknown>) => ({
    body: {
      object: 'chat.completion',
      choices: [
        { index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop', ...choice },
      ],
    },
    bytes: 100,
  });
  const outcome = (extra: Partial<RelayOutcome> = {}): RelayOutcome => ({
    target: 't',
    provider: 'openai',
    model: 'm',
    status: 200,
    stream: false,
    started_at: 0,
    bytes_out: 100,
    end: 'complete',
    answer: answer({}),
    ...extra,
  });
  const store = { cacheToolCalls: false, maxAnswerBytes: 1_000 };

  it('stores a complete 200 answer', () => {
    expect(fillDecision(outcome(), store)).toBe('store');
  });

  it.each([
    ['no outcome', undefined, 'error'],
    ['a provider error', outcome({ status: 502, end: 'upstream_error', answer: undefined }), 'error'],
    ['a 4xx passed through', outcome({ status: 400, end: 'upstream_error' }), 'error'],
    ['a broken stream', outcome({ end: 'stream_broken', answer: undefined }), 'incomplete'],
    ['an aborted client', outcome({ status: 200, end: 'client_aborted' }), 'incomplete'],
    ['a timeout', outcome({ status: 504, end: 'timeout' }), 'incomplete'],
    ['no recorded answer (above the size limit)', outcome({ answer: undefined }), 'too_large'],
    [
      'an answer kept for someone who asked for more bytes',
      outcome({ answer: { ...answer({}), bytes: 1_001 } }),
      'too_large',
    ],
    [
      'a content-filtered answer',
      outcome({ answer: answer({ finish_reason: 'content_filter' }) }),
      'content_filter',
    ],
    ['an answer without a finish reason', outcome({ answer: answer({ finish_reason: null }) }), 'incomplete'],
    [
      'a tool call',
      outcome({
        answer: answer({
          message: { role: 'assistant', content: null, tool_calls: [{ id: 'x' }] },
          finish_reason: 'tool_calls',
        }),
      }),
      'tool_calls',
    ],
  ])('does not store %s', (_, o, reason) => {
    expect(fillDecision(o as RelayOutcome | undefined, store)).toBe(reason);
  });

  it('stores tool calls when cache_tool_calls is on', () => {
    const o = outcome({
      answer: answer({
        message: { role: 'assistant', content: null, tool_calls: [{ id: 'x' }] },
        finish_reason: 'tool_calls',
      }),
    });
    expect(fillDecision(o, { ...store, cacheToolCalls: true })).toBe('store');
  });
});

describe('answerText', () => {
  it('is the first choice content, or its tool calls', () => {
    expect(answerText({ choices: [{ message: { content: 'hello' } }] })).toBe('hello');
    expect(answerText({ choices: [{ message: { content: null, tool_calls: [{ id: 'a' }] } }] })).toBe(
      '[{"id":"a"}]',
    );
    expect(answerText({})).toBe('');
  });
});
