import fc from 'fast-check';
import { parseSse, type SseEvent, SseParser, serializeSse, serializeSseComment } from '../../../lib/llm/sse';

const enc = new TextEncoder();

function parseInPieces(bytes: Uint8Array, cuts: number[]): SseEvent[] {
  const parser = new SseParser();
  const events: SseEvent[] = [];
  let from = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    events.push(...parser.push(bytes.subarray(from, cut)));
    from = cut;
  }
  events.push(...parser.push(bytes.subarray(from)), ...parser.end());
  return events;
}

// A real OpenAI chat stream with a multi-byte answer (é is 2 bytes, 🙂 is 4).
const TRANSCRIPT = [
  ': keep-alive',
  '',
  'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}',
  '',
  'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Café 🙂"}}]}',
  '',
  'event: ping',
  'id: 7',
  'data: line one',
  'data: line two',
  '',
  'data: [DONE]',
  '',
  '',
].join('\r\n');

const TRANSCRIPT_EVENTS: SseEvent[] = [
  {
    data: '{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}',
  },
  {
    data: '{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Café 🙂"}}]}',
  },
  { event: 'ping', id: '7', data: 'line one\nline two' },
  { data: '[DONE]' },
];

describe('SseParser', () => {
  it('parses a transcript with comments, fields and multi-line data', () => {
    expect(parseSse(TRANSCRIPT)).toEqual(TRANSCRIPT_EVENTS);
  });

  it('gives the same events when the bytes are split at every single position', () => {
    const bytes = enc.encode(TRANSCRIPT);
    for (let cut = 0; cut <= bytes.length; cut++) {
      expect(parseInPieces(bytes, [cut])).toEqual(TRANSCRIPT_EVENTS);
    }
  });

  it('gives the same events when fed one byte at a time', () => {
    const bytes = enc.encode(TRANSCRIPT);
    const cuts = Array.from({ length: bytes.length }, (_, i) => i);
    expect(parseInPieces(bytes, cuts)).toEqual(TRANSCRIPT_EVENTS);
  });

  it('accepts LF, CRLF and CR line ends, also mixed', () => {
    expect(parseSse('data: a\n\ndata: b\r\n\r\ndata: c\r\rdata: d\r\n\n')).toEqual([
      { data: 'a' },
      { data: 'b' },
      { data: 'c' },
      { data: 'd' },
    ]);
  });

  it('treats a CR at the end of one chunk and a LF at the start of the next as one line end', () => {
    const parser = new SseParser();
    expect(parser.push('data: a\r')).toEqual([]);
    // Were the LF a second line end, this would dispatch `a` now.
    expect(parser.push('\ndata: b\r')).toEqual([]);
    expect(parser.push('\n\r\n')).toEqual([{ data: 'a\nb' }]);
  });

  it('joins a UTF-8 character split across chunks', () => {
    const bytes = enc.encode('data: 🙂\n\n');
    const parser = new SseParser();
    expect(parser.push(bytes.subarray(0, 8))).toEqual([]); // "data: " + half the emoji
    expect(parser.push(bytes.subarray(8))).toEqual([{ data: '🙂' }]);
  });

  it('follows the field rules: one leading space stripped, no colon, unknown fields, bad retry', () => {
    expect(parseSse('data:x\ndata:  two spaces\ndata\nfoo: bar\nretry: 1x\n\n')).toEqual([
      { data: 'x\n two spaces\n' },
    ]);
    expect(parseSse('retry: 1500\ndata: r\n\n')).toEqual([{ retry: 1500, data: 'r' }]);
  });

  it('dispatches nothing for a block without data, and resets its fields', () => {
    expect(parseSse('event: lonely\nid: 1\n\ndata: next\n\n')).toEqual([{ data: 'next' }]);
  });

  it('keeps an empty data line as an event with empty data', () => {
    expect(parseSse('data:\n\n')).toEqual([{ data: '' }]);
  });

  it('drops an event whose closing blank line never came', () => {
    expect(parseSse('data: whole\n\ndata: cut')).toEqual([{ data: 'whole' }]);
  });

  it('strips a leading byte order mark', () => {
    expect(parseSse(new Uint8Array([0xef, 0xbb, 0xbf, ...enc.encode('data: x\n\n')]))).toEqual([
      { data: 'x' },
    ]);
  });

  it('ignores an id containing NUL', () => {
    expect(parseSse('id: a\0b\ndata: x\n\n')).toEqual([{ data: 'x' }]);
  });

  it('reports how much text waits for a line end', () => {
    const parser = new SseParser();
    parser.push('data: 12345');
    expect(parser.pendingLength).toBe(11);
    parser.push('\n');
    expect(parser.pendingLength).toBe(0);
  });
});

describe('serializeSse', () => {
  it('writes fields and one data line per line of data', () => {
    expect(serializeSse({ event: 'e', id: '1', retry: 10, data: 'a\nb' })).toBe(
      'event: e\nid: 1\nretry: 10\ndata: a\ndata: b\n\n',
    );
    expect(serializeSse({ data: '[DONE]' })).toBe('data: [DONE]\n\n');
  });

  it('writes comments on one line', () => {
    expect(serializeSseComment('keep\nalive')).toBe(': keep alive\n\n');
    expect(parseSse(serializeSseComment('x'))).toEqual([]);
  });
});

// Field values the serializer can carry: no line ends; event names also not empty.
const lineText = fc.string({ unit: fc.constantFrom('a', 'é', '🙂', ' ', ':', '{', '"', '\t') });
const eventArb: fc.Arbitrary<SseEvent> = fc.record(
  {
    event: lineText.filter((s) => s.length > 0),
    id: lineText,
    retry: fc.nat(),
    data: fc.array(lineText, { minLength: 1, maxLength: 4 }).map((lines) => lines.join('\n')),
  },
  { requiredKeys: ['data'] },
);

describe('SSE properties', () => {
  it('parse(serialize(events)) is the events, whatever the line ends and the byte splits', () => {
    fc.assert(
      fc.property(
        fc.array(eventArb, { maxLength: 6 }),
        fc.constantFrom('\n', '\r\n', '\r'),
        fc.array(fc.nat(), { maxLength: 12 }),
        (events, eol, rawCuts) => {
          const text = events.map((e) => serializeSse(e).replace(/\n/g, eol)).join('');
          const bytes = enc.encode(text);
          const cuts = rawCuts.map((c) => c % (bytes.length + 1));
          expect(parseInPieces(bytes, cuts)).toEqual(events);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('any byte sequence parses to the same events however it is split', () => {
    // Bytes from a small alphabet so line ends, colons, fields and broken UTF-8 are frequent.
    const byte = fc.constantFrom(...enc.encode('data: \r\n:event id x'), 0xc3, 0xa9, 0xf0, 0x9f, 0x99, 0x82);
    fc.assert(
      fc.property(
        fc.array(byte, { maxLength: 200 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        (raw, rawCuts) => {
          const bytes = Uint8Array.from(raw);
          const cuts = rawCuts.map((c) => c % (bytes.length + 1));
          expect(parseInPieces(bytes, cuts)).toEqual(parseSse(bytes));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('every split position of a random transcript gives the unsplit result', () => {
    fc.assert(
      fc.property(fc.array(eventArb, { minLength: 1, maxLength: 3 }), (events) => {
        const bytes = enc.encode(events.map(serializeSse).join(''));
        for (let cut = 0; cut <= bytes.length; cut++) expect(parseInPieces(bytes, [cut])).toEqual(events);
      }),
      { numRuns: 40 },
    );
  });
});
