/**
 * Benchmark: ai-router's automatic answer checks (plugins/ai-router/quality.ts `checkAnswer`).
 *
 *   tsc -p . && node dist/scripts/bench-quality.js                  20000 checks per case
 *   tsc -p . && node dist/scripts/bench-quality.js --calls 50000
 *   tsc -p . && node dist/scripts/bench-quality.js --reliability    tinyld on short texts
 *
 * Each case checks a ~2 KB chat answer, after a warm-up, in rounds (`--rounds`, default 10) so
 * a slow spell of the machine falls on all cases alike:
 *
 *   plain               text answer, prompt too short to judge its language
 *   json_schema         JSON answer validated against the request's schema (compiled once)
 *   tool call           a tool call validated against its function's parameters
 *   language            English answer to an English prompt: tinyld on both
 *   language mismatch   English answer to a French prompt
 *
 * The target: p99 well under 1 ms per answer.
 *
 * `--reliability` measures tinyld on the chat-like samples of
 * spec/fixtures/quality/languages.json cut to N letters: how often it names the right language,
 * and how often two texts of one language would be called a mismatch (what picks
 * `MIN_LANGUAGE_LETTERS`).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { detect } from 'tinyld';
import type { RelayOutcome } from '../lib/context';
import { type AnswerToCheck, checkAnswer } from '../plugins/ai-router/quality';
import { percentile } from './bench/load';

const OUTCOME: RelayOutcome = {
  target: 't',
  provider: 'openai',
  model: 'gpt-4o-mini',
  status: 200,
  stream: false,
  started_at: 0,
  bytes_out: 2048,
  end: 'complete',
};

const EN_ANSWER = [
  'Here is a practical plan for moving the billing service to the new database without downtime.',
  'First, add the new tables next to the old ones and write to both for a week, reading only from the old ones.',
  'Compare the two copies every night with a small script that reports the rows that differ, and fix the writer until the report stays empty.',
  'Then switch the reads for internal users only, watch the error rate and the latency of the slowest requests, and keep the old path one flag away.',
  'When a week has passed without surprises, switch every reader, stop writing to the old tables, and keep them read-only for a month before you drop them.',
  'Tell the support team before each step: if customers see a wrong invoice, they must know which step to roll back.',
].join(' ');
const answerOf = (text: string) => text.repeat(Math.ceil(2048 / text.length)).slice(0, 2048);

function chat(content: string, finish = 'stop', extra: Record<string, unknown> = {}) {
  return {
    id: 'chatcmpl-bench',
    object: 'chat.completion',
    created: 1744190845,
    model: 'gpt-4o-mini-2024-07-18',
    choices: [
      { index: 0, message: { role: 'assistant', content, refusal: null, ...extra }, finish_reason: finish },
    ],
    usage: { prompt_tokens: 120, completion_tokens: 450, total_tokens: 570 },
  };
}

const ITEM_SCHEMA = {
  type: 'object',
  properties: {
    sku: { type: 'string', pattern: '^[A-Z]{3}-[0-9]{4}$' },
    name: { type: 'string', minLength: 1 },
    quantity: { type: 'integer', minimum: 1 },
    price: { type: 'number', minimum: 0 },
    tags: { type: 'array', items: { type: 'string' } },
  },
  required: ['sku', 'name', 'quantity', 'price', 'tags'],
  additionalProperties: false,
};
const ORDER_SCHEMA = {
  type: 'object',
  properties: {
    order_id: { type: 'string' },
    customer: { type: 'string' },
    status: { type: 'string', enum: ['open', 'paid', 'shipped'] },
    items: { type: 'array', items: ITEM_SCHEMA },
  },
  required: ['order_id', 'customer', 'status', 'items'],
  additionalProperties: false,
};
const ORDER = {
  order_id: 'A-1042',
  customer: 'Jane Doe',
  status: 'paid',
  items: Array.from({ length: 14 }, (_, i) => ({
    sku: `ABC-${String(1000 + i)}`,
    name: `Item number ${i}`,
    quantity: 1 + (i % 3),
    price: 9.5 + i,
    tags: ['kitchen', 'sale'],
  })),
};

const SHORT_PROMPT = { role: 'user', content: 'Plan the billing migration.' };
const EN_PROMPT = {
  role: 'user',
  content:
    'We need to move our billing service to a new database next quarter. How should we do it without any downtime for our customers?',
};
const FR_PROMPT = {
  role: 'user',
  content:
    'Nous devons migrer notre service de facturation vers une nouvelle base de données le trimestre prochain. Comment faire sans interruption pour nos clients ?',
};
const TOOL = {
  type: 'function',
  function: { name: 'save_order', description: 'Saves an order.', parameters: ORDER_SCHEMA },
};

interface Case {
  name: string;
  input: AnswerToCheck;
}

const CASES: Case[] = [
  {
    name: 'plain',
    input: {
      endpoint: 'chat.completions',
      request: { messages: [SHORT_PROMPT] },
      answer: chat(answerOf(EN_ANSWER)),
      outcome: OUTCOME,
    },
  },
  {
    name: 'json_schema',
    input: {
      endpoint: 'chat.completions',
      request: {
        messages: [SHORT_PROMPT],
        response_format: {
          type: 'json_schema',
          json_schema: { name: 'order', strict: true, schema: ORDER_SCHEMA },
        },
      },
      answer: chat(JSON.stringify(ORDER)),
      outcome: OUTCOME,
    },
  },
  {
    name: 'tool call',
    input: {
      endpoint: 'chat.completions',
      request: { messages: [SHORT_PROMPT], tools: [TOOL] },
      answer: chat('', 'tool_calls', {
        content: null,
        tool_calls: [
          {
            id: 'call_1',
            type: 'function',
            function: { name: 'save_order', arguments: JSON.stringify(ORDER) },
          },
        ],
      }),
      outcome: OUTCOME,
    },
  },
  {
    name: 'language',
    input: {
      endpoint: 'chat.completions',
      request: { messages: [EN_PROMPT] },
      answer: chat(answerOf(EN_ANSWER)),
      outcome: OUTCOME,
    },
  },
  {
    name: 'language mismatch',
    input: {
      endpoint: 'chat.completions',
      request: { messages: [FR_PROMPT] },
      answer: chat(answerOf(EN_ANSWER)),
      outcome: OUTCOME,
    },
  },
];

function time(c: Case, calls: number, samples: number[]): string {
  let failed = '';
  for (let i = 0; i < calls; i++) {
    const start = process.hrtime.bigint();
    const verdict = checkAnswer(c.input);
    samples.push(Number(process.hrtime.bigint() - start) / 1_000);
    failed = verdict?.failed.join(',') || '-';
  }
  return failed;
}

function bench(calls: number, rounds: number): boolean {
  const per = Math.ceil(calls / rounds);
  for (const c of CASES) time(c, Math.min(per, 2_000), []);
  const samples = new Map(CASES.map((c) => [c, [] as number[]]));
  const failed = new Map<Case, string>();
  for (let r = 0; r < rounds; r++) for (const c of CASES) failed.set(c, time(c, per, samples.get(c)!));
  console.log(`answer checks, ~2 KB answers, ${calls} calls per case in ${rounds} rounds (µs)\n`);
  console.log(`${'case'.padEnd(20)} ${'p50'.padStart(8)} ${'p99'.padStart(8)} ${'max'.padStart(9)}  failed`);
  let worst = 0;
  for (const c of CASES) {
    const s = samples.get(c)!;
    const p99 = percentile(s, 99);
    worst = Math.max(worst, p99);
    const max = s.reduce((a, b) => Math.max(a, b), 0);
    console.log(
      `${c.name.padEnd(20)} ${percentile(s, 50).toFixed(1).padStart(8)} ${p99.toFixed(1).padStart(8)} ${max
        .toFixed(0)
        .padStart(9)}  ${failed.get(c)}`,
    );
  }
  const met = worst < 1_000;
  console.log(`\nanswer checks p99 < 1 ms: ${met ? 'met' : 'NOT MET'}`);
  return met;
}

/** Start of `text` from word `from`, cut once it holds `letters` letters; undefined if it never does. */
function cut(text: string, from: number, letters: number): string | undefined {
  const words = text.split(/\s+/).slice(from);
  let count = 0;
  for (let i = 0; i < words.length; i++) {
    count += (words[i]!.match(/\p{L}/gu) ?? []).length;
    if (count >= letters) return words.slice(0, i + 1).join(' ');
  }
  return undefined;
}

