import { createHash } from 'node:crypto';
import { isIP } from 'node:net';

/**
 * Detectors of personal data and secrets in free text, shared by log redaction (`Redactor`,
 * `scrubText`) and prompt redaction before untrusted providers (plugins/ai-router/redaction).
 *
 * National ids recognised: US SSN (area/group/serial rules), UK National Insurance number
 * (HMRC prefix rules; it has no check digit), French NIR / INSEE number (mod-97 key, Corsica
 * 2A/2B), Spanish DNI and NIE (mod-23 letter), Italian codice fiscale (check letter,
 * omocodia digits accepted).
 */
export type NationalIdKind = 'us_ssn' | 'uk_nino' | 'fr_nir' | 'es_dni' | 'it_codice_fiscale';
export type PiiKind = 'email' | 'phone' | 'credit_card' | 'iban' | 'ip_address' | NationalIdKind;
/** Provider keys, bearer tokens, AWS access keys, JWTs, private key blocks, `password=...` values. */
export type EntityKind = PiiKind | 'secret';

export const NATIONAL_ID_KINDS: readonly NationalIdKind[] = [
  'us_ssn',
  'uk_nino',
  'fr_nir',
  'es_dni',
  'it_codice_fiscale',
];

/** One match in a text: `text.slice(start, end) === value`. */
export interface Entity {
  kind: string;
  start: number;
  end: number;
  value: string;
}

export interface Detector {
  kind: string;
  /** Global (`g`); with `d` too when `group` is set. */
  pattern: RegExp;
  /** Capture group holding the value (the rest of the match is context, e.g. `password=`). */
  group?: number;
  /**
   * Confirms a match the pattern alone would over-report (checksums, digit counts): false to
   * reject, or the length of the prefix that is the value (a pattern that read too far).
   */
  accept?: (match: string) => boolean | number;
}

const digits = (s: string) => s.replace(/\D/g, '');

