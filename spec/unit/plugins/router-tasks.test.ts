import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Embedder } from '../../../lib/embed/embedder';
import { LocalEmbedder } from '../../../lib/embed/local';
import { GatewayError } from '../../../lib/errors';
import { BUILTIN_TASK_EXAMPLES } from '../../../plugins/ai-router/task-examples';
import {
  keywordPattern,
  TaskClassifier,
  type TaskInput,
  type TaskRule,
  type TasksConfig,
  taskInputOf,
} from '../../../plugins/ai-router/tasks';
import {
  EXAMPLE_CONFIG_FILE,
  evaluateExampleConfig,
  LABELLED_FILE,
  loadExampleConfig,
  loadLabelled,
  TARGET_ACCURACY,
} from '../../../scripts/eval-router-tasks';

/** A LocalEmbedder that counts the texts it embeds. */
class CountingEmbedder implements Embedder {
  readonly inner = new LocalEmbedder();
  readonly id = this.inner.id;
  readonly dimensions = this.inner.dimensions;
  calls = 0;
  texts = 0;
  embed(texts: readonly string[]): Promise<Float32Array[]> {
    this.calls++;
    this.texts += texts.length;
    return this.inner.embed(texts);
  }
}

const rule = (r: Partial<TaskRule> & { task: string }): TaskRule => ({ keywords: [], ...r });

const tasksOf = (overrides: Partial<TasksConfig> = {}): TasksConfig => ({
  model: 'auto',
  rules: [],
  examples: {},
  embedder: { kind: 'local', model: 'text-embedding-3-small', timeout_ms: 2000 },
  min_confidence: 0,
  default_task: 'chat',
  routes: { chat: 'fast' },
  ...overrides,
});

const input = (overrides: Partial<TaskInput> = {}): TaskInput => ({
  text: '',
  tokens: 10,
  hasImage: false,
  hasTools: false,
  ...overrides,
});

const tokensOfWords = (text: string) => text.split(/\s+/).filter(Boolean).length;

