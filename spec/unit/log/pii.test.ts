import fc from 'fast-check';
import { type PiiKind, Redactor } from '../../../lib/log/pii';

const ALL: PiiKind[] = ['email', 'phone', 'credit_card', 'iban', 'ip_address', 'us_ssn'];
const redact = (text: string, pii: PiiKind[] = ALL) => new Redactor({ pii }).apply(text);

describe('Redactor', () => {
  it.each([
    ['email', 'write to jane.doe+ai@example.co.uk today', 'write to [REDACTED:email] today'],
    ['phone', 'call +1 (415) 555-0100 now', 'call [REDACTED:phone] now'],
    ['phone', 'tel 030 1234 5678', 'tel [REDACTED:phone]'],
    ['credit_card', 'card 4111 1111 1111 1111 exp', 'card [REDACTED:credit_card] exp'],
    ['credit_card', 'card 5500-0000-0000-0004', 'card [REDACTED:credit_card]'],
    ['iban', 'IBAN DE89 3704 0044 0532 0130 00 please', 'IBAN [REDACTED:iban] please'],
    ['iban', 'to GB82WEST12345698765432.', 'to [REDACTED:iban].'],
    [
      'ip_address',
      'from 192.168.10.254 and 2001:db8:85a3::8a2e:370:7334',
      'from [REDACTED:ip_address] and [REDACTED:ip_address]',
    ],
    ['us_ssn', 'ssn 123-45-6789', 'ssn [REDACTED:us_ssn]'],
  ])('%s: %s', (_kind, text, expected) => {
    expect(redact(text)).toBe(expected);
  });

  it('leaves look-alikes that fail the checksum or the shape', () => {
    // Luhn fails, IBAN checksum fails, a date, a version, an invalid SSN, a short number.
    for (const text of [
      'order 4111 1111 1111 1112',
      'DE89 3704 0044 0532 0130 02',
      'on 2024-01-15 at 10:30',
      'version 1.2.3',
      'room 1234',
    ]) {
      expect(redact(text)).toBe(text);
    }
    expect(redact('ssn 000-12-3456', ['us_ssn'])).toBe('ssn 000-12-3456');
  });

  it('always removes provider keys and bearer tokens, even with no PII kind chosen', () => {
    const out = redact('key sk-proj-abcdefghijklmnop and Bearer eyJhbGciOiJIUzI1NiJ9.x.y', []);
    expect(out).not.toContain('sk-proj-abcdefghijklmnop');
    expect(out).not.toContain('eyJhbGciOiJIUzI1NiJ9');
    expect(out).toContain('[REDACTED len=');
  });

  it('applies only the chosen kinds, and operator patterns by name', () => {
    const r = new Redactor({ pii: ['email'], patterns: [{ name: 'ticket', pattern: 'TCK-\\d{6}' }] });
    expect(r.apply('a@b.io 123-45-6789 TCK-004211')).toBe('[REDACTED:email] 123-45-6789 [REDACTED:ticket]');
  });

  it('never throws and never grows a clean text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (text) => {
        const out = redact(text);
        expect(typeof out).toBe('string');
        if (!/[@\d]|sk-|Bearer|Basic/.test(text)) expect(out).toBe(text);
      }),
    );
  });
});
