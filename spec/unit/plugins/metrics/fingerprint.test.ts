import fc from 'fast-check';
import { fingerprint, MAX_TEMPLATE_CHARS, templateId } from '../../../../plugins/ai-metrics/fingerprint';

describe('fingerprint: each kind of variable part', () => {
  it.each([
    [
      'integers, decimals, separators',
      'Sum 12 and 3.75 and 1,249,000.5 and 4_096',
      'Sum <num> and <num> and <num> and <num>',
    ],
    [
      'percentages and currencies',
      'A 15% tip on $1,249.99 or €5 or 20 %',
      'A <num> tip on <num> or <num> or <num>',
    ],
    [
      'double and curly quotes',
      'Greet "Jane Roe" and “Ann” and „Jörg“ and «Zoé»',
      'Greet <str> and <str> and <str> and <str>',
    ],
    ['single quotes, not apostrophes', "Don't rename 'Bob's file' or ‘Ann’s’", "Don't rename <str> or <str>"],
    [
      'backticks and code fences',
      'Run `npm test` then explain ```js\nconst x = 1;\n``` please',
      'Run <str> then explain <code> please',
    ],
    ['emails', 'Reply to jane.roe+tag@mail.example.co.uk now', 'Reply to <email> now'],
    [
      'URLs, without the sentence punctuation',
      'See https://example.com/a?b=1, www.example.org/x.',
      'See <url>, <url>.',
    ],
    ['UUIDs', 'Ticket 123e4567-e89b-12d3-a456-426614174000 is open', 'Ticket <id> is open'],
    [
      'long ids and hashes',
      'Order ORD-2024-000917, user_48213, commit 9fceb02d0ae598e95dc970b74767f19372d61af8',
      'Order <id>, <id>, commit <id>',
    ],
    [
      'short words with digits keep their letters',
      'Use gpt4 for COVID-19 on the 1st',
      'Use gpt<num> for COVID-<num> on the <num>st',
    ],
    ['ISO dates and date-times', 'From 2024-03-15 to 2024-03-16T10:00:00Z', 'From <date> to <date>'],
    ['US and EU dates', 'Due 12/31/2024, 31.12.2024 or 31-12-24', 'Due <date>, <date> or <date>'],
    [
      'dates with month names',
      'On May 5, 2024, 5th of June, Sept. 9 and March 2024',
      'On <date>, <date>, <date> and <date>',
    ],
    ['times', 'At 14:30, 09:15:02.5 or 2:30 pm or 5pm', 'At <time>, <time> or <time> or <time>'],
    ['IP addresses', 'Hosts 192.168.0.1, 2001:db8::ff00:42:8329 and ::1', 'Hosts <ip>, <ip> and <ip>'],
    [
      'phone numbers',
      'Call +1 (555) 123-4567, (555) 123-4567 or 555-123-4567',
      'Call <phone>, <phone> or <phone>',
    ],
  ])('%s', (_kind, prompt, template) => {
    expect(fingerprint(prompt)).toBe(template);
  });

  it('leaves plain words alone: month-like words, apostrophes, C++ scopes', () => {
    const text = "May I ask why std::vector isn't a list? Mark's answer: it's not.";
    expect(fingerprint(text)).toBe(text);
  });

  it('makes whitespace runs one space and keeps case', () => {
    expect(fingerprint('  Summarize\n\n\tTHIS   text\u00a0now \r\n')).toBe('Summarize THIS text now');
  });

  it('gives prompts of one template one fingerprint', () => {
    const a = fingerprint('Write a haiku about "autumn" for alice@example.com, 3 lines, due 2024-10-01');
    const b = fingerprint(
      'Write a haiku about "the sea at night" for bob.smith@corp.io, 17 lines, due 2025-01-31',
    );
    expect(a).toBe(b);
    expect(a).toBe('Write a haiku about <str> for <email>, <num> lines, due <date>');
  });

  it('reads only the first MAX_TEMPLATE_CHARS characters', () => {
    const head = 'Classify this ticket. '.repeat(100).slice(0, MAX_TEMPLATE_CHARS);
    expect(fingerprint(`${head} tail one 1`)).toBe(fingerprint(`${head} a completely different tail`));
    expect(fingerprint(`${head}xyz`).length).toBeLessThanOrEqual(MAX_TEMPLATE_CHARS);
  });

  it('cuts a template longer than MAX_TEMPLATE_CHARS (placeholders are longer than digits)', () => {
    const t = fingerprint('1 '.repeat(MAX_TEMPLATE_CHARS));
    expect(t.length).toBeLessThanOrEqual(MAX_TEMPLATE_CHARS);
    expect(t.startsWith('<num> <num>')).toBe(true);
    expect(fingerprint(t)).toBe(t);
  });

  it('does not cut a surrogate pair at the window edge, and replaces lone surrogates', () => {
    const prompt = `${'a'.repeat(MAX_TEMPLATE_CHARS - 1)}🙂 more`;
    const t = fingerprint(prompt);
    expect(t).toBe('a'.repeat(MAX_TEMPLATE_CHARS - 1));
    expect(fingerprint('bad \ud800 text \udc00')).toBe('bad \ufffd text \ufffd');
  });

  it('ends on a text whose only single quote opens it and is followed by a digit', () => {
    expect(fingerprint("'5")).toBe("'<num>");
    expect(fingerprint("'5 and ‘5")).toBe("'<num> and ‘<num>");
  });

  it('answers an empty or blank prompt with an empty template', () => {
    expect(fingerprint('')).toBe('');
    expect(fingerprint(' \n\t ')).toBe('');
  });
});

