/**
 * Benchmark: prompt patterns (plugins/ai-metrics/fingerprint.ts, patterns.ts).
 *
 *   tsc -p . && node dist/scripts/bench-patterns.js                  20000 calls per measure
 *   tsc -p . && node dist/scripts/bench-patterns.js --calls 50000
 *
 * Prompts of 1 KB to 1.2 KB (UTF-8 bytes) from eight templates, each with its variable parts (names in
 * quotes, emails, ids, dates, amounts) drawn anew per prompt, over English prose. Measured per
 * call, after a warm-up:
 *   fingerprint      a prompt to its template
 *   observe          PromptPatterns.observe: fingerprint and count (Space-Saving, 100 counters)
 *   count            the counting step alone, on templates computed beforehand, for the
 *                    Space-Saving counters used here and for the TopK of `bloom-filters`
 *                    (count-min sketch under a sorted array), with whether each finds the
 *                    true top 8 of the same stream and how far its counts are from the truth.
 */
import { parseArgs } from 'node:util';
import { TopK } from 'bloom-filters';
import { fingerprint } from '../plugins/ai-metrics/fingerprint';
import { PromptPatterns, SpaceSaving } from '../plugins/ai-metrics/patterns';

const PROMPT_BYTES = 1024;
const PROSE =
  ' Please keep the answer short, friendly and accurate, and do not invent facts that are not in the text above; when something is missing, say so plainly and suggest what the customer could send next.';

let seed = 42;
function random(): number {
  seed = (seed * 1_103_515_245 + 12_345) & 0x7fffffff;
  return seed / 0x80000000;
}
const int = (max: number) => Math.floor(random() * max);
const pick = <T>(xs: readonly T[]) => xs[int(xs.length)]!;
const NAMES = ['Jane Roe', 'Omar Haddad', 'Li Wei', 'Ana Silva', 'Kofi Mensah', 'Sven Berg'];
const email = () =>
  `${pick(['jane', 'omar', 'li', 'ana'])}.${pick(['roe', 'wei', 'berg'])}${int(99)}@example.com`;
const date = () => `2025-${String(1 + int(12)).padStart(2, '0')}-${String(1 + int(28)).padStart(2, '0')}`;

const TEMPLATES = [
  () =>
    `Summarize the ticket from "${pick(NAMES)}" (${email()}) opened on ${date()} in ${2 + int(4)} sentences.`,
  () =>
    `Write a reply to ${email()}: order ORD-2025-${100_000 + int(899_999)} ships on ${1 + int(12)}/${1 + int(28)}/2025.`,
  () =>
    `Extract the amounts from invoice ${int(1e6)} dated ${date()} totalling $${int(9_999)}.${int(99)} for "${pick(NAMES)}".`,
  () =>
    `Draft an invite for "${pick(NAMES)}" on ${date()} at ${1 + int(11)}:${String(int(60)).padStart(2, '0')} pm.`,
  () =>
    `Customer ${email()} asks about payment 9f${int(1e6)}c${int(1e6)}e; call +1 (555) ${100 + int(899)}-${1000 + int(8999)}.`,
  () =>
    `Translate into French: "${pick(NAMES)} met ${pick(NAMES)} ${2 + int(9)} times in ${2000 + int(25)}."`,
  () =>
    `Check IP ${int(256)}.${int(256)}.${int(256)}.${int(256)} against the list from ${date()}, see https://example.com/l/${int(99)}.`,
  () => `What is ${int(1_000)} * ${int(1_000)} + ${int(100)}? Answer with the number only.`,
];

/** Whole sentences of prose up to PROMPT_BYTES: a prompt cut mid-word would make a template of its own. */
function withProse(head: string): string {
  let text = head;
  while (Buffer.byteLength(text) < PROMPT_BYTES) text += PROSE;
  return text;
}

/** `i` written with letters only: a different one-off prompt for every i, with no digit to mask. */
function lettersOf(i: number): string {
  return [...i.toString(26)].map((d) => String.fromCharCode(97 + parseInt(d, 26))).join('');
}

