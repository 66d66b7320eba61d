import type { Endpoint } from '../context/request-context';

/**
 * Prompt token counting for budgets: exact for OpenAI model families (their tiktoken
 * encodings), a deliberately high approximation for every other model.
 *
 * Counting runs on tiktoken's own rank data (`tiktoken/encoders/*`) with a pre-tokenizer and a
 * BPE written here for counting: about 6x faster than tiktoken's WASM build on English and code
 * and 2x on CJK, where gpt-tokenizer is 6x slower than tiktoken once its merge cache misses
 * (docs/benchmarks-tokens.md). tiktoken itself counts the rare text that JavaScript's Unicode
 * tables would split differently (REFERENCE_ONLY). spec/unit/llm/tokens.test.ts proves the
 * counts equal to tiktoken's.
 */

export type TokenEncoding = 'o200k_base' | 'cl100k_base';

export interface PromptCount {
  tokens: number;
  /** how it was counted */
  method: TokenEncoding | 'approximate';
}

// Model families, as tiktoken maps them (node_modules/tiktoken/model_to_encoding.json, and
// tiktoken's Python prefix table for dated and fine-tuned names). gpt-oss uses o200k_harmony:
// the o200k_base vocabulary plus chat-format special tokens, so ordinary text counts the same.
const O200K_MODEL = /^(?:gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-5(?:\.\d+)?|gpt-oss|o1|o3|o4)(?:$|[-:@])/;
const CL100K_MODEL =
  /^(?:gpt-4|gpt-3\.5-turbo|gpt-35-turbo|text-embedding-3-(?:small|large)|text-embedding-ada-002|davinci-002|babbage-002)(?:$|[-:@])/;

/** The encoding OpenAI uses for this model name, or undefined for non-OpenAI families. */
export function encodingFor(model: string): TokenEncoding | undefined {
  const name = baseModelName(model);
  if (O200K_MODEL.test(name)) return 'o200k_base';
  if (CL100K_MODEL.test(name)) return 'cl100k_base';
  return undefined;
}

/** The model name without what routers, clouds and fine-tuning add around it. */
function baseModelName(model: unknown): string {
  if (typeof model !== 'string') return '';
  let name = model.trim().toLowerCase();
  // Routers and clouds put a provider path in front: openai/gpt-4o, accounts/x/models/gpt-oss-20b.
  name = name.slice(name.lastIndexOf('/') + 1);
  // Fine-tuned models: ft:<base model>:<org>:<suffix>:<id>.
  if (name.startsWith('ft:')) name = name.slice('ft:'.length);
  // Amazon Bedrock: openai.gpt-oss-120b-1:0.
  if (name.startsWith('openai.')) name = name.slice('openai.'.length);
  return name;
}

// ---------------------------------------------------------------------------------------------
// Character classes
// ---------------------------------------------------------------------------------------------

/**
 * Code points on which a JavaScript regex and tiktoken's Rust regex classify text differently,
 * as [first, last] pairs: U+0085 (whitespace to Rust, not to JavaScript), U+FEFF (the
 * reverse), and every code point whose Unicode category, as the split patterns see it (letter
 * by kind, mark, number, other), changed between Unicode 14.0 and 17.0. tiktoken 1.0.22
 * carries Unicode 16 tables and Node 20 and later ship Unicode 15.0 to 17.0, so any pair of
 * versions in that span differs only here. Found by tokenizing every code point in context
 * with tiktoken and with a JavaScript tokenizer (only these differed); the tests repeat the
 * check. A text holding one of them is counted by tiktoken.
 */
// biome-ignore format: pairs read better on shared lines
const REFERENCE_ONLY: readonly number[] = [
  0x85, 0x85, 0x295, 0x295, 0x88f, 0x88f, 0x897, 0x897, 0xc5c, 0xc5c, 0xcdc, 0xcdc, 0xcf3, 0xcf3,
  0xece, 0xece, 0x1acf, 0x1add, 0x1ae0, 0x1aeb, 0x1c89, 0x1c8a, 0xa7cb, 0xa7cf, 0xa7d2, 0xa7d2,
  0xa7d4, 0xa7d4, 0xa7da, 0xa7dc, 0xa7f1, 0xa7f1, 0xfeff, 0xfeff, 0x105c0, 0x105f3, 0x10940, 0x10959,
  0x10d40, 0x10d65, 0x10d69, 0x10d6d, 0x10d6f, 0x10d85, 0x10ec2, 0x10ec7, 0x10efa, 0x10eff,
  0x1123f, 0x11241, 0x11380, 0x11389, 0x1138b, 0x1138b, 0x1138e, 0x1138e, 0x11390, 0x113b5,
  0x113b7, 0x113c0, 0x113c2, 0x113c2, 0x113c5, 0x113c5, 0x113c7, 0x113ca, 0x113cc, 0x113d3,
  0x113e1, 0x113e2, 0x116d0, 0x116e3, 0x11b60, 0x11b67, 0x11bc0, 0x11be0, 0x11bf0, 0x11bf9,
  0x11db0, 0x11ddb, 0x11de0, 0x11de9, 0x11f00, 0x11f10, 0x11f12, 0x11f3a, 0x11f3e, 0x11f42,
  0x11f50, 0x11f5a, 0x1342f, 0x1342f, 0x13440, 0x13455, 0x13460, 0x143fa, 0x16100, 0x16139,
  0x16d40, 0x16d6c, 0x16d70, 0x16d79, 0x16ea0, 0x16eb8, 0x16ebb, 0x16ed3, 0x16ff2, 0x16ff6,
  0x187f8, 0x187ff, 0x18cff, 0x18cff, 0x18d09, 0x18d1e, 0x18d80, 0x18df2, 0x1b132, 0x1b132,
  0x1b155, 0x1b155, 0x1ccf0, 0x1ccf9, 0x1d2c0, 0x1d2d3, 0x1df25, 0x1df2a, 0x1e030, 0x1e06d,
  0x1e08f, 0x1e08f, 0x1e4d0, 0x1e4f9, 0x1e5d0, 0x1e5fa, 0x1e6c0, 0x1e6de, 0x1e6e0, 0x1e6f5,
  0x1e6fe, 0x1e6ff, 0x2b739, 0x2b73f, 0x2cea2, 0x2cead, 0x2ebf0, 0x2ee5d, 0x31350, 0x33479,
];

