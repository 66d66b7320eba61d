import fc from 'fast-check';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { Registry } from 'prom-client';
import type { AdminRequest } from '../../../../lib/admin/routes';
import { fingerprint, templateId } from '../../../../plugins/ai-metrics/fingerprint';
import {
  OTHER_ROUTE,
  PromptPatterns,
  promptText,
  SpaceSaving,
} from '../../../../plugins/ai-metrics/patterns';

/** Seeded PRNG (mulberry32): the same traffic on every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FIRST = ['Jane', 'Omar', 'Li', 'Ana', 'Kofi', 'Sven', 'Priya', 'Diego', 'Mia', 'Yuki'];
const LAST = ['Roe', 'Haddad', 'Wei', 'Silva', 'Mensah', 'Berg', 'Nair', 'Lopez', 'Kuhn', 'Sato'];
const WORDS = (
  'river stone quiet lantern orbit maple copper harbor violet thunder meadow pixel saffron glacier ' +
  'ember willow cobalt falcon ginger marble nectar opal quartz raven sable tundra umber velvet walnut ' +
  'yonder zephyr anchor bramble cinder dune fable grove hollow ivory jasper kelp lilac mossy nova'
).split(' ');

function realisticTemplates(r: () => number) {
  const int = (max: number) => Math.floor(r() * max);
  const pick = <T>(xs: readonly T[]) => xs[int(xs.length)]!;
  const name = () => `${pick(FIRST)} ${pick(LAST)}`;
  const email = () =>
    `${pick(FIRST).toLowerCase()}.${pick(LAST).toLowerCase()}${int(100)}@${pick(['example.com', 'corp.io', 'mail.co.uk'])}`;
  const isoDate = () =>
    `202${int(6)}-${String(1 + int(12)).padStart(2, '0')}-${String(1 + int(28)).padStart(2, '0')}`;
  const usDate = () => `${1 + int(12)}/${1 + int(28)}/20${10 + int(20)}`;
  const money = () => `$${int(5000)}.${String(int(100)).padStart(2, '0')}`;
  const words = (n: number) => Array.from({ length: n }, () => pick(WORDS)).join(' ');
  return [
    () =>
      `Summarize the support ticket from "${name()}" (${email()}) opened on ${isoDate()} in ${2 + int(5)} sentences.`,
    () => `Translate the following sentence into French: "${words(6 + int(6))}"`,
    () =>
      `Write a polite reply to ${email()} explaining that order ORD-${2020 + int(6)}-${100000 + int(899999)} ships on ${usDate()}.`,
    () => `Classify the sentiment of this review as positive, negative or neutral: "${words(8 + int(10))}"`,
    () =>
      `Extract every date and amount from the invoice dated ${isoDate()} totalling ${money()} for "${name()}".`,
    () =>
      `Generate ${3 + int(7)} product names for a tea-themed shop, each under ${10 + int(20)} characters.`,
    () =>
      `You are a SQL expert. Write a query returning the top ${5 + int(50)} customers by revenue since ${isoDate()}.`,
    () =>
      `Draft a meeting invite for "${name()}" and "${name()}" on ${isoDate()} at ${1 + int(11)}:${String(int(60)).padStart(2, '0')} pm about '${words(3)}'.`,
    () =>
      `Explain this error to a beginner: \`TypeError: cannot read property '${pick(WORDS)}' of undefined at line ${int(900)}\``,
    () => `What is ${int(1000)} * ${int(1000)} + ${int(100)}? Answer with the number only.`,
    () =>
      `Rewrite the paragraph below in a friendlier tone, keeping it under ${50 + int(200)} words: "${words(15 + int(20))}"`,
    () =>
      `Create a ${1 + int(14)}-day itinerary for a trip to "${pick(['Lisbon', 'Kyoto', 'Lima', 'Oslo'])}" starting ${usDate()} for "${name()}".`,
    () =>
      `Customer ${email()} asks for a refund of ${money()} on payment 7f3a${int(1e6)}c9e${int(1e6)}; reply with the policy.`,
    () => `Score the following essay from 1 to 10 and justify briefly: "${words(20 + int(20))}"`,
    () =>
      `List ${2 + int(8)} risks of migrating the "${words(2)}" service to Kubernetes version 1.${20 + int(10)}.`,
    () => `Convert ${int(10000)} USD to JPY using a rate of ${100 + int(60)}.${int(100)} and show the steps.`,
    () =>
      `Write a commit message for a change touching ${1 + int(40)} files in "${pick(WORDS)}/${pick(WORDS)}.ts".`,
    () => `Answer the user "${name()}" who wrote on ${isoDate()}: "${words(5 + int(10))}"`,
    () => `Give a short bio for "${name()}", born ${usDate()}, reachable at ${email()}.`,
    () =>
      `Check whether the IP ${int(256)}.${int(256)}.${int(256)}.${int(256)} appears in the blocklist updated ${isoDate()} at ${int(24)}:${String(int(60)).padStart(2, '0')}.`,
  ];
}

/** Zipf-distributed counts (s = 1) over `n` ranks, summing exactly to `total`. */
function zipfCounts(n: number, total: number): number[] {
  const weights = Array.from({ length: n }, (_, i) => 1 / (i + 1));
  const sum = weights.reduce((a, b) => a + b, 0);
  const counts = weights.map((w) => Math.floor((w / sum) * total));
  counts[0]! += total - counts.reduce((a, b) => a + b, 0);
  return counts;
}