describe('taskInputOf', () => {
  it('takes the last user message, string content', () => {
    const got = taskInputOf(
      'chat.completions',
      {
        messages: [
          { role: 'system', content: 'You are terse.' },
          { role: 'user', content: 'first question' },
          { role: 'assistant', content: 'an answer' },
          { role: 'user', content: 'second question' },
        ],
      },
      tokensOfWords,
    );
    expect(got.text).toBe('second question');
    // every message counts towards the prompt's tokens
    expect(got.tokens).toBe(9);
    expect(got.hasImage).toBe(false);
    expect(got.hasTools).toBe(false);
  });

  it('ignores an assistant message after the last user message', () => {
    const got = taskInputOf(
      'chat.completions',
      {
        messages: [
          { role: 'user', content: 'the question' },
          { role: 'assistant', content: 'a prefilled answer' },
        ],
      },
      tokensOfWords,
    );
    expect(got.text).toBe('the question');
  });

  it('joins the text parts of array content and sees image parts', () => {
    const got = taskInputOf(
      'chat.completions',
      {
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'What is' },
              { type: 'image_url', image_url: { url: 'https://example.com/a.png' } },
              { type: 'text', text: 'in this picture?' },
            ],
          },
        ],
      },
      tokensOfWords,
    );
    expect(got.text).toBe('What is\nin this picture?');
    expect(got.hasImage).toBe(true);
  });

  it('sees an image in an earlier message too', () => {
    const got = taskInputOf(
      'chat.completions',
      {
        messages: [
          { role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AA' } }] },
          { role: 'assistant', content: 'A cat.' },
          { role: 'user', content: 'What breed?' },
        ],
      },
      tokensOfWords,
    );
    expect(got).toMatchObject({ text: 'What breed?', hasImage: true });
  });

  it('has no text without a user message', () => {
    const got = taskInputOf(
      'chat.completions',
      { messages: [{ role: 'system', content: 'Be nice.' }] },
      tokensOfWords,
    );
    expect(got.text).toBe('');
    expect(got.tokens).toBe(2);
  });

  it('sees declared tools (and legacy functions), not an empty list, and counts them', () => {
    const messages = [{ role: 'user', content: 'weather in Paris' }];
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: {} } }];
    const withTools = taskInputOf('chat.completions', { messages, tools }, (t) => t.length);
    const without = taskInputOf('chat.completions', { messages }, (t) => t.length);
    expect(withTools.hasTools).toBe(true);
    expect(withTools.tokens).toBeGreaterThan(without.tokens);
    expect(taskInputOf('chat.completions', { messages, tools: [] }, tokensOfWords).hasTools).toBe(false);
    expect(
      taskInputOf('chat.completions', { messages, functions: [{ name: 'f' }] }, tokensOfWords).hasTools,
    ).toBe(true);
  });

  it('counts the whole prompt once', () => {
    const count = jest.fn(tokensOfWords);
    taskInputOf(
      'chat.completions',
      {
        messages: [
          { role: 'system', content: 'a' },
          { role: 'user', content: 'b' },
        ],
      },
      count,
    );
    expect(count).toHaveBeenCalledTimes(1);
    expect(count).toHaveBeenCalledWith('a\nb');
  });

  it('reads the prompt of completions and the input of embeddings', () => {
    expect(taskInputOf('completions', { prompt: 'Once upon a time' }, tokensOfWords)).toMatchObject({
      text: 'Once upon a time',
      tokens: 4,
    });
    expect(taskInputOf('completions', { prompt: ['a b', 7, 'c'] }, tokensOfWords).text).toBe('a b\nc');
    expect(taskInputOf('embeddings', { input: 'hello world' }, tokensOfWords).text).toBe('hello world');
  });

  it('gives an empty input for odd bodies instead of throwing', () => {
    const empty = { text: '', tokens: 0, hasImage: false, hasTools: false };
    expect(taskInputOf('chat.completions', undefined, tokensOfWords)).toEqual(empty);
    expect(taskInputOf('chat.completions', { messages: 'hi' }, tokensOfWords)).toEqual(empty);
    expect(
      taskInputOf('chat.completions', { messages: [null, 3, { role: 'user', content: 42 }] }, tokensOfWords),
    ).toEqual(empty);
    expect(
      taskInputOf(
        'chat.completions',
        { messages: [{ role: 'user', content: [null, 'raw', { type: 'text', text: 5 }] }] },
        tokensOfWords,
      ).text,
    ).toBe('raw');
    expect(taskInputOf('models', { messages: [{ role: 'user', content: 'x' }] }, tokensOfWords)).toEqual(
      empty,
    );
  });
});

describe('keywordPattern', () => {
  it('matches whole words only, whatever the case', () => {
    const re = keywordPattern(['code'])!;
    expect(re.test('Review my CODE please')).toBe(true);
    expect(re.test('code: 42')).toBe(true);
    expect(re.test('decode this base64')).toBe(false);
    expect(re.test('a barcode scanner')).toBe(false);
    expect(re.test('codes')).toBe(false);
    expect(re.test('source_code')).toBe(false);
  });

  it('matches phrases whatever the spacing inside them', () => {
    const re = keywordPattern(['key points'])!;
    expect(re.test('List the KEY  POINTS.')).toBe(true);
    expect(re.test('the key\npoints')).toBe(true);
    expect(re.test('keypoints')).toBe(false);
  });

  it('takes keywords with punctuation literally', () => {
    const re = keywordPattern(['c++', 'tl;dr', 'a.b'])!;
    expect(re.test('a question about C++ templates')).toBe(true);
    expect(re.test('TL;DR please')).toBe(true);
    expect(re.test('axb')).toBe(false);
    expect(re.test('cc++')).toBe(false);
    expect(keywordPattern(['(', '[a-z]+', '\\'])!.test('(')).toBe(true);
  });

  it('sees words of other scripts as words', () => {
    const re = keywordPattern(['résumé'])!;
    expect(re.test('Fais un RÉSUMÉ du texte')).toBe(true);
    expect(re.test('résuméx')).toBe(false);
  });

  it('is undefined without keywords', () => {
    expect(keywordPattern([])).toBeUndefined();
    expect(keywordPattern(['  '])).toBeUndefined();
  });
});

