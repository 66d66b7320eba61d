/**
 * How well ai-router's task classifier (rules, then the embedding classifier) labels requests.
 *
 *   npx tsc -p . && node dist/scripts/eval-router-tasks.js
 *   ... --min-confidence 0.01     another margin threshold than the example config's
 *   ... --errors 20               list the first mistakes
 *   ... --json                    one JSON object instead of tables
 *
 * The set is spec/fixtures/tasks/labelled.jsonl, one prompt a line: `{task, prompt}`, with
 * `image: true` for a request with an image part, `document` and `repeat` for a text appended
 * `repeat` times to the prompt (long prompts stay short on disk), and `tokens` to state the
 * prompt's token count instead of counting it. The rules and threshold are those of the
 * documented example config spec/fixtures/tasks/router-tasks.json; the embedder is the offline
 * LocalEmbedder with the built-in examples. Exits 1 below TARGET_ACCURACY.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { Endpoint } from '../lib/context';
import type { Embedder } from '../lib/embed/embedder';
import { LocalEmbedder } from '../lib/embed/local';
import {
  TaskClassifier,
  type TaskDecision,
  type TaskInput,
  type TasksConfig,
  taskInputOf,
} from '../plugins/ai-router/tasks';
import { CLASSIFIER_DIMENSIONS, routerConfig } from '../schemas/ai-router';
import { percentile } from './bench/load';

export const TARGET_ACCURACY = 0.9;
// scripts/ under jest, dist/scripts/ once built: the fixtures are where the repository has them
const FIXTURES = [path.resolve(__dirname, '..'), path.resolve(__dirname, '..', '..')]
  .map((root) => path.join(root, 'spec', 'fixtures', 'tasks'))
  .find((dir) => existsSync(dir))!;
export const LABELLED_FILE = path.join(FIXTURES, 'labelled.jsonl');
export const EXAMPLE_CONFIG_FILE = path.join(FIXTURES, 'router-tasks.json');

export interface LabelledPrompt {
  task: string;
  prompt: string;
  image?: boolean;
  document?: string;
  repeat?: number;
  tokens?: number;
}

/** Every row of the set; throws naming the line of a malformed one. */
export function loadLabelled(file = LABELLED_FILE): LabelledPrompt[] {
  const rows: LabelledPrompt[] = [];
  for (const [index, line] of readFileSync(file, 'utf8').split('\n').entries()) {
    if (line.trim() === '') continue;
    const row = JSON.parse(line) as Partial<LabelledPrompt>;
    const at = `${path.basename(file)}:${index + 1}`;
    if (typeof row.task !== 'string' || row.task === '') throw new Error(`${at}: needs a task`);
    if (typeof row.prompt !== 'string') throw new Error(`${at}: needs a prompt`);
    if (row.repeat !== undefined && (!Number.isInteger(row.repeat) || row.repeat < 1 || !row.document)) {
      throw new Error(`${at}: repeat needs a document and a positive integer`);
    }
    if (row.tokens !== undefined && (!Number.isInteger(row.tokens) || row.tokens < 0)) {
      throw new Error(`${at}: tokens must be a non-negative integer`);
    }
    rows.push(row as LabelledPrompt);
  }
  return rows;
}

/** The `tasks` object of the example config, validated by the router's schema (defaults applied). */
export function loadExampleConfig(file = EXAMPLE_CONFIG_FILE): TasksConfig {
  const { tasks } = JSON.parse(readFileSync(file, 'utf8')) as { tasks: { routes: Record<string, string> } };
  // the routes name pools of the integrator's config: stand-in targets make it valid on its own
  const names = [...new Set(Object.values(tasks.routes))];
  const targets = names.map((name) => ({ name, model: `model-of-${name}` }));
  return routerConfig.validate({ targets, tasks }).config.tasks!;
}

/** The user message of a row as it reaches the gateway. */
export function userText(row: LabelledPrompt): string {
  if (!row.document) return row.prompt;
  return `${row.prompt}\n\n${row.document.repeat(row.repeat ?? 1)}`;
}

/** The chat request of a row: its text, and an image part when it has one. */
export function requestOf(row: LabelledPrompt): { endpoint: Endpoint; body: Record<string, unknown> } {
  const text = userText(row);
  const content = row.image
    ? [
        ...(text ? [{ type: 'text', text }] : []),
        { type: 'image_url', image_url: { url: 'https://example.com/photo.jpg' } },
      ]
    : text;
  return {
    endpoint: 'chat.completions',
    body: { model: 'auto', messages: [{ role: 'user', content }] },
  };
}

export function inputOf(row: LabelledPrompt): TaskInput {
  const { endpoint, body } = requestOf(row);
  const tokens = row.tokens;
  return taskInputOf(endpoint, body, tokens !== undefined ? () => tokens : undefined);
}

export interface Classified {
  row: LabelledPrompt;
  decision: TaskDecision;
  ms: number;
}

