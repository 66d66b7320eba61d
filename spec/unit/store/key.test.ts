import fc from 'fast-check';
import { GatewayError } from '../../../lib/errors';
import { key } from '../../../lib/store/key';

/** What Redis Cluster hashes: the text between the first `{` and the next `}`, if not empty. */
function hashTag(k: string): string {
  const open = k.indexOf('{');
  if (open === -1) return k;
  const close = k.indexOf('}', open + 1);
  if (close === -1 || close === open + 1) return k;
  return k.slice(open + 1, close);
}

describe('key()', () => {
  it('puts the tenant in a hash tag, then the parts', () => {
    expect(key('acme', 'budget', 'tokens', 'minute', 29000000)).toBe('{acme}:budget:tokens:minute:29000000');
    expect(key('global')).toBe('{global}');
  });

  it('escapes characters that would move the hash tag or merge components', () => {
    expect(key('a}b', 'x:y', '{z}', '100%')).toBe('{a%7Db}:x%3Ay:%7Bz%7D:100%25');
  });

  it('refuses an empty tenant, which would give an empty hash tag', () => {
    expect(() => key('')).toThrow(GatewayError);
  });

  const tenant = fc.string({
    minLength: 1,
    maxLength: 12,
    unit: fc.constantFrom('a', ':', '{', '}', '%', '7', 'D'),
  });
  const parts = fc.array(
    fc.oneof(fc.string({ maxLength: 6, unit: fc.constantFrom('b', ':', '{', '}', '%', '3') }), fc.integer()),
    {
      maxLength: 4,
    },
  );

  it('hashes every key of a tenant on the tenant alone', () => {
    fc.assert(
      fc.property(tenant, parts, parts, (t, p1, p2) => {
        expect(hashTag(key(t, ...p1))).toBe(hashTag(key(t, ...p2)));
      }),
    );
  });

  it('gives different tenants different hash tags, whatever the characters', () => {
    fc.assert(
      fc.property(tenant, tenant, parts, (t1, t2, p) => {
        fc.pre(t1 !== t2);
        expect(hashTag(key(t1, ...p))).not.toBe(hashTag(key(t2, ...p)));
      }),
    );
  });

  it('never gives two different inputs the same key', () => {
    fc.assert(
      fc.property(tenant, parts, tenant, parts, (t1, p1, t2, p2) => {
        const same = t1 === t2 && JSON.stringify(p1.map(String)) === JSON.stringify(p2.map(String));
        expect(key(t1, ...p1) === key(t2, ...p2)).toBe(same);
      }),
    );
  });
});