describe('TaskClassifier rules', () => {
  let embedder: CountingEmbedder;
  beforeEach(() => {
    embedder = new CountingEmbedder();
  });
  const classifierWith = (rules: TaskRule[], overrides: Partial<TasksConfig> = {}) =>
    TaskClassifier.create(tasksOf({ rules, ...overrides }), embedder);

  it('matches keywords as whole words, case-insensitively', async () => {
    const c = await classifierWith([rule({ task: 'code', keywords: ['code', 'python'] })]);
    expect(await c.classify(input({ text: 'Fix my Python CODE' }))).toEqual({
      task: 'code',
      by: 'rule',
      rule: 0,
    });
    expect((await c.classify(input({ text: 'decode this message' }))).by).not.toBe('rule');
  });

  it('tests the regex case-insensitively', async () => {
    const c = await classifierWith([rule({ task: 'code', regex: 'traceback \\(most recent' })]);
    expect((await c.classify(input({ text: 'Traceback (most recent call last):' }))).task).toBe('code');
    expect((await c.classify(input({ text: 'a traceback' }))).by).not.toBe('rule');
  });

  it('refuses a regex that does not compile', async () => {
    const created = classifierWith([rule({ task: 'code', regex: '(unclosed' })]);
    await expect(created).rejects.toBeInstanceOf(GatewayError);
    await expect(created).rejects.toMatchObject({ code: 'AIGW_CONFIG_INVALID' });
  });

  it('bounds the prompt tokens, both bounds included', async () => {
    const c = await classifierWith([
      rule({ task: 'long-context', min_tokens: 1000 }),
      rule({ task: 'tiny', max_tokens: 5 }),
    ]);
    expect((await c.classify(input({ text: 'x', tokens: 1000 }))).task).toBe('long-context');
    expect((await c.classify(input({ text: 'x', tokens: 999 }))).rule).toBeUndefined();
    expect((await c.classify(input({ text: 'x', tokens: 5 }))).task).toBe('tiny');
    expect((await c.classify(input({ text: 'x', tokens: 6 }))).rule).toBeUndefined();
  });

  it('matches images and tools, present or absent', async () => {
    const images = await classifierWith([rule({ task: 'vision', has_image: true })]);
    expect((await images.classify(input({ hasImage: true }))).task).toBe('vision');
    expect((await images.classify(input({ hasImage: false }))).by).toBe('default');
    const noTools = await classifierWith([rule({ task: 'plain', has_tools: false })]);
    expect((await noTools.classify(input({ hasTools: false }))).task).toBe('plain');
    expect((await noTools.classify(input({ hasTools: true }))).by).toBe('default');
    const tools = await classifierWith([rule({ task: 'agent', has_tools: true })]);
    expect((await tools.classify(input({ hasTools: true }))).task).toBe('agent');
  });

  it('needs every condition a rule sets', async () => {
    const c = await classifierWith([rule({ task: 'greeting', keywords: ['hello'], max_tokens: 10 })]);
    expect((await c.classify(input({ text: 'hello', tokens: 3 }))).task).toBe('greeting');
    expect((await c.classify(input({ text: 'hello', tokens: 11 }))).rule).toBeUndefined();
    expect((await c.classify(input({ text: 'goodbye', tokens: 3 }))).rule).toBeUndefined();
  });

  it('takes the first matching rule in order', async () => {
    const c = await classifierWith([
      rule({ task: 'vision', has_image: true }),
      rule({ task: 'summarization', keywords: ['summarize'] }),
      rule({ task: 'other', keywords: ['summarize'] }),
    ]);
    expect(await c.classify(input({ text: 'summarize this', hasImage: true }))).toEqual({
      task: 'vision',
      by: 'rule',
      rule: 0,
    });
    expect(await c.classify(input({ text: 'summarize this' }))).toEqual({
      task: 'summarization',
      by: 'rule',
      rule: 1,
    });
  });

  it('embeds the examples once, and nothing when a rule matches or there is no text', async () => {
    const c = await classifierWith([rule({ task: 'vision', has_image: true })]);
    expect(embedder.calls).toBe(1);
    const examples = Object.values(BUILTIN_TASK_EXAMPLES).flat().length;
    expect(embedder.texts).toBe(examples);
    await c.classify(input({ text: 'what is in this picture?', hasImage: true }));
    expect(await c.classify(input({ text: '   ' }))).toEqual({ task: 'chat', by: 'default' });
    expect(embedder.calls).toBe(1);
    await c.classify(input({ text: 'write a poem' }));
    expect(embedder.calls).toBe(2);
  });
});