/** The newest Unicode version REFERENCE_ONLY accounts for. */
const UNICODE_CHECKED = 17;
// A newer runtime may know letters that tiktoken does not: then only ASCII is split here.
const runtimeUnicodeChecked = Number.parseInt(process.versions.unicode ?? '', 10) <= UNICODE_CHECKED;

function isReferenceOnly(codePoint: number): boolean {
  if (!runtimeUnicodeChecked) return codePoint > 0x7f;
  let low = 0;
  let high = REFERENCE_ONLY.length / 2 - 1;
  while (low <= high) {
    const mid = (low + high) >> 1;
    if (codePoint < REFERENCE_ONLY[2 * mid]!) high = mid - 1;
    else if (codePoint > REFERENCE_ONLY[2 * mid + 1]!) low = mid + 1;
    else return true;
  }
  return false;
}

// Classes of tiktoken's split patterns, from the runtime's Unicode tables.
const LETTER = 1; // \p{L}
const CAPITAL = 2; // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]: o200k's leading capitals
const SMALL = 4; // [\p{Ll}\p{Lm}\p{Lo}\p{M}]: o200k's word body
const NUMBER = 8; // \p{N}
const SPACE = 16; // \s
/** Set by classAt on a surrogate pair: the character is two code units wide. */
const WIDE = 32;
// Run classes of a code unit, for LONG_RUN. Each is a superset of what either tokenizer treats
// as one class (marks are letters to o200k and punctuation to cl100k; o200k appends `/` and
// newlines to punctuation; a REFERENCE_ONLY character or half a surrogate pair may be
// anything), so every long piece lies inside a run of units sharing a run class.
const LETTER_RUN = 64;
const PUNCTUATION_RUN = 128;
const SPACE_RUN = 256;
const ANY_RUN = LETTER_RUN | PUNCTUATION_RUN | SPACE_RUN;
/** A BMP code unit in REFERENCE_ONLY. */
const REFERENCE = 512;
const SURROGATE = 1024;
/** Marks a computed entry of the astral table. */
const KNOWN = 2048;

let bmpClasses: Uint16Array | undefined;
let astralClasses: Uint16Array | undefined;

/** Classes of the 65536 code units, built on first use (tens of ms). */
function classesOfUnits(): Uint16Array {
  if (bmpClasses) return bmpClasses;
  const table = new Uint16Array(0x10000);
  // Every non-surrogate code unit once, in order, scanned by one regex per class.
  let units = '';
  for (let start = 0; start < 0x10000; start += 0x800) {
    if (start >= 0xd800 && start < 0xe000) continue;
    units += String.fromCharCode(...Array.from({ length: 0x800 }, (_, i) => start + i));
  }
  const mark = (pattern: RegExp, bits: number) => {
    for (const match of units.matchAll(pattern)) {
      for (let i = match.index; i < match.index + match[0].length; i++) table[units.charCodeAt(i)]! |= bits;
    }
  };
  mark(/\p{L}+/gu, LETTER);
  mark(/[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+/gu, CAPITAL);
  mark(/[\p{Ll}\p{Lm}\p{Lo}\p{M}]+/gu, SMALL);
  mark(/\p{N}+/gu, NUMBER);
  mark(/\s+/gu, SPACE);
  for (let unit = 0; unit < 0x10000; unit++) {
    let bits = table[unit]!;
    if (bits & (LETTER | CAPITAL | SMALL)) bits |= LETTER_RUN;
    if (!(bits & (LETTER | NUMBER | SPACE))) bits |= PUNCTUATION_RUN;
    if (bits & SPACE || unit === 0x2f) bits |= SPACE_RUN;
    if (unit >= 0xd800 && unit <= 0xdfff) bits = PUNCTUATION_RUN | SURROGATE | ANY_RUN;
    if (isReferenceOnly(unit)) bits |= REFERENCE | ANY_RUN;
    table[unit] = bits;
  }
  bmpClasses = table;
  return table;
}

/** Classes of a code point above U+FFFF, computed when first met. */
function astralClass(codePoint: number): number {
  astralClasses ??= new Uint16Array(0x100000);
  const index = codePoint - 0x10000;
  let bits = astralClasses[index]!;
  if (bits === 0) {
    const char = String.fromCodePoint(codePoint);
    bits = KNOWN;
    if (/\p{L}/u.test(char)) bits |= LETTER;
    if (/[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]/u.test(char)) bits |= CAPITAL;
    if (/[\p{Ll}\p{Lm}\p{Lo}\p{M}]/u.test(char)) bits |= SMALL;
    if (/\p{N}/u.test(char)) bits |= NUMBER;
    astralClasses[index] = bits;
  }
  return bits;
}

/** Split-pattern classes of the character at i (WIDE for a surrogate pair); 0 past the end. */
function classAt(text: string, i: number): number {
  if (i >= text.length) return 0;
  const unit = text.charCodeAt(i);
  if (unit < 0xd800 || unit > 0xdbff) return bmpClasses![unit]! & 0x1f;
  const next = text.charCodeAt(i + 1);
  // A lone surrogate becomes U+FFFD on its way to UTF-8, a symbol: no class.
  if (!(next >= 0xdc00 && next <= 0xdfff)) return 0;
  return (astralClass(((unit - 0xd800) << 10) + (next - 0xdc00) + 0x10000) & 0x1f) | WIDE;
}

function isPunctuation(bits: number): boolean {
  return (bits & (LETTER | NUMBER | SPACE)) === 0;
}

function widthOf(bits: number): number {
  return bits & WIDE ? 2 : 1;
}

// ---------------------------------------------------------------------------------------------
// Long runs and the choice of tokenizer
// ---------------------------------------------------------------------------------------------

/**
 * BPE cost grows with the square of a piece's length (100k repeated letters take tiktoken tens
 * of seconds), and a long piece is a run of letters, of punctuation or of whitespace. A run
 * longer than this is cut every LONG_RUN code units and the slices counted apart: exact
 * everywhere else, within about a token per cut on the run itself, and linear time on any
 * input. Prose, code and CJK with punctuation have no such runs; a CJK sentence without any, a
 * ruler of dashes or a column of spaces may.
 */
export const LONG_RUN = 128;

interface Scan {
  /** The text holds a REFERENCE_ONLY character. */
  reference: boolean;
  /** Where to cut long runs, ascending. */
  cuts: number[];
}

/** One pass over the text: which tokenizer counts it, and where long runs are cut. */
function scan(text: string): Scan {
  const classes = classesOfUnits();
  const cuts: number[] = [];
  let seen = 0;
  let runClasses = 0;
  let run = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    const bits = classes[unit]!;
    seen |= bits;
    const shared = runClasses & bits & ANY_RUN;
    if (shared === 0) {
      runClasses = bits;
      run = 1;
    } else if (++run > LONG_RUN) {
      // The unit at i opens the next slice, unless it closes a surrogate pair.
      const pairEnd = unit >= 0xdc00 && unit <= 0xdfff;
      cuts.push(pairEnd ? i + 1 : i);
      runClasses = pairEnd ? 0 : bits;
      run = pairEnd ? 0 : 1;
    } else {
      runClasses = shared;
    }
  }
  let reference = (seen & REFERENCE) !== 0;
  if (!reference && seen & SURROGATE) {
    for (let i = 0; i < text.length && !reference; i++) {
      const codePoint = text.codePointAt(i)!;
      if (codePoint > 0xffff) {
        reference = isReferenceOnly(codePoint);
        i++;
      }
    }
  }
  return { reference, cuts };
}

