import { Type } from '@sinclair/typebox';
import { ConfigError, definePluginConfig, SchemaDefinitionError, splitKongKeys } from '../../../lib/config';

const describeText = 'A field used by the config machinery tests.';

const demo = definePluginConfig({
  name: 'demo',
  schema: Type.Object({
    title: Type.String({ description: describeText }),
    note: Type.Optional(Type.String({ minLength: 0, description: describeText })),
    count: Type.Integer({ minimum: 1, maximum: 10, default: 3, description: describeText }),
    ratio: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: describeText })),
    mode: Type.Union([Type.Literal('fast'), Type.Literal('safe')], {
      default: 'safe',
      description: describeText,
    }),
    secret: Type.Optional(Type.String({ referenceable: true, description: describeText })),
    tags: Type.Optional(Type.Array(Type.String(), { uniqueItems: true, description: describeText })),
    labels: Type.Optional(Type.Record(Type.String(), Type.String(), { description: describeText })),
    limits: Type.Object(
      {
        soft: Type.Integer({ minimum: 0, maximum: 100, default: 10, description: describeText }),
        hard: Type.Optional(Type.Integer({ minimum: 0, maximum: 100, description: describeText })),
      },
      { description: describeText },
    ),
    items: Type.Optional(
      Type.Array(
        Type.Object({
          id: Type.String({ description: describeText }),
          weight: Type.Integer({ minimum: 0, maximum: 100, default: 1, description: describeText }),
        }),
        { description: describeText },
      ),
    ),
  }),
  check: (config) =>
    config.limits.hard !== undefined && config.limits.hard < config.limits.soft
      ? [{ path: 'limits.hard', message: 'must not be below limits.soft' }]
      : [],
});

