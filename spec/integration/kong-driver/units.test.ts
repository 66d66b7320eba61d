/**
 * The driver's pure pieces against Kong's own rules: Lua/msgpack value conversions,
 * cjson encoding, the schema engine, the upstream URI of the router, vault references.
 */
import { decode, encode } from '@msgpack/msgpack';
import { cjsonEncode, formatNumber, fromWire, LUA_NULL, LuaTable, toWire } from '../../support/kong/lua';
import { upstreamUriV0 } from '../../support/kong/router';
import { processAutoFields, type SchemaField, selectView, validateRecord } from '../../support/kong/schema';
import { resolveVaultReference } from '../../support/kong/vault';

/** JS value → msgpack → Lua (lua-MessagePack) → msgpack → JS, as a value Kong stores and returns. */
function roundTrip(value: unknown): unknown {
  return decode(encode(toWire(fromWire(decode(encode(value))))));
}

describe('values crossing Lua', () => {
  test('nil slots vanish, empty tables come back as arrays, holes make maps', () => {
    expect(roundTrip({ a: null, b: {}, c: [], d: [1, null, 3], e: [null, 2] })).toEqual({
      b: [],
      c: [],
      d: { '1': 1, '3': 3 },
      e: { '2': 2 },
    });
    expect(roundTrip([1, 2])).toEqual([1, 2]);
    expect(roundTrip(Buffer.from('bytes'))).toBe('bytes'); // Lua strings pack as str
  });

  test('cjson: "/" escaped, %.14g numbers, empty table → {} unless it is an array', () => {
    const t = fromWire({ url: 'http://x/y', n: 0.1, big: 1e15, i: 42, empty: {} });
    expect(cjsonEncode(t)).toBe('{"url":"http:\\/\\/x\\/y","n":0.1,"big":1e+15,"i":42,"empty":{}}');
    expect(cjsonEncode(new LuaTable(true))).toBe('[]');
    expect(cjsonEncode(LUA_NULL)).toBe('null');
    const sparse = new LuaTable();
    sparse.set(20, 'x');
    expect(() => cjsonEncode(sparse)).toThrow('excessively sparse array');
    expect(formatNumber(123456789012345.6)).toBe('1.2345678901235e+14');
  });
});

describe('schema engine', () => {
  const schema: SchemaField = {
    type: 'record',
    fields: [
      { name: { type: 'string', required: true } },
      { tags: { type: 'set', elements: { type: 'string' } } },
      { limits: { type: 'record', required: true, fields: [{ rpm: { type: 'integer', default: 60 } }] } },
      { opt: { type: 'record', fields: [{ x: { type: 'integer', default: 1 } }] } },
      { secret: { type: 'string', referenceable: true } },
      { note: { type: 'string' } },
    ],
    entity_checks: [{ at_least_one_of: ['tags', 'note'] }],
  };

  test('insert: defaults filled, required records expanded, optional ones null, sets deduplicated', () => {
    expect(processAutoFields(schema, { name: 'n', tags: ['a', 'a', 'b'] })).toEqual({
      name: 'n',
      tags: ['a', 'b'],
      limits: { rpm: 60 },
      opt: null,
      secret: null,
      note: null,
    });
  });

  test('validate: Kong messages and entity checks', () => {
    const errs = validateRecord(schema, processAutoFields(schema, { name: '', extra: 1 }));
    expect(errs).toEqual([
      { path: ['name'], message: 'length must be at least 1' },
      { path: ['extra'], message: 'unknown field' },
      { path: ['@entity'], message: "at least one of these fields must be non-empty: 'tags', 'note'" },
    ]);
  });

  test('select: nulls removed, references resolved with $refs, empty strings dropped', () => {
    const stored = processAutoFields(schema, { name: 'n', secret: '{vault://env/S}', note: '' });
    expect(selectView(schema, stored, (ref) => (ref === '{vault://env/S}' ? 'resolved' : undefined))).toEqual(
      {
        name: 'n',
        limits: { rpm: 60 },
        secret: 'resolved',
        $refs: { secret: '{vault://env/S}' },
      },
    );
  });
});

test('upstream URI (kong/router/utils.lua get_upstream_uri_v0)', () => {
  // [strip_path, postfix, request path, service path] → upstream path
  const cases: Array<[boolean, string, string, string, string]> = [
    [true, '/chat', '/v1/chat', '/', '/chat'],
    [true, '', '/v1', '/', '/'],
    [true, '/chat', '/v1/chat', '/base', '/base/chat'],
    [true, '', '/v1/', '/base', '/base/'],
    [true, '', '/v1', '/base/', '/base'],
    [false, '', '/v1/chat', '/', '/v1/chat'],
    [false, '', '/v1/chat', '/base', '/base/v1/chat'],
    [false, '', '/v1/chat', '/base/', '/base/v1/chat'],
  ];
  for (const [strip, postfix, req, base, expected] of cases)
    expect(upstreamUriV0(strip, postfix, req, base)).toBe(expected);
});

test('env vault: upper-cased names, "-" → "_", JSON keys, missing values', () => {
  const env = { OPENAI_API_KEY: 'sk-1', CREDS: '{"key":"k-2"}' };
  expect(resolveVaultReference('{vault://env/openai-api-key}', env)).toEqual({ value: 'sk-1' });
  expect(resolveVaultReference('{vault://env/creds/key}', env)).toEqual({ value: 'k-2' });
  expect(resolveVaultReference('{vault://env/NOPE}', env).error).toMatch(/no value found/);
  expect(resolveVaultReference('{vault://aws/x}', env).error).toMatch(/vault not found/);
});