/** True when this text is split here rather than by tiktoken (the counts are equal either way). */
export function splitHere(text: string): boolean {
  return !scan(text).reference;
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizers: tiktoken's split patterns, written out
// ---------------------------------------------------------------------------------------------

// o200k_base: [^\r\n\p{L}\p{N}]?[CAPITAL]*[SMALL]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//   | [^\r\n\p{L}\p{N}]?[CAPITAL]+[SMALL]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//   | \p{N}{1,3} | ' '?[^\s\p{L}\p{N}]+[\r\n/]* | \s*[\r\n]+ | \s+(?!\S) | \s+
// cl100k_base: (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}{1,3}
//   | ' '?[^\s\p{L}\p{N}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
// Each function returns where the piece that starts at p ends, as the regex would match it
// (first alternative that matches, greedy with backtracking). The tests check them against
// tiktoken on every code point and on random text.

type PieceEnd = (text: string, p: number) => number;

function o200kPieceEnd(text: string, p: number): number {
  const first = classAt(text, p);
  const afterPrefix = isPrefix(text, p, first) ? p + widthOf(first) : -1;
  // [prefix]? CAPITAL* SMALL+ contraction?, with the prefix first.
  for (let q = afterPrefix >= 0 ? afterPrefix : p; ; q = p) {
    let i = q;
    let bits = classAt(text, i);
    let lastSmallEnd = -1;
    while (bits & CAPITAL) {
      i += widthOf(bits);
      if (bits & SMALL) lastSmallEnd = i;
      bits = classAt(text, i);
    }
    if (bits & SMALL) {
      do {
        i += widthOf(bits);
        bits = classAt(text, i);
      } while (bits & SMALL);
      return contractionEnd(text, i);
    }
    // CAPITAL* gives back characters until SMALL+ can take one that is both.
    if (lastSmallEnd >= 0) return contractionEnd(text, lastSmallEnd);
    if (q === p) break;
  }
  // [prefix]? CAPITAL+ SMALL* contraction?
  for (let q = afterPrefix >= 0 ? afterPrefix : p; ; q = p) {
    let bits = classAt(text, q);
    if (bits & CAPITAL) {
      let i = q;
      while (bits & CAPITAL) {
        i += widthOf(bits);
        bits = classAt(text, i);
      }
      while (bits & SMALL) {
        i += widthOf(bits);
        bits = classAt(text, i);
      }
      return contractionEnd(text, i);
    }
    if (q === p) break;
  }
  if (first & NUMBER) return numberEnd(text, p, first);
  return punctuationOrSpaceEnd(text, p, first, true);
}

function cl100kPieceEnd(text: string, p: number): number {
  const contraction = contractionEnd(text, p);
  if (contraction > p) return contraction;
  const first = classAt(text, p);
  // [prefix]? \p{L}+
  if (isPrefix(text, p, first) && classAt(text, p + widthOf(first)) & LETTER) {
    return runEnd(text, p + widthOf(first), LETTER);
  }
  if (first & LETTER) return runEnd(text, p, LETTER);
  if (first & NUMBER) return numberEnd(text, p, first);
  return punctuationOrSpaceEnd(text, p, first, false);
}

/** [^\r\n\p{L}\p{N}]: may start a word. */
function isPrefix(text: string, p: number, bits: number): boolean {
  const unit = text.charCodeAt(p);
  return p < text.length && (bits & (LETTER | NUMBER)) === 0 && unit !== 0x0a && unit !== 0x0d;
}

/** (?i:'s|'t|'re|'ve|'m|'ll|'d) at i, or i. */
function contractionEnd(text: string, i: number): number {
  if (text.charCodeAt(i) !== 0x27) return i;
  const a = text.charCodeAt(i + 1) | 0x20; // ASCII lower case; NaN becomes a space
  if (a === 0x73 || a === 0x74 || a === 0x6d || a === 0x64) return i + 2; // s t m d
  const b = text.charCodeAt(i + 2) | 0x20;
  if ((a === 0x72 && b === 0x65) || (a === 0x76 && b === 0x65) || (a === 0x6c && b === 0x6c)) return i + 3; // re ve ll
  return i;
}

function runEnd(text: string, i: number, mask: number): number {
  let bits = classAt(text, i);
  while (bits & mask) {
    i += widthOf(bits);
    bits = classAt(text, i);
  }
  return i;
}

/** \p{N}{1,3} */
function numberEnd(text: string, p: number, first: number): number {
  let i = p + widthOf(first);
  for (let digits = 1; digits < 3; digits++) {
    const bits = classAt(text, i);
    if (!(bits & NUMBER)) break;
    i += widthOf(bits);
  }
  return i;
}

/** ' '?[^\s\p{L}\p{N}]+[\r\n/]* | \s*[\r\n]+ | \s+(?!\S) | \s+ */
function punctuationOrSpaceEnd(
  text: string,
  p: number,
  first: number,
  slashAfterPunctuation: boolean,
): number {
  const n = text.length;
  const start =
    text.charCodeAt(p) === 0x20 && p + 1 < n && isPunctuation(classAt(text, p + 1))
      ? p + 1
      : isPunctuation(first)
        ? p
        : -1;
  if (start >= 0) {
    let i = start;
    let bits = classAt(text, i);
    while (i < n && isPunctuation(bits)) {
      i += widthOf(bits);
      bits = classAt(text, i);
    }
    for (;;) {
      const unit = text.charCodeAt(i);
      if (unit === 0x0a || unit === 0x0d || (slashAfterPunctuation && unit === 0x2f)) i++;
      else return i;
    }
  }
  // Whitespace is all in the BMP.
  let i = p;
  let lastNewline = -1;
  while (i < n && bmpClasses![text.charCodeAt(i)]! & SPACE) {
    const unit = text.charCodeAt(i);
    if (unit === 0x0a || unit === 0x0d) lastNewline = i;
    i++;
  }
  if (lastNewline >= 0) return lastNewline + 1; // \s*[\r\n]+
  if (i === n) return n; // \s+(?!\S) at the end
  if (i - p >= 2) return i - 1; // \s+(?!\S): the last space goes with what follows
  return i > p ? i : p + widthOf(first); // \s+ (every character matches some alternative)
}

// ---------------------------------------------------------------------------------------------
// Byte-pair encoding
// ---------------------------------------------------------------------------------------------

interface EncoderData {
  pat_str: string;
  special_tokens: Record<string, number>;
  /** "! <first rank> <base64 token> <base64 token> ..." lines */
  bpe_ranks: string;
}

/** An encoding's tokens (rank → bytes) and a hash table from bytes to rank. */
interface Vocabulary {
  bytes: Uint8Array;
  /** rank → offset in bytes; a rank's bytes end where the next rank's begin */
  offsets: Uint32Array;
  /** open addressing by FNV-1a of the bytes: [rank or -1, hash] pairs */
  slots: Int32Array;
  /** one bit per top 21 bits of a token's hash: most lookups miss, and 256 KB stays in cache */
  filter: Uint32Array;
  mask: number;
  /** rank of each two-byte token, at (first byte << 8 | second), or NO_RANK */
  pairs: Int32Array;
  /** rank of each three-byte character's UTF-8 (U+0800 to U+FFFF) by code point, or NO_RANK */
  characters: Int32Array;
  /** rank of each single byte */
  bytesRanks: Int32Array;
  /**
   * Recently seen joins, direct-mapped, [left, right, joined] in one cache line per slot: token
   * left followed by token right makes token joined (or NO_RANK). BPE asks the same joins over
   * and over, and an answer here spares hashing and verifying bytes in the big table.
   */
  joins: Int32Array;
  pieceEnd: PieceEnd;
}

const NO_RANK = 0x7fffffff;
const JOIN_BITS = 16;
const JOINS = 1 << JOIN_BITS;
const encoderData = new Map<TokenEncoding, EncoderData>();
const vocabularies = new Map<TokenEncoding, Vocabulary>();

function encoderDataOf(encoding: TokenEncoding): EncoderData {
  let data = encoderData.get(encoding);
  if (!data) {
    data = (
      encoding === 'cl100k_base'
        ? require('tiktoken/encoders/cl100k_base')
        : require('tiktoken/encoders/o200k_base')
    ) as EncoderData;
    encoderData.set(encoding, data);
  }
  return data;
}

const BASE64 = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) {
  BASE64['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.charCodeAt(i)] = i;
}

function vocabularyOf(encoding: TokenEncoding): Vocabulary {
  let vocabulary = vocabularies.get(encoding);
  if (vocabulary) return vocabulary;
  const ranks = encoderDataOf(encoding).bpe_ranks;
  // Decode every base64 token in place: [rank, offset] pairs, then one byte array.
  const tokenRanks: number[] = [];
  const tokenOffsets: number[] = [];
  const bytes = new Uint8Array(Math.ceil((ranks.length * 3) / 4));
  let size = 0;
  for (const line of ranks.split('\n')) {
    const fields = line.split(' ');
    let rank = Number(fields[1]);
    for (let f = 2; f < fields.length; f++, rank++) {
      const token = fields[f]!;
      tokenRanks.push(rank);
      tokenOffsets.push(size);
      let buffer = 0;
      let bits = 0;
      for (let c = 0; c < token.length; c++) {
        const value = BASE64[token.charCodeAt(c)] ?? -1;
        if (value < 0) break; // padding
        buffer = (buffer << 6) | value;
        bits += 6;
        if (bits >= 8) {
          bits -= 8;
          bytes[size++] = (buffer >> bits) & 0xff;
        }
      }
    }
  }
  const rankCount = tokenRanks.reduce((max, rank) => Math.max(max, rank), -1) + 1;
  // Ranks without a token (none in o200k and cl100k) get no bytes.
  const offsets = new Uint32Array(rankCount + 1).fill(size);
  for (let t = tokenRanks.length - 1; t >= 0; t--) offsets[tokenRanks[t]!] = tokenOffsets[t]!;
  for (let r = rankCount - 1; r >= 0; r--) if (offsets[r]! > offsets[r + 1]!) offsets[r] = offsets[r + 1]!;
  const mask = 2 ** Math.ceil(Math.log2(rankCount * 2)) - 1;
  const slots = new Int32Array(2 * (mask + 1)).fill(-1);
  const filter = new Uint32Array(1 << 16);
  const pairs = new Int32Array(0x10000).fill(NO_RANK);
  const characters = new Int32Array(0x10000).fill(NO_RANK);
  const bytesRanks = new Int32Array(256).fill(NO_RANK);
  const tokenBytes = bytes.subarray(0, size);
  for (let rank = 0; rank < rankCount; rank++) {
    const start = offsets[rank]!;
    const end = offsets[rank + 1]!;
    if (end === start) continue;
    const hash = hashOf(tokenBytes, start, end);
    let slot = hash & mask;
    while (slots[2 * slot] !== -1) slot = (slot + 1) & mask;
    slots[2 * slot] = rank;
    slots[2 * slot + 1] = hash;
    const mixed = imul(hash, 0x9e3779b1); // the filter reads other bits than the slot index
    filter[mixed >>> 16] |= 1 << ((mixed >>> 11) & 31);
    if (end - start === 1) bytesRanks[tokenBytes[start]!] = rank;
    if (end - start === 2) pairs[(tokenBytes[start]! << 8) | tokenBytes[start + 1]!] = rank;
    const character = end - start === 3 ? threeByteCharacter(tokenBytes, start) : -1;
    if (character >= 0) characters[character] = rank;
  }
  vocabulary = {
    bytes: tokenBytes,
    offsets,
    slots,
    filter,
    mask,
    pairs,
    characters,
    bytesRanks,
    joins: new Int32Array(4 * JOINS).fill(-1),
    pieceEnd: encoding === 'cl100k_base' ? cl100kPieceEnd : o200kPieceEnd,
  };
  vocabularies.set(encoding, vocabulary);
  return vocabulary;
}

// A global read in a hot loop is slow inside a vm context (as under jest): keep a reference.
const imul = Math.imul;

function hashOf(bytes: Uint8Array, start: number, end: number): number {
  let hash = 0x811c9dc5;
  for (let i = start; i < end; i++) hash = imul(hash ^ bytes[i]!, 0x01000193);
  return hash;
}

/** The rank of token left followed by token right, whose bytes are piece[start, end). */
function joinRank(
  vocabulary: Vocabulary,
  left: number,
  right: number,
  piece: Uint8Array,
  start: number,
  end: number,
): number {
  const joins = vocabulary.joins;
  const slot = (imul(imul(left, 0x9e3779b1) ^ right, 0x85ebca6b) >>> (32 - JOIN_BITS)) << 2;
  if (joins[slot] === left && joins[slot + 1] === right) return joins[slot + 2]!;
  const rank = rankOf(vocabulary, piece, start, end);
  joins[slot] = left;
  joins[slot + 1] = right;
  joins[slot + 2] = rank;
  return rank;
}

/** The code point whose UTF-8 is bytes[start, start + 3), or -1. */
function threeByteCharacter(bytes: Uint8Array, start: number): number {
  const lead = bytes[start]!;
  const second = bytes[start + 1]!;
  const third = bytes[start + 2]!;
  if ((lead & 0xf0) !== 0xe0 || (second & 0xc0) !== 0x80 || (third & 0xc0) !== 0x80) return -1;
  const codePoint = ((lead & 0x0f) << 12) | ((second & 0x3f) << 6) | (third & 0x3f);
  return codePoint >= 0x800 ? codePoint : -1;
}

function rankOf(vocabulary: Vocabulary, piece: Uint8Array, start: number, end: number): number {
  // Most lookups in CJK text are whole characters: a table saves hashing them.
  if (end - start === 3) {
    const character = threeByteCharacter(piece, start);
    if (character >= 0) return vocabulary.characters[character]!;
  }
  const { bytes, offsets, slots, filter, mask } = vocabulary;
  const hash = hashOf(piece, start, end);
  const mixed = imul(hash, 0x9e3779b1);
  if ((filter[mixed >>> 16]! & (1 << ((mixed >>> 11) & 31))) === 0) return NO_RANK;
  for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
    const rank = slots[2 * slot]!;
    if (rank < 0) return NO_RANK;
    // The stored hash spares reading the token for most slots that cannot match.
    if (slots[2 * slot + 1] !== hash) continue;
    const offset = offsets[rank]!;
    const length = end - start;
    if (offsets[rank + 1]! - offset !== length) continue;
    let i = 0;
    while (i < length && bytes[offset + i] === piece[start + i]) i++;
    if (i === length) return rank;
  }
}