function shuffle<T>(xs: T[], r: () => number): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

/** `i` in base 26 written with letters: a different word for every number, and no digit to mask. */
function letters(i: number): string {
  let s = '';
  do {
    s = String.fromCharCode(97 + (i % 26)) + s;
    i = Math.floor(i / 26);
  } while (i > 0);
  return s;
}

const get = (path: string, method = 'GET'): AdminRequest => ({ method, path, query: new URLSearchParams() });

describe('PromptPatterns: 10 000 prompts from 20 templates among 2 000 one-off prompts', () => {
  const r = rng(20_241_126);
  const templates = realisticTemplates(r);
  const counts = zipfCounts(templates.length, 10_000);
  const traffic: { prompt: string; template: number }[] = [];
  templates.forEach((make, t) => {
    for (let i = 0; i < counts[t]!; i++) traffic.push({ prompt: make(), template: t });
  });
  const noise = Array.from({ length: 2_000 }, (_, i) => ({
    prompt: `${WORDS[i % WORDS.length]} ${Array.from({ length: 9 }, () => WORDS[Math.floor(r() * WORDS.length)]).join(' ')}`,
    template: -1,
  }));
  const stream = shuffle([...traffic, ...noise], r);

  const patterns = new PromptPatterns({ topK: 20 });
  for (const { prompt } of stream) patterns.observe('support', prompt);
  const expected = templates.map((make) => fingerprint(make()));

  it('the traffic is what it says: 20 distinct templates, uneven, and unique noise', () => {
    expect(new Set(expected).size).toBe(20);
    for (const { prompt, template } of traffic) expect(fingerprint(prompt)).toBe(expected[template]);
    expect(new Set(noise.map((n) => fingerprint(n.prompt))).size).toBe(2_000);
    expect(counts[0]).toBeGreaterThan(5 * counts[19]!);
  });

  it('puts exactly the 20 templates on top, each counted at least its true count and at most total/capacity more', () => {
    const top = patterns.top('support');
    expect(top).toHaveLength(20);
    expect(new Set(top.map((p) => p.template))).toEqual(new Set(expected));
    expect(patterns.capacity).toBe(100); // the default for topK 20
    const slack = 12_000 / 100;
    for (const p of top) {
      const truth = counts[expected.indexOf(p.template)]!;
      expect(p.count).toBeGreaterThanOrEqual(truth);
      expect(p.count).toBeLessThanOrEqual(truth + slack);
      expect(p.id).toBe(templateId(p.template));
      expect(p.share).toBeCloseTo(p.count / 12_000, 10);
    }
    expect(top.map((p) => p.count)).toEqual([...top.map((p) => p.count)].sort((a, b) => b - a));
    expect(top[0]!.template).toBe(expected[0]);
  });

  it('answers a smaller k with the head of the same list', () => {
    expect(patterns.top('support', 3)).toEqual(patterns.top('support').slice(0, 3));
    expect(patterns.top('support', 0)).toEqual([]);
    expect(patterns.top('no-such-route')).toEqual([]);
  });
});

