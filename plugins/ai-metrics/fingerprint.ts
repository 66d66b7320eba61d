import { createHash } from 'node:crypto';

/**
 * Only this many characters (UTF-16 code units) of a prompt contribute to its template, and a
 * template is never longer: the work per prompt and the memory per template stay bounded.
 * Prompts built from one template rarely differ only after their first 2 KB.
 */
export const MAX_TEMPLATE_CHARS = 2_048;

const MONTH =
  '(?:[Jj]an(?:uary)?|[Ff]eb(?:ruary)?|[Mm]ar(?:ch)?|[Aa]pr(?:il)?|[Mm]ay|[Jj]une?|[Jj]uly?|[Aa]ug(?:ust)?|[Ss]ep(?:t(?:ember)?)?|[Oo]ct(?:ober)?|[Nn]ov(?:ember)?|[Dd]ec(?:ember)?)';
const HEX = '[0-9A-Fa-f]';
const HEX4 = `${HEX}{1,4}`;
/**
 * The context a single quote or a masked token may not touch: letters and digits (so the
 * apostrophes of `don't` and `Bob's` open nothing), and `<` `>`, which is what a neighbour
 * becomes once masked. With that, a second pass sees the same contexts as the first and
 * masks nothing more: fingerprints are fixed points.
 */
const WORDISH = '[\\p{L}\\p{N}_<>]';

/**
 * Every kind of variable part, as alternatives tried in order at one position: the first
 * that matches wins, so the order says which reading of an ambiguous run is kept (a quoted
 * URL is a string; an ISO date is not three numbers). Each group is one placeholder.
 * Sticky: `maskVariables` tries it only where a variable part can begin.
 */
const VARIABLE = new RegExp(
  [
    // 1 <code>: a fenced code block.
    '(```[^]*?```)',
    // 2 <str>: quoted strings. A single or right-curly quote must stand apart from words.
    '(' +
      [
        '"[^"]*"',
        '“[^”]*”',
        '„[^“”]*[“”]',
        '«[^»]*»',
        '`[^`]*`',
        `(?<!${WORDISH})'(?:[^']|'(?=${WORDISH}))*'(?!${WORDISH})`,
        `(?<!${WORDISH})‘(?:[^’]|’(?=${WORDISH}))*’(?!${WORDISH})`,
      ].join('|') +
      ')',
    // 3 <url>: a scheme or www., up to a space or quote; trailing punctuation is the sentence's.
    '((?<![\\w>-])(?:(?:https?|ftp|wss?):\\/\\/|www\\.)[^\\s<>"\'`]*[^\\s<>"\'`.,;:!?)\\]}])',
    // 4 <email>
    '((?<![\\w.%+>-])[\\w.%+-]+@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}(?![\\w<-]))',
    // 5 <id>: a UUID.
    `((?<![\\w>-])${HEX}{8}-${HEX}{4}-${HEX}{4}-${HEX}{4}-${HEX}{12}(?![\\w<-]))`,
    // 6 <ip>: IPv4, or IPv6 (eight groups, or fewer around `::`, with at least one digit).
    '(' +
      '(?<![\\w.])(?:\\d{1,3}\\.){3}\\d{1,3}(?![\\w<]|\\.[\\d<])' +
      `|(?<![\\w:>-])(?=[\\w:]*\\d)(?:${HEX4}(?::${HEX4}){7}|(?:${HEX4}(?::${HEX4}){0,6})?::(?:${HEX4}(?::${HEX4}){0,6})?)(?![\\w<:])` +
      ')',
    // 7 <date>: ISO dates and date-times; 12/31/2024, 31-12-24, 31.12.2024; May 5, 2024; 5th of May; May 2024.
    '(' +
      [
        '(?<![\\w.-])\\d{4}[-/]\\d{1,2}[-/]\\d{1,2}(?:[T ]\\d{1,2}:\\d{2}(?::\\d{2}(?:[.,]\\d+)?)?(?:Z|[+-]\\d{2}:?\\d{2})?)?(?![\\w<])',
        '(?<![\\w.-])\\d{1,2}(?:\\/\\d{1,2}\\/|-\\d{1,2}-)(?:\\d{4}|\\d{2})(?![\\w<]|[./-][\\d<])',
        '(?<![\\w.-])\\d{1,2}\\.\\d{1,2}\\.\\d{4}(?![\\w<]|[./-][\\d<])',
        `(?<![\\w>-])${MONTH}\\.? \\d{1,2}(?:st|nd|rd|th)?(?:,? \\d{4})?(?![\\w<])`,
        `(?<![\\w.-])\\d{1,2}(?:st|nd|rd|th)?\\.? (?:of )?${MONTH}\\.?(?:,? \\d{4})?(?![\\w<])`,
        `(?<![\\w>-])${MONTH}\\.?,? \\d{4}(?![\\w<])`,
      ].join('|') +
      ')',
    // 8 <time>: 14:30, 14:30:05.123, 2:30 pm, 5pm.
    '((?<![\\w:.-])\\d{1,2}(?::\\d{2}(?::\\d{2}(?:\\.\\d+)?)?(?: ?[AaPp]\\.?[Mm]\\.?)?| ?[AaPp]\\.?[Mm]\\.?)(?![\\w<:]))',
    // 9 <phone>: +15551234567, +1 (555) 123-4567, (555) 123-4567, 555-123-4567. Each group
    //   after the country code needs its separator: a run of digits splits only one way.
    '(' +
      '(?<![\\w+])\\+(?:\\d{7,15}|\\d{1,3}(?:[ .-]?\\(\\d{1,5}\\)|[ .-]\\d{1,5}){2,5})(?![\\w<])' +
      '|(?<![\\w])\\(\\d{3}\\) ?\\d{3}[ .-]\\d{4}(?![\\w<])' +
      '|(?<![\\w.-])\\d{3}[.-]\\d{3}[.-]\\d{4}(?![\\w<]|[.-][\\d<])' +
      ')',
    // 10 a word of letters and digits: an id when it looks like one, else its digit runs are masked.
    '((?<![\\w>-])(?=[\\w-]*\\d)(?=[\\w-]*[A-Za-z])[\\w-]+)',
    // 11 <num>: integers and decimals with separators, currency and percent signs.
    '((?:[$€£¥₹] ?)?\\d+(?:[.,_\\u202f]\\d+)*(?: ?%)?)',
  ].join('|'),
  'uy',
);