function problemsOf(raw: unknown): string[] {
  try {
    demo.validate(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const error = err as ConfigError;
    expect(error.code).toBe('AIGW_CONFIG_INVALID');
    for (const p of error.problems) expect(error.message).toContain(`${p.path}: ${p.message}`);
    return error.problems.map((p) => `${p.path}: ${p.message}`);
  }
  throw new Error('expected the config to be refused');
}

describe('validate', () => {
  it('applies defaults, including inside a record the user left out and inside array elements', () => {
    const { config } = demo.validate({ title: 't', items: [{ id: 'a' }] });
    expect(config).toEqual({
      title: 't',
      count: 3,
      mode: 'safe',
      limits: { soft: 10 },
      items: [{ id: 'a', weight: 1 }],
    });
  });

  it('keeps values that are given', () => {
    const { config } = demo.validate({ title: 't', count: 7, mode: 'fast', limits: { soft: 1, hard: 2 } });
    expect(config).toMatchObject({ count: 7, mode: 'fast', limits: { soft: 1, hard: 2 } });
  });

  it('treats JSON null as absent, as Kong sends null for every unset optional field', () => {
    const { config } = demo.validate({
      title: 't',
      note: null,
      count: null,
      ratio: null,
      secret: null,
      tags: null,
      labels: { a: 'x', b: null },
      limits: { soft: null, hard: null },
      items: null,
    });
    expect(config).toEqual({ title: 't', count: 3, mode: 'safe', labels: { a: 'x' }, limits: { soft: 10 } });
  });

  it('accepts an empty Lua table in either JSON form for arrays, maps and records', () => {
    const { config } = demo.validate({ title: 't', tags: {}, labels: [], limits: [] });
    expect(config.tags).toEqual([]);
    expect(config.labels).toEqual({});
    expect(config.limits).toEqual({ soft: 10 });
    expect(() => demo.validate([])).toThrow('config.title: required field missing');
  });

  it('keeps a __proto__ map key as a plain entry', () => {
    const { config } = demo.validate(JSON.parse('{"title":"t","labels":{"__proto__":"x","a":"y"}}'));
    expect(Object.getPrototypeOf(config.labels)).toBe(Object.prototype);
    expect(Object.entries(config.labels ?? {})).toEqual([
      ['__proto__', 'x'],
      ['a', 'y'],
    ]);
  });

  it('returns a deep-frozen config', () => {
    const { config, kong } = demo.validate({ title: 't', items: [{ id: 'a' }] });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.limits)).toBe(true);
    expect(Object.isFrozen(config.items?.[0])).toBe(true);
    expect(Object.isFrozen(kong)).toBe(true);
  });

  it('does not modify the raw input', () => {
    const raw = { title: 't', note: null, __plugin_id: 'p' };
    demo.validate(raw);
    expect(raw).toEqual({ title: 't', note: null, __plugin_id: 'p' });
  });

  it('strips Kong extra keys and returns them separately', () => {
    const { config, kong } = demo.validate({
      title: 't',
      __plugin_id: '6f1c2f1e-0000-4000-8000-000000000001',
      __seq__: 12,
      __key__: 'plugins:demo:r1::::ws1',
      __ws_id: 'ws1',
      plugin_instance_name: null,
      route_id: 'r1',
      service_id: null,
    });
    expect(config).toEqual({ title: 't', count: 3, mode: 'safe', limits: { soft: 10 } });
    expect(kong).toEqual({
      plugin_id: '6f1c2f1e-0000-4000-8000-000000000001',
      seq: 12,
      key: 'plugins:demo:r1::::ws1',
      ws_id: 'ws1',
      route_id: 'r1',
    });
  });

  it('splitKongKeys leaves plugin fields alone', () => {
    expect(splitKongKeys({ title: 'x', consumer_id: 'c', __seq__: 'not a number' })).toEqual({
      fields: { title: 'x' },
      kong: { consumer_id: 'c' },
    });
  });

  it('refuses a config that is not a record', () => {
    for (const raw of [null, undefined, 'x', 42, true, ['a']]) {
      expect(problemsOf(raw)).toEqual(['config: expected a record']);
    }
  });

  it('lists every problem with its path in one error', () => {
    expect(
      problemsOf({
        count: '3',
        ratio: 0,
        mode: 'turbo',
        extra: 1,
        tags: ['a', 'a'],
        labels: { k: 5 },
        limits: { soft: -1, surprise: true },
        items: [{ id: 'a' }, { weight: 2.5 }],
      }).sort(),
    ).toEqual(
      [
        'config.title: required field missing',
        'config.count: expected an integer',
        'config.ratio: value must be greater than 0',
        'config.mode: expected one of: fast, safe',
        'config.extra: unknown field',
        'config.tags: elements must be unique',
        'config.labels["k"]: expected a string',
        'config.limits.soft: value should be between 0 and 100',
        'config.limits.surprise: unknown field',
        'config.items[1].id: required field missing',
        'config.items[1].weight: expected an integer',
      ].sort(),
    );
  });

  it('refuses empty strings unless the field allows them, as Kong does', () => {
    expect(problemsOf({ title: '' })).toEqual(['config.title: length must be at least 1']);
    expect(problemsOf({ title: 't', tags: [''] })).toEqual(['config.tags[0]: length must be at least 1']);
    expect(demo.validate({ title: 't', note: '' }).config.note).toBe('');
  });

  it('refuses values of the wrong type instead of converting them', () => {
    expect(problemsOf({ title: 5 })).toEqual(['config.title: expected a string']);
    expect(problemsOf({ title: 't', count: 2.5 })).toEqual(['config.count: expected an integer']);
    expect(problemsOf({ title: 't', count: true })).toEqual(['config.count: expected an integer']);
    expect(problemsOf({ title: 't', limits: 'big' })).toEqual(['config.limits: expected a record']);
    expect(problemsOf({ title: 't', items: 'a' })).toEqual(['config.items: expected an array']);
    expect(problemsOf({ title: 't', labels: 'a' })).toEqual(['config.labels: expected a map']);
    expect(problemsOf({ title: 't', items: [null] })).toEqual(['config.items[0]: expected a record']);
  });

  it('reports a vault reference Kong could not resolve, without quoting it', () => {
    const raw = { title: 't', secret: '', $refs: { secret: '{vault://env/MISSING}' } };
    const problems = problemsOf(raw);
    expect(problems).toEqual(['config.secret: vault reference could not be resolved']);
    expect(problems.join()).not.toContain('MISSING');
    // Kong's `$refs` bookkeeping is never an unknown field.
    expect(
      demo.validate({ title: 't', secret: 'sk-1', $refs: { secret: '{vault://env/KEY}' } }).config,
    ).toEqual(expect.objectContaining({ secret: 'sk-1' }));
  });

  it('never quotes a configured value in the error message', () => {
    const error = (() => {
      try {
        demo.validate({ title: 't', secret: 12345678, labels: { k: ['sk-live-abcdef'] } });
      } catch (err) {
        return err as ConfigError;
      }
      throw new Error('expected a ConfigError');
    })();
    expect(error.message).not.toContain('12345678');
    expect(error.message).not.toContain('sk-live-abcdef');
  });

  it('runs cross-field rules on a well-shaped config and prefixes their paths', () => {
    expect(problemsOf({ title: 't', limits: { soft: 50, hard: 10 } })).toEqual([
      'config.limits.hard: must not be below limits.soft',
    ]);
  });

  it('skips cross-field rules while the shape is wrong', () => {
    expect(problemsOf({ title: 5, limits: { soft: 50, hard: 10 } })).toEqual([
      'config.title: expected a string',
    ]);
  });

  it('handles a plugin with no fields', () => {
    const empty = definePluginConfig({ name: 'empty', schema: Type.Object({}) });
    expect(empty.validate({ __plugin_id: 'p' })).toEqual({ config: {}, kong: { plugin_id: 'p' } });
    expect(empty.validate([]).config).toEqual({});
    expect(() => empty.validate({ anything: 1 })).toThrow('config.anything: unknown field');
    expect(empty.kongSchema()).toEqual({
      name: 'empty',
      fields: [{ config: { type: 'record', fields: [] } }],
    });
  });
});

