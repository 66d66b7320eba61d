import { GatewayError } from '../errors';
import type { Embedder } from './embedder';

/**
 * The embedded default embedder: deterministic, offline, no model, pure TypeScript.
 *
 * A text becomes weighted features, hashed with a sign into the vector's dimensions (the
 * hashing trick). Features come in groups, each group normalised on its own and given a
 * fixed share of the vector, so that a short group keeps its weight however long the text:
 *
 *   words      content words (lightly stemmed, spelling variants and a few synonyms folded),
 *              stop words at a low weight, sublinear term frequency
 *   bigrams    adjacent content words, in order: word order inside a request
 *   chars      character 3- to 5-grams of content words: inflections and typos
 *   edges      the first and last content words: where a long prompt puts its instruction
 *   specifics  what makes two similar-looking requests different: numbers and the word after
 *              each, operators, negation and what it negates, the target after "to"/"into"/
 *              "as" and the source after "from", languages, formats, units, directions,
 *              identifiers and names
 *
 * The cache compares vectors only, so near-misses ("5 miles to km" vs "5 km to miles",
 * "ascending" vs "descending", another number) must be far apart in the vector itself:
 * the specifics group holds a quarter of a vector's weight and a mismatch there costs it.
 * docs/semantic-cache-eval.md measures this against a paraphrase set.
 *
 * Only the first MAX_FEATURE_CHARS characters make features (the cost stays bounded on a
 * 1 MB prompt); a longer text adds one digest of its whole rest, so two long texts that
 * differ after the cut still differ.
 */

export const LOCAL_EMBEDDER_VERSION = 'local-v1';
export const LOCAL_EMBEDDER_DEFAULT_DIMENSIONS = 384;
/** Cosine similarity at or above which two prompts of this embedder ask the same thing. */
export const LOCAL_EMBEDDER_DEFAULT_THRESHOLD = 0.8;
/** UTF-16 code units of a text that make features; the rest only changes a digest. */
export const MAX_FEATURE_CHARS = 8192;

const MIN_DIMENSIONS = 32;
const MAX_DIMENSIONS = 4096;

export interface LocalEmbedderOptions {
  /** Vector length; default 384. Part of `id`, so indexes of two sizes never mix. */
  dimensions?: number;
}

export class LocalEmbedder implements Embedder {
  readonly id: string;
  readonly dimensions: number;
  private readonly featurizer: Featurizer;

  constructor(options: LocalEmbedderOptions = {}) {
    const dimensions = options.dimensions ?? LOCAL_EMBEDDER_DEFAULT_DIMENSIONS;
    if (!Number.isInteger(dimensions) || dimensions < MIN_DIMENSIONS || dimensions > MAX_DIMENSIONS) {
      throw new GatewayError(
        'AIGW_CONFIG_INVALID',
        `local embedder dimensions must be an integer from ${MIN_DIMENSIONS} to ${MAX_DIMENSIONS}`,
      );
    }
    this.dimensions = dimensions;
    this.id = `${LOCAL_EMBEDDER_VERSION}-${dimensions}`;
    this.featurizer = new Featurizer(dimensions);
  }

