import type { Endpoint } from '../../lib/context';
import type { Embedder } from '../../lib/embed/embedder';
import { GatewayError } from '../../lib/errors';
import { approximateTokens } from '../../lib/llm/usage';
import type { RouterConfig } from '../../schemas/ai-router';
import { BUILTIN_TASK_EXAMPLES } from './task-examples';

/**
 * Task classification for the task model (`tasks.model`, default `auto`): rules first, in
 * order, the first match wins; then an embedding classifier over labelled example prompts;
 * else `default_task`. Pure: the embedder and the token counter come in as arguments.
 */

export type TasksConfig = NonNullable<RouterConfig['tasks']>;
export type TaskRule = TasksConfig['rules'][number];

/** What classification looks at in a request. */
export interface TaskInput {
  /** Text of the last user message (text parts joined by line breaks); '' when there is none. */
  text: string;
  /** Tokens of the whole prompt: every message, and the tool definitions. */
  tokens: number;
  /** Some message has an image part. */
  hasImage: boolean;
  /** The request declares tools (or legacy functions). */
  hasTools: boolean;
}

export interface TaskDecision {
  task: string;
  by: 'rule' | 'classifier' | 'default';
  /** Margin of the nearest task over the next one (cosine), when the classifier ran. */
  confidence?: number;
  /** Index of the rule in `tasks.rules` that matched. */
  rule?: number;
}

/**
 * Characters of the message the classifier embeds: its head and its tail, where long prompts
 * put their instruction. Bounds the work on a huge message; rules see the whole text.
 */
export const MAX_CLASSIFIED_CHARS = 4000;

/**
 * Examples per task whose similarities are averaged (k-nearest). The score of a task is the
 * mean of its centroid's similarity and of its k nearest examples' similarities: the centroid
 * captures a task's common vocabulary, the nearest examples its varied forms.
 */
export const NEAREST_EXAMPLES = 3;

const IMAGE_PART_TYPES = new Set(['image_url', 'input_image', 'image']);

/** A content part carrying an image, in the shapes clients send. */
export function isImagePart(part: unknown): boolean {
  const type = (part as { type?: unknown } | null)?.type;
  return typeof type === 'string' && IMAGE_PART_TYPES.has(type);
}

/**
 * The prompt's tokens as rules see them: characters / 4, cheap on a huge prompt (an exact
 * count would cost milliseconds there) and close enough for a size threshold.
 */
export function estimateTokens(text: string): number {
  return approximateTokens(text.length);
}

/** Reads the classifier's input from a parsed request body; odd shapes give empty fields, never an error. */
export function taskInputOf(
  endpoint: Endpoint | undefined,
  body: Record<string, unknown> | undefined,
  countTokens: (text: string) => number = estimateTokens,
): TaskInput {
  const input: TaskInput = { text: '', tokens: 0, hasImage: false, hasTools: false };
  if (!body || typeof body !== 'object') return input;
  const prompt: string[] = [];
  if (endpoint === 'chat.completions' || endpoint === undefined) {
    const messages = Array.isArray(body.messages) ? body.messages : [];
    for (const message of messages) {
      if (message === null || typeof message !== 'object') continue;
      const { role, content } = message as { role?: unknown; content?: unknown };
      const { text, hasImage } = contentOf(content);
      if (text) prompt.push(text);
      if (hasImage) input.hasImage = true;
      if (role === 'user') input.text = text;
    }
    for (const tools of [body.tools, body.functions]) {
      if (Array.isArray(tools) && tools.length > 0) {
        input.hasTools = true;
        prompt.push(JSON.stringify(tools));
      }
    }
  } else if (endpoint === 'completions' || endpoint === 'embeddings') {
    // No messages: the prompt (or input) is the user's text.
    const raw = endpoint === 'completions' ? body.prompt : body.input;
    const strings = typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw.filter(isString) : [];
    input.text = strings.join('\n');
    if (input.text) prompt.push(input.text);
  }
  input.tokens = prompt.length ? countTokens(prompt.join('\n')) : 0;
  return input;
}

const isString = (v: unknown): v is string => typeof v === 'string';

function contentOf(content: unknown): { text: string; hasImage: boolean } {
  if (typeof content === 'string') return { text: content, hasImage: false };
  if (!Array.isArray(content)) return { text: '', hasImage: false };
  const texts: string[] = [];
  let hasImage = false;
  for (const part of content) {
    if (typeof part === 'string') texts.push(part);
    else if (part !== null && typeof part === 'object') {
      const { text } = part as { text?: unknown };
      if (typeof text === 'string') texts.push(text);
      else if (isImagePart(part)) hasImage = true;
    }
  }
  return { text: texts.join('\n'), hasImage };
}

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

interface CompiledRule {
  task: string;
  keywords?: KeywordMatcher;
  regex?: RegExp;
  minTokens?: number;
  maxTokens?: number;
  hasImage?: boolean;
  hasTools?: boolean;
}

// Syntax characters of a `u` regular expression (where escaping anything else is an error).
const SYNTAX = /[\\^$.*+?()[\]{}|/]/g;

const WORD_CHAR = /[\p{L}\p{N}_]/u;