// Scratch space, grown on demand: the UTF-8 of one piece, its BPE parts and their merge queue
// (a binary heap of candidate merges: the lowest rank first, the leftmost part on a tie).
let pieceBytes = new Uint8Array(1024);
let nextPart = new Int32Array(1024);
let previousPart = new Int32Array(1024);
let mergeRanks = new Int32Array(1024);
let partTokens = new Int32Array(1024);
let queueRanks = new Int32Array(3 * 1024);
let queueParts = new Int32Array(3 * 1024);
let queued = 0;

function enqueue(rank: number, part: number): void {
  if (rank === NO_RANK) return;
  const ranks = queueRanks;
  const parts = queueParts;
  let i = queued++;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (ranks[parent]! < rank || (ranks[parent] === rank && parts[parent]! < part)) break;
    ranks[i] = ranks[parent]!;
    parts[i] = parts[parent]!;
    i = parent;
  }
  ranks[i] = rank;
  parts[i] = part;
}

/** Orders the queue's first `queued` entries into a heap, in linear time. */
function heapify(): void {
  for (let i = (queued >> 1) - 1; i >= 0; i--) siftDown(i, queueRanks[i]!, queueParts[i]!);
}

/** Places the entry (rank, part) at i or below, moving smaller children up. */
function siftDown(i: number, rank: number, part: number): void {
  const ranks = queueRanks;
  const parts = queueParts;
  for (;;) {
    let child = 2 * i + 1;
    if (child >= queued) break;
    const right = child + 1;
    if (
      right < queued &&
      (ranks[right]! < ranks[child]! || (ranks[right] === ranks[child] && parts[right]! < parts[child]!))
    ) {
      child = right;
    }
    if (rank < ranks[child]! || (rank === ranks[child] && part < parts[child]!)) break;
    ranks[i] = ranks[child]!;
    parts[i] = parts[child]!;
    i = child;
  }
  ranks[i] = rank;
  parts[i] = part;
}

