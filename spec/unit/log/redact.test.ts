import { redact, scrubText } from '../../../lib/log/redact';

describe('redact', () => {
  it('masks secret-named fields and secret lookalikes at any depth, copying what it changes', () => {
    const line = {
      route: 'ai',
      headers: { Authorization: 'Bearer abcdefgh123', 'x-trace': 'ok' },
      nested: [{ api_key: 'plain-value-1234' }, 'say sk-proj-abcdefghijklmnop'],
      count: 3,
    };
    const out = redact(line) as typeof line;
    expect(out).not.toBe(line);
    expect(out.route).toBe('ai');
    expect(out.headers.Authorization).toMatch(/^\[REDACTED len=18 hash=\w{8}\]$/);
    expect(out.headers['x-trace']).toBe('ok');
    expect((out.nested[0] as { api_key: string }).api_key).toMatch(/^\[REDACTED len=16/);
    expect(out.nested[1]).toMatch(/^say \[REDACTED len=24 hash=\w{8}\]$/);
    // The caller's object is left as it was.
    expect(line.headers.Authorization).toBe('Bearer abcdefgh123');
    expect(line.nested[1]).toBe('say sk-proj-abcdefghijklmnop');
  });

  it('returns a clean value itself, without copying', () => {
    const clean = { route: 'ai', usage: { input_tokens: 3 }, attempts: [{ target: 'a' }], ok: true };
    expect(redact(clean)).toBe(clean);
  });

  it('masks a non-string secret field whole, and stops at a bounded depth', () => {
    expect(redact({ credentials: { user: 'u', pass: 'p' } })).toEqual({ credentials: '[REDACTED]' });
    let deep: Record<string, unknown> = { leaf: 'sk-proj-abcdefghijklmnop' };
    for (let i = 0; i < 20; i++) deep = { child: deep };
    expect(() => redact(deep)).not.toThrow();
  });

  it('scrubs the same secret shapes in free text as prompt redaction finds, and only those', () => {
    expect(scrubText('token: abcd1234efgh and AKIAIOSFODNN7EXAMPLE')).toMatch(
      /^token: \[REDACTED len=12 hash=\w{8}\] and \[REDACTED len=20 hash=\w{8}\]$/,
    );
    // Personal data is not a secret: logs mask it only when the operator asks (Redactor).
    const clean = 'mail a@b.io from 10.0.0.1, Bearer tokens';
    expect(scrubText(clean)).toBe(clean);
  });

  it.each([
    '-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----',
    'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U',
    'sk-proj-abcdefghijklmnop',
    'sk-ant-api03-abcdefghijkl',
    'ASIAIOSFODNN7EXAMPLE',
    'AIzaSyA1234567890abcdefghijklmn',
    'ghp_abcdefghijklmnopqrstuvwxyz12',
    'github_pat_abcdefghijklmnopqrstuvw',
    'glpat-abcdefghijklmnopqrstu',
    'xoxb-1234567890-abcdefghij',
    'sk_live_abcdefghijklmnop12',
    'rk_test_abcdefghijklmnop12',
    'hf_abcdefghijklmnopqrstuvwxyz123456',
    'gsk_abcdefghijklmnopqrstuvwx',
    'xai-abcdefghijklmnopqrstuvwx',
    'Bearer abcdef123456',
    'Basic dXNlcjpwYXNzd29yZA==',
    'API-KEY=abcdefgh1234',
    'ACCESS_KEY_ID: abcdefgh1234',
    'client_secret="abcdefgh1234"',
    'Password=abcdefgh1234',
    'pwd: abcdefgh1234',
    'session-token=abcdefgh1234',
  ])('finds %s behind the quick pre-check', (secret) => {
    const out = scrubText(`before ${secret} after`);
    expect(out).toMatch(/\[REDACTED len=\d+ hash=\w{8}\]/);
    expect(out.includes(secret)).toBe(false);
  });
});