const PLACEHOLDER = [
  '',
  '<code>',
  '<str>',
  '<url>',
  '<email>',
  '<id>',
  '<ip>',
  '<date>',
  '<time>',
  '<phone>',
];

function placeholder(m: RegExpExecArray): string {
  for (let g = 1; g < PLACEHOLDER.length; g++) if (m[g] !== undefined) return PLACEHOLDER[g]!;
  if (m[10] !== undefined) return looksLikeId(m[0]) ? '<id>' : m[0].replace(/[0-9]+/g, '<num>');
  return '<num>';
}

/**
 * Order numbers, user ids, hashes, API-style ids: long enough, and either several digits or
 * long or hex. A short word with a digit (`gpt4`, `COVID-19`, `1st`) keeps its letters.
 */
function looksLikeId(word: string): boolean {
  if (word.length < 8) return false;
  let digits = 0;
  for (let i = 0; i < word.length; i++) if (isDigit(word.charCodeAt(i))) digits++;
  return digits >= 3 || word.length >= 16 || /^(?:0x)?[0-9a-f]+$/i.test(word);
}

/** A month name then a space, before a number: "May 5", "Sept. 2024". */
const MONTH_BEFORE = new RegExp(`${MONTH}\\.?,? `, 'y');

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isWordChar(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || isDigit(c) || c === 95;
}

/**
 * Where variable parts are found: every one holds one of these (a digit, a quote, `@`, the
 * `://` of a URL, the `www.` of one without a scheme). VARIABLE is tried only at such a character
 * and, before it, where its word may begin, so plain words cost a character test each
 * rather than a try of every alternative.
 */
function isAnchor(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  if (c < 128) {
    return (
      isDigit(c) ||
      c === 34 || // "
      c === 39 || // '
      c === 96 || // `
      c === 64 || // @
      (c === 58 && text.startsWith('//', i + 1)) || // ://
      (c === 119 && text.startsWith('ww.', i + 1)) // www.
    );
  }
  return c === 0x201c || c === 0x201e || c === 0xab || c === 0x2018; // “ „ « ‘
}

/** Characters a variable part may hold before its first anchor: a URL's scheme, an email's local part, `+1`, `(555`, `$5`. */
function leadsToAnchor(c: number): boolean {
  return (
    isWordChar(c) ||
    c === 46 || // .
    c === 37 || // %
    c === 43 || // +
    c === 45 || // -
    c === 58 || // :
    c === 40 || // (
    c === 36 || // $
    c === 0x20ac || // €
    c === 0xa3 || // £
    c === 0xa5 || // ¥
    c === 0x20b9 // ₹
  );
}

/**
 * The text with each variable part replaced by its placeholder, as if VARIABLE were applied
 * globally, but tried only at each anchor and where a part reaching that anchor could begin:
 * the anchor's word start, every word boundary between, and a month name just before a number.
 * Positions already tried are not tried again, so the work is linear in the text.
 */
