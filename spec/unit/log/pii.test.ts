import fc from 'fast-check';
import { findEntities, NATIONAL_ID_KINDS, type PiiKind, Redactor } from '../../../lib/log/pii';

const ALL: PiiKind[] = ['email', 'phone', 'credit_card', 'iban', 'ip_address', ...NATIONAL_ID_KINDS];
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
    ['phone', 'appelez le +33 6 12 34 56 78', 'appelez le [REDACTED:phone]'],
    ['phone', 'compact +14155550100.', 'compact [REDACTED:phone].'],
    ['iban', 'IBAN DE89 3704 0044 0532 0130 00 EUR 500', 'IBAN [REDACTED:iban] EUR 500'],
    ['us_ssn', 'ssn 123-45-6789', 'ssn [REDACTED:us_ssn]'],
    ['uk_nino', 'NI number AB 12 34 56 C ok', 'NI number [REDACTED:uk_nino] ok'],
    ['uk_nino', 'NI AB123456C', 'NI [REDACTED:uk_nino]'],
    ['fr_nir', 'NIR 2 55 08 14 168 025 38', 'NIR [REDACTED:fr_nir]'],
    ['fr_nir', 'NIR corse 2 85 01 2A 123 456 16', 'NIR corse [REDACTED:fr_nir]'],
    ['es_dni', 'DNI 12345678Z y NIE X1234567L', 'DNI [REDACTED:es_dni] y NIE [REDACTED:es_dni]'],
    ['it_codice_fiscale', 'CF RSSMRA85T10A562S', 'CF [REDACTED:it_codice_fiscale]'],
    ['it_codice_fiscale', 'omocodia RSSMRA85T10A56NH', 'omocodia [REDACTED:it_codice_fiscale]'],
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
      'logged 2024-01-15 10:30:00 and 15.01.2024 12:00',
      'build 10.0.19045.2965',
      'call std::vector or ::',
      'NIR 2 55 08 14 168 025 39',
      'DNI 12345678A',
      'CF RSSMRA85T10A562T',
      'NI GB 12 34 56 C and QQ 12 34 56 C',
      'mail root@localhost',
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

  it('masks secrets of every known shape, and only the value after a secret name', () => {
    const jwt =
      'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U';
    const pem = '-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----';
    for (const secret of [
      'sk-ant-api03-abcdefghijklmnop',
      'AKIAIOSFODNN7EXAMPLE',
      'AIzaSyA1234567890abcdefghijkl',
      'ghp_0123456789abcdefghijABCDEFGHIJ012345',
      'xoxb-1234567890-abcdefghij',
      'sk_live_0123456789abcdefABCD',
      'hf_abcdefghijklmnopqrstuvwxyz012345',
      jwt,
      pem,
    ]) {
      const out = redact(`see ${secret} here`, []);
      expect(out).toMatch(/^see \[REDACTED len=\d+ hash=[0-9a-f]{8}\] here$/);
    }
    expect(redact('{"password": "hunter2hunter2"}', [])).toMatch(
      /^\{"password": "\[REDACTED len=14 hash=\w{8}\]"\}$/,
    );
    expect(redact('AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', [])).toMatch(
      /^AWS_SECRET_ACCESS_KEY=\[REDACTED len=40/,
    );
    // A key block cut short is still hidden, to the end of the text.
    expect(redact('key: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg', [])).toMatch(
      /^key: \[REDACTED len=\d+ hash=\w{8}\]$/,
    );
    // Prose about the schemes is left alone.
    expect(redact('Send Bearer tokens with Basic authentication', [])).toBe(
      'Send Bearer tokens with Basic authentication',
    );
  });

  it('finds entities in text order without overlaps, a more specific kind claiming its value', () => {
    const text = 'card 4111 1111 1111 1111, mail a@b.io, NIR 2 55 08 14 168 025 38';
    expect(findEntities(text, new Set(ALL)).map((e) => [e.kind, e.value])).toEqual([
      ['credit_card', '4111 1111 1111 1111'],
      ['email', 'a@b.io'],
      ['fr_nir', '2 55 08 14 168 025 38'],
    ]);
    // The NIR is not chosen: it stays, and is not taken for a phone number either.
    expect(findEntities(text, new Set(['phone']))).toEqual([]);
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
        if (!/[@\d:=]|sk-|Bearer|Basic|-----/.test(text)) expect(out).toBe(text);
      }),
    );
  });
});
