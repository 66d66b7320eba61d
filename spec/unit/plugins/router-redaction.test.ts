import fc from 'fast-check';
import { parseSse, serializeSse } from '../../../lib/llm/sse';
import type { StreamStep, StreamTranslator } from '../../../lib/relay/providers';
import { openaiStreamTranslator } from '../../../lib/relay/providers/openai/stream';
import {
  PromptRedactor,
  type RedactionConfig,
  restoreAnswer,
  restoreText,
  restoringTranslator,
  type Vault,
} from '../../../plugins/ai-router/redaction';
import { REDACTED_ENTITIES } from '../../../schemas/ai-router';

const CONFIG: RedactionConfig = { enabled: true, entities: [...REDACTED_ENTITIES], restore: true };
const redactor = new PromptRedactor(CONFIG);

type Body = Record<string, unknown>;
const chat = (...contents: unknown[]): Body => ({
  model: 'm',
  messages: contents.map((content) => ({ role: 'user', content })),
});
/** The masked text of a one-message chat request, and its vault. */
function maskOne(text: string, r = redactor): { text: string; vault: Vault } | undefined {
  const out = r.mask('chat.completions', chat(text));
  if (!out) return undefined;
  return { text: (out.body.messages as Array<{ content: string }>)[0].content, vault: out.vault };
}

