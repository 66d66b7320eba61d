import { createHash } from 'node:crypto';
import { GatewayError } from '../errors';
import type { Embedder } from './embedder';

/**
 * The embedded default embedder: deterministic, offline, no model, pure TypeScript.
 *
 * It is a near-duplicate matcher, not a model of meaning: two prompts come out close when
 * they ask for the same things in other words only as far as its word lists know those words
 * (filler, phrasing, inflection, spelling variants, a table of synonyms common in prompts).
 * The cache answers on a match, so it is built for precision: prompts that share most words
 * but differ in one thing that matters (a number, a language, a direction, a negation, one
 * content word) must come out far apart. docs/semantic-cache-eval.md measures both.
 *
 * A text becomes weighted features, hashed with a sign into the vector's dimensions (the
 * hashing trick), in groups. Each group is normalised on its own and gets a fixed share of
 * the vector, so a group of few features keeps its weight however long the text:
 *
 *   words      every token: content words at full weight, the words that frame a request
 *              ("write", "explain", "translate") lower, filler and function words lowest;
 *              sublinear term frequency
 *   bigrams    adjacent content words, in order
 *   chars      character 3- to 5-grams of words: inflections and typos
 *   edges      the first and last content words: where a long prompt puts its instruction
 *   specifics  what tells similar-looking requests apart: numbers and the word after each,
 *              their order, operators, negation and what it negates, the object of "to",
 *              "from", "than", quoted text, languages, formats, units, directions, names
 *   signature  one value spread over a few features: the set of content words and specifics.
 *              Equal only when the two prompts leave out nothing that matters, it is what
 *              lifts a pair over the threshold; one different content word drops it.
 *
 * Only the first MAX_FEATURE_CHARS characters make features, which bounds the work on a
 * 1 MB prompt; a longer text adds a digest (SHA-1) of the rest to the signature, so two long
 * texts that differ after the cut never match.
 */

export const LOCAL_EMBEDDER_VERSION = 'local-v1';
export const LOCAL_EMBEDDER_DEFAULT_DIMENSIONS = 384;
/** Cosine similarity at or above which two prompts of this embedder ask the same thing. */
export const LOCAL_EMBEDDER_DEFAULT_THRESHOLD = 0.75;
/** UTF-16 code units of a text that make features; the rest only changes a digest. */
export const MAX_FEATURE_CHARS = 8192;

const MIN_DIMENSIONS = 64;
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
  Signature = 5,
}
const GROUPS = 6;
/** Share of each group in the vector (squared, as cosine sees it): the tuned part of the model. */
const GROUP_WEIGHT = [1.0, 0.7, 0.7, 0.6, 1.0, 1.5];
/** Seeds keep the groups' hashes apart, so the same string in two groups is two features. */
const GROUP_SEED = [0x2f6b1c3d, 0x51ed270b, 0x6a09e667, 0x3c6ef372, 0x1f83d9ab, 0x5be0cd19];
/** Features the signature is spread over: a chance collision of two signatures stays small. */
const SIGNATURE_FEATURES = 16;

/** How much a token counts in the words group, and whether it is part of the signature. */
enum Role {
  Content = 0,
  Framing = 1,
  Filler = 2,
  Stop = 3,
}
const ROLE_WEIGHT = [1, 0.4, 0.25, 0.2];

/** Content words at each end of the text that make the edges group. */
const EDGE_WORDS = 12;
const CHAR_NGRAM_MIN = 3;
const CHAR_NGRAM_MAX = 5;
/** Content words after a negation that it applies to. */
const NEGATION_SCOPE = 3;
/** Tokens after "to", "from"... in which their object is looked for. */
const OBJECT_SCOPE = 3;
/** Quoted text longer than this is content like any other, not one specific. */
const MAX_QUOTE_CHARS = 300;

// ---------------------------------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------------------------------

const words = (list: string) => list.trim().split(/\s+/);

// Function words of English and a few other languages. Words that change a request's meaning
// (more/less, before/after, not, up/down) are not here.
const STOP_WORDS = new Set(
  words(
    'a an the and or but if then so of to in on at by for with from into onto about as is are was were be ' +
      'been being am do does did doing done have has had having i me my mine myself we us our ours you your ' +
      'yours he him his she her it its they them their theirs this that these those there here what which ' +
      'whom whose how can could would should will shall may might must let lets im ive id ' +
      'youre thats whats hows theres its whos some any all each every such too only own same other another ' +
      'again further once via than then also just very really much many lot lots few several one whether ' +
      'between ' +
      // French, Spanish, German, Italian, Portuguese
      'le la les un une des de du et ou est sont en au aux pour par avec sur dans que qui ce cette je tu il ' +
      'nous vous el los las y o es son del al con por para un una unos como se lo su der die das ein eine ' +
      'und oder ist sind mit von zu auf für im den dem des ich du wie gli di da e per che um uma os as da ' +
      'dos das em mi me te mir mich',
  ),
);