/** The Luhn checksum every payment card number passes. */
function luhn(number: string): boolean {
  let sum = 0;
  for (let i = 0; i < number.length; i++) {
    let d = number.charCodeAt(number.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/** The remainder of a long decimal or alphanumeric (A=10 ... Z=35) number modulo 97. */
function mod97(text: string): number {
  let rest = 0;
  for (const ch of text) {
    const value = ch >= 'A' ? ch.charCodeAt(0) - 55 : ch.charCodeAt(0) - 48;
    rest = (value > 9 ? rest * 100 + value : rest * 10 + value) % 97;
  }
  return rest;
}

/**
 * ISO 13616: the IBAN, rearranged, is 1 modulo 97. The pattern may have read words in
 * capitals after the IBAN (`... 0130 00 EUR`), so groups are dropped from the end until it
 * checks out.
 */
function ibanLength(match: string): number {
  for (let end = match.length; end > 0; end = match.lastIndexOf(' ', end - 1)) {
    const compact = match.slice(0, end).replace(/ /g, '');
    if (compact.length < 15) return 0;
    if (mod97(compact.slice(4) + compact.slice(0, 4)) === 1) return end;
  }
  return 0;
}

/** French NIR: the last two digits are 97 minus the first 13 modulo 97 (2A → 19, 2B → 18). */
function nirKey(match: string): boolean {
  const compact = match.replace(/ /g, '');
  const body = compact.slice(0, 13).replace('2A', '19').replace('2B', '18');
  return 97 - mod97(body) === Number(compact.slice(13));
}

/** Spanish DNI (8 digits) or NIE (X/Y/Z then 7 digits): the letter is the number modulo 23. */
function dniLetter(match: string): boolean {
  const compact = match.replace(/[ -]/g, '');
  const number = Number(compact.slice(0, -1).replace(/^[XYZ]/, (l) => String('XYZ'.indexOf(l))));
  return 'TRWAGMYFPDXBNJZSQVHLCKE'[number % 23] === compact.slice(-1);
}

/** Values of characters at odd positions (1st, 3rd...) of a codice fiscale, digits as A..J. */
const CF_ODD = [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23];

/** Italian codice fiscale: the 16th letter is a weighted sum of the first 15 modulo 26. */
function codiceFiscaleCheck(match: string): boolean {
  let sum = 0;
  for (let i = 0; i < 15; i++) {
    const c = match.charCodeAt(i);
    const value = c <= 57 ? c - 48 : c - 65;
    sum += i % 2 === 0 ? CF_ODD[value] : value;
  }
  return String.fromCharCode(65 + (sum % 26)) === match[15];
}

/** A phone candidate that is really a date (`2024-01-15 10`, `15.01.2024`). */
const DATE =
  /(?:19|20)\d\d[-./](?:0?[1-9]|1[0-2])[-./](?:0?[1-9]|[12]\d|3[01])|(?:0?[1-9]|[12]\d|3[01])[-./](?:0?[1-9]|1[0-2])[-./](?:19|20)\d\d/;

/** The shape of a US SSN, valid or not: never a phone number. */
const SSN_SHAPE = /^\d{3}-\d{2}-\d{4}$/;

const SECRET_NAMES =
  'api[_-]?key|access[_-]?key(?:[_-]?id)?|secret(?:[_-]?(?:access[_-]?)?key)?|client[_-]?secret|account[_-]?key|password|passwd|pwd|(?:access|auth|refresh|session)[_-]?token|token';

/**
 * Every secret detector below needs one of these substrings (keep them in step): a text with
 * none holds no secret, and one test of this pattern is far cheaper than the detectors.
 */
const SECRET_HINT =
  /BEGIN|eyJ|sk-|AKIA|ASIA|ABIA|ACCA|AIza|gh[pousr]_|github_pat_|glpat-|xox|k_live_|k_test_|hf_|gsk_|xai-|Bearer|Basic|key|secret|passw|pwd|token/i;

/** False when `text` cannot hold a secret any detector finds. */
export function mayHoldSecret(text: string): boolean {
  return SECRET_HINT.test(text);
}

/** Secrets, most specific first. Exported so `scrubText` runs exactly these. */
export const SECRET_DETECTORS: readonly Detector[] = [
  // A block cut short is masked to the end of the text.
  {
    kind: 'secret',
    pattern:
      /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|$)/g,
  },
  // JWT: base64url of `{"` opens both header and payload.
  { kind: 'secret', pattern: /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g },
  // OpenAI and Anthropic (sk-, sk-ant-), AWS access key ids, Google, GitHub, GitLab, Slack,
  // Stripe, Hugging Face, Groq, xAI.
  {
    kind: 'secret',
    pattern:
      /\b(?:sk-[A-Za-z0-9_-]{8,}|(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b|AIza[0-9A-Za-z_-]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}|[rsp]k_(?:live|test)_[A-Za-z0-9]{16,}|hf_[A-Za-z0-9]{30,}|gsk_[A-Za-z0-9]{20,}|xai-[A-Za-z0-9]{20,})/g,
  },
  // Any word of 6 or more after the scheme, except the few that make it prose ("Bearer tokens").
  {
    kind: 'secret',
    pattern:
      /\b(?:Bearer|Basic)\s+(?!(?:tokens?|auth(?:entication|orization)?|schemes?|headers?|realm|credentials?|prefix)\b)[A-Za-z0-9._~+/=-]{6,}/g,
  },
  {
    kind: 'secret',
    pattern: new RegExp(`(?<![A-Za-z0-9])(?:${SECRET_NAMES})["']?\\s*[:=]\\s*["']?([^\\s"'\`,;]{8,})`, 'gid'),
    group: 1,
  },
];

/** Personal data, in the order overlaps are settled: checksummed and specific kinds first. */
const PII_DETECTORS: readonly Detector[] = [
  { kind: 'iban', pattern: /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b/g, accept: ibanLength },
  {
    kind: 'fr_nir',
    pattern: /\b[1-478] ?\d\d ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d\d|2[AB]) ?\d{3} ?\d{3} ?\d\d\b/g,
    accept: nirKey,
  },
  { kind: 'es_dni', pattern: /\b(?:\d{8}|[XYZ]\d{7})[ -]?[A-Z]\b/g, accept: dniLetter },
  {
    kind: 'it_codice_fiscale',
    pattern: /\b[A-Z]{6}[\dLMNP-V]{2}[ABCDEHLMPRST][\dLMNP-V]{2}[A-Z][\dLMNP-V]{3}[A-Z]\b/g,
    accept: codiceFiscaleCheck,
  },
  // HMRC: no D, F, I, Q, U, V; no O second; BG, GB, KN, NK, NT, TN, ZZ never issued.
  {
    kind: 'uk_nino',
    pattern: /\b(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d\d ?\d\d ?\d\d ?[A-D]\b/g,
  },
  { kind: 'us_ssn', pattern: /\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b/g },
  // Issuers' first digits are 2 to 6 (Mastercard 2-series, Amex 3, Visa 4, Mastercard 5, Discover/UnionPay 6).
  { kind: 'credit_card', pattern: /\b[2-6](?:[ -]?\d){12,18}\b/g, accept: (m) => luhn(digits(m)) },
  { kind: 'email', pattern: /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g },
  // Before phone: a dotted IPv4 address looks like digit groups. Candidates, confirmed by node:net.
  {
    kind: 'ip_address',
    pattern:
      /(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.])|(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])/g,
    accept: (m) => m.length > 2 && isIP(m) !== 0,
  },
  // A whole run of digit groups with separators, or E.164 written compact: 9 to 15 digits (a
  // date or a version has fewer).
  {
    kind: 'phone',
    pattern:
      /(?<![\w.]|\d[ .-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){1,4}(?![\w.]|[ .-]\d)|(?<![\w+])\+[1-9]\d{8,14}\b/g,
    accept: (m) => {
      const n = digits(m).length;
      return n >= 9 && n <= 15 && !DATE.test(m) && !SSN_SHAPE.test(m);
    },
  },
];

const ALL_DETECTORS: readonly Detector[] = [...SECRET_DETECTORS, ...PII_DETECTORS];

/**
 * The entities of the chosen kinds in `text`, in text order and never overlapping. Every
 * detector up to the last chosen one runs, so a value claimed by a more specific kind that
 * was not chosen (a card number is no phone number) stays as it is. `extra` detectors (an
 * operator's patterns) come before the built-in ones.
 */
export function findEntities(
  text: string,
  kinds: ReadonlySet<string>,
  extra: readonly Detector[] = [],
): Entity[] {
  const detectors = extra.length > 0 ? [...extra, ...ALL_DETECTORS] : ALL_DETECTORS;
  let last = -1;
  detectors.forEach((d, i) => {
    if (kinds.has(d.kind) || i < extra.length) last = i;
  });
  // Sorted by start, never overlapping.
  const taken: Entity[] = [];
  for (let i = 0; i <= last; i++) {
    for (const found of matches(text, detectors[i])) {
      const at = firstEndingAfter(taken, found.start);
      if (at === taken.length || taken[at].start >= found.end) taken.splice(at, 0, found);
    }
  }
  return taken.filter((e) => kinds.has(e.kind) || extra.some((d) => d.kind === e.kind));
}

/** Index of the first of the sorted, disjoint entities that ends after `offset`. */
function firstEndingAfter(entities: readonly Entity[], offset: number): number {
  let lo = 0;
  let hi = entities.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (entities[mid].end <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function* matches(text: string, detector: Detector): Generator<Entity> {
  for (const m of text.matchAll(detector.pattern)) {
    if (m[0].length === 0) continue;
    let start = m.index;
    let value = m[0];
    if (detector.group !== undefined) {
      const span = m.indices?.[detector.group];
      if (!span) continue;
      start = span[0];
      value = text.slice(span[0], span[1]);
    }
    const verdict = detector.accept ? detector.accept(value) : true;
    if (verdict === false || verdict === 0) continue;
    if (typeof verdict === 'number') value = value.slice(0, verdict);
    yield { kind: detector.kind, start, end: start + value.length, value };
  }
}

/** `text` with each entity replaced; the very string when there are none. */
export function replaceEntities(
  text: string,
  entities: readonly Entity[],
  by: (e: Entity) => string,
): string {
  if (entities.length === 0) return text;
  let out = '';
  let at = 0;
  for (const e of entities) {
    out += text.slice(at, e.start) + by(e);
    at = e.end;
  }
  return out + text.slice(at);
}

function shortHash(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 8);
}

/** `[REDACTED len=N hash=H]`: enough to correlate two log lines, never enough to recover. */
export function maskSecret(value: string): string {
  return `[REDACTED len=${value.length} hash=${shortHash(value)}]`;
}

/** A pattern of an operator's, by name. */
export interface RedactPattern {
  name: string;
  pattern: string;
}

/**
 * Removes secrets (always, as `[REDACTED len=N hash=H]`), the chosen PII kinds and an
 * operator's own patterns from free text, each of those becoming `[REDACTED:<kind>]`.
 * Built once per config; `apply` is pure.
 */
export class Redactor {
  private readonly kinds: ReadonlySet<string>;
  private readonly own: readonly Detector[];

  constructor(options: { pii: readonly PiiKind[]; patterns?: readonly RedactPattern[] }) {
    this.kinds = new Set<string>(['secret', ...options.pii]);
    this.own = (options.patterns ?? []).map((p) => ({ kind: p.name, pattern: new RegExp(p.pattern, 'g') }));
  }

  apply(text: string): string {
    const found = findEntities(text, this.kinds, this.own);
    return replaceEntities(text, found, (e) =>
      e.kind === 'secret' ? maskSecret(e.value) : `[REDACTED:${e.kind}]`,
    );
  }
}