export interface Evaluation {
  total: number;
  correct: number;
  accuracy: number;
  /** Per labelled task: rows, correct, accuracy. */
  perTask: Record<string, { rows: number; correct: number; accuracy: number }>;
  /** confusion[labelled][predicted] = rows */
  confusion: Record<string, Record<string, number>>;
  by: Record<TaskDecision['by'], number>;
  p50Ms: number;
  p99Ms: number;
  mistakes: Classified[];
}

/** Classifies every row (inputs built beforehand, so the times are the classifier's alone). */
export async function evaluate(
  classifier: TaskClassifier,
  rows: readonly LabelledPrompt[],
): Promise<Evaluation> {
  const inputs = rows.map(inputOf);
  const results: Classified[] = [];
  for (const [i, row] of rows.entries()) {
    const start = performance.now();
    const decision = await classifier.classify(inputs[i]!);
    results.push({ row, decision, ms: performance.now() - start });
  }
  const perTask: Evaluation['perTask'] = {};
  const confusion: Evaluation['confusion'] = {};
  const by: Evaluation['by'] = { rule: 0, classifier: 0, default: 0 };
  for (const { row, decision } of results) {
    perTask[row.task] ??= { rows: 0, correct: 0, accuracy: 0 };
    const stats = perTask[row.task]!;
    stats.rows++;
    if (decision.task === row.task) stats.correct++;
    confusion[row.task] ??= {};
    const line = confusion[row.task]!;
    line[decision.task] = (line[decision.task] ?? 0) + 1;
    by[decision.by]++;
  }
  for (const stats of Object.values(perTask)) stats.accuracy = stats.correct / stats.rows;
  const mistakes = results.filter((r) => r.decision.task !== r.row.task);
  const times = results.map((r) => r.ms);
  return {
    total: rows.length,
    correct: rows.length - mistakes.length,
    accuracy: (rows.length - mistakes.length) / rows.length,
    perTask,
    confusion,
    by,
    p50Ms: percentile(times, 50),
    p99Ms: percentile(times, 99),
    mistakes,
  };
}

export async function evaluateExampleConfig(
  options: { minConfidence?: number; dimensions?: number; embedder?: Embedder } = {},
): Promise<Evaluation> {
  const config = loadExampleConfig();
  const tasks =
    options.minConfidence === undefined ? config : { ...config, min_confidence: options.minConfidence };
  const classifier = await TaskClassifier.create(
    tasks,
    options.embedder ?? new LocalEmbedder({ dimensions: options.dimensions ?? CLASSIFIER_DIMENSIONS }),
  );
  return evaluate(classifier, loadLabelled());
}

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;

function report(e: Evaluation, errors: number): string {
  const tasks = [
    ...new Set([...Object.keys(e.confusion), ...Object.values(e.confusion).flatMap(Object.keys)]),
  ];
  const width = Math.max(8, ...tasks.map((t) => t.length)) + 2;
  const cell = (s: string | number) => String(s).padStart(width);
  const lines = [
    `accuracy ${pct(e.accuracy)} (${e.correct}/${e.total}), target ${pct(TARGET_ACCURACY)}`,
    '',
    'per task',
    ...Object.entries(e.perTask).map(
      ([task, s]) => `  ${task.padEnd(width)} ${pct(s.accuracy).padStart(8)}  (${s.correct}/${s.rows})`,
    ),
    '',
    'confusion (rows: labelled, columns: decided)',
    `${''.padEnd(width)}${tasks.map(cell).join('')}`,
    ...Object.entries(e.confusion).map(
      ([task, line]) => `${task.padEnd(width)}${tasks.map((t) => cell(line[t] ?? '.')).join('')}`,
    ),
    '',
    `decided by rule ${e.by.rule}, classifier ${e.by.classifier}, default ${e.by.default}`,
    `classification time p50 ${e.p50Ms.toFixed(3)} ms, p99 ${e.p99Ms.toFixed(3)} ms`,
  ];
  if (errors > 0) {
    lines.push('', 'mistakes');
    for (const { row, decision } of e.mistakes.slice(0, errors)) {
      const how =
        decision.by === 'rule'
          ? `rule ${decision.rule}`
          : `${decision.by} ${decision.confidence?.toFixed(3) ?? ''}`;
      lines.push(
        `  ${row.task} -> ${decision.task} (${how}): ${row.prompt.slice(0, 90).replace(/\n/g, ' ')}`,
      );
    }
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'min-confidence': { type: 'string' },
      dimensions: { type: 'string' },
      errors: { type: 'string', default: '0' },
      json: { type: 'boolean', default: false },
    },
  });
  const minConfidence = values['min-confidence'] === undefined ? undefined : Number(values['min-confidence']);
  const dimensions = values.dimensions === undefined ? undefined : Number(values.dimensions);
  const e = await evaluateExampleConfig({ minConfidence, dimensions });
  if (values.json) {
    const { mistakes, ...summary } = e;
    console.log(
      JSON.stringify({ ...summary, mistakes: mistakes.map((m) => ({ ...m.row, decided: m.decision })) }),
    );
  } else {
    console.log(report(e, Number(values.errors)));
  }
  if (e.accuracy < TARGET_ACCURACY) process.exitCode = 1;
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