// Words of politeness and phrasing that change nothing about what is asked.
const FILLER_WORDS = new Set(
  words(
    'please pls plz kindly hey hi hello thanks thank thx cheers ok okay sure yes quick quickly simple simply ' +
      'basically actually exactly properly proper correct correctly best easiest simplest good great nice ' +
      'way ways method approach process procedure option options possible able somehow something anything ' +
      'everything thing things stuff etc question questions term terms word words particular specific certain ' +
      'kind type following below given whole entire currently now today someone somebody anyone tip ' +
      'tips advice idea ideas suggestion suggestions recommendation recommendations help assist want need ' +
      'like would love wondering wonder curious try trying able know let tell give show get got make made ' +
      'go going use using used purpose number phrase',
  ),
);

// Words that frame a request ("write", "explain") more than they say what it is about: prompts
// that agree on everything else are usually the same request, so they count less and are not
// part of the signature.
const FRAMING_WORDS = new Set(
  words(
    'write explain translate summary calculate find compare say mean check answer query command code ' +
      'program syntax implementation learn understand describe provide list work step steps guide tutorial ' +
      'example convert recipe cook bake rewrite happen suggest recommend',
  ),
);

// Framing words that say what to do with a text the prompt carries: "summarize this", "rewrite
// this" and "fix this" are three requests however long the shared text, so these stay in the
// signature. ("translate" names its language, which is in the signature anyway; "explain" is
// left out: "what is X?" asks what "explain X" asks.)
const OPERATIONS = new Set(words('summary rewrite fix check'));

const NEGATIONS = new Set(
  words(
    'not no never without dont doesnt didnt isnt arent wasnt werent cant cannot couldnt wont wouldnt ' +
      'shouldnt hasnt havent hadnt neither nor none nothing nobody ne pas nicht kein keine nunca sin ohne ' +
      'sans senza',
  ),
);
const NOT = 'not';

// Spelling variants, abbreviations and synonyms common in prompts, to one form.
const CANONICAL = new Map<string, string>();
function fold(canonical: string, variants: string): void {
  for (const variant of words(variants)) CANONICAL.set(variant, canonical);
  CANONICAL.set(canonical, canonical);
}
// units and currencies
fold('km', 'kilometer kilometers kilometre kilometres kms');
fold('mile', 'miles mi');
fold('meter', 'meters metre metres');
fold('cm', 'centimeter centimeters centimetre centimetres');
fold('mm', 'millimeter millimeters millimetre millimetres');
fold('foot', 'feet ft');
fold('inch', 'inches');
fold('kg', 'kilogram kilograms kilo kilos kgs');
fold('gram', 'grams gr');
fold('lb', 'lbs pound pounds');
fold('oz', 'ounce ounces');
fold('liter', 'liters litre litres');
fold('ml', 'milliliter milliliters millilitre millilitres');
fold('gallon', 'gallons gal');
fold('celsius', 'centigrade');
fold('degree', 'degrees deg');
fold('second', 'seconds sec secs');
fold('minute', 'minutes mins');
fold('hour', 'hours hrs hr');
fold('day', 'days daily');
fold('week', 'weeks weekly');
fold('month', 'months monthly');
fold('year', 'years yearly annual annually');
fold('usd', 'dollar dollars $ us$ bucks');
fold('eur', 'euro euros €');
fold('gbp', '£ sterling');
fold('jpy', 'yen ¥');
fold('percent', 'percentage per-cent %');
// technology
fold('python', 'py python3');
fold('javascript', 'js ecmascript');
fold('typescript', 'ts');
fold('postgresql', 'postgres psql pg');
fold('golang', 'go-lang');
fold('cpp', 'cplusplus');
fold('kubernetes', 'k8s kube');
fold('database', 'db databases dbs');
fold('function', 'func fn functions funcs');
fold('variable', 'var vars variables');
fold('directory', 'dir dirs directories folder folders');
fold('repository', 'repo repos repositories');
fold('configuration', 'config configs configure configuring configurations');
fold('application', 'app apps applications');
fold('documentation', 'docs');
fold('program', 'programs script scripts snippet');
fold('problem', 'problems error errors exception exceptions bug bugs issue issues');
fold('dictionary', 'dict dicts dictionaries hashmap');
fold('list', 'lists');
fold('array', 'arrays');
fold('string', 'strings str');
fold('integer', 'int ints integers');
fold('regex', 'regexp regexes');
fold('wifi', 'wi-fi wlan wireless');
fold('email', 'e-mail mail emails');
fold('password', 'passwd pwd passcode passwords');
fold('login', 'signin logon');
fold('logout', 'signout logoff');
fold('signup', 'register registration registered');
fold('setup', 'install installation installing installed');
fold('uninstall', 'uninstalling uninstalled');
// requests
fold(
  'summary',
  'summarize summarise summarizing summarising summarization summarisation summaries tldr recap gist synopsis condense',
);
fold('translate', 'translation translating translated translations');
fold('explain', 'explanation explaining describe description clarify elaborate');
fold(
  'write',
  'writing wrote written create creating generate generating draft drafting compose composing produce craft',
);
fold('fix', 'fixing fixed repair debug debugging resolve');
fold('convert', 'conversion converting converted transform turn turning');
fold('merge', 'merging merged combine combining combined');
fold('size', 'length len');
fold('substitute', 'substitution replacement alternative instead');
fold('calculate', 'calculation compute computing solve solving evaluate determine');
fold('find', 'finding detect identify locate search lookup');
fold('check', 'verify validate review inspect examine');
fold('compare', 'comparison difference differences differ');
fold('show', 'display');
fold('mean', 'meaning means');
fold('example', 'examples e.g. eg sample samples');
// everyday words
fold('short', 'brief concise briefly shortly');
fold('shorter', 'shorten shortened shortening');
fold('longer', 'lengthen lengthened');
fold('funny', 'humorous hilarious witty comic comical');
fold('change', 'update updating updated modify modifying modified alter altering edit editing switch');
fold('shipping', 'delivery deliver delivered shipment ship shipped');
fold(
  'fast',
  'quick quicker faster rapid rapidly speedy speed efficient efficiently performance perf optimize optimise optimization optimisation',
);
fold('slow', 'sluggish slower laggy lag slowly');
fold('better', 'improve improving improvement enhance');
fold('safe', 'secure safely securely');
fold('buy', 'purchase purchasing buying bought');
fold('cancel', 'cancellation cancelling canceling cancelled canceled');
fold('refund', 'refunds reimbursement reimburse');
fold('phone', 'telephone mobile cellphone smartphone');
fold('car', 'automobile vehicle cars');
fold('recipe', 'recipes');
fold('cook', 'cooking cooked prepare');
fold('bake', 'baking baked');
fold('remove', 'delete deleting removing erase eliminate');
fold('add', 'adding insert append');
fold('begin', 'start starting beginning started');
fold('end', 'finish ending ended');
fold('minimum', 'min lowest smallest');
fold('maximum', 'max highest largest biggest');
fold('color', 'colour colors colours');
fold('analyze', 'analyse analysis');
fold('picture', 'photo photos pictures image images pic pics photograph');
fold('movie', 'film films movies');
fold('kid', 'kids child children');
fold('adult', 'grownup adults');
fold('job', 'position role vacancy');
fold('developer', 'engineer programmer coder dev developers engineers');
fold('company', 'business firm organization organisation enterprise');
fold('customer', 'client clients customers');
fold('colleague', 'coworker co-worker teammate colleagues coworkers');
fold('friend', 'buddy pal friends');
fold('answer', 'reply respond response');
fold('last', 'latest recent');
fold('information', 'info details');
fold('people', 'persons person');
fold('big', 'large huge bigger larger');
fold('small', 'little tiny smaller');

