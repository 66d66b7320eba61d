import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { get_encoding, type Tiktoken } from 'tiktoken';
import modelToEncoding from 'tiktoken/model_to_encoding.json';
import {
  APPROXIMATE_FACTOR,
  clearTokenCache,
  countOutputTokens,
  countPromptTokens,
  countTokens,
  encodingFor,
  LONG_RUN,
  preloadTokenizer,
  splitHere,
  type TokenEncoding,
} from '../../../lib/llm/tokens';

// The reference: tiktoken's own encoder (the full WASM build), independent of lib/llm/tokens.
const ENCODINGS: TokenEncoding[] = ['o200k_base', 'cl100k_base'];
const tiktoken = {} as Record<TokenEncoding, Tiktoken>;
const reference = (text: string, encoding: TokenEncoding) => tiktoken[encoding].encode_ordinary(text).length;
const o200k = (text: string) => reference(text, 'o200k_base');

beforeAll(() => {
  for (const encoding of ENCODINGS) {
    tiktoken[encoding] = get_encoding(encoding);
    preloadTokenizer(encoding);
  }
});

afterAll(() => {
  for (const encoding of ENCODINGS) tiktoken[encoding].free();
});

const root = path.resolve(__dirname, '../../..');
const read = (file: string) => readFileSync(path.join(root, file), 'utf8');

const CJK = [
  '人工智能网关位于应用程序和多个大型语言模型提供商之间，为所有请求提供统一的接口。',
  '做红烧肉的关键在于火候：先把五花肉切成方块，冷水下锅焯去血沫，再小火慢炖一个小时左右。',
  '東京の朝は早い。通勤電車は七時を過ぎると満員になり、駅のホームには整然と列が並ぶ。',
  'このゲートウェイは、リクエストごとにプロンプトのトークン数を一度だけ数えます。',
  '서울의 가을은 짧지만 아름답다. 북한산의 단풍이 붉게 물들면 많은 사람들이 등산을 떠난다.',
  '繁體中文：黃河發源於青藏高原，流經九個省區，最後注入渤海。𠀀𠀁𪜀 (CJK Extension B)',
].join('\n');

const SAMPLES: Record<string, string> = {
  english:
    'The quick brown fox jumps over the lazy dog. It\'s 3:45pm — isn\'t it? "Quoted", (parenthesised).',
  contractions: "I'm sure they've said you'd go, we'll see, it's HE'S WE'LL They'Re don'T 'S 'll",
  code: 'function f(x: number): string {\n\treturn String(x); // ok\n}\nconst a=[1,2,3].map((n)=>n*2);\n',
  json: JSON.stringify({
    model: 'gpt-4o',
    messages: [{ role: 'user', content: 'Hi ☺' }],
    n: 12345678,
    ok: true,
  }),
  cjk: CJK,
  scripts:
    'Привет, мир! Ελληνικά κείμενα. مرحبا بالعالم. שלום עולם. नमस्ते दुनिया। สวัสดีชาวโลก. Xin chào thế giới.',
  emoji: 'I ❤️ 🦄🌈! 👩‍👩‍👧‍👦 family, 🇫🇷 flag, 👍🏽 skin tone, 🫠🫡 new ones. 😀😀😀😀',
  marks: 'e\u0301 a\u0300\u0323 ǅungla ʰaspirated ᾯ Ǉ 한국어 ka\u0308se \u0301\u0301 x\u20dd',
  whitespace: '  a\t\tb \n\n\n  c \r\n\r\n\t \u00a0\u00a0 d\u3000e\u2028f\u2029g   \n   ',
  numbers: '1 12 123 1234 12345 3.14159 1,000,000 ١٢٣٤ ⅓ ² 𝟘𝟙𝟚',
  specials: '<|endoftext|> <|endofprompt|> <|im_start|>user<|im_end|> <|fim_prefix|>',
  punctuation: '!!! ??? ... --- *** /// \\\\ ||| ::: ;;; ,,, «» „“ ‘’ ¡¿ ·•… /\n/\r\n/ ./\n\n',
  controls: '\u0000\u0001\u0007\b\v\f\u001b[0m\u007f\u0080\u009f',
  surrogates: 'lone \ud800 high, lone \udfff low, reversed \udc00\ud800, pair 😀, end \ud83d',
  slashes: 'path/to/file.ts http://example.com/a/b?c=d&e=f#g //comment /* block */ a//b',
};