function reliability(): void {
  const file = join(__dirname, '..', '..', 'spec', 'fixtures', 'quality', 'languages.json');
  const corpus = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string[]>;
  console.log('tinyld on chat-like texts cut to N letters (spec/fixtures/quality/languages.json)\n');
  console.log(
    `${'letters'.padStart(7)} ${'texts'.padStart(6)} ${'right'.padStart(7)} ${'pairs'.padStart(6)} ${'false mismatch'.padStart(15)}`,
  );
  for (const letters of [20, 30, 40, 50, 60, 80, 120]) {
    const detected: Array<{ lang: string; text: number; got: string }> = [];
    for (const [lang, texts] of Object.entries(corpus)) {
      texts.forEach((text, t) => {
        for (let from = 0; ; from += 2) {
          const sample = cut(text, from, letters);
          if (sample === undefined) break;
          detected.push({ lang, text: t, got: detect(sample) });
        }
      });
    }
    const right = detected.filter((d) => d.got === d.lang).length;
    // Same-language pairs from different texts: a prompt and its answer.
    let pairs = 0;
    let mismatches = 0;
    for (const a of detected) {
      for (const b of detected) {
        if (a.lang !== b.lang || a.text === b.text) continue;
        pairs++;
        if (a.got !== '' && b.got !== '' && a.got !== b.got) mismatches++;
      }
    }
    console.log(
      `${String(letters).padStart(7)} ${String(detected.length).padStart(6)} ${`${((100 * right) / detected.length).toFixed(1)} %`.padStart(7)} ${String(pairs).padStart(6)} ${`${((100 * mismatches) / pairs).toFixed(2)} %`.padStart(15)}`,
    );
  }
}

function main(): void {
  const { values } = parseArgs({
    options: {
      calls: { type: 'string', default: '20000' },
      rounds: { type: 'string', default: '10' },
      reliability: { type: 'boolean', default: false },
    },
  });
  if (values.reliability) {
    reliability();
    return;
  }
  process.exitCode = bench(Number(values.calls), Number(values.rounds)) ? 0 : 1;
}

main();