describe('definePluginConfig refuses schemas Kong or the runtime could not honour', () => {
  const problemsOfDefinition = (schema: Parameters<typeof definePluginConfig>[0]['schema']): string[] => {
    try {
      definePluginConfig({ name: 'bad', schema });
    } catch (err) {
      expect(err).toBeInstanceOf(SchemaDefinitionError);
      return [...(err as SchemaDefinitionError).problems];
    }
    throw new Error('expected the schema to be refused');
  };

  it('requires a description on every field, nested ones included', () => {
    expect(
      problemsOfDefinition(
        Type.Object({
          a: Type.String(),
          b: Type.Object({ c: Type.Boolean() }, { description: describeText }),
        }),
      ),
    ).toEqual(['config.a: every field needs a description', 'config.b.c: every field needs a description']);
  });

  it("keeps descriptions within Kong's metaschema limits (10 to 500 characters)", () => {
    expect(problemsOfDefinition(Type.Object({ a: Type.String({ description: 'short' }) }))).toContain(
      'config.a: Kong requires a description of 10 to 500 characters',
    );
    expect(problemsOfDefinition(Type.Object({ a: Type.String({ description: 'x'.repeat(501) }) }))).toContain(
      'config.a: Kong requires a description of 10 to 500 characters',
    );
  });

  it('refuses constructs with no Kong equivalent', () => {
    const d = { description: describeText };
    expect(
      problemsOfDefinition(
        Type.Object({
          lone_min: Type.Integer({ minimum: 1, ...d }),
          excl_max: Type.Number({ exclusiveMaximum: 1, ...d }),
          mixed: Type.Union([Type.Literal('a'), Type.Literal(1)], d),
          not_literal: Type.Union([Type.String(), Type.Integer()], d),
          keyed: Type.Record(Type.String({ pattern: '^x' }), Type.String(), d),
          any: Type.Any(d),
          secret_number: Type.Integer({ minimum: 1, maximum: 2, referenceable: true, ...d }),
          'Bad-Name': Type.Boolean(d),
          route_id: Type.Optional(Type.String(d)),
        }),
      ),
    ).toEqual([
      "config.lone_min: give both minimum and maximum (Kong's between needs two bounds)",
      'config.excl_max: exclusiveMaximum and multipleOf have no Kong equivalent',
      'config.mixed: a union cannot mix string and number literals',
      'config.not_literal: unions must list string or number literals only',
      'config.keyed: map keys must be Type.String() without a pattern; check keys in check()',
      'config.any: TypeBox kind Any has no Kong equivalent',
      'config.secret_number: only string fields can be referenceable',
      'config.Bad-Name: field names must be snake_case',
      'config.route_id: name is reserved by Kong',
    ]);
  });

  it('refuses defaults that cannot work', () => {
    const d = { description: describeText };
    expect(
      problemsOfDefinition(
        Type.Object({
          optional_default: Type.Optional(Type.Boolean({ default: true, ...d })),
          wrong_default: Type.Integer({ minimum: 1, maximum: 5, default: 9, ...d }),
          record_default: Type.Object({ a: Type.Boolean({ default: true, ...d }) }, { default: {}, ...d }),
        }),
      ),
    ).toEqual([
      'config.optional_default: a field with a default is always present; drop Type.Optional',
      "config.wrong_default: the default does not match the field's own schema",
      'config.record_default: records take their defaults from their fields, not from a record default',
    ]);
  });
});