/** The masked body and vault of a request where something is found. */
function mustMask(endpoint: Parameters<PromptRedactor['mask']>[0], body: Body) {
  const out = redactor.mask(endpoint, body);
  if (!out) throw new Error('nothing was masked');
  return out;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

describe('PromptRedactor.mask: entity kinds', () => {
  it.each([
    ['email', 'write jane.doe+ai@example.co.uk', '[EMAIL_1]'],
    ['phone', 'call +1 (415) 555-0100', '[PHONE_1]'],
    ['phone', 'appelez +33 6 12 34 56 78', '[PHONE_1]'],
    ['card', 'card 4111 1111 1111 1111', '[CARD_1]'],
    ['iban', 'IBAN DE89 3704 0044 0532 0130 00', '[IBAN_1]'],
    ['US SSN', 'ssn 123-45-6789', '[NATIONAL_ID_1]'],
    ['UK NINO', 'NINO AB 12 34 56 C', '[NATIONAL_ID_1]'],
    ['French NIR', 'NIR 2 55 08 14 168 025 38', '[NATIONAL_ID_1]'],
    ['Spanish DNI', 'DNI 12345678Z', '[NATIONAL_ID_1]'],
    ['Spanish NIE', 'NIE X1234567L', '[NATIONAL_ID_1]'],
    ['Italian codice fiscale', 'CF RSSMRA85T10A562S', '[NATIONAL_ID_1]'],
    ['IPv4', 'host 192.168.10.254', '[IP_1]'],
    ['IPv6', 'host 2001:db8:85a3::8a2e:370:7334', '[IP_1]'],
    ['OpenAI key', 'key sk-proj-abcdefghijklmnop', '[SECRET_1]'],
    ['Anthropic key', 'key sk-ant-api03-abcdefghijklmnop', '[SECRET_1]'],
    ['AWS access key', 'id AKIAIOSFODNN7EXAMPLE', '[SECRET_1]'],
    ['bearer token', 'header Bearer abc123.def456-ghi', '[SECRET_1]'],
    ['JWT', 'jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N', '[SECRET_1]'],
    [
      'private key block',
      'pem -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END PRIVATE KEY-----',
      '[SECRET_1]',
    ],
  ])('%s', (_kind, text, placeholder) => {
    const out = maskOne(text);
    // The value is what follows the first word.
    const value = text.slice(text.indexOf(' ') + 1);
    expect(out?.text).toBe(text.replace(value, placeholder));
    expect([...(out?.vault ?? [])]).toEqual([[placeholder, value]]);
  });

  it('masks only the value after a secret name', () => {
    const out = maskOne('use password=hunter2hunter2 please');
    expect(out?.text).toBe('use password=[SECRET_1] please');
    expect(out?.vault.get('[SECRET_1]')).toBe('hunter2hunter2');
  });

  it('leaves near-misses: failing checksums, dates, times, versions, prose', () => {
    for (const text of [
      'order 4111 1111 1111 1112',
      'IBAN DE89 3704 0044 0532 0130 02',
      'NIR 2 55 08 14 168 025 39',
      'DNI 12345678A',
      'CF RSSMRA85T10A562T',
      'ssn 000-12-3456',
      'NI GB 12 34 56 C',
      'on 2024-01-15 at 10:30:00, or 15.01.2024',
      'version 1.2.3 and build 10.0.19045.2965',
      'room 1234, 42 apples',
      'Bearer tokens and Basic authentication',
      'mail root@localhost',
    ]) {
      expect(maskOne(text)).toBeUndefined();
    }
  });

  it('masks only the chosen entities', () => {
    const onlyEmail = new PromptRedactor({ ...CONFIG, entities: ['email'] });
    const out = maskOne('a@b.io 123-45-6789 +1 415 555 0100', onlyEmail);
    expect(out?.text).toBe('[EMAIL_1] 123-45-6789 +1 415 555 0100');
    expect(new PromptRedactor({ ...CONFIG, entities: [] }).mask('chat.completions', chat('a@b.io'))).toBe(
      undefined,
    );
    expect(new PromptRedactor({ ...CONFIG, enabled: false }).mask('chat.completions', chat('a@b.io'))).toBe(
      undefined,
    );
  });

  it('gives the same value the same placeholder and different values different numbers, per kind', () => {
    const out = redactor.mask('chat.completions', chat('a@b.io and c@d.io', 'again a@b.io, ip 10.0.0.1'));
    const messages = out?.body.messages as Array<{ content: string }>;
    expect(messages[0].content).toBe('[EMAIL_1] and [EMAIL_2]');
    expect(messages[1].content).toBe('again [EMAIL_1], ip [IP_1]');
    expect(Object.fromEntries(out?.vault ?? [])).toEqual({
      '[EMAIL_1]': 'a@b.io',
      '[EMAIL_2]': 'c@d.io',
      '[IP_1]': '10.0.0.1',
    });
  });

  it('returns undefined when nothing is found', () => {
    expect(
      redactor.mask('chat.completions', chat('hello there', [{ type: 'text', text: 'hi' }])),
    ).toBeUndefined();
    expect(redactor.mask('chat.completions', { model: 'm' })).toBeUndefined();
    expect(redactor.mask('embeddings', { model: 'm', input: [1, 2, 3] })).toBeUndefined();
    expect(redactor.mask('models', { messages: [{ role: 'user', content: 'a@b.io' }] })).toBeUndefined();
  });

  it('never changes the input body, and copies only what it changes', () => {
    const untouched = { role: 'system', content: 'be brief' };
    const body = deepFreeze({
      model: 'm',
      tools: [{ type: 'function', function: { name: 'f' } }],
      messages: [untouched, { role: 'user', content: [{ type: 'text', text: 'mail a@b.io' }] }],
    });
    const before = structuredClone(body);
    const out = mustMask('chat.completions', body);
    expect(body).toEqual(before);
    expect(out.body).not.toBe(body);
    expect(out.body.tools).toBe(body.tools);
    expect((out.body.messages as unknown[])[0]).toBe(untouched);
  });

  it('skips numbers of placeholder-looking text already in the prompt, which is never restored', () => {
    const out = maskOne('template [EMAIL_1] for me@x.io');
    expect(out?.text).toBe('template [EMAIL_1] for [EMAIL_2]');
    expect([...(out?.vault.keys() ?? [])]).toEqual(['[EMAIL_2]']);
    expect(restoreText('[EMAIL_1] then [EMAIL_2]', out!.vault)).toBe('[EMAIL_1] then me@x.io');
  });
});

describe('PromptRedactor.mask: message shapes', () => {
  it('masks string content of every role, text parts and refusals, leaving other parts', () => {
    const image = { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } };
    const body = {
      model: 'm',
      messages: [
        { role: 'system', content: 'admin is ops@corp.io' },
        { role: 'developer', content: 'key sk-proj-abcdefghijklmnop' },
        { role: 'user', content: [{ type: 'text', text: 'from 10.1.2.3' }, image] },
        { role: 'assistant', content: [{ type: 'refusal', refusal: 'not for ops@corp.io' }] },
      ],
    };
    const out = mustMask('chat.completions', body);
    expect(out.body.messages).toEqual([
      { role: 'system', content: 'admin is [EMAIL_1]' },
      { role: 'developer', content: 'key [SECRET_1]' },
      { role: 'user', content: [{ type: 'text', text: 'from [IP_1]' }, image] },
      { role: 'assistant', content: [{ type: 'refusal', refusal: 'not for [EMAIL_1]' }] },
    ]);
    expect(((out.body.messages as Body[])[2].content as unknown[])[1]).toBe(image);
  });

  it('masks the strings inside tool-call arguments and keeps them valid JSON', () => {
    const pem = '-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----';
    const args = JSON.stringify({ to: 'a@b.io', note: { key: pem, n: 3 }, cc: ['a@b.io'] });
    const body = {
      model: 'm',
      messages: [
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'c1', type: 'function', function: { name: 'send', arguments: args } }],
        },
        { role: 'tool', tool_call_id: 'c1', content: '{"sent_to":"a@b.io"}' },
        { role: 'tool', tool_call_id: 'c2', content: [{ type: 'text', text: 'card 5500-0000-0000-0004' }] },
      ],
    };
    const out = mustMask('chat.completions', body);
    const [call, result, parts] = out.body.messages as Body[];
    const sent = (call.tool_calls as Array<{ function: { arguments: string } }>)[0].function.arguments;
    expect(JSON.parse(sent)).toEqual({
      to: '[EMAIL_1]',
      note: { key: '[SECRET_1]', n: 3 },
      cc: ['[EMAIL_1]'],
    });
    expect(out?.vault.get('[SECRET_1]')).toBe(pem);
    expect(result.content).toBe('{"sent_to":"[EMAIL_1]"}');
    expect(parts.content).toEqual([{ type: 'text', text: 'card [CARD_1]' }]);
  });

  it('masks tool-call arguments that are not JSON as text, and the legacy function_call', () => {
    const body = {
      model: 'm',
      messages: [
        { role: 'assistant', tool_calls: [{ function: { name: 'f', arguments: '{"to": "a@b.io"' } }] },
        { role: 'assistant', function_call: { name: 'g', arguments: '{"ip":"10.0.0.1"}' } },
        { role: 'function', name: 'g', content: 'reached 10.0.0.1' },
      ],
    };
    const out = redactor.mask('chat.completions', body);
    expect(out?.body.messages).toEqual([
      { role: 'assistant', tool_calls: [{ function: { name: 'f', arguments: '{"to": "[EMAIL_1]"' } }] },
      { role: 'assistant', function_call: { name: 'g', arguments: '{"ip":"[IP_1]"}' } },
      { role: 'function', name: 'g', content: 'reached [IP_1]' },
    ]);
  });

  it('masks arguments nested too deep to walk as raw text', () => {
    const deep = `${'['.repeat(100)}"a@b.io"${']'.repeat(100)}`;
    const body = {
      messages: [{ role: 'assistant', tool_calls: [{ function: { name: 'f', arguments: deep } }] }],
    };
    const out = mustMask('chat.completions', body);
    const args = (out.body.messages as Array<{ tool_calls: Array<{ function: { arguments: string } }> }>)[0]
      .tool_calls[0].function.arguments;
    expect(args).toBe(deep.replace('a@b.io', '[EMAIL_1]'));
  });

  it('masks a completions prompt (string or array) and an embeddings input, leaving token arrays', () => {
    expect(redactor.mask('completions', { prompt: 'mail a@b.io' })?.body.prompt).toBe('mail [EMAIL_1]');
    expect(redactor.mask('completions', { prompt: ['x', 'mail a@b.io', [1, 2]] })?.body.prompt).toEqual([
      'x',
      'mail [EMAIL_1]',
      [1, 2],
    ]);
    expect(redactor.mask('embeddings', { input: 'ip 10.0.0.1' })?.body.input).toBe('ip [IP_1]');
    expect(redactor.mask('embeddings', { input: ['a@b.io', 'c@d.io'] })?.body.input).toEqual([
      '[EMAIL_1]',
      '[EMAIL_2]',
    ]);
    // The prompt field of another endpoint is not read.
    expect(redactor.mask('embeddings', { prompt: 'a@b.io' })).toBeUndefined();
  });

  it('survives bodies of the wrong shape', () => {
    for (const messages of [null, 'a@b.io', [null, 3, 'a@b.io', { content: 42 }, { tool_calls: 'x' }]]) {
      expect(redactor.mask('chat.completions', { messages })).toBeUndefined();
    }
  });
});