// Two-word phrases with a one-word meaning (lowercase words as written).
const PHRASES = new Map<string, string>(
  Object.entries({
    'turn on': 'enable',
    'turned on': 'enable',
    'switch on': 'enable',
    'turn off': 'disable',
    'turned off': 'disable',
    'switch off': 'disable',
    'log in': 'login',
    'sign in': 'login',
    'log out': 'logout',
    'sign out': 'logout',
    'sign up': 'signup',
    'signed up': 'signup',
    'set up': 'setup',
    'money back': 'refund',
    'grown up': 'adult',
    'sum up': 'summary',
    'get rid': 'remove',
    'regular expression': 'regex',
    'e mail': 'email',
    'wi fi': 'wifi',
    'speed up': 'fast',
    'work out': 'calculate',
    'figure out': 'calculate',
    'come up': 'write',
    'most recent': 'last',
    'how long': 'time',
    'right way': 'way',
    'proper way': 'way',
  }),
);

// Number words, to digits: "three paragraphs" asks what "3 paragraphs" asks. Not "one", which
// is mostly a pronoun, nor "second", which is mostly a unit.
// biome-ignore format: one line per decade reads better
const NUMBER_WORDS = new Map<string, string>(Object.entries({
  zero: '0', two: '2', three: '3', four: '4', five: '5', six: '6', seven: '7', eight: '8', nine: '9',
  ten: '10', eleven: '11', twelve: '12', thirteen: '13', fourteen: '14', fifteen: '15', sixteen: '16',
  seventeen: '17', eighteen: '18', nineteen: '19', twenty: '20', thirty: '30', forty: '40', fifty: '50',
  sixty: '60', seventy: '70', eighty: '80', ninety: '90', hundred: '100', thousand: '1000', million: '1000000',
  billion: '1000000000', dozen: '12', twice: '2', third: '3rd', fourth: '4th', fifth: '5th',
}));

// Words that are operators wherever they appear ("times" and "over" are not).
const OPERATOR_WORDS = new Map<string, string>(
  Object.entries({
    plus: '+',
    minus: '-',
    multiplied: '*',
    divided: '/',
    squared: '^2',
    cubed: '^3',
    modulo: '%',
  }),
);