/**
 * All keywords of a rule, matched as whole words, whatever the case and the spacing inside a
 * phrase. Letters, digits or `_` on either side make it part of another word (`code` is not in
 * `decode`); keywords with punctuation (`c++`, `tl;dr`) work too. The pattern starts with the
 * lowercase keywords, matched in lowercased text, so the regex engine scans for them quickly
 * (a leading lookbehind or case folding would be tried at every position); the character
 * before a candidate is checked here.
 */
export class KeywordMatcher {
  private readonly pattern: RegExp;

  constructor(keywords: readonly string[]) {
    const alternatives = keywords.map((k) =>
      k
        .toLowerCase()
        .split(/\s+/)
        .map((w) => w.replace(SYNTAX, '\\$&'))
        .join('\\s+'),
    );
    // The lookahead lets the engine fall back to a shorter keyword at the same place. ASCII
    // keywords skip unicode mode, which scans several times slower; a non-ASCII letter after
    // them is checked below.
    const ascii = keywords.every((k) => [...k].every((ch) => ch.charCodeAt(0) < 0x80));
    this.pattern = ascii
      ? new RegExp(`(?:${alternatives.join('|')})(?![a-z0-9_])`, 'g')
      : new RegExp(`(?:${alternatives.join('|')})(?![\\p{L}\\p{N}_])`, 'gu');
  }

  test(text: string): boolean {
    const lower = lowercase(text);
    const re = this.pattern;
    re.lastIndex = 0;
    for (let m = re.exec(lower); m !== null; m = re.exec(lower)) {
      const after = lower.codePointAt(m.index + m[0].length);
      const wordAfter = after !== undefined && after > 0x7f && WORD_CHAR.test(String.fromCodePoint(after));
      if (!wordAfter && !WORD_CHAR.test(charBefore(lower, m.index))) return true;
      re.lastIndex = m.index + 1;
    }
    return false;
  }
}

/** The rules of a request test one text in turn: it is lowercased once. */
let lastText = '';
let lastLower = '';
function lowercase(text: string): string {
  if (text !== lastText) {
    lastText = text;
    lastLower = text.toLowerCase();
  }
  return lastLower;
}

/** The code point before `index` ('' at the start), surrogate pairs whole. */
function charBefore(text: string, index: number): string {
  if (index === 0) return '';
  const low = text.charCodeAt(index - 1);
  return low >= 0xdc00 && low <= 0xdfff && index >= 2 ? text.slice(index - 2, index) : text[index - 1]!;
}

export function keywordPattern(keywords: readonly string[]): KeywordMatcher | undefined {
  const kept = keywords
    .map((k) => k.trim())
    .filter((k) => k !== '')
    .sort((a, b) => b.length - a.length);
  return kept.length === 0 ? undefined : new KeywordMatcher(kept);
}

function compileRule(rule: TaskRule, index: number): CompiledRule {
  let regex: RegExp | undefined;
  if (rule.regex !== undefined) {
    try {
      regex = new RegExp(rule.regex, 'iu'); // the flags the config validator checks with
    } catch {
      throw new GatewayError(
        'AIGW_CONFIG_INVALID',
        `tasks.rules[${index}].regex is not a valid regular expression`,
      );
    }
  }
  return {
    task: rule.task,
    keywords: keywordPattern(rule.keywords ?? []),
    regex,
    minTokens: rule.min_tokens,
    maxTokens: rule.max_tokens,
    hasImage: rule.has_image,
    hasTools: rule.has_tools,
  };
}