/** Removes the head of the queue; read it from queueRanks[0] and queueParts[0] first. */
function dequeue(): void {
  queued--;
  siftDown(0, queueRanks[queued]!, queueParts[queued]!);
}

/**
 * Tokens of the piece in pieceBytes[0, length), two bytes or more and not a token itself:
 * tiktoken's byte_pair_merge (merge the adjacent pair whose bytes form the lowest-ranked token,
 * the leftmost on a tie, until none does), counted. Parts are a linked list named by their
 * first byte, so a merge moves nothing, and candidate merges wait in a binary heap; entries
 * made stale by a merge are skipped.
 */
function bytePairCount(vocabulary: Vocabulary, length: number): number {
  const piece = pieceBytes;
  const next = nextPart;
  const previous = previousPart;
  const ranks = mergeRanks; // rank of part i merged with the part after it
  const tokens = partTokens; // the token each part is
  queued = 0;
  for (let i = 0; i < length; i++) {
    next[i] = i + 1;
    previous[i] = i - 1;
    tokens[i] = vocabulary.bytesRanks[piece[i]!]!;
    ranks[i] = i + 1 < length ? vocabulary.pairs[(piece[i]! << 8) | piece[i + 1]!]! : NO_RANK;
    if (ranks[i] !== NO_RANK) {
      queueRanks[queued] = ranks[i]!;
      queueParts[queued++] = i;
    }
  }
  heapify();
  let parts = length;
  while (queued > 0) {
    const rank = queueRanks[0]!;
    const at = queueParts[0]!;
    dequeue();
    // Stale: the part was merged into its left neighbour, or its right neighbour changed.
    if (next[at]! > length || ranks[at] !== rank) continue;
    const merged = next[at]!;
    const end = next[merged]!;
    next[merged] = length + 1;
    next[at] = end;
    if (end < length) previous[end] = at;
    parts--;
    tokens[at] = rank;
    ranks[at] = end < length ? joinRank(vocabulary, rank, tokens[end]!, piece, at, next[end]!) : NO_RANK;
    enqueue(ranks[at]!, at);
    const before = previous[at]!;
    if (before >= 0) {
      ranks[before] = joinRank(vocabulary, tokens[before]!, rank, piece, before, end);
      enqueue(ranks[before]!, before);
    }
  }
  return parts;
}