// Words whose exchange makes another request: languages, formats, units, directions, tools.
// They are specifics as well as words. Within a kind, their order is a specific too: "JSON to
// Python" is not "Python to JSON", "from English to German" not "from German to English".
const SPECIFIC_KINDS: [kind: string, list: string][] = [
  [
    'tech',
    'python javascript typescript java cpp csharp fsharp golang rust ruby php swift kotlin scala haskell perl ' +
      'lua dart elixir erlang clojure julia matlab bash shell powershell zsh sql mysql postgresql sqlite oracle ' +
      'mssql tsql mongodb redis cassandra dynamodb snowflake bigquery html css sass react vue angular svelte ' +
      'django flask fastapi rails laravel spring express nextjs nodejs deno jquery pandas numpy excel ' +
      'docker kubernetes terraform ansible aws azure gcp linux windows macos ios android ubuntu debian ' +
      'git npm pip jest mocha pytest json csv yaml xml markdown table pdf txt tsv toml ini docx xlsx png jpg ' +
      'svg md binary decimal hexadecimal hex octal base64 utf8 ascii',
  ],
  [
    'language',
    'english french spanish german italian portuguese dutch russian chinese mandarin cantonese japanese ' +
      'korean arabic hindi bengali urdu turkish polish swedish norwegian danish finnish greek hebrew thai ' +
      'vietnamese indonesian ukrainian czech romanian hungarian latin swahili persian',
  ],
  [
    'unit',
    'km mile meter cm mm foot inch kg gram lb oz liter ml gallon celsius fahrenheit kelvin second minute hour ' +
      'day week month year usd eur gbp jpy cny inr bitcoin percent',
  ],
  [
    'date',
    'monday tuesday wednesday thursday friday saturday sunday january february march april june july ' +
      'august september october november december',
  ],
  [
    'other',
    'bullet paragraph sentence ascending descending minimum maximum first last before after above below ' +
      'left right up down top bottom older newer oldest newest more less fewer longer shorter formal informal ' +
      'casual positive negative true false odd even male female encrypt decrypt encode decode compress ' +
      'decompress upload download import export push pull inner outer union intersection add remove increase ' +
      'decrease higher lower enable disable login logout signup setup uninstall begin end uppercase lowercase ' +
      'plural singular past future present vegan vegetarian beginner advanced expert synchronous asynchronous ' +
      'sync async horizontal vertical horizontally vertically row column morning evening night sum average ' +
      'median count product ratio',
  ],
];
const SPECIFIC_KIND = new Map<string, string>();
for (const [kind, list] of SPECIFIC_KINDS) for (const word of words(list)) SPECIFIC_KIND.set(word, kind);
const ORDERED_KINDS = ['tech', 'language', 'unit', 'date'];

// Prepositions whose object says where a request goes or comes from. The direction of "to",
// "from" and "than" is part of the signature ("5 miles to km" is not "5 km to miles"); the
// context of "in" and the sides of "vs" are only specifics ("in Python" and "a Python list"
// ask the same).
const OBJECT_OF = new Map<string, [relation: string, signed: boolean]>(
  Object.entries({
    to: ['to', true],
    into: ['to', true],
    as: ['to', true],
    from: ['from', true],
    than: ['than', true],
    in: ['in', false],
    using: ['in', false],
    with: ['in', false],
    en: ['in', false],
    vs: ['vs', false],
    versus: ['vs', false],
  }),
);

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

type Kind = 'word' | 'number' | 'operator' | 'symbol';

interface Token {
  /** Canonical form: lowercased, folded, stemmed. */
  text: string;
  /** As written, lowercased (for phrases). */
  word?: string;
  kind: Kind;
  role: Role;
  /** Capitalised in the text but not first in its sentence, or holding a digit or underscore. */
  name: boolean;
  /** Hash of `text` in the words group, computed once per shared token. */
  hash?: number;
}