describe('SpaceSaving', () => {
  it('hands the smallest counter to a new key, which inherits its count as error', () => {
    const s = new SpaceSaving(2);
    for (const k of ['a', 'a', 'b', 'c', 'c', 'c', 'a']) s.add(k);
    expect(s.top(2).map((c) => [c.key, c.count, c.error])).toEqual([
      ['c', 4, 1],
      ['a', 3, 0],
    ]);
  });

  it('keeps its guarantees on any stream: never under, over by at most its error, frequent keys always held', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 30 }), { maxLength: 400 }),
        fc.integer({ min: 1, max: 12 }),
        (keys, m) => {
          const s = new SpaceSaving(m);
          const truth = new Map<string, number>();
          for (const k of keys) {
            s.add(`k${k}`);
            truth.set(`k${k}`, (truth.get(`k${k}`) ?? 0) + 1);
          }
          const held = s.top(m);
          expect(s.size).toBeLessThanOrEqual(m);
          expect(held.reduce((sum, c) => sum + c.count, 0)).toBe(keys.length);
          for (const c of held) {
            const t = truth.get(c.key)!;
            expect(c.count).toBeGreaterThanOrEqual(t);
            expect(c.count - c.error).toBeLessThanOrEqual(t);
            expect(c.error).toBeLessThanOrEqual(keys.length / m);
          }
          for (const [key, t] of truth)
            if (t > keys.length / m) expect(held.some((c) => c.key === key)).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('PromptPatterns: bounded memory', () => {
  it('holds no more than `capacity` templates per route after 100 000 unique prompts', () => {
    const patterns = new PromptPatterns({ topK: 5, capacity: 50 });
    const sketch = new SpaceSaving(50);
    for (let i = 0; i < 100_000; i++) {
      const prompt = `word ${letters(i)} tail`;
      patterns.observe('r', prompt);
      sketch.add(prompt);
    }
    expect(sketch.size).toBe(50);
    expect(sketch.total).toBe(100_000);
    // Every count is a true count plus what the counter inherited, never more than total/capacity.
    for (const c of sketch.top(50)) expect(c.count - c.error).toBeGreaterThanOrEqual(0);
    expect(sketch.top(50).every((c) => c.error <= 100_000 / 50)).toBe(true);
    expect(patterns.top('r', 1_000).length).toBeLessThanOrEqual(50);
  });

  it('counts routes past maxRoutes under `other`', () => {
    const patterns = new PromptPatterns({ topK: 3, maxRoutes: 3 });
    for (let i = 0; i < 10; i++) patterns.observe(`route-${i}`, 'Hello number 7');
    expect(patterns.routes()).toEqual(['route-0', 'route-1', 'route-2', OTHER_ROUTE]);
    expect(patterns.top(OTHER_ROUTE)).toEqual([
      expect.objectContaining({ template: 'Hello number <num>', count: 7 }),
    ]);
    // A route seen before the bound was reached keeps its own counters.
    patterns.observe('route-1', 'Hello number 8');
    expect(patterns.top('route-1')[0]!.count).toBe(2);
  });

  it('refuses options that cannot work', () => {
    expect(() => new PromptPatterns({ topK: 0 })).toThrow(RangeError);
    expect(() => new PromptPatterns({ topK: 1.5 })).toThrow(RangeError);
    expect(() => new PromptPatterns({ topK: 20, capacity: 10 })).toThrow(RangeError);
    expect(() => new PromptPatterns({ topK: 20, maxRoutes: 0 })).toThrow(RangeError);
    expect(() => new SpaceSaving(0)).toThrow(RangeError);
    expect(new PromptPatterns({ topK: 20 }).capacity).toBe(100);
    expect(new PromptPatterns({ topK: 200 }).capacity).toBe(1_000);
  });
});

describe('PromptPatterns: routes apart', () => {
  it('counts each route on its own', () => {
    const patterns = new PromptPatterns({ topK: 5 });
    for (let i = 0; i < 30; i++) patterns.observe('chat', `Summarize ticket ${i} for "user ${i}"`);
    for (let i = 0; i < 10; i++) patterns.observe('search', `Find documents about ${i} cats`);
    patterns.observe('search', 'Summarize ticket 99 for "someone"');
    expect(patterns.routes().sort()).toEqual(['chat', 'search']);
    expect(patterns.top('chat')).toEqual([
      expect.objectContaining({ template: 'Summarize ticket <num> for <str>', count: 30, share: 1 }),
    ]);
    expect(patterns.top('search').map((p) => [p.template, p.count])).toEqual([
      ['Find documents about <num> cats', 10],
      ['Summarize ticket <num> for <str>', 1],
    ]);
  });

  it('does not count prompts without text', () => {
    const patterns = new PromptPatterns({ topK: 5 });
    patterns.observe('chat', '   \n ');
    patterns.observe('chat', '');
    expect(patterns.routes()).toEqual([]);
  });
});

describe('PromptPatterns: metric', () => {
  it('exposes the top K per route as aigw_prompt_pattern_requests{route,pattern}, ids only', async () => {
    const patterns = new PromptPatterns({ topK: 2 });
    const registry = new Registry();
    patterns.exportTo(registry);
    for (let i = 0; i < 5; i++) patterns.observe('chat', `Summarize ticket ${i} for "Jane"`);
    for (let i = 0; i < 3; i++) patterns.observe('chat', `Translate "${i} words" to French`);
    patterns.observe('chat', 'A one-off question about lamps');
    patterns.observe('embed', 'Embed the text of note 12');

    const text = await registry.metrics();
    const family = parsePrometheusTextFormat(text).find((f) => f.name === 'aigw_prompt_pattern_requests');
    expect(family?.type).toBe('GAUGE');
    const samples = family!.metrics.map((m) => [m.labels?.route, m.labels?.pattern, Number(m.value)]);
    expect(samples).toEqual(
      expect.arrayContaining([
        ['chat', templateId('Summarize ticket <num> for <str>'), 5],
        ['chat', templateId('Translate <str> to French'), 3],
        ['embed', templateId('Embed the text of note <num>'), 1],
      ]),
    );
    expect(samples).toHaveLength(3); // topK 2: the one-off is not exported
    expect(text).not.toMatch(/Summarize|Translate|lamps|Jane/);

    // Values follow the counts at each scrape, and templates that leave the top K leave the metric.
    for (let i = 0; i < 10; i++) patterns.observe('chat', `Question ${i} about lamps`);
    const again = parsePrometheusTextFormat(await registry.metrics()).find(
      (f) => f.name === 'aigw_prompt_pattern_requests',
    )!;
    const chat = again.metrics
      .filter((m) => m.labels?.route === 'chat')
      .map((m) => [m.labels?.pattern, m.value]);
    expect(chat).toEqual(
      expect.arrayContaining([
        [templateId('Question <num> about lamps'), '10'],
        [templateId('Summarize ticket <num> for <str>'), '5'],
      ]),
    );
    expect(chat).toHaveLength(2);
  });
});

describe('PromptPatterns: admin resource', () => {
  const patterns = new PromptPatterns({ topK: 3 });
  for (let i = 0; i < 4; i++) patterns.observe('chat/v1', `Summarize ticket ${i} for "Jane"`);
  patterns.observe('chat/v1', 'Use Bearer abcdefghijklmnopqrstuv and sk-ABCDEFGHIJKLMNOPQRST to call it');
  patterns.observe('embed', 'Embed note 5');

  it('GET /patterns lists every route with its top templates', async () => {
    const [status, body] = await patterns.handle(get('/patterns'));
    expect(status).toBe(200);
    expect(body).toEqual({
      routes: {
        'chat/v1': [
          {
            id: templateId('Summarize ticket <num> for <str>'),
            template: 'Summarize ticket <num> for <str>',
            count: 4,
            share: 0.8,
          },
          expect.objectContaining({ count: 1 }),
        ],
        embed: [{ id: templateId('Embed note <num>'), template: 'Embed note <num>', count: 1, share: 1 }],
      },
    });
  });

  it('GET /patterns/<route> answers one route (percent-encoded)', async () => {
    const [status, body] = await patterns.handle(get(`/patterns/${encodeURIComponent('chat/v1')}`));
    expect(status).toBe(200);
    expect(body).toMatchObject({ route: 'chat/v1', total: 5 });
    expect((body as { patterns: unknown[] }).patterns).toHaveLength(2);
  });

  it('masks secrets in the templates it shows; the id is still the hash of the counted template', async () => {
    const [, body] = await patterns.handle(get('/patterns/embed'));
    expect(body).toMatchObject({ route: 'embed' });
    const [, all] = await patterns.handle(get('/patterns'));
    const json = JSON.stringify(all);
    expect(json).not.toContain('abcdefghijklmnopqrstuv');
    expect(json).not.toContain('sk-ABCDEFGHIJKLMNOPQRST');
    expect(json).toMatch(
      /Use \[REDACTED len=\d+ hash=[0-9a-f]{8}\] and \[REDACTED len=\d+ hash=[0-9a-f]{8}\] to call it/,
    );
  });

  it('answers an unknown route with 404, a bad encoding with 400 and other methods with 405, in the OpenAI error shape', async () => {
    const [status, body] = await patterns.handle(get('/patterns/nope'));
    expect(status).toBe(404);
    expect(body).toEqual({
      error: { message: expect.any(String), type: 'not_found_error', code: 'AIGW_NOT_FOUND', param: null },
    });
    expect(JSON.stringify(body)).not.toContain('nope');
    expect((await patterns.handle(get('/patterns/%E0%A4%A')))[0]).toBe(400);
    const [deleteStatus, deleteBody] = await patterns.handle(get('/patterns', 'DELETE'));
    expect(deleteStatus).toBe(405);
    expect(deleteBody).toMatchObject({ error: { code: 'AIGW_METHOD_NOT_ALLOWED' } });
  });
});

describe('promptText', () => {
  it('takes the last user message of a chat, its text parts joined', () => {
    expect(
      promptText('chat.completions', {
        messages: [
          { role: 'system', content: 'You are terse.' },
          { role: 'user', content: 'first question' },
          { role: 'assistant', content: 'answer' },
          {
            role: 'user',
            content: [
              { type: 'text', text: 'Describe this' },
              { type: 'image_url', image_url: { url: 'https://x/y.png' } },
              { type: 'text', text: 'in 3 words' },
            ],
          },
          { role: 'assistant', content: 'partial prefill' },
        ],
      }),
    ).toBe('Describe this\nin 3 words');
    expect(promptText('chat.completions', { messages: [{ role: 'user', content: 'hi' }] })).toBe('hi');
  });

  it('takes prompt (completions) and input (embeddings), or the first of a list of strings', () => {
    expect(promptText('completions', { prompt: 'Once upon a time' })).toBe('Once upon a time');
    expect(promptText('completions', { prompt: ['a', 'b'] })).toBe('a');
    expect(promptText('embeddings', { input: 'text to embed' })).toBe('text to embed');
    expect(promptText('embeddings', { input: ['x', 'y'] })).toBe('x');
  });

  it('gives nothing when there is no text: token arrays, image-only or no user message, models, bad bodies', () => {
    expect(promptText('embeddings', { input: [1, 2, 3] })).toBeUndefined();
    expect(promptText('completions', { prompt: [[1, 2]] })).toBeUndefined();
    expect(
      promptText('chat.completions', {
        messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'u' } }] }],
      }),
    ).toBeUndefined();
    expect(promptText('chat.completions', { messages: [{ role: 'system', content: 'x' }] })).toBeUndefined();
    expect(promptText('chat.completions', { messages: 'nope' })).toBeUndefined();
    expect(
      promptText('chat.completions', { messages: [null, 7, { role: 'user', content: 42 }] }),
    ).toBeUndefined();
    expect(promptText('models', { prompt: 'x' })).toBeUndefined();
    expect(promptText(undefined, { prompt: 'x' })).toBeUndefined();
    expect(promptText('completions', null)).toBeUndefined();
    expect(promptText('completions', 'prompt')).toBeUndefined();
  });

  it('stops joining text parts once there is enough to fingerprint', () => {
    const part = { type: 'text', text: 'x'.repeat(1_500) };
    const text = promptText('chat.completions', {
      messages: [{ role: 'user', content: [part, part, part, part] }],
    });
    expect(text).toHaveLength(1_500 * 2 + 1);
  });
});
