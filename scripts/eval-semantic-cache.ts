/**
 * How well an embedder tells a paraphrase (same request, the cache may answer it) from a
 * near-miss (same words, another request: it must not) at a similarity threshold.
 *
 *   npx tsc -p . && node dist/scripts/eval-semantic-cache.js
 *   ... --threshold 0.8               another threshold (default: LOCAL_EMBEDDER_DEFAULT_THRESHOLD
 *                                     for LocalEmbedder, 0.9 for another embedder)
 *   ... --dimensions 256              LocalEmbedder with another vector length
 *   ... --embedder ./my-embedder.js   any Embedder: a module exporting `createEmbedder()`
 *   ... --errors 20                   list the worst mistakes of the tuning half
 *   ... --errors 20 --half held-out   ... of the held-out half
 *   ... --json                        one JSON object instead of tables
 *
 * The set is spec/fixtures/paraphrases/*.jsonl: pairs labelled `paraphrase`, `near-miss` or
 * `unrelated`. Within each file and label the pairs alternate between two halves (first,
 * third... tuning; second, fourth... held out), so both halves hold every kind of pair. A threshold is chosen on the
 * tuning half; the held-out half says whether it generalises. PASS needs precision (share of
 * pairs at or above the threshold that are paraphrases) of at least 0.97 on both halves.
 * docs/semantic-cache-eval.md quotes the results.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Embedder } from '../lib/embed/embedder';
import { LOCAL_EMBEDDER_DEFAULT_THRESHOLD, LocalEmbedder } from '../lib/embed/local';

export const TARGET_PRECISION = 0.97;
// scripts/ under ts-jest, dist/scripts/ once built: the set is where the repository has it
const FIXTURES = [path.resolve(__dirname, '..'), path.resolve(__dirname, '..', '..')]
  .map((root) => path.join(root, 'spec', 'fixtures', 'paraphrases'))
  .find((dir) => existsSync(dir))!;
const SWEEP = Array.from({ length: 21 }, (_, i) => 0.5 + i * 0.025);

export type Label = 'paraphrase' | 'near-miss' | 'unrelated';
export type Half = 'tuning' | 'held-out';

export interface Pair {
  id: string;
  category: string;
  label: Label;
  a: string;
  b: string;
  half: Half;
}

export interface ScoredPair extends Pair {
  similarity: number;
}

export interface Scores {
  threshold: number;
  pairs: number;
  truePositives: number;
  falsePositives: number;
  falseNegatives: number;
  precision: number;
  recall: number;
  f1: number;
  /** false positives by label of the pair */
  falsePositivesBy: Record<Exclude<Label, 'paraphrase'>, number>;
}

/** Every pair of the set, with its half. */
export function loadPairs(dir = FIXTURES): Pair[] {
  const pairs: Pair[] = [];
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .sort()) {
    const category = file.replace(/\.jsonl$/, '');
    const seen: Record<string, number> = {};
    const lines = readFileSync(path.join(dir, file), 'utf8').split('\n');
    for (const [index, line] of lines.entries()) {
      if (line.trim() === '') continue;
      const row = JSON.parse(line) as Partial<Pair>;
      if (typeof row.a !== 'string' || typeof row.b !== 'string' || typeof row.id !== 'string') {
        throw new Error(`${file}:${index + 1}: needs id, a and b`);
      }
      if (row.label !== 'paraphrase' && row.label !== 'near-miss' && row.label !== 'unrelated') {
        throw new Error(`${file}:${index + 1}: label must be paraphrase, near-miss or unrelated`);
      }
      const position = seen[row.label] ?? 0;
      seen[row.label] = position + 1;
      pairs.push({
        id: row.id,
        category,
        label: row.label,
        a: row.a,
        b: row.b,
        half: position % 2 === 0 ? 'tuning' : 'held-out',
      });
    }
  }
  return pairs;
}

export async function scorePairs(embedder: Embedder, pairs: readonly Pair[]): Promise<ScoredPair[]> {
  const scored: ScoredPair[] = [];
  for (const pair of pairs) {
    const [a, b] = await embedder.embed([pair.a, pair.b]);
    scored.push({ ...pair, similarity: cosine(a!, b!) });
  }
  return scored;
}