/** Pieces that meet at the edges of the masks: digits, quotes of every kind, separators, placeholders. */
const PIECES = [
  '1',
  '0',
  '12',
  '2024',
  '555',
  'a',
  'e',
  'f',
  'x',
  'Z',
  'T',
  'May',
  'Sept',
  'March',
  'of',
  'pm',
  'a.m.',
  'st',
  ' ',
  '  ',
  '\n',
  '\t',
  "'",
  '"',
  '`',
  '```',
  '“',
  '”',
  '‘',
  '’',
  '«',
  '»',
  '„',
  '@',
  '.',
  ',',
  ':',
  ';',
  '/',
  '-',
  '+',
  '(',
  ')',
  '$',
  '€',
  '%',
  '<',
  '>',
  '_',
  '#',
  'http',
  'https://',
  'www.',
  '<num>',
  '<str>',
  '.com',
  '::',
  'fe80',
  'ab12cd34ef',
  'e89b-12d3-a456-426614174000',
  'deadbeef',
  '🙂',
  '\ud800',
  '\udc00',
  'é',
  '٣',
  '\u00a0',
  '\u2028',
];
const tricky = (maxLength: number) =>
  fc.array(fc.constantFrom(...PIECES), { maxLength }).map((pieces) => pieces.join(''));

function isWellFormed(s: string): boolean {
  return !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);
}

describe('fingerprint: properties', () => {
  const holds = (t: string) => fingerprint(t) === t && t.length <= MAX_TEMPLATE_CHARS && isWellFormed(t);

  it('is a fixed point: fingerprint(fingerprint(x)) === fingerprint(x)', () => {
    fc.assert(
      fc.property(tricky(50), (s) => holds(fingerprint(s))),
      { numRuns: 5_000 },
    );
  });

  it('never throws and stays bounded on any string, lone surrogates included', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ unit: 'binary', maxLength: 400 }), fc.string({ unit: 'grapheme' })),
        (s) => holds(fingerprint(s)),
      ),
      { numRuns: 3_000 },
    );
  });

  it('stays bounded and a fixed point on inputs far past the window', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...PIECES), { minLength: 500, maxLength: 2_000 }), (pieces) =>
        holds(fingerprint(pieces.join('').repeat(5))),
      ),
      { numRuns: 100 },
    );
    expect(holds(fingerprint('x'.repeat(10_000_000)))).toBe(true);
  });

  it('is deterministic', () => {
    fc.assert(
      fc.property(tricky(30), (s) => fingerprint(s) === fingerprint(`${s}`)),
      { numRuns: 500 },
    );
  });
});

describe('templateId', () => {
  it('is a short stable hex name that tells templates apart', () => {
    const id = templateId('Summarize <str> for <email>');
    expect(id).toMatch(/^[0-9a-f]{12}$/);
    expect(templateId('Summarize <str> for <email>')).toBe(id);
    expect(templateId('Summarize <str> for <phone>')).not.toBe(id);
  });
});