const VAULT: Vault = new Map([
  ['[EMAIL_1]', 'jane@example.com'],
  ['[EMAIL_12]', 'bob@example.com'],
  ['[SECRET_1]', 'line1\n"quoted"\\end'],
]);

describe('restoreAnswer', () => {
  it('puts values back in content, refusal, text, tool-call and function-call arguments (JSON-escaped)', () => {
    const body = deepFreeze({
      id: 'x',
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: 'Wrote to [EMAIL_1] and [EMAIL_12].',
            refusal: 'no [EMAIL_1]',
            tool_calls: [
              { id: 'c', function: { name: 'f', arguments: '{"to":"[EMAIL_1]","key":"[SECRET_1]"}' } },
            ],
            function_call: { name: 'g', arguments: '{"k":"[SECRET_1]"}' },
          },
        },
        { index: 1, text: 'legacy [EMAIL_1]' },
      ],
    });
    const out = restoreAnswer(body, VAULT) as typeof body;
    const message = out.choices[0].message!;
    expect(message.content).toBe('Wrote to jane@example.com and bob@example.com.');
    expect(message.refusal).toBe('no jane@example.com');
    expect(JSON.parse(message.tool_calls[0].function.arguments)).toEqual({
      to: 'jane@example.com',
      key: 'line1\n"quoted"\\end',
    });
    expect(JSON.parse(message.function_call.arguments)).toEqual({ k: 'line1\n"quoted"\\end' });
    expect(out.choices[1].text).toBe('legacy jane@example.com');
  });

  it('returns the very body when there is nothing to restore, and survives odd shapes', () => {
    const body = { choices: [{ message: { content: 'no placeholder [here]' } }], usage: {} };
    expect(restoreAnswer(body, VAULT)).toBe(body);
    for (const odd of [null, 'text', [], { choices: 'x' }, { choices: [null, { message: 3 }] }]) {
      expect(restoreAnswer(odd, VAULT)).toBe(odd);
    }
  });

  it('leaves placeholders the model mangled or made up', () => {
    const body = { choices: [{ message: { content: '[EMAIL 1] [email_1] [EMAIL_1 [EMAIL_2] EMAIL_1]' } }] };
    expect(restoreAnswer(body, VAULT)).toBe(body);
  });
});