function maskVariables(text: string): string {
  let out = '';
  let copied = 0;
  let tried = 0;
  // A quote opens a string only if a closing one follows: knowing where the last one is
  // keeps a text full of unclosed quotes linear.
  let lastClose: Map<number, number> | undefined;
  for (let at = 0; at < text.length; at++) {
    if (!isAnchor(text, at)) continue;
    const c = text.charCodeAt(at);
    const closers = CLOSERS.get(c);
    if (closers) {
      lastClose ??= new Map();
      let last = lastClose.get(c);
      if (last === undefined) {
        last = Math.max(...closers.map((q) => lastClosingQuote(text, q)));
        lastClose.set(c, last);
      }
      if (at >= last) continue;
    }
    let from = at;
    while (from > tried && leadsToAnchor(text.charCodeAt(from - 1))) from--;
    if (from === at && at - 2 >= tried && isDigit(text.charCodeAt(at)) && text.charCodeAt(at - 1) === 32) {
      from = monthBefore(text, at, tried);
    }
    let found: RegExpExecArray | null = null;
    let start = from;
    for (; start <= at; start++) {
      const inWord =
        start !== from &&
        start !== at &&
        isWordChar(text.charCodeAt(start)) &&
        isWordChar(text.charCodeAt(start - 1));
      if (inWord) continue;
      VARIABLE.lastIndex = start;
      found = VARIABLE.exec(text);
      if (found) break;
    }
    if (found) {
      out += text.slice(copied, start) + placeholder(found);
      copied = tried = start + found[0].length;
      at = copied - 1;
    } else {
      tried = at + 1;
    }
  }
  return copied === 0 ? text : out + text.slice(copied);
}

/** What closes a string each opening quote begins (a code fence is closed by backticks too). */
const CLOSERS = new Map<number, string[]>([
  [34, ['"']],
  [96, ['`']],
  [0x201c, ['”']],
  [0x201e, ['“', '”']],
  [0xab, ['»']],
  [39, ["'"]],
  [0x2018, ['’']],
]);

const WORDISH_AT = new RegExp(WORDISH, 'uy');

/** The last `quote` that can close a string, or -1. A single quote followed by a word is an apostrophe. */
function lastClosingQuote(text: string, quote: string): number {
  if (quote !== "'" && quote !== '’') return text.lastIndexOf(quote);
  // (lastIndexOf(q, -1) looks at 0 again: the loop stops after index 0 itself.)
  for (let i = text.lastIndexOf(quote); i >= 0; i = i === 0 ? -1 : text.lastIndexOf(quote, i - 1)) {
    WORDISH_AT.lastIndex = i + 1;
    if (!WORDISH_AT.test(text)) return i;
  }
  return -1;
}

/** Where a month name before the space at `at - 1` begins, or `at` when there is none. */
function monthBefore(text: string, at: number, tried: number): number {
  let word = at - 1;
  while (word > tried && word > at - 13 && text.charCodeAt(word - 1) !== 32) word--;
  MONTH_BEFORE.lastIndex = word;
  return word < at - 1 && MONTH_BEFORE.test(text) && MONTH_BEFORE.lastIndex === at ? word : at;
}

/** ES2024 string methods, in Node 20 (the project's type library stops at ES2022). */
interface WellFormed {
  isWellFormed(): boolean;
  toWellFormed(): string;
}

/** One pass: lone surrogates made U+FFFD, whitespace runs one space, variable parts masked. */
function templateOf(text: string): string {
  const t = text as unknown as WellFormed;
  const wellFormed = t.isWellFormed() ? text : t.toWellFormed();
  return maskVariables(normalizeSpace(wellFormed));
}

/** Whitespace runs other than a single space (most prompts have few: one match each). */
const ODD_SPACE = /[^\S ]\s*| \s+/g;

function normalizeSpace(text: string): string {
  return text.replace(ODD_SPACE, ' ').trim();
}

/**
 * The template of a prompt: numbers, quoted strings, code blocks, URLs, emails, ids, UUIDs,
 * IP addresses, dates, times and phone numbers replaced by placeholders (`<num>`, `<str>`,
 * `<code>`, `<url>`, `<email>`, `<id>`, `<ip>`, `<date>`, `<time>`, `<phone>`), whitespace
 * runs made one space. Case is kept: prompts from one template in code share their case, and
 * an operator reads the template as the application wrote it.
 *
 * Only the first MAX_TEMPLATE_CHARS characters are read and the template is at most that long.
 * Pure and deterministic; a template is its own fingerprint.
 */
export function fingerprint(prompt: string): string {
  let end = Math.min(prompt.length, MAX_TEMPLATE_CHARS);
  if (end < prompt.length && isHighSurrogate(prompt.charCodeAt(end - 1))) end--;
  let template = templateOf(prompt.slice(0, end));
  if (template.length <= MAX_TEMPLATE_CHARS) return template;
  // Placeholders are longer than what they hide (`1` → `<num>`): cut the template, at a space
  // when one is near, and make sure the cut leaves a fixed point (a quote or a UUID cut short
  // at the end of the text could otherwise be masked on a second pass).
  const space = template.lastIndexOf(' ', MAX_TEMPLATE_CHARS);
  end = space > MAX_TEMPLATE_CHARS / 2 ? space : MAX_TEMPLATE_CHARS;
  if (isHighSurrogate(template.charCodeAt(end - 1))) end--;
  template = template.slice(0, end).trimEnd();
  while (templateOf(template) !== template) template = template.slice(0, -1).trimEnd();
  return template;
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

/** A short stable name for a template: the metric's `pattern` label, never the text itself. */
export function templateId(template: string): string {
  return createHash('sha256').update(template).digest('hex').slice(0, 12);
}