function percentiles(samplesNs: number[]): string {
  const sorted = [...samplesNs].sort((a, b) => a - b);
  const at = (q: number) =>
    (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! / 1_000).toFixed(2);
  return `p50 ${at(0.5).padStart(7)} µs   p99 ${at(0.99).padStart(7)} µs`;
}

function timeEach<T>(inputs: readonly T[], calls: number, f: (input: T) => void): number[] {
  for (let i = 0; i < Math.min(calls, 5_000); i++) f(inputs[i % inputs.length]!);
  const samples: number[] = [];
  for (let i = 0; i < calls; i++) {
    const input = inputs[i % inputs.length]!;
    const start = process.hrtime.bigint();
    f(input);
    samples.push(Number(process.hrtime.bigint() - start));
  }
  return samples;
}

function main(): void {
  const { values } = parseArgs({ options: { calls: { type: 'string', default: '20000' } } });
  const calls = Number(values.calls);
  // Zipf-like weights: template i is chosen with weight 1/(i+1); one prompt in ten is a one-off.
  const weights = TEMPLATES.map((_, i) => 1 / (i + 1));
  const sum = weights.reduce((a, b) => a + b, 0);
  const stream: string[] = [];
  let oneOffs = 0;
  for (let i = 0; i < calls; i++) {
    if (random() < 0.1) {
      oneOffs++;
      stream.push(withProse(`One-off question ${lettersOf(i)}:`));
      continue;
    }
    let r = random() * sum;
    let t = 0;
    while (r > weights[t]! && t < TEMPLATES.length - 1) r -= weights[t++]!;
    stream.push(withProse(TEMPLATES[t]!()));
  }
  const truth = new Map<string, number>();
  const templates = stream.map((p) => fingerprint(p));
  for (const t of templates) truth.set(t, (truth.get(t) ?? 0) + 1);
  const trueTop = [...truth].sort((a, b) => b[1] - a[1]).slice(0, TEMPLATES.length);

  console.log(
    `${calls} prompts of ${PROMPT_BYTES}+ bytes (${oneOffs} one-offs), ${truth.size} distinct templates; Node ${process.version}`,
  );
  console.log(`fingerprint          ${percentiles(timeEach(stream, calls, (p) => fingerprint(p)))}`);
  const patterns = new PromptPatterns({ topK: 20 });
  console.log(
    `observe              ${percentiles(timeEach(stream, calls, (p) => patterns.observe('bench', p)))}`,
  );

  // Same memory class: 100 counters; the count-min sketch sized for 0.1 % error at 99 % confidence.
  const spaceSaving = () => new SpaceSaving(100);
  const topK = () => new TopK(100, 0.001, 0.99);
  const ssTimes = timeEach(
    templates,
    calls,
    (
      (s) => (t: string) =>
        s.add(t)
    )(spaceSaving()),
  );
  const tkTimes = timeEach(
    templates,
    calls,
    (
      (k) => (t: string) =>
        k.add(t)
    )(topK()),
  );
  // Accuracy on one pass of the stream, into fresh counters.
  const ss = spaceSaving();
  const tk = topK();
  for (const t of templates) {
    ss.add(t);
    tk.add(t);
  }
  const accuracy = (top: { key: string; count: number }[]) => {
    const found = trueTop.every(([t]) => top.some((e) => e.key === t));
    const over = Math.max(...top.map((e) => e.count - (truth.get(e.key) ?? 0)));
    return `true top ${TEMPLATES.length} found: ${found}, largest overcount in the top 20: ${over}`;
  };
  console.log(
    `count, Space-Saving ${percentiles(ssTimes)}   ${accuracy(ss.top(20).map((c) => ({ key: c.key, count: c.count })))}`,
  );
  console.log(
    `count, bloom TopK   ${percentiles(tkTimes)}   ${accuracy(
      tk
        .values()
        .slice(0, 20)
        .map((v) => ({ key: v.value, count: v.frequency })),
    )}`,
  );
}

main();