describe('restore switch', () => {
  it('with restore off, answers and streams are passed as they are', () => {
    const off = new PromptRedactor({ ...CONFIG, restore: false });
    const masked = off.mask('chat.completions', chat('a@b.io'));
    expect(masked?.body.messages).toEqual([{ role: 'user', content: '[EMAIL_1]' }]);
    const answer = { choices: [{ message: { content: '[EMAIL_1]' } }] };
    expect(off.restoreAnswer(answer, masked!.vault)).toBe(answer);
    const inner = openaiStreamTranslator('chat.completions', { clientWantsUsage: false });
    expect(off.restoringTranslator(inner, masked!.vault)).toBe(inner);
    // On: the same calls restore.
    expect(redactor.restoreAnswer(answer, masked!.vault)).toEqual({
      choices: [{ message: { content: 'a@b.io' } }],
    });
  });
});

// Streams: the real OpenAI translator, wrapped.

const ENVELOPE = { id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'm' };
const sse = (chunk: unknown) => ({ data: JSON.stringify(chunk) });
const contentChunk = (content: string, index = 0) =>
  sse({ ...ENVELOPE, choices: [{ index, delta: { content }, finish_reason: null }] });
const finishChunk = (index = 0) =>
  sse({ ...ENVELOPE, choices: [{ index, delta: {}, finish_reason: 'stop' }] });
const DONE = { data: '[DONE]' };

/** Runs events through a restoring translator; returns the steps and the chunks the client got. */
function run(events: Array<{ data: string }>, vault: Vault, inner?: StreamTranslator) {
  const t = restoringTranslator(
    inner ?? openaiStreamTranslator('chat.completions', { clientWantsUsage: true }),
    vault,
  );
  const steps: StreamStep[] = events.map((e) => t.onEvent(e));
  const sent = steps.flatMap((s) => s.emit).flatMap((text) => parseSse(text).map((e) => e.data));
  const chunks = sent.filter((d) => d !== '[DONE]').map((d) => JSON.parse(d));
  return { steps, sent, chunks };
}

/** The text of one choice's `delta.content` across chunks. */
const contentOf = (
  chunks: Array<{ choices: Array<{ index: number; delta?: { content?: string } }> }>,
  index = 0,
) =>
  chunks
    .flatMap((c) => c.choices)
    .filter((c) => c.index === index)
    .map((c) => c.delta?.content ?? '')
    .join('');

/** Cuts `text` at the given positions. */
function cut(text: string, at: number[]): string[] {
  const points = [...new Set(at.map((p) => Math.min(p, text.length)))].sort((a, b) => a - b);
  const pieces: string[] = [];
  let from = 0;
  for (const p of points) {
    pieces.push(text.slice(from, p));
    from = p;
  }
  pieces.push(text.slice(from));
  return pieces;
}