  async embed(texts: readonly string[]): Promise<Float32Array[]> {
    return texts.map((text) => {
      if (typeof text !== 'string') throw new TypeError('LocalEmbedder.embed takes strings');
      return this.featurizer.vector(text);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Groups and weights
// ---------------------------------------------------------------------------------------------

enum Group {
  Words = 0,
  Bigrams = 1,
  Chars = 2,
  Edges = 3,
  Specifics = 4,
}
const GROUPS = 5;
/** Share of each group in the vector (squared, as cosine sees it): the tuned part of the model. */
const GROUP_WEIGHT = [1.0, 0.7, 0.7, 0.6, 1.0];
/** Seeds keep the groups' hashes apart, so the same string in two groups is two features. */
const GROUP_SEED = [0x2f6b1c3d, 0x51ed270b, 0x6a09e667, 0x3c6ef372, 0x1f83d9ab];

const STOP_WEIGHT = 0.2;
/** Content words at each end of the text that make the edges group. */
const EDGE_WORDS = 12;
const CHAR_NGRAM_MIN = 3;
const CHAR_NGRAM_MAX = 5;
/** Content words after a negation that it applies to. */
const NEGATION_SCOPE = 3;
/** Tokens after "to", "from"... in which their object is looked for. */
const ROLE_SCOPE = 3;

// ---------------------------------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------------------------------

// Function words and the filler of requests ("can you please help me..."): kept, at a low weight.
// Words that change a request's meaning (more/less, before/after, not) are not here.
const STOP_WORDS = new Set(
  (
    'a an the and or but if then so of to in on at by for with from into onto about as is are was were be been ' +
    'being am do does did doing done have has had having i me my mine myself we us our ours you your yours ' +
    'he him his she her it its they them their theirs this that these those there here what which who whom ' +
    'whose when where why how can could would should will shall may might must please pls plz kindly just ' +
    'also very really some any all each every such too only own same other again further once let lets ' +
    'want need like get got give show tell help make im ive id youre thats whats hows theres hey hi ' +
    'hello thanks thank way something anything thing things one via using use used ' +
    // French, Spanish, German, Italian, Portuguese
    'le la les un une des de du et ou est sont en au aux pour par avec sur dans que qui ce cette je tu il ' +
    'nous vous el los las y o es son del al con por para que un una unos como en se lo su der die das ein ' +
    'eine und oder ist sind mit von zu auf für im den dem des ich du wie il lo gli di da e per che una um ' +
    'uma os as do da dos das em'
  ).split(/\s+/),
);

const NEGATIONS = new Set(
  'not no never without dont doesnt didnt isnt arent wasnt werent cant cannot couldnt wont wouldnt shouldnt ' +
    'hasnt havent hadnt neither nor none nothing nobody ne pas nicht kein keine nunca sin ohne sans senza'.split(
      ' ',
    ),
);
const NOT = 'not';

// Spelling variants, abbreviations and a few synonyms common in prompts, to one form.
const CANONICAL: Record<string, string> = {};
function fold(canonical: string, variants: string): void {
  for (const variant of variants.split(' ')) CANONICAL[variant] = canonical;
  CANONICAL[canonical] = canonical;
}
fold('km', 'kilometer kilometers kilometre kilometres kms');
fold('mile', 'miles mi');
fold('meter', 'meters metre metres m');
fold('cm', 'centimeter centimeters centimetre centimetres');
fold('mm', 'millimeter millimeters millimetre millimetres');
fold('foot', 'feet ft');
fold('inch', 'inches');
fold('kg', 'kilogram kilograms kilo kilos kgs');
fold('gram', 'grams g gr');
fold('lb', 'lbs pound pounds');
fold('oz', 'ounce ounces');
fold('liter', 'liters litre litres l');
fold('ml', 'milliliter milliliters millilitre millilitres');
fold('gallon', 'gallons gal');
fold('celsius', 'c° °c centigrade');
fold('fahrenheit', '°f');
fold('second', 'seconds sec secs');
fold('minute', 'minutes mins');
fold('hour', 'hours hrs hr');
fold('usd', 'dollar dollars $ us$');
fold('eur', 'euro euros €');
fold('gbp', '£ sterling');
fold('jpy', 'yen ¥');
fold('python', 'py python3');
fold('javascript', 'js ecmascript');
fold('typescript', 'ts');
fold('postgresql', 'postgres psql pg');
fold('cpp', 'c++ cplusplus');
fold('csharp', 'c#');
fold('kubernetes', 'k8s kube');
fold('database', 'db databases dbs');
fold('function', 'func fn functions funcs method methods');
fold('variable', 'var vars variables');
fold('directory', 'dir dirs directories folder folders');
fold('repository', 'repo repos repositories');
fold('configuration', 'config configs configure configuring configurations');
fold('application', 'app apps applications');
fold('documentation', 'docs doc documents');
fold('program', 'programs code script scripts snippet');
fold('error', 'errors exception exceptions');
fold('example', 'examples e.g. eg sample samples');
fold(
  'summary',
  'summarize summarise summarizing summarising summarization summarisation summaries tldr recap',
);
fold('translate', 'translation translating translated translations');
fold('explain', 'explanation explaining describe description');
fold('write', 'writing wrote written create generate draft compose produce');
fold('fix', 'fixing fixed repair debug resolve solve');
fold('convert', 'conversion converting transform turn change');
fold('short', 'brief concise shorter briefly');
fold('big', 'large huge bigger larger');
fold('small', 'little tiny smaller');
fold('fast', 'quick quickly faster speedy rapid');
fold('slow', 'sluggish slower');
fold('buy', 'purchase purchasing buying');
fold('cancel', 'cancellation cancelling canceling cancelled canceled');
fold('refund', 'refunds reimbursement moneyback');
fold('password', 'passwd pwd passcode');
fold('email', 'e-mail mail emails');
fold('phone', 'telephone mobile cellphone smartphone');
fold('car', 'automobile vehicle cars');
fold('recipe', 'recipes cook cooking prepare');
fold('list', 'lists array arrays');
fold('ascending', 'increasing asc smallest-to-largest');
fold('descending', 'decreasing desc largest-to-smallest');
fold('remove', 'delete deleting removing drop erase');
fold('add', 'adding insert append');
fold('begin', 'start starting beginning');
fold('end', 'finish ending');
fold('minimum', 'min lowest smallest');
fold('maximum', 'max highest largest biggest');
fold('color', 'colour colors colours');
fold('optimize', 'optimise optimization optimisation');
fold('analyze', 'analyse analysis');

// Number words, to digits: "three paragraphs" asks what "3 paragraphs" asks.
// biome-ignore format: one line per decade reads better
const NUMBER_WORDS: Record<string, string> = {
  zero: '0', two: '2', three: '3', four: '4', five: '5', six: '6', seven: '7', eight: '8', nine: '9',
  ten: '10', eleven: '11', twelve: '12', thirteen: '13', fourteen: '14', fifteen: '15', sixteen: '16',
  seventeen: '17', eighteen: '18', nineteen: '19', twenty: '20', thirty: '30', forty: '40', fifty: '50',
  sixty: '60', seventy: '70', eighty: '80', ninety: '90', hundred: '100', thousand: '1000', million: '1000000',
  billion: '1000000000', dozen: '12', twice: '2',
};

// Words whose exchange makes another request: languages, formats, units, directions, tools.
// They go to the specifics group as well as the words group.
const SPECIFIC_WORDS = new Set(
  (
    'python javascript typescript java cpp csharp fsharp golang rust ruby php swift kotlin scala haskell perl ' +
    'lua dart elixir erlang clojure julia matlab r bash shell powershell zsh sql mysql postgresql sqlite oracle ' +
    'mssql tsql mongodb redis cassandra dynamodb snowflake bigquery html css sass react vue angular svelte ' +
    'django flask fastapi rails laravel spring express nextjs node nodejs deno jquery pandas numpy excel ' +
    'sheets docker kubernetes terraform ansible aws azure gcp linux windows macos ios android ubuntu debian ' +
    'git npm pip ' +
    'english french spanish german italian portuguese dutch russian chinese mandarin cantonese japanese ' +
    'korean arabic hindi bengali urdu turkish polish swedish norwegian danish finnish greek hebrew thai ' +
    'vietnamese indonesian ukrainian czech romanian hungarian latin swahili persian ' +
    'json csv yaml xml markdown table pdf txt tsv toml ini docx xlsx png jpg svg ' +
    'km mile meter cm mm foot inch kg gram lb oz liter ml gallon celsius fahrenheit kelvin second minute hour ' +
    'day week month year usd eur gbp jpy cny inr bitcoin ' +
    'ascending descending minimum maximum first last before after above below left right up down top bottom ' +
    'older newer oldest newest more less fewer longer shorter formal informal casual positive negative ' +
    'true false odd even male female encrypt decrypt encode decode compress decompress upload download ' +
    'import export push pull inner outer union intersection add remove increase decrease higher lower ' +
    'uppercase lowercase plural singular past future present vegan vegetarian beginner advanced expert ' +
    'synchronous asynchronous sync async horizontal vertical horizontally vertically rows columns row column ' +
    'monday tuesday wednesday thursday friday saturday sunday january february march april may june july ' +
    'august september october november december morning evening night weekly daily monthly yearly annual ' +
    'sum average mean median count product difference ratio percent percentage'
  ).split(/\s+/),
);

// Prepositions that name a request's target or source, and the role they give the word after.
const ROLES: Record<string, string> = {
  to: 'to',
  into: 'to',
  as: 'to',
  in: 'in',
  using: 'in',
  with: 'in',
  from: 'from',
  than: 'than',
  vs: 'vs',
  versus: 'vs',
  en: 'to',
  nach: 'to',
};

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

// Numbers (with thousands separators or decimals), words (letters, marks, digits, inner
// apostrophes and underscores), operators, and any other symbol (currency, emoji) alone.
const TOKEN =
  /(\p{N}+(?:[.,]\p{N}+)*)|([\p{L}\p{M}\p{N}_]+(?:['’][\p{L}\p{M}]+)*)|([=!<>+\-*/%^&|~]{1,3})|(\p{S})/gu;
const CJK = /[\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}]/u;
const CJK_RUN = /([\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}ー]+)/u;
const SENTENCE_END = /[.!?\n:;。！？]/;
const THOUSANDS = /^\p{N}{1,3}(?:,\p{N}{3})+$/u;

// Only words that are operators wherever they appear ("times" and "over" are not).
const OPERATOR_WORDS: Record<string, string> = {
  plus: '+',
  minus: '-',
  multiplied: '*',
  divided: '/',
  squared: '^2',
  cubed: '^3',
  modulo: '%',
};

interface Token {
  /** Canonical form: lowercased, folded, stemmed. */
  text: string;
  stop: boolean;
  kind: 'word' | 'number' | 'operator' | 'symbol';
  /** Capitalised in the text but not first in its sentence: a name. */
  name: boolean;
}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let sentenceStart = true;
  let last = 0;
  for (const match of text.matchAll(TOKEN)) {
    const start = match.index;
    if (start > last && SENTENCE_END.test(text.slice(last, start))) sentenceStart = true;
    last = start + match[0].length;
    if (match[1] !== undefined) {
      tokens.push({ text: canonicalNumber(match[1]), stop: false, kind: 'number', name: false });
    } else if (match[2] !== undefined) {
      addWord(tokens, match[2], sentenceStart);
    } else if (match[3] !== undefined) {
      // "e-mail", "and/or", "src/lib": a joiner between letters, not an operator
      if (isLetter(text, start - 1) && isLetter(text, last)) continue;
      tokens.push({ text: match[3], stop: false, kind: 'operator', name: false });
    } else {
      const symbol = CANONICAL[match[4]!] ?? match[4]!;
      tokens.push({ text: symbol, stop: false, kind: 'symbol', name: false });
    }
    sentenceStart = false;
  }
  return tokens;
}

const LETTER = /[\p{L}\p{M}]/u;
function isLetter(text: string, at: number): boolean {
  return at >= 0 && at < text.length && LETTER.test(text[at]!);
}

// Names whose symbols tokenizing would drop.
const SYMBOL_NAMES: [RegExp, string][] = [
  [/\bc\+\+/gi, ' cpp '],
  [/\bc#/gi, ' csharp '],
  [/\bf#/gi, ' fsharp '],
  [/\.net\b/gi, ' dotnet '],
];
const HAS_SYMBOL_NAME = /\+\+|#|\.net/i;

function withSymbolNames(text: string): string {
  if (!HAS_SYMBOL_NAME.test(text)) return text;
  for (const [pattern, name] of SYMBOL_NAMES) text = text.replace(pattern, name);
  return text;
}

function addWord(tokens: Token[], raw: string, sentenceStart: boolean): void {
  if (CJK.test(raw)) {
    // Chinese and Japanese have no spaces: character bigrams stand for words
    for (const part of raw.split(CJK_RUN)) {
      if (part === '') continue;
      if (CJK.test(part)) addCjk(tokens, part);
      else addWord(tokens, part, false);
    }
    return;
  }
  // "5km", "10x", "3rd": a number and a word
  const lead = /^(\p{N}+)(\p{L}+)$/u.exec(raw);
  if (lead) {
    tokens.push({ text: canonicalNumber(lead[1]!), stop: false, kind: 'number', name: false });
    raw = lead[2]!;
    sentenceStart = false;
  }
  const lower = raw.toLowerCase();
  const name = !sentenceStart && lower !== raw && raw.length > 1;
  let word = lower.replace(/['’]s$/, '').replace(/['’]/g, '');
  const number = NUMBER_WORDS[word];
  if (number !== undefined) {
    tokens.push({ text: number, stop: false, kind: 'number', name: false });
    return;
  }
  const operator = OPERATOR_WORDS[word];
  if (operator !== undefined) {
    tokens.push({ text: operator, stop: false, kind: 'operator', name: false });
    return;
  }
  if (NEGATIONS.has(word)) word = NOT;
  else if (STOP_WORDS.has(word))
    return void tokens.push({ text: word, stop: true, kind: 'word', name: false });
  else word = CANONICAL[word] ?? stem(word);
  tokens.push({ text: word, stop: STOP_WORDS.has(word), kind: 'word', name });
}

function addCjk(tokens: Token[], run: string): void {
  const chars = Array.from(run);
  if (chars.length === 1) {
    tokens.push({ text: chars[0]!, stop: false, kind: 'word', name: false });
    return;
  }
  for (let i = 0; i + 1 < chars.length; i++) {
    tokens.push({ text: chars[i]! + chars[i + 1]!, stop: false, kind: 'word', name: false });
  }
}

/** "1,000" is 1000; "3.10" stays apart from "3.1" (versions). */
function canonicalNumber(raw: string): string {
  return THOUSANDS.test(raw) ? raw.replace(/,/g, '') : raw;
}

/** Light suffix stripping for English plurals and verb forms; short words are left alone. */
function stem(word: string): string {
  const n = word.length;
  if (n <= 3) return word;
  if (word.endsWith('ies') && n > 4) return word.slice(0, -3) + 'y';
  if (word.endsWith('sses')) return word.slice(0, -2);
  if (word.endsWith('ing') && n > 5) return undouble(word.slice(0, -3));
  if (word.endsWith('ed') && n > 4) return undouble(word.slice(0, -2));
  if (word.endsWith('s') && !word.endsWith('ss') && !word.endsWith('us') && !word.endsWith('is')) {
    return word.slice(0, -1);
  }
  return word;
}

function undouble(word: string): string {
  const n = word.length;
  if (n > 2 && word[n - 1] === word[n - 2] && !'lsz'.includes(word[n - 1]!)) return word.slice(0, -1);
  return word;
}

// ---------------------------------------------------------------------------------------------
// Hashing
// ---------------------------------------------------------------------------------------------

/** FNV-1a over UTF-16 code units, then murmur3's finaliser: stable across runs and machines. */
function hashString(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix(h);
}

function combine(a: number, b: number): number {
  return fmix((Math.imul(a, 0x9e3779b1) ^ b) >>> 0);
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Features to vector
// ---------------------------------------------------------------------------------------------

class Featurizer {
  private readonly features: Map<number, number>[] = [];
  private readonly scratch: Float64Array;

  constructor(private readonly dimensions: number) {
    for (let g = 0; g < GROUPS; g++) this.features.push(new Map());
    this.scratch = new Float64Array(dimensions);
  }

  vector(input: string): Float32Array {
    for (const group of this.features) group.clear();
    const text = input.length > MAX_FEATURE_CHARS ? input.slice(0, MAX_FEATURE_CHARS) : input;
    const tokens = tokenize(withSymbolNames(text.normalize('NFKC')));
    this.collect(tokens);
    if (input.length > MAX_FEATURE_CHARS) this.add(Group.Specifics, hashString(input, 0x7f4a7c15), 1);
    if (tokens.length === 0) this.add(Group.Words, hashString(input.trim(), 0x165667b1), 1);
    return this.project();
  }

  private add(group: Group, hash: number, weight: number): void {
    const features = this.features[group]!;
    features.set(hash, (features.get(hash) ?? 0) + weight);
  }

  private word(group: Group, text: string, weight: number): void {
    this.add(group, hashString(text, GROUP_SEED[group]!), weight);
  }

  private collect(tokens: Token[]): void {
    const content: Token[] = [];
    const numbers: string[] = [];
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i]!;
      this.word(Group.Words, token.text, token.stop ? STOP_WEIGHT : 1);
      if (token.stop) {
        const role = ROLES[token.text];
        if (role !== undefined) this.role(tokens, i, role);
        continue;
      }
      content.push(token);
      if (token.kind === 'word') this.charNgrams(token.text);
      if (token.kind === 'number') {
        numbers.push(token.text);
        this.word(Group.Specifics, '#' + token.text, 1);
        const next = tokens[i + 1];
        if (next !== undefined && !next.stop) this.word(Group.Specifics, `#${token.text} ${next.text}`, 0.5);
      } else if (token.kind === 'operator' || token.kind === 'symbol') {
        this.word(Group.Specifics, token.text, 0.7);
      } else if (token.text === NOT) {
        this.word(Group.Specifics, NOT, 1);
        let scope = 0;
        for (let j = i + 1; j < tokens.length && scope < NEGATION_SCOPE; j++) {
          if (tokens[j]!.stop) continue;
          this.word(Group.Specifics, `not ${tokens[j]!.text}`, 0.7);
          scope++;
        }
      } else if (SPECIFIC_WORDS.has(token.text)) {
        this.word(Group.Specifics, token.text, 1);
      } else if (token.name || /\d|_/.test(token.text)) {
        this.word(Group.Specifics, token.text, 0.7);
      }
    }
    if (numbers.length > 1) this.word(Group.Specifics, numbers.join(' '), 0.7);
    for (let i = 0; i + 1 < content.length; i++) {
      this.add(
        Group.Bigrams,
        combine(hashString(content[i]!.text, GROUP_SEED[1]!), hashString(content[i + 1]!.text, 1)),
        1,
      );
    }
    const edge = Math.min(EDGE_WORDS, content.length);
    for (let i = 0; i < edge; i++) this.word(Group.Edges, content[i]!.text, 1);
    for (let i = Math.max(edge, content.length - EDGE_WORDS); i < content.length; i++) {
      this.word(Group.Edges, content[i]!.text, 1);
    }
  }

  /** "to km", "from miles", "in python": the object of a role word, as a specific feature. */
  private role(tokens: Token[], at: number, role: string): void {
    for (let j = at + 1; j < tokens.length && j <= at + ROLE_SCOPE; j++) {
      const token = tokens[j]!;
      if (token.stop) continue;
      this.word(Group.Specifics, `${role}:${token.text}`, 0.5);
      return;
    }
  }

  private charNgrams(word: string): void {
    const padded = `^${word}$`;
    const seed = GROUP_SEED[Group.Chars]!;
    const features = this.features[Group.Chars]!;
    for (let i = 0; i + CHAR_NGRAM_MIN <= padded.length; i++) {
      let h = (0x811c9dc5 ^ seed) >>> 0;
      for (let n = 0; n < CHAR_NGRAM_MAX && i + n < padded.length; n++) {
        h ^= padded.charCodeAt(i + n);
        h = Math.imul(h, 0x01000193);
        if (n + 1 >= CHAR_NGRAM_MIN) {
          const key = fmix(h);
          features.set(key, (features.get(key) ?? 0) + 1);
        }
      }
    }
  }

  private project(): Float32Array {
    const out = new Float64Array(this.dimensions);
    const scratch = this.scratch;
    for (let g = 0; g < GROUPS; g++) {
      const features = this.features[g]!;
      if (features.size === 0) continue;
      scratch.fill(0);
      for (const [hash, weight] of features) {
        const value = weight <= 1 ? weight : 1 + Math.log(weight);
        const index = (hash & 0x7fffffff) % this.dimensions;
        scratch[index]! += hash & 0x80000000 ? -value : value;
      }
      let norm = 0;
      for (let i = 0; i < scratch.length; i++) norm += scratch[i]! * scratch[i]!;
      if (norm === 0) continue;
      const scale = GROUP_WEIGHT[g]! / Math.sqrt(norm);
      for (let i = 0; i < scratch.length; i++) out[i]! += scratch[i]! * scale;
    }
    let norm = 0;
    for (let i = 0; i < out.length; i++) norm += out[i]! * out[i]!;
    const vector = new Float32Array(this.dimensions);
    if (norm === 0) {
      vector[0] = 1;
      return vector;
    }
    const scale = 1 / Math.sqrt(norm);
    for (let i = 0; i < out.length; i++) vector[i] = out[i]! * scale;
    return vector;
  }
}
