import type { Target } from '../../../lib/context';
import { GatewayError } from '../../../lib/errors';
import { headerSafe, passThroughHeaders } from '../../../lib/relay/headers';
import { isLoopback } from '../../../lib/relay/server';
import { upstreamFailure } from '../../../lib/relay/upstream';
import { errorTypeForStatus, scrubProviderText } from '../../../lib/relay/upstream-error';

const target: Target = {
  name: 't',
  provider: 'openai',
  model: 'm',
  base_url: 'http://127.0.0.1:1/v1',
  headers: {},
  timeouts: { connect_ms: 11, first_byte_ms: 22, idle_ms: 33, total_ms: 44 },
};

const errno = (code: string) => Object.assign(new Error(code), { code });

describe('isLoopback', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.8.9.1', true],
    ['::1', true],
    ['::ffff:127.0.0.1', true],
    ['10.0.0.1', false],
    ['::ffff:10.0.0.1', false],
    ['192.168.1.127', false],
    ['fe80::1', false],
    [undefined, false],
  ])('%s → %s', (address, expected) => {
    expect(isLoopback(address)).toBe(expected);
  });
});

describe('upstreamFailure', () => {
  it('maps refused and reset connections to 502 AIGW_UPSTREAM_UNAVAILABLE', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'UND_ERR_SOCKET']) {
      const err = upstreamFailure(errno(code), target);
      expect([err.code, err.status]).toEqual(['AIGW_UPSTREAM_UNAVAILABLE', 502]);
    }
    // Happy eyeballs wraps the per-address errors.
    const aggregate = new AggregateError([errno('ECONNREFUSED')], 'all failed');
    expect(upstreamFailure(aggregate, target).message).toContain('ECONNREFUSED');
  });

  it('maps every timeout to 504 AIGW_UPSTREAM_TIMEOUT naming the limit', () => {
    const cases: [unknown, string | undefined, string][] = [
      [errno('UND_ERR_CONNECT_TIMEOUT'), undefined, '11 ms'],
      [errno('UND_ERR_HEADERS_TIMEOUT'), undefined, '22 ms'],
      [errno('UND_ERR_BODY_TIMEOUT'), undefined, '33 ms'],
      [new Error('aborted'), 'first_byte', '22 ms'],
      [new Error('aborted'), 'idle', '33 ms'],
      [new Error('aborted'), 'total', '44 ms'],
      [new Error('aborted'), 'attempt', '55 ms'],
      [new Error('aborted'), 'deadline', 'request deadline of 66 ms'],
    ];
    const limits: Record<string, number> = { first_byte: 22, idle: 33, total: 44, attempt: 55, deadline: 66 };
    for (const [cause, reason, limit] of cases) {
      const aborted = reason ? { reason: reason as 'idle', ms: limits[reason]! } : undefined;
      const err = upstreamFailure(cause, target, aborted);
      expect([err.code, err.status]).toEqual(['AIGW_UPSTREAM_TIMEOUT', 504]);
      expect(err.message).toContain(limit);
    }
  });

  it('keeps errors the relay made itself; a plain error is a bug (internal), its message hidden', () => {
    const own = new GatewayError('AIGW_STREAM_BROKEN', 'x');
    expect(upstreamFailure(own, target)).toBe(own);
    const bug = upstreamFailure(new TypeError('secret internals'), target);
    expect([bug.code, bug.status]).toEqual(['AIGW_INTERNAL', 500]);
    expect(bug.message).not.toContain('secret internals');
  });

  it('maps a malformed HTTP answer to AIGW_UPSTREAM_PROTOCOL and other coded errors to unavailable', () => {
    expect(upstreamFailure(errno('HPE_INVALID_CONSTANT'), target).code).toBe('AIGW_UPSTREAM_PROTOCOL');
    expect(upstreamFailure(errno('UND_ERR_SOMETHING_NEW'), target).code).toBe('AIGW_UPSTREAM_UNAVAILABLE');
  });
});

describe('passThroughHeaders', () => {
  it('passes rate limits and retry hints, renames the request id, drops the rest', () => {
    expect(
      passThroughHeaders({
        'x-ratelimit-remaining-tokens': '10',
        'retry-after': '2',
        'retry-after-ms': '1500',
        'x-request-id': 'req_1',
        'set-cookie': ['__cf_bm=abc'],
        'openai-organization': 'org-1',
        server: 'cloudflare',
        'content-length': '10',
        vary: undefined,
      }),
    ).toEqual({
      'x-ratelimit-remaining-tokens': '10',
      'retry-after': '2',
      'retry-after-ms': '1500',
      'x-upstream-request-id': 'req_1',
    });
  });

  it('refuses header values with control or non-ASCII characters', () => {
    expect(headerSafe('gpt-4o mini')).toBe('gpt-4o mini');
    expect(headerSafe('bad\r\nx-injected: 1')).toBeUndefined();
    expect(headerSafe('modèle')).toBeUndefined();
  });
});

describe('scrubProviderText', () => {
  it('masks the exact secret, masked echoes, key lookalikes and organization ids', () => {
    const secret = 'local-key-without-prefix';
    const text = `key ${secret} / sk-abc*****wxyz / sk-proj-abcdefghijkl / org-AbC123 / Bearer abcdefghij`;
    const out = scrubProviderText(text, secret);
    for (const leak of [secret, 'sk-abc', 'wxyz', 'abcdefghijkl', 'AbC123', 'abcdefghij'])
      expect(out).not.toContain(leak);
  });

  it('scrubs a 64 KiB message in linear time (no regex backtracking blow-up)', () => {
    const started = performance.now();
    scrubProviderText('x'.repeat(64 * 1024));
    scrubProviderText('*'.repeat(64 * 1024));
    expect(performance.now() - started).toBeLessThan(100);
  });

  it('masks before it cuts, so a key at the cut is not half shown', () => {
    const key = 'sk-proj-abcdefghijklmnopqrstuvwxyz';
    const out = scrubProviderText(`${'a '.repeat(496)}${key}`);
    expect(out).not.toContain('sk-proj-abc');
    expect(out.endsWith('…')).toBe(true);
  });

  it('gives the OpenAI error type of a status', () => {
    expect([401, 403, 404, 429, 400, 422, 500, 503].map(errorTypeForStatus)).toEqual([
      'authentication_error',
      'permission_error',
      'not_found_error',
      'rate_limit_error',
      'invalid_request_error',
      'invalid_request_error',
      'server_error',
      'server_error',
    ]);
  });
});