/** Pieces of answers, ours and near-misses, so random cuts land inside placeholders often. */
const answerText = fc
  .array(
    fc.constantFrom(
      '[EMAIL_1]',
      '[EMAIL_12]',
      '[SECRET_1]',
      '[EMAIL_2]',
      '[EMAIL_',
      '[EMA',
      '[',
      ']',
      '[[',
      'EMAIL_1]',
      'Hello ',
      'é',
      '😀',
      ' x ',
    ),
    { maxLength: 12 },
  )
  .map((parts) => parts.join(''));

describe('restoringTranslator', () => {
  it('restores a placeholder split at every position, sends the same text, and keeps content and contentChars', () => {
    const answer = 'Mail [EMAIL_1], then [EMAIL_12] with [SECRET_1]!';
    const expected = restoreText(answer, VAULT);
    for (let i = 0; i <= answer.length; i++) {
      for (let j = i; j <= answer.length; j += 3) {
        const pieces = cut(answer, [i, j]);
        const { steps, sent, chunks } = run(
          [...pieces.map((p) => contentChunk(p)), finishChunk(), DONE],
          VAULT,
        );
        expect(contentOf(chunks)).toBe(expected);
        expect(sent.at(-1)).toBe('[DONE]');
        expect(steps.map((s) => s.content ?? '').join('')).toBe(expected);
        expect(steps.reduce((n, s) => n + (s.contentChars ?? 0), 0)).toBe(expected.length);
      }
    }
  });

  it('property: any answer cut anywhere comes out as the whole answer restored, never holding more than a placeholder start', () => {
    const longest = Math.max(...[...VAULT.keys()].map((k) => k.length));
    fc.assert(
      fc.property(answerText, fc.array(fc.nat(200)), fc.boolean(), (answer, at, finishChunkSent) => {
        const pieces = cut(answer, at);
        const t = restoringTranslator(
          openaiStreamTranslator('chat.completions', { clientWantsUsage: true }),
          VAULT,
        );
        let raw = '';
        let out = '';
        for (const piece of pieces) {
          raw += piece;
          const step = t.onEvent(contentChunk(piece));
          out += contentOf(step.emit.flatMap((e) => parseSse(e)).map((e) => JSON.parse(e.data)));
          // What is not sent yet is empty or the start of one of the vault's placeholders.
          const held = [...Array(raw.length + 1).keys()].find(
            (h) => restoreText(raw.slice(0, raw.length - h), VAULT) === out,
          );
          expect(held).toBeDefined();
          if (held! > 0) {
            const tail = raw.slice(raw.length - held!);
            expect(tail.length).toBeLessThan(longest);
            expect([...VAULT.keys()].some((k) => k.startsWith(tail) && k !== tail)).toBe(true);
          }
        }
        const end = [...(finishChunkSent ? [finishChunk()] : []), DONE].flatMap((e) => t.onEvent(e).emit);
        const rest = end.flatMap((e) => parseSse(e)).filter((e) => e.data !== '[DONE]');
        out += contentOf(rest.map((e) => JSON.parse(e.data)));
        expect(out).toBe(restoreText(answer, VAULT));
        expect(parseSse(end.at(-1)!)[0].data).toBe('[DONE]');
      }),
    );
  });

  it('flushes a held tail with the chunk carrying finish_reason', () => {
    const { steps, chunks } = run([contentChunk('see [EMAIL_'), finishChunk(), DONE], VAULT);
    expect(steps[0].content).toBe('see ');
    expect(chunks[1].choices[0]).toEqual({ index: 0, delta: { content: '[EMAIL_' }, finish_reason: 'stop' });
    expect(steps[1].content).toBe('[EMAIL_');
    expect(steps[1].contentChars).toBe(7);
  });

  it('flushes before [DONE] when no chunk carries finish_reason', () => {
    const { sent, chunks } = run([contentChunk('to [EMAIL_1'), DONE], VAULT);
    expect(sent.at(-1)).toBe('[DONE]');
    expect(chunks[1]).toEqual({
      ...ENVELOPE,
      choices: [{ index: 0, delta: { content: '[EMAIL_1' }, finish_reason: null }],
    });
    expect(contentOf(chunks)).toBe('to [EMAIL_1');
  });

  it('passes chunks it does not change as the provider wrote them', () => {
    const event = {
      data: `{"id":"x","choices":[{"index":0,"delta":{"content":"plain [text]"}}],  "extra":1}`,
    };
    const step = restoringTranslator(
      openaiStreamTranslator('chat.completions', { clientWantsUsage: true }),
      VAULT,
    ).onEvent(event);
    expect(step.emit).toEqual([serializeSse(event)]);
  });

  it('restores streamed tool-call arguments as JSON, per tool call', () => {
    const call = (index: number, args: string, extra: object = {}) =>
      sse({
        ...ENVELOPE,
        choices: [{ index: 0, delta: { tool_calls: [{ index, ...extra, function: { arguments: args } }] } }],
      });
    const events = [
      call(0, '', { id: 'a', type: 'function' }),
      call(0, '{"to":"[EMA'),
      call(1, '{"key":"[SECRET'),
      call(0, 'IL_1]"}'),
      call(1, '_1'),
      sse({ ...ENVELOPE, choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] }),
      DONE,
    ];
    const { chunks } = run(events, VAULT);
    const args = new Map<number, string>();
    for (const c of chunks) {
      for (const tc of c.choices[0]?.delta?.tool_calls ?? []) {
        args.set(tc.index, (args.get(tc.index) ?? '') + tc.function.arguments);
      }
    }
    expect(JSON.parse(args.get(0)!)).toEqual({ to: 'jane@example.com' });
    // The model stopped mid-way: the tail goes out as it came, not restored.
    expect(args.get(1)).toBe('{"key":"[SECRET_1');
  });

  it('keeps choices apart', () => {
    const events = [
      contentChunk('a [EMAIL', 0),
      contentChunk('b [EMAIL_1', 1),
      contentChunk('_1]', 0),
      contentChunk(']', 1),
      finishChunk(0),
      finishChunk(1),
      DONE,
    ];
    const { chunks, steps } = run(events, VAULT);
    expect(contentOf(chunks, 0)).toBe('a jane@example.com');
    expect(contentOf(chunks, 1)).toBe('b jane@example.com');
    // A step's content is choice 0's text.
    expect(steps.map((s) => s.content ?? '').join('')).toBe('a jane@example.com');
  });

  it('restores a streamed legacy completion text', () => {
    const text = (t: string, finish: string | null = null) =>
      sse({
        ...ENVELOPE,
        object: 'text_completion',
        choices: [{ index: 0, text: t, finish_reason: finish }],
      });
    const t = restoringTranslator(openaiStreamTranslator('completions', { clientWantsUsage: true }), VAULT);
    const out = [text('hi [EM'), text('AIL_1'), text(']', 'stop'), DONE]
      .flatMap((e) => t.onEvent(e).emit)
      .flatMap((e) => parseSse(e))
      .filter((e) => e.data !== '[DONE]')
      .map((e) => JSON.parse(e.data).choices[0].text)
      .join('');
    expect(out).toBe('hi jane@example.com');
  });

  it('leaves a mangled placeholder as the model wrote it', () => {
    const { chunks } = run(
      [contentChunk('[EMAIL_'), contentChunk(' 1] and [EMAIL_9]'), finishChunk(), DONE],
      VAULT,
    );
    expect(contentOf(chunks)).toBe('[EMAIL_ 1] and [EMAIL_9]');
  });

  it('passes errors, usage-only chunks and non-JSON events through', () => {
    const inner = openaiStreamTranslator('chat.completions', { clientWantsUsage: false });
    const t = restoringTranslator(inner, VAULT);
    expect(t.onEvent({ data: 'not json' }).error?.code).toBe('AIGW_STREAM_BROKEN');
    const usage = t.onEvent(
      sse({ ...ENVELOPE, choices: [], usage: { prompt_tokens: 1, completion_tokens: 2 } }),
    );
    expect(usage.emit).toEqual([]);
    expect(usage.usage?.output_tokens).toBe(2);
    const odd: StreamTranslator = { onEvent: (e) => ({ emit: [serializeSse(e), ': comment\n\n'] }) };
    expect(restoringTranslator(odd, VAULT).onEvent({ data: 'plain [EMAIL_1]' }).emit).toEqual([
      serializeSse({ data: 'plain [EMAIL_1]' }),
      ': comment\n\n',
    ]);
  });

  it('with an empty vault, is the inner translator step for step', () => {
    const step = run([contentChunk('[EMAIL_1')], new Map()).steps[0];
    expect(step.content).toBe('[EMAIL_1');
  });
});