describe('encodingFor', () => {
  it.each([
    'gpt-4o',
    'gpt-4o-mini',
    'gpt-4o-2024-08-06',
    'GPT-4o',
    'openai/gpt-4o',
    'openrouter/openai/gpt-4.1-mini',
    'ft:gpt-4o-mini-2024-07-18:acme::abc123',
    'chatgpt-4o-latest',
    'gpt-4.1-nano',
    'gpt-4.5-preview',
    'gpt-5',
    'gpt-5-mini',
    'gpt-5.1',
    'gpt-5.2-codex',
    'o1',
    'o1-mini',
    'o3-mini',
    'o4-mini-2025-04-16',
    'gpt-oss-120b',
    'gpt-oss:20b',
    'accounts/fireworks/models/gpt-oss-20b',
    'openai.gpt-oss-120b-1:0',
  ])('%s → o200k_base', (model) => {
    expect(encodingFor(model)).toBe('o200k_base');
  });

  it.each([
    'gpt-4',
    'gpt-4-0613',
    'gpt-4-turbo',
    'gpt-4-32k',
    'gpt-3.5-turbo',
    'gpt-3.5-turbo-instruct',
    'gpt-35-turbo',
    'text-embedding-3-small',
    'text-embedding-3-large',
    'text-embedding-ada-002',
    'davinci-002',
    'babbage-002',
    'ft:gpt-3.5-turbo-0125:acme::xyz',
  ])('%s → cl100k_base', (model) => {
    expect(encodingFor(model)).toBe('cl100k_base');
  });

  it.each([
    'claude-3-5-sonnet-20241022',
    'gemini-1.5-pro',
    'meta-llama/Llama-3.1-70B-Instruct',
    'mistral-large-latest',
    'my-gpt-4o-deployment', // an Azure deployment name is not a model name
    'prod-chat',
    'gpt-40',
    'o10',
    'text-davinci-003', // p50k_base, retired
    '',
  ])('%s → not an OpenAI encoding', (model) => {
    expect(encodingFor(model)).toBeUndefined();
  });

  it("agrees with tiktoken's own model map on every model it lists", () => {
    for (const [model, encoding] of Object.entries(modelToEncoding as Record<string, string>)) {
      const expected = encoding === 'o200k_base' || encoding === 'cl100k_base' ? encoding : undefined;
      expect([model, encodingFor(model)]).toEqual([model, expected]);
    }
  });

  it('never throws on a non-string', () => {
    expect(encodingFor(undefined as unknown as string)).toBeUndefined();
    expect(encodingFor(42 as unknown as string)).toBeUndefined();
  });
});

