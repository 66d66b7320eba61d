import { isIP } from 'node:net';
import { scrubText } from './redact';

/** Built-in detectors of personal data in free text. */
export type PiiKind = 'email' | 'phone' | 'credit_card' | 'iban' | 'ip_address' | 'us_ssn';

interface Detector {
  pattern: RegExp;
  /** Confirms a match the pattern alone would over-report (checksums, digit counts). */
  accept?: (match: string) => boolean;
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

/** ISO 13616: the IBAN, rearranged and read as a number, is 1 modulo 97. */
function ibanChecksum(iban: string): boolean {
  const compact = iban.replace(/ /g, '');
  const rearranged = compact.slice(4) + compact.slice(0, 4);
  let rest = 0;
  for (const ch of rearranged) {
    const value = ch >= 'A' ? ch.charCodeAt(0) - 55 : ch.charCodeAt(0) - 48;
    rest = (value > 9 ? rest * 100 + value : rest * 10 + value) % 97;
  }
  return rest === 1;
}

const DETECTORS: Record<PiiKind, Detector> = {
  // Before phone and card: an IBAN is mostly digits.
  iban: { pattern: /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b/g, accept: ibanChecksum },
  credit_card: {
    pattern: /\b\d(?:[ -]?\d){12,18}\b/g,
    accept: (m) => luhn(digits(m)),
  },
  email: { pattern: /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g },
  us_ssn: { pattern: /\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b/g },
  // Before phone: a dotted IPv4 address looks like digit groups. Candidates, confirmed by node:net.
  ip_address: {
    pattern:
      /(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.])|(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])/g,
    accept: (m) => isIP(m) !== 0,
  },
  // Digit groups with separators, 9 to 15 digits (E.164): a date or a version has fewer.
  phone: {
    pattern: /(?<![\w.])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}(?![\w.])/g,
    accept: (m) => {
      const n = digits(m).length;
      return n >= 9 && n <= 15;
    },
  },
};

/** A pattern of an operator's, by name. */
export interface RedactPattern {
  name: string;
  pattern: string;
}

/**
 * Removes secrets (always: provider keys, bearer tokens), the chosen PII kinds and an
 * operator's own patterns from free text, each match becoming `[REDACTED:<kind>]`.
 * Built once per config; `apply` is pure.
 */
export class Redactor {
  private readonly rules: Array<{ name: string } & Detector>;

  constructor(options: { pii: readonly PiiKind[]; patterns?: readonly RedactPattern[] }) {
    const own = (options.patterns ?? []).map((p) => ({ name: p.name, pattern: new RegExp(p.pattern, 'g') }));
    const builtIn = (Object.keys(DETECTORS) as PiiKind[])
      .filter((kind) => options.pii.includes(kind))
      .map((kind) => ({ name: kind, ...DETECTORS[kind] }));
    this.rules = [...own, ...builtIn];
  }

  apply(text: string): string {
    let out = scrubText(text);
    for (const rule of this.rules) {
      out = out.replace(rule.pattern, (m) =>
        rule.accept && !rule.accept(m) ? m : `[REDACTED:${rule.name}]`,
      );
    }
    return out;
  }
}