/** Every condition the rule sets holds; the cheap ones are tested first. */
function matches(rule: CompiledRule, input: TaskInput): boolean {
  if (rule.hasImage !== undefined && rule.hasImage !== input.hasImage) return false;
  if (rule.hasTools !== undefined && rule.hasTools !== input.hasTools) return false;
  if (rule.minTokens !== undefined && input.tokens < rule.minTokens) return false;
  if (rule.maxTokens !== undefined && input.tokens > rule.maxTokens) return false;
  if (rule.keywords && !rule.keywords.test(input.text)) return false;
  if (rule.regex && !rule.regex.test(input.text)) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Classifier
// ---------------------------------------------------------------------------------------------

/** A vector taken against a query, with its dot product with the mean precomputed. */
interface Reference {
  vector: Float32Array;
  dotMean: number;
}

interface TaskModel {
  task: string;
  centroid: Reference;
  examples: Reference[];
}

export class TaskClassifier {
  private readonly meanSquare: number;

  private constructor(
    private readonly rules: readonly CompiledRule[],
    private readonly models: readonly TaskModel[],
    /** Mean of all example vectors, taken out of every vector before comparing. */
    private readonly mean: Float32Array,
    private readonly embedder: Embedder,
    private readonly minConfidence: number,
    private readonly defaultTask: string,
    /** False when the examples could not be embedded: rules only, the rest to `defaultTask`. */
    readonly complete = true,
  ) {
    this.meanSquare = dot(mean, mean);
  }

  /**
   * Compiles the rules and embeds the examples (`tasks.examples`, or the built-in ones when it
   * is empty) once. Throws AIGW_CONFIG_INVALID for a regex that does not compile; an embedder
   * that fails gives a classifier of rules only (`complete: false`).
   */
  static async create(tasks: TasksConfig, embedder: Embedder): Promise<TaskClassifier> {
    const rules = (tasks.rules ?? []).map(compileRule);
    const configured = Object.entries(tasks.examples ?? {}).filter(([, list]) => list.length > 0);
    const examples = configured.length > 0 ? configured : Object.entries(BUILTIN_TASK_EXAMPLES);
    let vectors: Float32Array[];
    try {
      vectors = await embedder.embed(examples.flatMap(([, list]) => list));
    } catch {
      // An embeddings endpoint that is down must not stop the rules.
      const none = new Float32Array(embedder.dimensions);
      return new TaskClassifier(rules, [], none, embedder, tasks.min_confidence, tasks.default_task, false);
    }
    const byTask: Float32Array[][] = [];
    let next = 0;
    for (const [, list] of examples) {
      byTask.push(vectors.slice(next, next + list.length));
      next += list.length;
    }
    // What the tasks share (function words, the shape of a request) tells none apart: without
    // it, the words that do weigh more. The mean of the tasks' means, so that no task's number
    // of examples shifts it; nothing to take out of a single task.
    const mean =
      byTask.length > 1
        ? meanOf(
            byTask.map((own) => meanOf(own, embedder.dimensions)),
            embedder.dimensions,
          )
        : new Float32Array(embedder.dimensions);
    const reference = (vector: Float32Array) => ({ vector, dotMean: dot(vector, mean) });
    const models = examples.map(([task], i) => {
      const own = byTask[i]!.map((v) => unit(minus(v, mean)));
      return {
        task,
        centroid: reference(unit(meanOf(own, embedder.dimensions))),
        examples: own.map(reference),
      };
    });
    return new TaskClassifier(rules, models, mean, embedder, tasks.min_confidence, tasks.default_task);
  }

  /** The task of a request. Embeds nothing when a rule matches or there is no text. */
  async classify(input: TaskInput): Promise<TaskDecision> {
    for (let i = 0; i < this.rules.length; i++) {
      if (matches(this.rules[i]!, input)) return { task: this.rules[i]!.task, by: 'rule', rule: i };
    }
    const text = classifiedText(input.text);
    if (text.trim() === '' || this.models.length === 0) return { task: this.defaultTask, by: 'default' };
    let vector: Float32Array | undefined;
    try {
      [vector] = await this.embedder.embed([text]);
    } catch {
      return { task: this.defaultTask, by: 'default' }; // the embedder failed: no guess
    }
    const ranked = this.scores(vector!).sort((a, b) => b.score - a.score);
    const best = ranked[0]!;
    // one task only: its similarity is its margin over "none"
    const confidence = best.score - (ranked[1]?.score ?? 0);
    if (confidence >= this.minConfidence) return { task: best.task, by: 'classifier', confidence };
    return { task: this.defaultTask, by: 'default', confidence };
  }

  /** Similarity of an embedded text to each task. */
  scores(vector: Float32Array): { task: string; score: number }[] {
    // A text's vector has few non-zero dimensions; the centred one has none. Cosine with the
    // centred vector, from products with the sparse one: (v·r - m·r) / |v - m|.
    const nonZero: number[] = [];
    for (let i = 0; i < vector.length; i++) if (vector[i] !== 0) nonZero.push(i);
    const sparseDot = (r: Float32Array) => {
      let sum = 0;
      for (const i of nonZero) sum += vector[i]! * r[i]!;
      return sum;
    };
    const norm = Math.sqrt(Math.max(0, sparseDot(vector) - 2 * sparseDot(this.mean) + this.meanSquare));
    const cosine = (r: Reference) => (norm > 0 ? (sparseDot(r.vector) - r.dotMean) / norm : 0);
    return this.models.map(({ task, centroid, examples }) => {
      const nearest = examples
        .map(cosine)
        .sort((a, b) => b - a)
        .slice(0, NEAREST_EXAMPLES);
      const knn = nearest.reduce((sum, s) => sum + s, 0) / nearest.length;
      return { task, score: (cosine(centroid) + knn) / 2 };
    });
  }
}

function classifiedText(text: string): string {
  if (text.length <= MAX_CLASSIFIED_CHARS) return text;
  const half = MAX_CLASSIFIED_CHARS / 2;
  return `${text.slice(0, half)}\n${text.slice(-half)}`;
}

function meanOf(vectors: readonly Float32Array[], dimensions: number): Float32Array {
  const sum = new Float32Array(dimensions);
  for (const v of vectors) for (let i = 0; i < dimensions; i++) sum[i]! += v[i]!;
  if (vectors.length > 0) for (let i = 0; i < dimensions; i++) sum[i]! /= vectors.length;
  return sum;
}

function minus(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! - b[i]!;
  return out;
}

/** The vector scaled to unit length (a zero vector stays zero). */
function unit(v: Float32Array): Float32Array {
  const norm = Math.sqrt(dot(v, v));
  if (norm > 0) for (let i = 0; i < v.length; i++) v[i]! /= norm;
  return v;
}

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}
