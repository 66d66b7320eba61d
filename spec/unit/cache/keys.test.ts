/** Cache keys are pure functions that start with the tenant (CONVENTIONS, "Keys and isolation"). */
import { indexKey, localKey, namespaceOf, storeNamespace, tenantOf } from '../../../lib/cache/keys';

const local = { id: 'local-v1-384', dimensions: 384 };

describe('tenantOf', () => {
  const who = { consumerId: 'c-1', credentialId: 'cred-1', routeId: 'r-1' };

  it.each([
    ['consumer', 'consumer:c-1'],
    ['credential', 'credential:cred-1'],
    ['route', 'route:r-1'],
    ['global', 'global'],
  ] as const)('%s scope → %s', (scope, tenant) => {
    expect(tenantOf(scope, who)).toBe(tenant);
  });

  it.each(['consumer', 'credential', 'route'] as const)(
    '%s scope without that identity has no tenant',
    (scope) => {
      expect(tenantOf(scope, {})).toBeUndefined();
      expect(tenantOf(scope, { consumerId: '', credentialId: '', routeId: '' })).toBeUndefined();
    },
  );

  it('two consumers never share a tenant, nor a consumer and a credential with the same id', () => {
    expect(tenantOf('consumer', { consumerId: 'a' })).not.toBe(tenantOf('consumer', { consumerId: 'b' }));
    expect(tenantOf('consumer', { consumerId: 'x' })).not.toBe(tenantOf('credential', { credentialId: 'x' }));
  });
});

describe('namespaceOf', () => {
  it('starts with the tenant, then the embedder and its dimensions', () => {
    expect(namespaceOf('consumer:c-1', local)).toBe('consumer:c-1@local-v1-384:384');
    expect(namespaceOf('global', { id: 'openai:text-embedding-3-small', dimensions: 512 })).toBe(
      'global@openai:text-embedding-3-small:512',
    );
  });

  it('another embedder or size is another namespace', () => {
    const a = namespaceOf('global', local);
    expect(namespaceOf('global', { ...local, dimensions: 256 })).not.toBe(a);
    expect(namespaceOf('global', { ...local, id: 'local-v2-384' })).not.toBe(a);
  });
});

describe('storeNamespace', () => {
  it('puts the whole namespace in the hash tag, escaped', () => {
    const ns = namespaceOf('consumer:c-1', local);
    expect(storeNamespace(ns)).toBe('{consumer%3Ac-1@local-v1-384%3A384}:cache');
  });

  it('a tenant cannot close the hash tag early or pass for another', () => {
    const evil = storeNamespace('consumer:a}:x{b@e:1');
    expect(evil.startsWith('{')).toBe(true);
    expect(evil.indexOf('}')).toBe(evil.lastIndexOf('}'));
    expect(storeNamespace('consumer:a:b@e:1')).not.toBe(storeNamespace('consumer:a%3Ab@e:1'));
  });
});

describe('localKey and indexKey', () => {
  it('start with the store namespace and keep ids and partitions apart per namespace', () => {
    const a = namespaceOf('consumer:a', local);
    const b = namespaceOf('consumer:b', local);
    expect(localKey(a, 'id').startsWith(storeNamespace(a))).toBe(true);
    expect(localKey(a, 'id')).not.toBe(localKey(b, 'id'));
    expect(indexKey(a, 'p')).not.toBe(indexKey(b, 'p'));
  });
});