describe('countTokens equals tiktoken', () => {
  it.each(ENCODINGS)('on varied samples, first seen or cached (%s)', (encoding) => {
    for (const pass of ['cold', 'warm']) {
      if (pass === 'cold') clearTokenCache();
      for (const [name, text] of Object.entries(SAMPLES)) {
        expect([pass, name, countTokens(text, encoding)]).toEqual([pass, name, reference(text, encoding)]);
      }
    }
  });

  it.each(ENCODINGS)("on this repository's docs, code and lockfile (%s)", (encoding) => {
    const files = [
      'README.md',
      ...readdirSync(path.join(root, 'docs'))
        .filter((f) => f.endsWith('.md'))
        .map((f) => `docs/${f}`),
      ...readdirSync(path.join(root, 'lib/llm')).map((f) => `lib/llm/${f}`),
      'spec/unit/llm/tokens.test.ts',
    ];
    for (const file of files) {
      const text = read(file);
      expect([file, countTokens(text, encoding)]).toEqual([file, reference(text, encoding)]);
    }
    const json = read('package-lock.json').slice(0, 200_000);
    expect(countTokens(json, encoding)).toBe(reference(json, encoding));
  });

  it.each(ENCODINGS)('on every code point in context (%s)', (encoding) => {
    // Each character alone, doubled, after letters, before a contraction, next to punctuation,
    // digits and a newline: the contexts where a class difference changes the split. Code
    // points are batched (a mismatch in a batch is then looked up one by one): all of the BMP
    // and of plane 14's tags and selectors, every 13th of planes 1 to 3, a sample of the
    // unassigned and private ones. (Run once over every code point: no mismatch outside
    // REFERENCE_ONLY.)
    const context = (c: string) => `a${c}'s ${c}${c}cd.${c}1\n`;
    const mismatches: string[] = [];
    let batch: string[] = [];
    const check = () => {
      const text = batch.map(context).join('');
      expect(splitHere(text)).toBe(true);
      if (countTokens(text, encoding) !== reference(text, encoding)) {
        for (const c of batch) {
          if (countTokens(context(c), encoding) !== reference(context(c), encoding)) {
            mismatches.push(`U+${c.codePointAt(0)!.toString(16)}`);
          }
        }
      }
      batch = [];
    };
    const planes: [number, number, number][] = [
      [0, 0xffff, 1],
      [0x10000, 0x3ffff, 13],
      [0x40000, 0xdffff, 4999],
      [0xe0000, 0xe01ef, 1],
      [0xe01f0, 0x10ffff, 4999],
    ];
    for (const [first, last, step] of planes) {
      for (let codePoint = first; codePoint <= last; codePoint += step) {
        if (codePoint >= 0xd800 && codePoint <= 0xdfff) continue;
        const char = String.fromCodePoint(codePoint);
        if (!splitHere(char)) continue; // tiktoken counts these itself, below
        batch.push(char);
        if (batch.length === 200) check();
      }
    }
    check();
    expect(mismatches).toEqual([]);
  });

  it.each(ENCODINGS)('on text holding a character only tiktoken splits right (%s)', (encoding) => {
    // U+FEFF is whitespace to JavaScript, U+0085 to Rust; U+10940 is a Unicode 17 letter.
    for (const text of [
      'a\ufeffb x \ufeff\ufeff y',
      'a\u0085b \u0085\u0085 c',
      "x\u{10940}'s \u{10940}\u{10940}",
    ]) {
      expect(splitHere(text)).toBe(false);
      expect(countTokens(text, encoding)).toBe(reference(text, encoding));
    }
  });

  it('runs on Unicode tables REFERENCE_ONLY accounts for (extend it when Node moves past Unicode 17)', () => {
    expect(Number.parseInt(process.versions.unicode ?? '', 10)).toBeLessThanOrEqual(17);
    expect(splitHere(CJK + SAMPLES.scripts + SAMPLES.emoji)).toBe(true);
  });

  const tricky = fc.constantFrom(
    ...[' ', '  ', '\t', '\n', '\r', '\r\n', '\u00a0', '\u3000', '\u2028', '\v', '\f', '\u200b', '\u0000'],
    ...['a', 'B', 'Ab', 'xY', 'é', 'É', 'ǅ', 'ʰ', 'ß', 'ﬁ', 'ſ', '\u0301', '\u20dd', '中', '文', 'の', '한'],
    ...[
      '1',
      '123',
      '٣',
      '²',
      '𝟙',
      "'",
      "'s",
      "'LL",
      "'Re",
      '’',
      '.',
      '/',
      '_',
      '-',
      '{"',
      '}\n',
      '<|endoftext|>',
    ],
    ...['😀', '👍🏽', '🇫🇷', '\ud800', '\udc00', '𠀀', '\u00ad', '\u200d', '\u2060'],
  );

  it.each(ENCODINGS)('on random strings from tricky pieces (%s)', (encoding) => {
    fc.assert(
      fc.property(fc.array(tricky, { maxLength: 40 }), (pieces) => {
        const text = pieces.join('');
        expect(countTokens(text, encoding)).toBe(reference(text, encoding));
      }),
      { numRuns: 3000 },
    );
  });

  it.each(ENCODINGS)('on random Unicode, lone surrogates included (%s)', (encoding) => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 60 }), (text) => {
        expect(countTokens(text, encoding)).toBe(reference(text, encoding));
      }),
      { numRuns: 1000 },
    );
  });

  it.each(ENCODINGS)('on random mixes of the samples (%s)', (encoding) => {
    const samples = Object.values(SAMPLES);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(samples.length - 1), fc.nat(), fc.nat(200)), { minLength: 1, maxLength: 8 }),
        (cuts) => {
          const text = cuts
            .map(([i, from, length]) => samples[i]!.slice(from % 50, (from % 50) + length))
            .join('');
          expect(countTokens(text, encoding)).toBe(reference(text, encoding));
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('countTokens on long runs and odd input', () => {
  it('counts runs longer than LONG_RUN in slices: within a token per cut, in linear time', () => {
    for (const run of ['a'.repeat(20 * LONG_RUN), '中'.repeat(20 * LONG_RUN), '-'.repeat(3 * LONG_RUN)]) {
      const exact = o200k(run);
      const counted = countTokens(run, 'o200k_base');
      expect(Math.abs(counted - exact)).toBeLessThanOrEqual(Math.ceil(run.length / LONG_RUN));
    }
    // A short run is exact.
    const ruler = '='.repeat(LONG_RUN - 1);
    expect(countTokens(`x ${ruler} y`, 'cl100k_base')).toBe(reference(`x ${ruler} y`, 'cl100k_base'));

    // tiktoken needs tens of seconds for 100k repeated letters.
    const started = Date.now();
    for (const huge of [
      'a'.repeat(200_000),
      '中'.repeat(100_000),
      ' '.repeat(200_000),
      '.\ufeff'.repeat(2_000), // tiktoken counts it, in slices
    ]) {
      expect(countTokens(huge, 'o200k_base')).toBeGreaterThan(0);
    }
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('counts nothing for an empty string or a non-string, whatever the encoding', () => {
    expect(countTokens('', 'o200k_base')).toBe(0);
    expect(countTokens(undefined as unknown as string, 'o200k_base')).toBe(0);
    expect(countTokens({ text: 'hi' } as unknown as string, 'cl100k_base')).toBe(0);
    expect(countTokens('hello world', 'p50k_base' as TokenEncoding)).toBe(o200k('hello world'));
  });
});

describe('countPromptTokens', () => {
  const tokens = (text: string) => o200k(text);
  // OpenAI cookbook: 3 per message, 1 more with a name, 3 priming the reply.
  const perMessage = 3;
  const priming = 3;

  it("follows the cookbook's chat rule, exact for OpenAI models", () => {
    const body = {
      model: 'gpt-4o',
      messages: [
        { role: 'system', content: 'You are a helpful assistant.' },
        { role: 'user', name: 'example_user', content: 'New synergies will help drive top-line growth.' },
      ],
    };
    const expected =
      perMessage +
      tokens('system') +
      tokens('You are a helpful assistant.') +
      perMessage +
      tokens('user') +
      tokens('example_user') +
      1 +
      tokens('New synergies will help drive top-line growth.') +
      priming;
    expect(countPromptTokens('chat.completions', body, 'gpt-4o')).toEqual({
      tokens: expected,
      method: 'o200k_base',
    });
  });

  it('counts a message in the encoding of the model', () => {
    const body = { messages: [{ role: 'user', content: 'Tokenizers differ: 東京の朝は早い。' }] };
    const expected =
      perMessage +
      reference('user', 'cl100k_base') +
      reference('Tokenizers differ: 東京の朝は早い。', 'cl100k_base') +
      priming;
    expect(countPromptTokens('chat.completions', body, 'gpt-4-turbo')).toEqual({
      tokens: expected,
      method: 'cl100k_base',
    });
  });

  it('counts text parts as text and images by their detail, per model family', () => {
    const image = (detail?: string) => ({
      type: 'image_url',
      image_url: { url: 'https://example.com/cat.png', detail },
    });
    const withParts = (...parts: unknown[]) => ({ messages: [{ role: 'user', content: parts }] });
    const base = perMessage + tokens('user') + priming;
    const count = (body: Record<string, unknown>, model: string) =>
      countPromptTokens('chat.completions', body, model).tokens;

    expect(count(withParts({ type: 'text', text: 'What is in this image?' }), 'gpt-4o')).toBe(
      base + tokens('What is in this image?'),
    );
    expect(count(withParts(image('low')), 'gpt-4o')).toBe(base + 85);
    // Unknown size at high or auto detail: the most tiles the resize rule allows (2 x 4).
    expect(count(withParts(image('high')), 'gpt-4o')).toBe(base + 85 + 8 * 170);
    expect(count(withParts(image()), 'gpt-4.1')).toBe(base + 85 + 8 * 170);
    expect(count(withParts(image('low')), 'gpt-4o-mini')).toBe(base + 2833);
    expect(count(withParts(image('auto')), 'gpt-4o-mini-2024-07-18')).toBe(base + 2833 + 8 * 5667);
    // Patch models: at most 1536 patches times the model's factor, whatever the detail.
    expect(count(withParts(image('low')), 'gpt-4.1-mini')).toBe(base + Math.ceil(1536 * 1.62));
    expect(count(withParts(image()), 'gpt-5-nano')).toBe(base + Math.ceil(1536 * 2.46));
    expect(count(withParts(image()), 'o4-mini')).toBe(base + Math.ceil(1536 * 1.72));
    // Audio and file parts are left to the provider's usage.
    expect(
      count(withParts({ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }), 'gpt-4o'),
    ).toBe(base);
  });

  it('counts tools, tool calls, tool results and JSON schemas from their JSON text', () => {
    const tools = [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'Weather of a city',
          parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
        },
      },
    ];
    const toolCalls = [
      { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
    ];
    const schema = { name: 'answer', schema: { type: 'object', properties: { text: { type: 'string' } } } };
    const body = {
      tools,
      response_format: { type: 'json_schema', json_schema: schema },
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: null, tool_calls: toolCalls },
        { role: 'tool', tool_call_id: 'call_1', content: '{"temp":21}' },
      ],
    };
    const expected =
      3 * perMessage +
      tokens('user') +
      tokens('Weather in Paris?') +
      tokens('assistant') +
      tokens(JSON.stringify(toolCalls)) +
      tokens('tool') +
      tokens('call_1') +
      tokens('{"temp":21}') +
      priming +
      tokens(JSON.stringify(tools)) +
      tokens(JSON.stringify(schema));
    expect(countPromptTokens('chat.completions', body, 'gpt-4o').tokens).toBe(expected);
    // Legacy functions count the same way.
    const legacy = { functions: [tools[0]!.function], messages: [{ role: 'user', content: 'x' }] };
    expect(countPromptTokens('chat.completions', legacy, 'gpt-4o').tokens).toBe(
      perMessage + tokens('user') + tokens('x') + priming + tokens(JSON.stringify(legacy.functions)),
    );
  });

  it('reads prompt and input as a string, strings, token ids or arrays of token ids', () => {
    const text = 'Once upon a time';
    expect(countPromptTokens('completions', { prompt: text }, 'gpt-3.5-turbo-instruct')).toEqual({
      tokens: reference(text, 'cl100k_base'),
      method: 'cl100k_base',
    });
    expect(countPromptTokens('completions', { prompt: [text, text] }, 'davinci-002').tokens).toBe(
      2 * reference(text, 'cl100k_base'),
    );
    expect(countPromptTokens('embeddings', { input: [1, 2, 3] }, 'text-embedding-3-small').tokens).toBe(3);
    expect(countPromptTokens('embeddings', { input: [[1, 2], [3]] }, 'text-embedding-3-small').tokens).toBe(
      3,
    );
    expect(countPromptTokens('embeddings', { input: text }, 'text-embedding-3-large').tokens).toBe(
      reference(text, 'cl100k_base'),
    );
    expect(countPromptTokens('models', { input: text }, 'gpt-4o').tokens).toBe(0);
  });

  it('approximates other models on the high side: o200k times the factor, token ids as they are', () => {
    const body = {
      messages: [
        { role: 'user', content: CJK },
        { role: 'assistant', content: SAMPLES.code! },
      ],
    };
    const openai = countPromptTokens('chat.completions', body, 'gpt-4o').tokens;
    const claude = countPromptTokens('chat.completions', body, 'claude-3-5-sonnet-20241022');
    expect(claude).toEqual({ tokens: Math.ceil(openai * APPROXIMATE_FACTOR), method: 'approximate' });
    expect(claude.tokens).toBeGreaterThanOrEqual(openai);
    expect(countPromptTokens('embeddings', { input: [[1, 2], [3], 'abc'] }, 'nomic-embed-text').tokens).toBe(
      3 + Math.ceil(o200k('abc') * APPROXIMATE_FACTOR),
    );
    // An Azure deployment name says nothing of the model behind it.
    expect(countPromptTokens('chat.completions', body, 'prod-chat').method).toBe('approximate');
  });

  it('counts what it can on odd input, and never throws', () => {
    const chat = (body: unknown) =>
      countPromptTokens('chat.completions', body as Record<string, unknown>, 'gpt-4o');
    expect(chat(undefined)).toEqual({ tokens: 0, method: 'o200k_base' });
    expect(chat({ messages: 'hi' }).tokens).toBe(0);
    const cyclic: Record<string, unknown> = { name: 'f' };
    cyclic.self = cyclic;
    const odd = {
      messages: [
        null,
        7,
        ['user', 'hi'],
        { role: 'user', content: 42, name: 9 },
        { role: 'user', content: [null, 3, 'bare string', { type: 'text', text: 5 }, { type: 'image_url' }] },
        { role: 'assistant', tool_calls: [cyclic] },
        { role: 'user', content: 'bad \ud800 surrogate' },
      ],
      tools: 'not an array',
    };
    const expected =
      4 * perMessage +
      3 * tokens('user') +
      tokens('bare string') +
      85 +
      8 * 170 +
      tokens('assistant') +
      tokens('bad \ud800 surrogate') +
      priming;
    expect(chat(odd).tokens).toBe(expected);

    fc.assert(
      fc.property(
        fc.constantFrom('chat.completions', 'completions', 'embeddings', 'models'),
        fc.anything(),
        fc.string(),
        (endpoint, body, model) => {
          const count = countPromptTokens(endpoint, body as Record<string, unknown>, model);
          expect(Number.isSafeInteger(count.tokens) && count.tokens >= 0).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('countOutputTokens', () => {
  it('counts generated text in the encoding of the model, or approximately', () => {
    const answer = 'Paris is the capital of France. 巴黎是法国的首都。';
    expect(countOutputTokens(answer, 'gpt-4o-mini')).toBe(o200k(answer));
    expect(countOutputTokens(answer, 'gpt-4')).toBe(reference(answer, 'cl100k_base'));
    expect(countOutputTokens(answer, 'llama3.1:8b')).toBe(Math.ceil(o200k(answer) * APPROXIMATE_FACTOR));
    expect(countOutputTokens('', 'gpt-4o')).toBe(0);
    expect(countOutputTokens(null as unknown as string, 'gpt-4o')).toBe(0);
  });
});