const CJK = /[\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}]/u;
const CJK_RUN = /([\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}ー]+)/u;
const THOUSANDS = /^\p{N}{1,3}(?:,\p{N}{3})+$/u;
const LEADING_NUMBER = /^(\p{N}+)(\p{L}+)$/u;
const LOWERCASE = /\p{Ll}/u;
// Text in double quotes or backticks, or in single quotes that are not apostrophes.
const QUOTED = /["“`]([^"”`\n]+)["”`]|(?<![\p{L}\p{N}])['‘]([^'’\n]+)['’](?![\p{L}\p{N}])/gu;

// Names whose symbols tokenizing would drop.
const SYMBOL_NAMES: [RegExp, string][] = [
  [/\bc\+\+/gi, ' cpp '],
  [/\bc#/gi, ' csharp '],
  [/\bf#/gi, ' fsharp '],
  [/\.net\b/gi, ' dotnet '],
  [/°\s*c\b/gi, ' degree celsius '],
  [/°\s*f\b/gi, ' degree fahrenheit '],
];
const HAS_SYMBOL_NAME = /\+\+|#|\.net|°/i;

function withSymbolNames(text: string): string {
  if (!HAS_SYMBOL_NAME.test(text)) return text;
  for (const [pattern, name] of SYMBOL_NAMES) text = text.replace(pattern, name);
  return text;
}

enum Char {
  Other = 0,
  Letter = 1,
  Digit = 2,
  Joiner = 3, // underscore: inside words
  Apostrophe = 4,
  Operator = 5,
  Symbol = 6,
}

// Classes of ASCII characters; others are looked up once with Unicode property regexes.
const ASCII_CLASS = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (/[a-zA-Z]/.test(ch)) ASCII_CLASS[c] = Char.Letter;
  else if (/[0-9]/.test(ch)) ASCII_CLASS[c] = Char.Digit;
  else if (ch === '_') ASCII_CLASS[c] = Char.Joiner;
  else if (ch === "'") ASCII_CLASS[c] = Char.Apostrophe;
  else if ('=!<>+-*/%^&|~'.includes(ch)) ASCII_CLASS[c] = Char.Operator;
  else if ('$'.includes(ch)) ASCII_CLASS[c] = Char.Symbol;
}
const UNICODE_CLASS = new Map<number, Char>();
const LETTER_OR_MARK = /^[\p{L}\p{M}]$/u;
const NUMBER_CHAR = /^\p{N}$/u;
const SYMBOL_CHAR = /^\p{S}$/u;

function classOf(codePoint: number): Char {
  if (codePoint < 128) return ASCII_CLASS[codePoint]! as Char;
  let known = UNICODE_CLASS.get(codePoint);
  if (known === undefined) {
    const ch = String.fromCodePoint(codePoint);
    if (codePoint === 0x2019) known = Char.Apostrophe;
    else if (LETTER_OR_MARK.test(ch)) known = Char.Letter;
    else if (NUMBER_CHAR.test(ch)) known = Char.Digit;
    else if (SYMBOL_CHAR.test(ch)) known = Char.Symbol;
    else known = Char.Other;
    // the table stays small: scripts in use, not every code point ever seen
    if (UNICODE_CLASS.size < 65536) UNICODE_CLASS.set(codePoint, known);
  }
  return known;
}

/**
 * Numbers (with thousands separators or decimals), words (letters, marks, digits, underscores,
 * inner apostrophes), runs of up to three operator characters, and any other symbol (currency,
 * emoji) alone. Everything else separates tokens.
 */
function tokenize(text: string, cache: Map<string, WordAnalysis>): Token[] {
  const tokens: Token[] = [];
  // In a text with lowercase letters, an all-caps function word is a keyword (SQL's ON, IN).
  const hasLowercase = LOWERCASE.test(text);
  let sentenceStart = true;
  let last = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const codePoint = text.codePointAt(i)!;
    const width = codePoint > 0xffff ? 2 : 1;
    const kind = classOf(codePoint);
    if (kind === Char.Other || kind === Char.Apostrophe) {
      i += width;
      continue;
    }
    const start = i;
    if (start > last && endsSentence(text, last, start)) sentenceStart = true;
    if (kind === Char.Digit) {
      i = scanNumber(text, i);
      tokens.push(number(text.slice(start, i)));
    } else if (kind === Char.Letter || kind === Char.Joiner) {
      i = scanWord(text, i);
      addWord(tokens, text.slice(start, i), sentenceStart, hasLowercase, cache);
    } else if (kind === Char.Operator) {
      while (i < n && i - start < 3 && classOf(text.charCodeAt(i)) === Char.Operator) i++;
      if (isOperator(text, start, i)) {
        const operator = text.slice(start, i);
        tokens.push({
          text: CANONICAL.get(operator) ?? operator,
          kind: 'operator',
          role: Role.Content,
          name: false,
        });
      }
    } else {
      i += width;
      const symbol = text.slice(start, i);
      tokens.push({ text: CANONICAL.get(symbol) ?? symbol, kind: 'symbol', role: Role.Content, name: false });
    }
    if (i <= start) i = start + width; // every step consumes input, whatever the scanners decide
    last = i;
    sentenceStart = false;
  }
  return joinPhrases(tokens);
}

function scanNumber(text: string, i: number): number {
  const n = text.length;
  const digits = (at: number): number => {
    while (at < n) {
      const codePoint = text.codePointAt(at)!;
      if (classOf(codePoint) !== Char.Digit) break;
      at += codePoint > 0xffff ? 2 : 1;
    }
    return at;
  };
  i = digits(i);
  // 1,000 and 3.14, not the full stop after a number
  while (
    i + 1 < n &&
    (text[i] === '.' || text[i] === ',') &&
    classOf(text.codePointAt(i + 1)!) === Char.Digit
  ) {
    i = digits(i + 1);
  }
  return i;
}

function scanWord(text: string, i: number): number {
  const n = text.length;
  for (;;) {
    while (i < n) {
      const codePoint = text.codePointAt(i)!;
      const kind = classOf(codePoint);
      if (kind !== Char.Letter && kind !== Char.Digit && kind !== Char.Joiner) break;
      i += codePoint > 0xffff ? 2 : 1;
    }
    // don't, it’s: an apostrophe with letters on both sides stays inside the word
    if (i + 1 < n && classOf(text.charCodeAt(i)) === Char.Apostrophe) {
      const next = text.codePointAt(i + 1)!;
      if (classOf(next) === Char.Letter) {
        i++;
        continue;
      }
    }
    return i;
  }
}

/** An operator, not punctuation or markup written with operator characters. */
function isOperator(text: string, start: number, end: number): boolean {
  // "and/or", "src/lib", "e-mail": a joiner between letters
  if (isLetter(text, start - 1) && isLetter(text, end)) return false;
  // "Really!", "Done!!": an exclamation mark alone is punctuation ("!=" is an operator)
  if (/^!+$/.test(text.slice(start, end))) return false;
  // "- item", "* item", "> quote": list bullets and quotes at the start of a line
  for (let i = start - 1; i >= 0; i--) {
    const c = text.charCodeAt(i);
    if (c === 10) return false;
    if (c !== 32 && c !== 9) return true;
  }
  return false;
}

function isLetter(text: string, at: number): boolean {
  return at >= 0 && at < text.length && classOf(text.charCodeAt(at)) === Char.Letter;
}

/** A sentence ends between `from` and `to`: . ! ? : ; a line break, or their CJK forms. */
function endsSentence(text: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c === 46 || c === 33 || c === 63 || c === 10 || c === 58 || c === 59) return true;
    if (c === 0x3002 || c === 0xff01 || c === 0xff1f) return true;
  }
  return false;
}