describe('TaskClassifier embedding classifier', () => {
  const examples = {
    cooking: ['How long do I boil an egg?', 'Recipe for tomato soup', 'How do I bake sourdough bread?'],
    travel: ['Cheap flights to Rome', 'Best time to visit Japan', 'What to pack for a trip to Iceland'],
  };

  it('uses the configured examples instead of the built-in ones', async () => {
    const embedder = new CountingEmbedder();
    const c = await TaskClassifier.create(tasksOf({ examples }), embedder);
    expect(embedder.texts).toBe(6);
    const soup = await c.classify(input({ text: 'recipe for a tomato soup with basil' }));
    expect(soup).toMatchObject({ task: 'cooking', by: 'classifier' });
    expect(soup.confidence).toBeGreaterThan(0);
    const trip = await c.classify(input({ text: 'what should I pack for a trip to Norway' }));
    expect(trip.task).toBe('travel');
    const code = await c.classify(input({ text: 'Write a Python function that sorts a list.' }));
    expect(['cooking', 'travel']).toContain(code.task);
  });

  it('answers the default task below min_confidence, with the margin it measured', async () => {
    const c = await TaskClassifier.create(tasksOf({ examples, min_confidence: 1 }), new LocalEmbedder());
    const got = await c.classify(input({ text: 'recipe for a tomato soup with basil' }));
    expect(got.task).toBe('chat');
    expect(got.by).toBe('default');
    expect(got.confidence).toBeGreaterThan(0);
    expect(got.confidence).toBeLessThan(1);
  });

  it('takes the similarity itself as the margin of a single task', async () => {
    const c = await TaskClassifier.create(
      tasksOf({ examples: { cooking: examples.cooking }, min_confidence: 0.2 }),
      new LocalEmbedder(),
    );
    expect((await c.classify(input({ text: 'How long do I boil an egg?' }))).task).toBe('cooking');
  });

  it('tells the built-in tasks apart', async () => {
    const c = await TaskClassifier.create(tasksOf(), new LocalEmbedder({ dimensions: 4096 }));
    const decided = async (text: string) => (await c.classify(input({ text }))).task;
    expect(await decided('Write a Java method that parses a CSV line, handling quoted fields.')).toBe('code');
    expect(await decided('Summarize this article in a short paragraph for my boss.')).toBe('summarization');
    expect(await decided('Solve 5x - 3 = 12 and show each step.')).toBe('math');
  });

  it('classifies a huge message by its head and tail', async () => {
    const c = await TaskClassifier.create(tasksOf({ examples }), new LocalEmbedder());
    const text = `Recipe for tomato soup? ${'blah '.repeat(200_000)} How long do I boil it?`;
    expect((await c.classify(input({ text }))).task).toBe('cooking');
  });
});

