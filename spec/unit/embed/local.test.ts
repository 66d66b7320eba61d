import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { LocalEmbedder as FromIndex } from '../../../lib/embed';
import {
  LOCAL_EMBEDDER_DEFAULT_THRESHOLD,
  LOCAL_EMBEDDER_VERSION,
  LocalEmbedder,
  MAX_FEATURE_CHARS,
} from '../../../lib/embed/local';
import { GatewayError } from '../../../lib/errors';

const embedder = new LocalEmbedder();

async function vector(text: string, using: LocalEmbedder = embedder): Promise<Float32Array> {
  const [v] = await using.embed([text]);
  return v!;
}

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += a[i]! * b[i]!;
  return dot;
}

function length(v: Float32Array): number {
  return Math.sqrt(cosine(v, v));
}

async function similarity(a: string, b: string): Promise<number> {
  const [x, y] = await embedder.embed([a, b]);
  return cosine(x!, y!);
}

const LONG_TEXT =
  'Our team uses a PostgreSQL 15 database with a table called events (id bigint, user_id bigint, type ' +
  'text, created_at timestamptz, payload jsonb). It has about 80 million rows and grows by 2 million a ' +
  'day. Most queries filter by user_id and a time range, and the dashboards have become slow.';

describe('LocalEmbedder', () => {
  it('is exported from lib/embed', () => {
    expect(FromIndex).toBe(LocalEmbedder);
  });

  it('names its version and vector length in its id', () => {
    expect(embedder.id).toBe(`${LOCAL_EMBEDDER_VERSION}-384`);
    expect(embedder.dimensions).toBe(384);
    expect(new LocalEmbedder({ dimensions: 128 }).id).toBe(`${LOCAL_EMBEDDER_VERSION}-128`);
  });

  it('returns one vector per text, in order, of the configured length', async () => {
    const small = new LocalEmbedder({ dimensions: 128 });
    const vectors = await small.embed(['first prompt', 'second prompt', 'first prompt']);
    expect(vectors).toHaveLength(3);
    for (const v of vectors) expect(v).toHaveLength(128);
    expect(vectors[2]).toEqual(vectors[0]);
    expect(vectors[1]).not.toEqual(vectors[0]);
    expect(await small.embed([])).toEqual([]);
  });

  it.each([0, 10, 63, 4097, 1.5, Number.NaN, -384])('refuses %p dimensions', (dimensions) => {
    expect(() => new LocalEmbedder({ dimensions })).toThrow(GatewayError);
    try {
      new LocalEmbedder({ dimensions });
    } catch (err) {
      expect((err as GatewayError).code).toBe('AIGW_CONFIG_INVALID');
    }
  });

  it('gives the same vector in another instance and another call', async () => {
    const text = 'Write a Python function that checks if a string is a palindrome.';
    const a = await vector(text);
    const b = await vector(text, new LocalEmbedder());
    await embedder.embed(['something else entirely', 'to fill the word cache']);
    const c = await vector(text);
    expect(Buffer.from(b.buffer)).toEqual(Buffer.from(a.buffer));
    expect(Buffer.from(c.buffer)).toEqual(Buffer.from(a.buffer));
  });

  it('gives the vectors it gave when its id was chosen (else the id must change)', async () => {
    // Cached entries are indexed by embedder id: vectors that change under the same id would
    // silently stop matching (or match wrongly). A change of features needs a new version.
    const digest = createHash('sha256');
    for (const text of ['Convert 5 miles to km.', 'How do I reset my password?', '东京的天气怎么样？', '']) {
      digest.update(Buffer.from((await vector(text)).buffer));
    }
    expect(digest.digest('hex').slice(0, 16)).toBe('f21276519f53d7b3');
  });

  it('makes unit vectors', async () => {
    for (const text of ['hello', LONG_TEXT, '12345', '   ', '', '🙂', 'ÄÖÜ straße', 'SELECT 1']) {
      expect(length(await vector(text))).toBeCloseTo(1, 5);
    }
  });

  it('rates a text against itself at 1', async () => {
    expect(await similarity(LONG_TEXT, LONG_TEXT)).toBeCloseTo(1, 5);
  });

  it('rates unrelated prompts low', async () => {
    expect(await similarity('How do I reset my password?', 'What is the capital of Australia?')).toBeLessThan(
      0.2,
    );
    expect(await similarity('Give me a recipe for banana bread.', 'Explain Kubernetes pods.')).toBeLessThan(
      0.2,
    );
  });

  describe('paraphrases that differ in phrasing only match', () => {
    it.each([
      ['How do I reverse a list in Python?', "What's the easiest way to reverse a Python list?"],
      ['Can you please explain what a closure is in JavaScript?', 'Explain closures in JavaScript.'],
      ['How do I undo the last git commit?', 'git: how can I undo my last commit?'],
      ['What is the capital of Australia', 'what is the capital of australia?!'],
      [
        'Give me 5 ideas for a blog post about remote work.',
        'give me five ideas for a blog post about remote work',
      ],
      ['How do I turn on dark mode?', 'How can I enable dark mode?'],
      [`Summarize this: ${LONG_TEXT}`, `Please give me a summary of the following. ${LONG_TEXT}`],
    ])('%s ~ %s', async (a, b) => {
      expect(await similarity(a, b)).toBeGreaterThanOrEqual(LOCAL_EMBEDDER_DEFAULT_THRESHOLD);
    });
  });

  describe('near-misses that ask something else stay below the threshold', () => {
    it.each([
      ['numbers swapped', 'Convert 5 miles to km.', 'Convert 5 km to miles.'],
      [
        'order of numbers',
        'Cancel order 1120 but keep order 1121.',
        'Cancel order 1121 but keep order 1120.',
      ],
      [
        'another number',
        'Write a 500-word essay on the causes of World War I.',
        'Write a 200-word essay on the causes of World War I.',
      ],
      ['a number in a long text', `${LONG_TEXT} Suggest 3 indexes.`, `${LONG_TEXT} Suggest 5 indexes.`],
      [
        'direction',
        'How do I convert a JSON string to a Python dict?',
        'How do I convert a Python dict to a JSON string?',
      ],
      [
        'languages swapped',
        'Translate this paragraph from English to German.',
        'Translate this paragraph from German to English.',
      ],
      ['another language', "Translate 'thank you' into Spanish.", "Translate 'thank you' into Italian."],
      ['ascending or descending', 'python sort list ascending', 'python sort list descending'],
      ['negation', 'Give me a recipe for banana bread without sugar.', 'Give me a recipe for banana bread.'],
      ['operator', 'What is 12 * 7?', 'What is 12 + 7?'],
      ['operation on the same text', `Summarize this: ${LONG_TEXT}`, `Rewrite this: ${LONG_TEXT}`],
      ['question word', 'When was the telephone invented?', 'Who invented the telephone?'],
      [
        'one content word',
        'Write a cover letter for a junior developer position.',
        'Write a cover letter for a senior developer position.',
      ],
      ['on or off', 'How do I turn on notifications?', 'How do I turn off notifications?'],
      [
        'quoted field',
        "Sort this array by the 'age' field: [{name:'a',age:3}]",
        "Sort this array by the 'name' field: [{name:'a',age:3}]",
      ],
      [
        'SQL keyword',
        'What is the difference between WHERE and HAVING?',
        'What is the difference between WHERE and ON?',
      ],
      ['emoji', '👍', '👎'],
    ])('%s', async (_, a, b) => {
      expect(await similarity(a, b)).toBeLessThan(LOCAL_EMBEDDER_DEFAULT_THRESHOLD);
    });
  });

  describe('odd input', () => {
    it('embeds empty and blank texts alike, and apart from any words', async () => {
      expect(await similarity('', '   \n\t')).toBeCloseTo(1, 5);
      expect(await similarity('', 'hello')).toBeLessThan(0.2);
    });

    it('embeds emoji, lone surrogates and control characters without failing', async () => {
      for (const text of [
        '🙂🙂🙂',
        '\ud800',
        'abc\udfffdef',
        '\u0000\u0001\u0002',
        '\u202e',
        'é'.normalize('NFD'),
      ]) {
        const v = await vector(text);
        expect(v.every(Number.isFinite)).toBe(true);
        expect(length(v)).toBeCloseTo(1, 5);
      }
    });

    it('does not stall on digits outside the Basic Multilingual Plane (regression: endless tokens)', async () => {
      // U+104A0 OSMANYA DIGIT ZERO is a surrogate pair that NFKC leaves alone
      expect(length(await vector('\u{104A0}\u{104A1} apples and 3 pears'))).toBeCloseTo(1, 5);
      expect(await similarity('\u{104A1} apples', '\u{104A2} apples')).toBeLessThan(
        LOCAL_EMBEDDER_DEFAULT_THRESHOLD,
      );
    });

    it('reads composed and decomposed Unicode alike (NFKC)', async () => {
      expect(await similarity('café crème', 'cafe\u0301 cre\u0300me')).toBeCloseTo(1, 5);
    });

    it('caps the work on a 1 MB text, and two long texts that differ after the cap still differ', async () => {
      const huge = 'The quick brown fox jumps over the lazy dog. '.repeat(24_000);
      expect(huge.length).toBeGreaterThan(1_000_000);
      const v = await vector(huge);
      expect(length(v)).toBeCloseTo(1, 5);
      const tail = huge.slice(0, MAX_FEATURE_CHARS * 2);
      expect(await similarity(`${tail} Answer in French.`, `${tail} Answer in German.`)).toBeLessThan(
        LOCAL_EMBEDDER_DEFAULT_THRESHOLD,
      );
      expect(await similarity(huge, huge)).toBeCloseTo(1, 5);
    });

    it('refuses what is not a string', async () => {
      await expect(embedder.embed([42 as unknown as string])).rejects.toThrow(TypeError);
    });
  });

  it('makes a finite unit vector of any string', async () => {
    const anyUnit = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 200 }),
      fc.string({
        unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
        maxLength: 200,
      }),
      fc.string({ unit: 'grapheme', maxLength: 200 }),
    );
    await fc.assert(
      fc.asyncProperty(anyUnit, async (text) => {
        const v = await vector(text);
        expect(v).toHaveLength(384);
        expect(v.every(Number.isFinite)).toBe(true);
        expect(length(v)).toBeCloseTo(1, 4);
      }),
      { numRuns: 300 },
    );
  });
});