/** Code units from U+2E80 on: the text may hold Chinese or Japanese (checked by CJK then). */
function mayBeCjk(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) >= 0x2e80) return true;
  return false;
}

function number(raw: string): Token {
  // "1,000" is 1000; "3.10" stays apart from "3.1" (versions)
  const text = THOUSANDS.test(raw) ? raw.replace(/,/g, '') : raw;
  return { text, kind: 'number', role: Role.Content, name: false };
}

/** What a word as written becomes, whatever its place in a text: cached per embedder. */
interface WordAnalysis {
  tokens: readonly Token[];
  /** The same in a text without lowercase letters, where an all-caps function word is not a keyword. */
  shouting?: readonly Token[];
  /** The last token as a name, when it is a content word that may be one. */
  asName?: Token;
  /** A name wherever it stands: holds a digit or an underscore. */
  alwaysName: boolean;
  capitalised: boolean;
  /** After a number in the same word ("5km"): never first in a sentence. */
  afterNumber: boolean;
}

/** Distinct words an embedder remembers before it starts over (the cache only saves time). */
const WORD_CACHE_LIMIT = 20_000;
/** Longer words are analysed every time: the cache holds at most about 1 MB of keys. */
const MAX_CACHED_WORD = 48;

function addWord(
  tokens: Token[],
  raw: string,
  sentenceStart: boolean,
  hasLowercase: boolean,
  cache: Map<string, WordAnalysis>,
): void {
  let analysis = cache.get(raw);
  if (analysis === undefined) {
    analysis = analyzeWord(raw);
    if (raw.length <= MAX_CACHED_WORD) {
      if (cache.size >= WORD_CACHE_LIMIT) cache.clear();
      cache.set(raw, analysis);
    }
  }
  const list = !hasLowercase && analysis.shouting !== undefined ? analysis.shouting : analysis.tokens;
  const name =
    analysis.asName !== undefined &&
    (analysis.alwaysName || (analysis.capitalised && (!sentenceStart || analysis.afterNumber)));
  for (let k = 0; k < list.length; k++)
    tokens.push(name && k === list.length - 1 ? analysis.asName! : list[k]!);
}