describe('the labelled set (spec/fixtures/tasks)', () => {
  const rows = loadLabelled();

  it('holds at least 220 prompts over the seven tasks', () => {
    expect(rows.length).toBeGreaterThanOrEqual(220);
    const tasks = new Set(rows.map((r) => r.task));
    expect([...tasks].sort()).toEqual(
      ['chat', 'code', 'extraction', 'long-context', 'math', 'summarization', 'vision'].sort(),
    );
    for (const task of tasks) expect(rows.filter((r) => r.task === task).length).toBeGreaterThanOrEqual(20);
    expect(rows.filter((r) => r.image).every((r) => r.task === 'vision')).toBe(true);
  });

  it('is disjoint from the built-in examples: no equal prompt, no near-duplicate (cosine > 0.95)', async () => {
    const normal = (s: string) => s.toLowerCase().replace(/\s+/g, ' ').trim();
    const examples = Object.values(BUILTIN_TASK_EXAMPLES).flat();
    const known = new Set(examples.map(normal));
    for (const row of rows) expect(known.has(normal(row.prompt))).toBe(false);

    const embedder = new LocalEmbedder();
    const exampleVectors = await embedder.embed(examples);
    const promptVectors = await embedder.embed(rows.map((r) => r.prompt));
    const nearDuplicates: string[] = [];
    promptVectors.forEach((p, i) => {
      exampleVectors.forEach((e, j) => {
        let s = 0;
        for (let k = 0; k < p.length; k++) s += p[k]! * e[k]!;
        if (s > 0.95) nearDuplicates.push(`${rows[i]!.prompt} ~ ${examples[j]}`);
      });
    });
    expect(nearDuplicates).toEqual([]);
  });

  it('has no duplicate prompts', () => {
    const keys = rows.map((r) => `${r.prompt}|${r.document ?? ''}|${r.tokens ?? ''}|${r.image ?? ''}`);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('refuses a malformed row, naming its line', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tasks-'));
    const file = path.join(dir, 'bad.jsonl');
    writeFileSync(file, '{"task": "chat", "prompt": "hi"}\n{"prompt": "no task"}\n');
    expect(() => loadLabelled(file)).toThrow('bad.jsonl:2: needs a task');
    writeFileSync(file, '{"task": "chat", "prompt": "hi", "repeat": 3}\n');
    expect(() => loadLabelled(file)).toThrow('bad.jsonl:1: repeat needs a document');
  });
});

describe('the example config (spec/fixtures/tasks/router-tasks.json)', () => {
  it("is valid for the router's schema and explains every rule", () => {
    const tasks = loadExampleConfig();
    const raw = JSON.parse(readFileSync(EXAMPLE_CONFIG_FILE, 'utf8')) as { rules_why: string[] };
    expect(raw.rules_why).toHaveLength(tasks.rules.length);
    for (const why of raw.rules_why) expect(why.length).toBeGreaterThan(20);
    expect(tasks.rules[0]).toMatchObject({ task: 'vision', has_image: true });
    expect(tasks.rules[1]).toMatchObject({ task: 'long-context' });
  });

  it(`reaches ${TARGET_ACCURACY * 100} % accuracy on ${path.basename(LABELLED_FILE)} with the local embedder`, async () => {
    const e = await evaluateExampleConfig();
    expect(e.total).toBe(loadLabelled().length);
    expect(e.accuracy).toBeGreaterThanOrEqual(TARGET_ACCURACY);
    expect(e.perTask.vision!.accuracy).toBe(1);
    expect(e.perTask['long-context']!.accuracy).toBe(1);
  });
});

describe('the built-in examples', () => {
  it('hold 30 to 60 distinct prompts for each of code, summarization, extraction, math and chat', () => {
    expect(Object.keys(BUILTIN_TASK_EXAMPLES).sort()).toEqual(
      ['chat', 'code', 'extraction', 'math', 'summarization'].sort(),
    );
    for (const list of Object.values(BUILTIN_TASK_EXAMPLES)) {
      expect(list.length).toBeGreaterThanOrEqual(30);
      expect(list.length).toBeLessThanOrEqual(60);
      expect(new Set(list).size).toBe(list.length);
    }
  });
});

describe('TaskClassifier with a failing embedder', () => {
  /** An embeddings endpoint that is down, or that fails after `working` calls. */
  const failing = (working = 0): Embedder => {
    let calls = 0;
    return {
      id: 'remote',
      dimensions: 64,
      embed: async (texts) => {
        if (calls++ >= working)
          throw new GatewayError('AIGW_UPSTREAM_UNAVAILABLE', 'embeddings endpoint down');
        return texts.map(() => {
          const v = new Float32Array(64);
          v[calls % 64] = 1;
          return v;
        });
      },
    };
  };
  const tasks = tasksOf({ rules: [rule({ task: 'code', keywords: ['python'] })] });

  it('down at build: rules still decide, the rest goes to the default task, and it says it is incomplete', async () => {
    const classifier = await TaskClassifier.create(tasks, failing());
    expect(classifier.complete).toBe(false);
    expect(await classifier.classify(input({ text: 'python question' }))).toMatchObject({
      task: 'code',
      by: 'rule',
    });
    expect(await classifier.classify(input({ text: 'a lovely day' }))).toEqual({
      task: 'chat',
      by: 'default',
    });
  });

  it('down later: an undecided prompt goes to the default task, never an error', async () => {
    const classifier = await TaskClassifier.create(tasks, failing(1));
    expect(classifier.complete).toBe(true);
    expect(await classifier.classify(input({ text: 'a lovely day' }))).toEqual({
      task: 'chat',
      by: 'default',
    });
  });
});