/** UTF-8 of text[from, to) into pieceBytes (a lone surrogate becomes U+FFFD, as in TextEncoder). */
function encodePiece(text: string, from: number, to: number): number {
  if ((to - from) * 3 > pieceBytes.length) {
    pieceBytes = new Uint8Array((to - from) * 3);
    nextPart = new Int32Array(pieceBytes.length);
    previousPart = new Int32Array(pieceBytes.length);
    mergeRanks = new Int32Array(pieceBytes.length);
    partTokens = new Int32Array(pieceBytes.length);
    queueRanks = new Int32Array(3 * pieceBytes.length);
    queueParts = new Int32Array(3 * pieceBytes.length);
  }
  const out = pieceBytes;
  let n = 0;
  for (let i = from; i < to; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) {
      out[n++] = unit;
    } else if (unit < 0x800) {
      out[n++] = 0xc0 | (unit >> 6);
      out[n++] = 0x80 | (unit & 0x3f);
    } else if (unit >= 0xd800 && unit <= 0xdfff) {
      const next = i + 1 < to ? text.charCodeAt(i + 1) : 0;
      if (unit <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        const codePoint = ((unit - 0xd800) << 10) + (next - 0xdc00) + 0x10000;
        out[n++] = 0xf0 | (codePoint >> 18);
        out[n++] = 0x80 | ((codePoint >> 12) & 0x3f);
        out[n++] = 0x80 | ((codePoint >> 6) & 0x3f);
        out[n++] = 0x80 | (codePoint & 0x3f);
        i++;
      } else {
        out[n++] = 0xef;
        out[n++] = 0xbf;
        out[n++] = 0xbd;
      }
    } else {
      out[n++] = 0xe0 | (unit >> 12);
      out[n++] = 0x80 | ((unit >> 6) & 0x3f);
      out[n++] = 0x80 | (unit & 0x3f);
    }
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Counting
// ---------------------------------------------------------------------------------------------

type Counter = (text: string) => number;

const counters = new Map<TokenEncoding, Counter>();
/** Bound of each encoding's cache of merged pieces (a few MB when full). */
const MERGED_PIECES = 50_000;
const mergedCaches: Map<string, number>[] = [];
const referenceCounters = new Map<TokenEncoding, Counter>();

// Loading costs time and memory (o200k_base: 0.2 s and 40 MB here, 0.4 s and 85 MB in
// tiktoken), so each encoding loads on first use.
function counterOf(encoding: TokenEncoding): Counter {
  let counter = counters.get(encoding);
  if (!counter) {
    classesOfUnits();
    const vocabulary = vocabularyOf(encoding);
    // Pieces that take more than one token, and their count: prompts repeat (system prompts,
    // chat history sent again on every turn), and a merge costs far more than a lookup.
    const merged = new Map<string, number>();
    mergedCaches.push(merged);
    counter = (text) => {
      let tokens = 0;
      for (let p = 0; p < text.length; ) {
        const end = vocabulary.pieceEnd(text, p);
        const length = encodePiece(text, p, end);
        if (length === 1 || rankOf(vocabulary, pieceBytes, 0, length) !== NO_RANK) {
          tokens++;
        } else {
          const piece = text.slice(p, end);
          let count = merged.get(piece);
          if (count === undefined) {
            count = bytePairCount(vocabulary, length);
            if (merged.size >= MERGED_PIECES) merged.clear();
            merged.set(piece, count);
          }
          tokens += count;
        }
        p = end;
      }
      return tokens;
    };
    counters.set(encoding, counter);
  }
  return counter;
}

function referenceCounterOf(encoding: TokenEncoding): Counter {
  let counter = referenceCounters.get(encoding);
  if (!counter) {
    const { Tiktoken }: typeof import('tiktoken/lite') = require('tiktoken/lite');
    const data = encoderDataOf(encoding);
    const tiktoken = new Tiktoken(data.bpe_ranks, data.special_tokens, data.pat_str);
    // Special-token text such as "<|endoftext|>" is ordinary text in a prompt, as for the API.
    counter = (text) => tiktoken.encode_ordinary(text).length;
    referenceCounters.set(encoding, counter);
  }
  return counter;
}

/** Loads an encoding now (about 0.2 s) rather than on the first request that needs it. */
export function preloadTokenizer(encoding: TokenEncoding): void {
  counterOf(encoding);
}

/** Empties the caches of merged pieces: every text then counts as never seen before. */
export function clearTokenCache(): void {
  for (const cache of mergedCaches) cache.clear();
}

/** Tokens of a text in an encoding. */
export function countTokens(text: string, encoding: TokenEncoding): number {
  if (typeof text !== 'string' || text.length === 0) return 0;
  const enc: TokenEncoding = encoding === 'cl100k_base' ? 'cl100k_base' : 'o200k_base';
  const { reference, cuts } = scan(text);
  const counter = reference ? referenceCounterOf(enc) : counterOf(enc);
  if (cuts.length === 0) return countSafely(counter, text);
  let tokens = 0;
  let start = 0;
  for (const cut of cuts) {
    tokens += countSafely(counter, text.slice(start, cut));
    start = cut;
  }
  return tokens + countSafely(counter, text.slice(start));
}

function countSafely(counter: Counter, text: string): number {
  try {
    return counter(text);
  } catch {
    // Counting cannot fail on any string; if it did, a token never holds less than a byte.
    return Buffer.byteLength(text, 'utf8');
  }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/**
 * Non-OpenAI models are counted as o200k_base tokens times this factor, rounded up. Their
 * tokenizers are not public (Claude, Gemini) or not bundled here (Llama, Mistral, Qwen), and a
 * budget must not under-count: under-counting lets a request overshoot a hard cap, over-counting
 * only refuses a little early. Why 1.5: o200k is among the most frugal tokenizers in use, so
 * others mostly need more tokens for the same text. A published comparison put Claude 3.x at
 * about +16% on English, +21% on maths and +30% on Python against GPT-4o's o200k; Llama 3's
 * tokenizer is cl100k plus 28k tokens for other languages, and cl100k needs as many tokens as
 * o200k on English and code but 1.49x on CJK (measured in docs/benchmarks-tokens.md); Gemini
 * and Gemma use a 256k vocabulary, larger than o200k's. 1.5 covers these. Known to fall short:
 * 32k-vocabulary models (Llama 2, Mistral 7B v0.1-v0.3) on CJK, which can need over twice
 * o200k's count.
 */
export const APPROXIMATE_FACTOR = 1.5;

// OpenAI cookbook, "How to count tokens with tiktoken": every message costs 3 tokens of chat
// format, a `name` one more, and every reply is primed with 3.
const TOKENS_PER_MESSAGE = 3;
const TOKENS_PER_NAME = 1;
const REPLY_PRIMING = 3;

/** Prompt tokens of an OpenAI-format request body sent to `model` (the upstream model name). */
export function countPromptTokens(
  endpoint: Endpoint,
  body: Record<string, unknown> | undefined,
  model: string,
): PromptCount {
  const encoding = encodingFor(model);
  const tally = { text: 0, exact: 0 };
  try {
    if (body !== null && typeof body === 'object') {
      const enc = encoding ?? 'o200k_base';
      if (endpoint === 'chat.completions') countChat(body, enc, imageRuleFor(model), tally);
      else if (endpoint === 'completions') countInput(body.prompt, enc, tally);
      else if (endpoint === 'embeddings') countInput(body.input, enc, tally);
    }
  } catch {
    // Counting never fails a request: whatever was counted before the oddity stands.
  }
  if (encoding) return { tokens: tally.text + tally.exact, method: encoding };
  return { tokens: Math.ceil(tally.text * APPROXIMATE_FACTOR) + tally.exact, method: 'approximate' };
}

/** Tokens of generated text (for counting a streamed answer when the provider reports no usage). */
export function countOutputTokens(text: string, model: string): number {
  if (typeof text !== 'string' || text.length === 0) return 0;
  const encoding = encodingFor(model);
  if (encoding) return countTokens(text, encoding);
  return Math.ceil(countTokens(text, 'o200k_base') * APPROXIMATE_FACTOR);
}

interface Tally {
  /** Tokens counted with an OpenAI encoding (scaled for other models). */
  text: number;
  /** Tokens given as token ids: already in the model's own vocabulary. */
  exact: number;
}

function countChat(body: Record<string, unknown>, enc: TokenEncoding, images: ImageRule, tally: Tally): void {
  const messages = body.messages;
  if (Array.isArray(messages)) {
    for (const message of messages) {
      if (message === null || typeof message !== 'object' || Array.isArray(message)) continue;
      tally.text += TOKENS_PER_MESSAGE;
      for (const [key, value] of Object.entries(message)) {
        if (key === 'content' && Array.isArray(value)) countParts(value, enc, images, tally);
        else tally.text += valueTokens(value, enc);
        if (key === 'name' && typeof value === 'string') tally.text += TOKENS_PER_NAME;
      }
    }
    tally.text += REPLY_PRIMING;
  }
  // OpenAI renders tool and function definitions and JSON schemas into the prompt in its own
  // compact format; their JSON text is an approximation that comes out a little higher.
  const schema = (body.response_format as { json_schema?: unknown } | null | undefined)?.json_schema;
  for (const value of [body.tools, body.functions, schema]) {
    if (value !== null && typeof value === 'object') tally.text += valueTokens(value, enc);
  }
}

/** A message field: strings as text, objects (tool_calls, function_call, audio) as JSON text. */
function valueTokens(value: unknown, enc: TokenEncoding): number {
  if (typeof value === 'string') return countTokens(value, enc);
  if (value === null || typeof value !== 'object') return 0;
  return countTokens(jsonText(value), enc);
}

function jsonText(value: unknown): string {
  try {
    return JSON.stringify(value) ?? '';
  } catch {
    return ''; // cycles and BigInts cannot come from a parsed body
  }
}

function countParts(parts: unknown[], enc: TokenEncoding, images: ImageRule, tally: Tally): void {
  for (const part of parts) {
    if (typeof part === 'string') {
      tally.text += countTokens(part, enc);
      continue;
    }
    if (part === null || typeof part !== 'object') continue;
    const { type, text, image_url } = part as { type?: unknown; text?: unknown; image_url?: unknown };
    if (typeof text === 'string') tally.text += countTokens(text, enc);
    else if (type === 'image_url' || image_url !== undefined) tally.text += imageTokens(image_url, images);
    // Audio and file parts are not estimated: their size needs decoding; usage settles them.
  }
}

/** `prompt` / `input`: a string, strings, token ids, or arrays of token ids. */
function countInput(input: unknown, enc: TokenEncoding, tally: Tally): void {
  if (typeof input === 'string') {
    tally.text += countTokens(input, enc);
    return;
  }
  if (!Array.isArray(input)) return;
  for (const item of input) {
    if (typeof item === 'string') tally.text += countTokens(item, enc);
    else if (typeof item === 'number') tally.exact += 1;
    else if (Array.isArray(item)) tally.exact += item.length;
  }
}

// ---------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------

/**
 * OpenAI's image pricing ("Images and vision" guide). Tile models: `detail: low` costs the
 * base tokens; high detail scales the image into 2048x2048, then its short side to 768, and
 * adds a tile price per 512px tile. That allows at most 2x4 tiles, so an image of unknown size
 * at high or auto detail is counted as 8 tiles. Patch models count 32px patches, at most 1536,
 * times a model factor, whatever the detail.
 */
type ImageRule = { kind: 'tiles'; base: number; tile: number } | { kind: 'patches'; factor: number };

const MAX_TILES = 8;
const MAX_PATCHES = 1536;
const DEFAULT_TILES: ImageRule = { kind: 'tiles', base: 85, tile: 170 };

// Models whose documented price is higher than the default; lower ones (o1, o3, gpt-5) keep
// the default, which then errs high.
const IMAGE_RULES: [RegExp, ImageRule][] = [
  [/^gpt-4o-mini(?:$|[-:@])/, { kind: 'tiles', base: 2833, tile: 5667 }],
  [/^gpt-(?:4\.1|5(?:\.\d+)?)-nano(?:$|[-:@])/, { kind: 'patches', factor: 2.46 }],
  [/^gpt-(?:4\.1|5(?:\.\d+)?)-mini(?:$|[-:@])/, { kind: 'patches', factor: 1.62 }],
  [/^o4-mini(?:$|[-:@])/, { kind: 'patches', factor: 1.72 }],
];

function imageRuleFor(model: string): ImageRule {
  const name = baseModelName(model);
  for (const [pattern, rule] of IMAGE_RULES) if (pattern.test(name)) return rule;
  return DEFAULT_TILES;
}

function imageTokens(imageUrl: unknown, rule: ImageRule): number {
  if (rule.kind === 'patches') return Math.ceil(MAX_PATCHES * rule.factor);
  const detail = (imageUrl as { detail?: unknown } | null)?.detail;
  return detail === 'low' ? rule.base : rule.base + MAX_TILES * rule.tile;
}