export function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let normA = 0;
  let normB = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    normA += a[i]! * a[i]!;
    normB += b[i]! * b[i]!;
  }
  return normA === 0 || normB === 0 ? 0 : dot / Math.sqrt(normA * normB);
}

/** A pair at or above the threshold is a cache hit; it is right when the pair is a paraphrase. */
export function scoreAt(pairs: readonly ScoredPair[], threshold: number): Scores {
  let truePositives = 0;
  let falseNegatives = 0;
  const falsePositivesBy = { 'near-miss': 0, unrelated: 0 };
  for (const pair of pairs) {
    const hit = pair.similarity >= threshold;
    if (pair.label === 'paraphrase') {
      if (hit) truePositives++;
      else falseNegatives++;
    } else if (hit) {
      falsePositivesBy[pair.label]++;
    }
  }
  const falsePositives = falsePositivesBy['near-miss'] + falsePositivesBy.unrelated;
  const precision =
    truePositives + falsePositives === 0 ? 1 : truePositives / (truePositives + falsePositives);
  const recall = truePositives + falseNegatives === 0 ? 0 : truePositives / (truePositives + falseNegatives);
  const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
  return {
    threshold,
    pairs: pairs.length,
    truePositives,
    falsePositives,
    falseNegatives,
    precision,
    recall,
    f1,
    falsePositivesBy,
  };
}

/** The lowest threshold (best recall) whose precision reaches the target, or undefined. */
export function lowestThresholdFor(pairs: readonly ScoredPair[], precision: number): number | undefined {
  const candidates = [...new Set(pairs.map((p) => p.similarity))].sort((x, y) => x - y);
  return candidates.find((t) => scoreAt(pairs, t).precision >= precision);
}

function quantiles(values: number[]): string {
  const sorted = [...values].sort((x, y) => x - y);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
  return [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1].map((q) => at(q).toFixed(3).padStart(6)).join(' ');
}

async function loadEmbedder(module: string | undefined, dimensions: number | undefined): Promise<Embedder> {
  if (module === undefined) return new LocalEmbedder({ dimensions });
  const loaded = require(path.resolve(module)) as { createEmbedder?: () => Embedder | Promise<Embedder> };
  if (typeof loaded.createEmbedder !== 'function') throw new Error(`${module} exports no createEmbedder()`);
  return loaded.createEmbedder();
}