function analyzeWord(raw: string): WordAnalysis {
  const tokens: Token[] = [];
  const plain = { tokens, alwaysName: false, capitalised: false, afterNumber: false };
  if (mayBeCjk(raw) && CJK.test(raw)) {
    for (const part of raw.split(CJK_RUN)) {
      if (part === '') continue;
      if (CJK.test(part)) addCjk(tokens, part);
      else tokens.push(...analyzeWord(part).tokens);
    }
    return plain;
  }
  // "5km", "10x", "3rd": a number and a word
  const first = raw.charCodeAt(0);
  const lead = first >= 48 && first <= 57 ? LEADING_NUMBER.exec(raw) : null;
  if (lead) {
    tokens.push(number(lead[1]!));
    raw = lead[2]!;
  }
  const lower = raw.toLowerCase();
  const word = /['’]/.test(lower) ? lower.replace(/['’]s$/, '').replace(/['’]/g, '') : lower;
  const digits = NUMBER_WORDS.get(word);
  const operator = OPERATOR_WORDS.get(word);
  if (digits !== undefined) {
    tokens.push(number(digits));
  } else if (operator !== undefined) {
    tokens.push({ text: operator, kind: 'operator', role: Role.Content, name: false });
  } else if (NEGATIONS.has(word)) {
    tokens.push({ text: NOT, kind: 'word', role: Role.Content, name: false });
  } else if (STOP_WORDS.has(word)) {
    const stop: Token = { text: word, word, kind: 'word', role: Role.Stop, name: false };
    if (raw.length > 1 && raw === raw.toUpperCase()) {
      // SQL's ON, IN, AS: a keyword, unless the whole text is in capitals
      const keyword: Token = { text: word, word, kind: 'word', role: Role.Content, name: false };
      return { ...plain, tokens: [...tokens, keyword], shouting: [...tokens, stop] };
    }
    tokens.push(stop);
  } else {
    const stemmed = CANONICAL.has(word) ? word : stem(word);
    const text = CANONICAL.get(stemmed) ?? stemmed;
    const role = roleOf(word, text);
    const token: Token = { text, word, kind: 'word', role, name: false };
    tokens.push(token);
    if (role === Role.Content) {
      return {
        tokens,
        asName: { ...token, name: true },
        alwaysName: /\d|_/.test(text),
        capitalised: lower !== raw && raw.length > 1,
        afterNumber: lead !== null,
      };
    }
  }
  return plain;
}

function roleOf(word: string, text: string): Role {
  if (FILLER_WORDS.has(word) || FILLER_WORDS.has(text)) return Role.Filler;
  if (FRAMING_WORDS.has(word) || FRAMING_WORDS.has(text)) return Role.Framing;
  return Role.Content;
}

/** Chinese and Japanese have no spaces: character bigrams stand for words. */
function addCjk(tokens: Token[], run: string): void {
  const chars = Array.from(run);
  if (chars.length === 1) {
    tokens.push({ text: chars[0]!, kind: 'word', role: Role.Content, name: false });
    return;
  }
  for (let i = 0; i + 1 < chars.length; i++) {
    tokens.push({ text: chars[i]! + chars[i + 1]!, kind: 'word', role: Role.Content, name: false });
  }
}

const PHRASE_STARTS = new Set([...PHRASES.keys()].map((phrase) => phrase.split(' ')[0]!));

function joinPhrases(tokens: Token[]): Token[] {
  const joined: Token[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    const next = tokens[i + 1];
    const phrase =
      next === undefined || token.word === undefined || !PHRASE_STARTS.has(token.word)
        ? undefined
        : PHRASES.get(`${token.word} ${next.word}`);
    if (phrase === undefined) {
      joined.push(token);
      continue;
    }
    joined.push({ text: phrase, kind: 'word', role: roleOf(phrase, phrase), name: false });
    i++;
  }
  return joined;
}

/** Light suffix stripping for English plurals and verb forms; short words are left alone. */
function stem(word: string): string {
  const n = word.length;
  if (n <= 3) return word;
  const stemmed = stripSuffix(word, n);
  // "string" is not "str", "bed" is not "b": a stem keeps a vowel
  return /[aeiouy]/.test(stemmed) ? stemmed : word;
}

function stripSuffix(word: string, n: number): string {
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

/** Quoted text, lowercased with its spaces collapsed: what a request works on. */
function quotations(text: string): string[] {
  if (!/["“`'‘]/.test(text)) return [];
  const quotes: string[] = [];
  for (const match of text.matchAll(QUOTED)) {
    const quote = (match[1] ?? match[2] ?? '').trim();
    if (quote === '' || quote.length > MAX_QUOTE_CHARS) continue;
    quotes.push(quote.toLowerCase().replace(/\s+/g, ' '));
  }
  return quotes;
}

function countOccurrences(text: string, part: string): number {
  let count = 0;
  for (let at = text.indexOf(part); at !== -1; at = text.indexOf(part, at + part.length)) count++;
  return count;
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
  /** Per group: feature hash → summed weight. Reused from call to call. */
  private readonly features: Map<number, number>[] = [];
  /** Content words and specifics: the signature's parts. */
  private readonly signature = new Set<string>();
  private readonly words = new Map<string, WordAnalysis>();
  /** The chars group, hashed as it is made. */
  private readonly chars: Float64Array;
  private readonly scratch: Float64Array;

  constructor(private readonly dimensions: number) {
    for (let g = 0; g < GROUPS; g++) this.features.push(new Map());
    this.chars = new Float64Array(dimensions);
    this.scratch = new Float64Array(dimensions);
  }

  vector(input: string): Float32Array {
    for (const group of this.features) group.clear();
    this.chars.fill(0);
    this.signature.clear();
    const text = withSymbolNames(
      (input.length > MAX_FEATURE_CHARS ? input.slice(0, MAX_FEATURE_CHARS) : input).normalize('NFKC'),
    );
    const tokens = tokenize(text, this.words);
    this.collect(tokens);
    let lowercase: string | undefined;
    for (const quote of quotations(text)) {
      lowercase ??= text.toLowerCase();
      // "sort by 'age'" in a text that also names "name": the quote picks one; a quote of
      // words found nowhere else is already in the signature as those words
      const feature = `"${quote}"`;
      if (countOccurrences(lowercase, quote) > 1) this.specific(feature, 1);
      else this.word(Group.Specifics, feature, 1);
    }
    if (input.length > MAX_FEATURE_CHARS) {
      this.signature.add(
        `rest:${createHash('sha1').update(input.slice(MAX_FEATURE_CHARS)).digest('base64')}`,
      );
    }
    if (tokens.length === 0) this.signature.add(`raw:${input.trim()}`);
    this.sign();
    return this.project();
  }

  private add(group: Group, hash: number, weight: number): void {
    const features = this.features[group]!;
    features.set(hash, (features.get(hash) ?? 0) + weight);
  }

  private word(group: Group, text: string, weight: number): void {
    this.add(group, hashString(text, GROUP_SEED[group]!), weight);
  }

  private specific(text: string, weight: number): void {
    this.signature.add(text);
    this.word(Group.Specifics, text, weight);
  }

  private collect(tokens: Token[]): void {
    const content: Token[] = [];
    const numbers: string[] = [];
    /** Specific words in the order they first appear: "miles ... km" is not "km ... miles". */
    const ordered: string[] = [];
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i]!;
      token.hash ??= hashString(token.text, GROUP_SEED[Group.Words]!);
      this.add(Group.Words, token.hash, ROLE_WEIGHT[token.role]!);
      if (token.kind === 'word' && token.role !== Role.Stop) this.charNgrams(token.text);
      const relation = OBJECT_OF.get(token.text);
      if (relation !== undefined) {
        // "5 miles to km" names a target; "how to cook", "way to reverse" do not
        if (tokens[i - 1]?.role === Role.Content) this.object(tokens, i, relation[0], relation[1]);
        continue;
      }
      if (token.role === Role.Framing && OPERATIONS.has(token.text)) this.signature.add(token.text);
      if (token.role !== Role.Content) continue;
      content.push(token);
      this.signature.add(token.text);
      if (token.kind === 'number') {
        numbers.push(token.text);
        this.specific('#' + token.text, 1);
        const next = tokens[i + 1];
        if (next !== undefined && next.role === Role.Content)
          this.specific(`#${token.text} ${next.text}`, 0.5);
      } else if (token.kind === 'operator' || token.kind === 'symbol') {
        this.specific(token.text, 0.7);
      } else if (token.text === NOT) {
        this.specific(NOT, 1);
        let scope = 0;
        for (let j = i + 1; j < tokens.length && scope < NEGATION_SCOPE; j++) {
          if (tokens[j]!.role !== Role.Content) continue;
          this.specific(`not ${tokens[j]!.text}`, 0.7);
          scope++;
        }
      } else if (SPECIFIC_KIND.has(token.text)) {
        this.specific(token.text, 1);
        if (!ordered.includes(token.text)) ordered.push(token.text);
      } else if (token.name) {
        this.specific(token.text, 0.7);
      }
    }
    if (numbers.length > 1) this.specific(numbers.join(' '), 0.7);
    for (const kind of ORDERED_KINDS) {
      const sequence = ordered.filter((word) => SPECIFIC_KIND.get(word) === kind);
      if (sequence.length > 1) this.specific(sequence.join(' > '), 0.7);
    }
    for (let i = 0; i + 1 < content.length; i++) {
      const first = hashString(content[i]!.text, GROUP_SEED[Group.Bigrams]!);
      this.add(Group.Bigrams, combine(first, hashString(content[i + 1]!.text, 1)), 1);
    }
    const edge = Math.min(EDGE_WORDS, content.length);
    for (let i = 0; i < edge; i++) this.word(Group.Edges, content[i]!.text, 1);
    for (let i = Math.max(edge, content.length - EDGE_WORDS); i < content.length; i++) {
      this.word(Group.Edges, content[i]!.text, 1);
    }
  }

  /** "to km", "from miles", "than their manager": the object of a preposition, as a specific. */
  private object(tokens: Token[], at: number, relation: string, signed: boolean): void {
    for (let j = at + 1; j < tokens.length && j <= at + OBJECT_SCOPE; j++) {
      const token = tokens[j]!;
      if (token.role !== Role.Content || token.kind === 'number') continue;
      const feature = `${relation}:${token.text}`;
      // Languages, units and formats say their direction by their order in the text
      if (signed && !SPECIFIC_KIND.has(token.text)) this.specific(feature, 0.5);
      else this.word(Group.Specifics, feature, 0.5);
      return;
    }
  }

  /** Character n-grams go straight into a dense vector: they are most of a text's features. */
  private charNgrams(word: string): void {
    const chars = this.chars;
    const seed = GROUP_SEED[Group.Chars]!;
    const dimensions = this.dimensions;
    const n = word.length + 2;
    // code unit at position i of "^word$"
    const at = (i: number) => (i === 0 ? 94 : i === n - 1 ? 36 : word.charCodeAt(i - 1));
    for (let i = 0; i + CHAR_NGRAM_MIN <= n; i++) {
      let h = (0x811c9dc5 ^ seed) >>> 0;
      for (let k = 0; k < CHAR_NGRAM_MAX && i + k < n; k++) {
        h ^= at(i + k);
        h = Math.imul(h, 0x01000193);
        if (k + 1 >= CHAR_NGRAM_MIN) {
          const key = fmix(h);
          chars[(key & 0x7fffffff) % dimensions]! += key & 0x80000000 ? -1 : 1;
        }
      }
    }
  }

  /**
   * The signature: a hash of the set of parts (two order-free sums of two independent hashes
   * of each part: 64 bits), spread over SIGNATURE_FEATURES features.
   */
  private sign(): void {
    let low = this.signature.size;
    let high = 0;
    for (const part of this.signature) {
      low = (low + hashString(part, GROUP_SEED[Group.Signature]!)) >>> 0;
      high = (high + hashString(part, 0x0b4f3c2d)) >>> 0;
    }
    const h = combine(fmix(low), fmix(high));
    for (let k = 0; k < SIGNATURE_FEATURES; k++) {
      this.add(Group.Signature, fmix((h + Math.imul(k, 0x9e3779b9)) >>> 0), 1);
    }
  }

  private project(): Float32Array {
    const out = new Float64Array(this.dimensions);
    const scratch = this.scratch;
    for (let g = 0; g < GROUPS; g++) {
      const features = this.features[g]!;
      if (g === Group.Chars) {
        scratch.set(this.chars);
      } else {
        if (features.size === 0) continue;
        scratch.fill(0);
        for (const [hash, weight] of features) {
          const value = weight <= 1 ? weight : 1 + Math.log(weight);
          const index = (hash & 0x7fffffff) % this.dimensions;
          scratch[index]! += hash & 0x80000000 ? -value : value;
        }
      }
      let norm = 0;
      for (let i = 0; i < scratch.length; i++) norm += scratch[i]! * scratch[i]!;
      if (norm === 0) continue;
      const scale = GROUP_WEIGHT[g]! / Math.sqrt(norm);
      for (let i = 0; i < scratch.length; i++) out[i]! += scratch[i]! * scale;
    }
    let norm = 0;
    for (let i = 0; i < out.length; i++) norm += out[i]! * out[i]!;
    const scale = 1 / Math.sqrt(norm);
    const vector = new Float32Array(this.dimensions);
    for (let i = 0; i < out.length; i++) vector[i] = out[i]! * scale;
    return vector;
  }
}
