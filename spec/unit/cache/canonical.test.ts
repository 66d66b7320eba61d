import fc from 'fast-check';
import {
  answerShape,
  canonicalJson,
  conversationText,
  digest,
  exactIdOf,
  partitionOf,
} from '../../../lib/cache/canonical';

const user = (content: unknown) => ({ role: 'user', content });
const body = (extra: Record<string, unknown> = {}) => ({
  model: 'gpt-4o-mini',
  messages: [user('Hello')],
  temperature: 0,
  ...extra,
});

describe('canonicalJson', () => {
  it('sorts keys at every level and drops undefined members', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: undefined, x: 2 }], c: null } })).toBe(
      '{"a":{"c":null,"d":[1,{"x":2,"z":1}]},"b":1}',
    );
  });

  it('is the same for any key order (property)', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (record) => {
        const reversed = Object.fromEntries(Object.entries(record).reverse());
        expect(canonicalJson(reversed)).toBe(canonicalJson(record));
        expect(JSON.parse(canonicalJson(record))).toEqual(JSON.parse(JSON.stringify(record)));
      }),
    );
  });

  it('tells strings, numbers and nulls apart', () => {
    expect(canonicalJson({ a: '1' })).not.toBe(canonicalJson({ a: 1 }));
    expect(canonicalJson([null])).not.toBe(canonicalJson(['null']));
  });
});

describe('digest', () => {
  it('is a 43-character base64url SHA-256', () => {
    expect(digest('x')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(digest('x')).not.toBe(digest('y'));
  });
});

describe('exactIdOf', () => {
  it('ignores key order and delivery fields', () => {
    const a = exactIdOf(body(), 'r');
    expect(exactIdOf({ temperature: 0, messages: [user('Hello')], model: 'gpt-4o-mini' }, 'r')).toBe(a);
    expect(
      exactIdOf(
        body({ stream: true, stream_options: { include_usage: true }, user: 'u-1', metadata: { a: 1 } }),
        'r',
      ),
    ).toBe(a);
  });

  it.each([
    ['the model', { model: 'gpt-4o' }],
    ['the temperature', { temperature: 0.7 }],
    ['top_p', { top_p: 0.5 }],
    ['the seed', { seed: 7 }],
    ['max_tokens', { max_tokens: 10 }],
    ['tools', { tools: [{ type: 'function', function: { name: 'f' } }] }],
    ['response_format', { response_format: { type: 'json_object' } }],
    ['an unknown field', { some_new_option: true }],
    ['the messages', { messages: [user('Hello!')] }],
  ])('changes with %s', (_, extra) => {
    expect(exactIdOf(body(extra), 'r')).not.toBe(exactIdOf(body(), 'r'));
  });

  it('changes with the route', () => {
    expect(exactIdOf(body(), 'route-a')).not.toBe(exactIdOf(body(), 'route-b'));
  });
});

describe('partitionOf', () => {
  it('is the same for two conversations with equal parameters and system prompt', () => {
    expect(partitionOf(body({ messages: [user('a')] }), 'r')).toBe(
      partitionOf(body({ messages: [user('b')] }), 'r'),
    );
  });

  it('changes with a parameter, the system prompt or the route', () => {
    const base = partitionOf(body(), 'r');
    expect(partitionOf(body({ temperature: 1 }), 'r')).not.toBe(base);
    expect(
      partitionOf(body({ messages: [{ role: 'system', content: 'Be brief.' }, user('Hello')] }), 'r'),
    ).not.toBe(base);
    expect(partitionOf(body(), 'other')).not.toBe(base);
  });

  it('answerShape keeps every shaping field and drops messages and delivery fields', () => {
    expect(answerShape(body({ stream: true, seed: 1 }))).toEqual({
      model: 'gpt-4o-mini',
      temperature: 0,
      seed: 1,
    });
  });
});

describe('conversationText', () => {
  const last = { mode: 'last_user' } as const;
  const turns = (n: number) => ({ mode: 'last_turns', turns: n }) as const;
  const convo = [
    { role: 'system', content: 'Be brief.' },
    user('What is 2+2?'),
    { role: 'assistant', content: '4' },
    user([{ type: 'text', text: 'And times 3?' }]),
  ];

  it('last_user: the last user message (text parts joined)', () => {
    expect(conversationText({ messages: convo }, last)).toBe('And times 3?');
  });

  it('last_turns: the last N non-system messages with their roles', () => {
    expect(conversationText({ messages: convo }, turns(2))).toBe('assistant: 4\nuser: And times 3?');
    expect(conversationText({ messages: convo }, turns(10))).toBe(
      'user: What is 2+2?\nassistant: 4\nuser: And times 3?',
    );
  });

  it.each([
    ['no messages', []],
    ['a tool result last', [user('x'), { role: 'tool', content: '42', tool_call_id: 't' }]],
    ['an assistant message last', [user('x'), { role: 'assistant', content: 'prefill' }]],
    [
      'an image part',
      [
        user([
          { type: 'text', text: 'what is this' },
          { type: 'image_url', image_url: { url: 'x' } },
        ]),
      ],
    ],
    ['an empty text', [user('   ')]],
  ])('no semantic text with %s', (_, messages) => {
    expect(conversationText({ messages }, last)).toBeUndefined();
  });
});