const pct = (x: number) => (x * 100).toFixed(1).padStart(5);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      threshold: { type: 'string' },
      dimensions: { type: 'string' },
      embedder: { type: 'string' },
      errors: { type: 'string', default: '0' },
      half: { type: 'string', default: 'tuning' },
      json: { type: 'boolean', default: false },
    },
  });
  const embedder = await loadEmbedder(
    values.embedder,
    values.dimensions === undefined ? undefined : Number(values.dimensions),
  );
  const threshold =
    values.threshold !== undefined
      ? Number(values.threshold)
      : embedder instanceof LocalEmbedder
        ? LOCAL_EMBEDDER_DEFAULT_THRESHOLD
        : 0.9;
  const scored = await scorePairs(embedder, loadPairs());
  const halves: Record<Half | 'all', ScoredPair[]> = {
    tuning: scored.filter((p) => p.half === 'tuning'),
    'held-out': scored.filter((p) => p.half === 'held-out'),
    all: scored,
  };
  const results = Object.fromEntries(
    Object.entries(halves).map(([name, pairs]) => [name, scoreAt(pairs, threshold)]),
  ) as Record<Half | 'all', Scores>;
  const pass =
    results.tuning.precision >= TARGET_PRECISION && results['held-out'].precision >= TARGET_PRECISION;

  if (values.json) {
    const sweep = SWEEP.map((t) => ({
      tuning: scoreAt(halves.tuning, t),
      heldOut: scoreAt(halves['held-out'], t),
    }));
    console.log(JSON.stringify({ embedder: embedder.id, threshold, results, sweep, pass }, null, 2));
    process.exitCode = pass ? 0 : 1;
    return;
  }

  const count = (label: Label) => scored.filter((p) => p.label === label).length;
  console.log(
    `embedder ${embedder.id}, threshold ${threshold}: ${count('paraphrase')} paraphrases, ` +
      `${count('near-miss')} near-misses, ${count('unrelated')} unrelated pairs`,
  );
  console.log('\nsimilarity      min    p10    p25    p50    p75    p90    max');
  for (const label of ['paraphrase', 'near-miss', 'unrelated'] as const) {
    console.log(
      `${label.padEnd(12)} ${quantiles(scored.filter((p) => p.label === label).map((p) => p.similarity))}`,
    );
  }

  console.log(`\nat ${threshold}     pairs  precision  recall     F1  false hits (near-miss, unrelated)`);
  for (const [name, r] of Object.entries(results)) {
    console.log(
      `${name.padEnd(10)} ${String(r.pairs).padStart(6)}     ${pct(r.precision)}   ${pct(r.recall)}  ${pct(r.f1)}  ` +
        `${r.falsePositives} (${r.falsePositivesBy['near-miss']}, ${r.falsePositivesBy.unrelated})`,
    );
  }

  console.log('\nrecall by category at the threshold (all pairs), and near-misses let through');
  const categories = [...new Set(scored.map((p) => p.category))].filter((c) => c !== 'unrelated');
  for (const category of categories) {
    const r = scoreAt(
      scored.filter((p) => p.category === category),
      threshold,
    );
    console.log(
      `  ${category.padEnd(14)} recall ${pct(r.recall)}   near-misses hit ${r.falsePositivesBy['near-miss']}`,
    );
  }

  console.log('\nthreshold   tuning: precision recall   F1   held-out: precision recall   F1');
  for (const t of SWEEP) {
    const a = scoreAt(halves.tuning, t);
    const b = scoreAt(halves['held-out'], t);
    console.log(
      `  ${t.toFixed(3)}             ${pct(a.precision)}  ${pct(a.recall)} ${pct(a.f1)}              ` +
        `${pct(b.precision)}  ${pct(b.recall)} ${pct(b.f1)}`,
    );
  }
  const lowest = lowestThresholdFor(halves.tuning, TARGET_PRECISION);
  if (lowest === undefined) {
    console.log(`\nno threshold reaches precision ${TARGET_PRECISION} on the tuning half`);
  } else {
    const onTuning = scoreAt(halves.tuning, lowest);
    const onHeldOut = scoreAt(halves['held-out'], lowest);
    console.log(
      `\nlowest threshold with precision >= ${TARGET_PRECISION} on the tuning half: ${lowest.toFixed(3)} ` +
        `(recall ${pct(onTuning.recall)} %; held out: precision ${pct(onHeldOut.precision)} %, recall ${pct(onHeldOut.recall)} %)`,
    );
  }

  const errors = Number(values.errors);
  if (errors > 0) {
    const half = values.half === 'held-out' ? 'held-out' : 'tuning';
    const chosen = halves[half];
    const falseHits = chosen
      .filter((p) => p.label !== 'paraphrase' && p.similarity >= threshold)
      .sort((x, y) => y.similarity - x.similarity);
    const misses = chosen
      .filter((p) => p.label === 'paraphrase' && p.similarity < threshold)
      .sort((x, y) => x.similarity - y.similarity);
    console.log(`\n${half} false hits (${falseHits.length}):`);
    for (const p of falseHits.slice(0, errors))
      console.log(`  ${p.similarity.toFixed(3)} ${p.id}: ${p.a} | ${p.b}`);
    console.log(`${half} missed paraphrases (${misses.length}):`);
    for (const p of misses.slice(0, errors))
      console.log(`  ${p.similarity.toFixed(3)} ${p.id}: ${p.a} | ${p.b}`);
  }

  console.log(
    `\n${pass ? 'PASS' : 'FAIL'}: precision ${pct(results.tuning.precision)} % (tuning), ` +
      `${pct(results['held-out'].precision)} % (held out), target ${TARGET_PRECISION * 100} %`,
  );
  process.exitCode = pass ? 0 : 1;
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exitCode = 2;
  });
}
