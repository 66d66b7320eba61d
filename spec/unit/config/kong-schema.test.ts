import type { KongField, KongPluginSchema } from '../../../lib/config';
import { pluginConfigs } from '../../../schemas';

/**
 * The rules of Kong 3.9.3's MetaSubSchema (kong/db/schema/metaschema.lua) that our output
 * can meet, ported to check the JSON Kong receives from query_cmd. Kong refuses to start
 * when a plugin schema breaks any of them.
 */
const VALID_TYPES = new Set([
  'array',
  'set',
  'string',
  'number',
  'boolean',
  'integer',
  'foreign',
  'map',
  'record',
  'json',
]);
const FIELD_ATTRIBUTES = new Set([
  // field_schema
  'type',
  'required',
  'reference',
  'description',
  'examples',
  'auto',
  'unique',
  'unique_across_ws',
  'on_delete',
  'default',
  'abstract',
  'generate_admin_api',
  'immutable',
  'err',
  'encrypted',
  'referenceable',
  'json_schema',
  'transient',
  'deprecation',
  // validators
  'between',
  'eq',
  'ne',
  'gt',
  'len_eq',
  'len_min',
  'len_max',
  'match',
  'not_match',
  'match_all',
  'match_none',
  'match_any',
  'starts_with',
  'one_of',
  'not_one_of',
  'contains',
  'is_regex',
  'timestamp',
  'uuid',
  'custom_validator',
  'mutually_exclusive_subsets',
  // recursive attributes
  'elements',
  'keys',
  'values',
  'fields',
  'entity_checks',
  'shorthand_fields',
]);
const ATTRIBUTE_TYPES: Record<string, string[]> = {
  between: ['integer', 'number'],
  len_eq: ['array', 'set', 'string', 'map'],
  match: ['string'],
  one_of: ['string', 'number', 'integer'],
  contains: ['array', 'set'],
  is_regex: ['string'],
  timestamp: ['number', 'integer'],
  uuid: ['string'],
};
const REQUIRED_ATTRIBUTES: Record<string, string[]> = {
  array: ['elements'],
  set: ['elements'],
  map: ['keys', 'values'],
  record: ['fields'],
};
/** Top-level fields of the plugins entity (entities/plugins.lua) a subschema may redefine. */
const PLUGIN_ENTITY_FIELDS = new Set([
  'id',
  'name',
  'instance_name',
  'created_at',
  'updated_at',
  'route',
  'service',
  'consumer',
  'config',
  'protocols',
  'enabled',
  'tags',
]);

function matchesType(type: string, value: unknown): boolean {
  switch (type) {
    case 'string':
      return typeof value === 'string';
    case 'integer':
      return Number.isInteger(value);
    case 'number':
      return typeof value === 'number';
    case 'boolean':
      return typeof value === 'boolean';
    case 'array':
    case 'set':
      return Array.isArray(value);
    default:
      return typeof value === 'object' && value !== null && !Array.isArray(value);
  }
}

function metaCheckField(path: string, field: KongField, errors: string[]): void {
  const record = field as unknown as Record<string, unknown>;
  if (!VALID_TYPES.has(field.type)) errors.push(`${path}: invalid type ${field.type}`);
  for (const [attr, value] of Object.entries(record)) {
    if (!FIELD_ATTRIBUTES.has(attr)) errors.push(`${path}: unknown attribute ${attr}`);
    if (ATTRIBUTE_TYPES[attr] && !ATTRIBUTE_TYPES[attr].includes(field.type)) {
      errors.push(`${path}: field of type '${field.type}' cannot have attribute '${attr}'`);
    }
    if (value === undefined) errors.push(`${path}: ${attr} is undefined`);
  }
  for (const attr of REQUIRED_ATTRIBUTES[field.type] ?? []) {
    if (record[attr] === undefined)
      errors.push(`${path}: field of type '${field.type}' must declare '${attr}'`);
  }
  if (field.required !== undefined && typeof field.required !== 'boolean') errors.push(`${path}: required`);
  if (field.referenceable !== undefined && typeof field.referenceable !== 'boolean') {
    errors.push(`${path}: referenceable`);
  }
  if (field.description !== undefined) {
    const ok =
      typeof field.description === 'string' &&
      field.description.length >= 10 &&
      field.description.length <= 500;
    if (!ok) errors.push(`${path}: description must be 10 to 500 characters`);
  }
  if (field.between !== undefined) {
    const ok =
      Array.isArray(field.between) && field.between.length === 2 && field.between.every(Number.isFinite);
    if (!ok) errors.push(`${path}: between must be two numbers`);
  }
  for (const attr of ['len_min', 'len_max'] as const) {
    if (field[attr] !== undefined && !Number.isInteger(field[attr]))
      errors.push(`${path}: ${attr} must be an integer`);
  }
  if (field.one_of !== undefined && !Array.isArray(field.one_of))
    errors.push(`${path}: one_of must be an array`);
  // `default = { type = "self" }`: the default must have the field's own type.
  if (field.default !== undefined && !matchesType(field.type, field.default)) {
    errors.push(`${path}: default does not match type ${field.type}`);
  }
  if (field.elements) metaCheckField(`${path}[]`, field.elements, errors);
  if (field.keys) metaCheckField(`${path}.keys`, field.keys, errors);
  if (field.values) metaCheckField(`${path}.values`, field.values, errors);
  if (field.fields) metaCheckFields(path, field.fields, errors);
}

function metaCheckFields(path: string, fields: unknown, errors: string[]): void {
  if (!Array.isArray(fields)) {
    errors.push(`${path}: fields must be an array`);
    return;
  }
  for (const entry of fields) {
    const keys = typeof entry === 'object' && entry !== null ? Object.keys(entry) : [];
    if (keys.length !== 1) {
      errors.push(`${path}: each entry in fields must map one name to one field`);
      continue;
    }
    metaCheckField(`${path}.${keys[0]}`, (entry as Record<string, KongField>)[keys[0]], errors);
  }
}

function metaCheckPluginSchema(schema: KongPluginSchema): string[] {
  const errors: string[] = [];
  for (const key of Object.keys(schema)) {
    if (!['name', 'fields', 'entity_checks', 'shorthand_fields', 'transformations', 'check'].includes(key)) {
      errors.push(`unknown schema attribute ${key}`);
    }
  }
  if (typeof schema.name !== 'string') errors.push('name must be a string');
  metaCheckFields('', schema.fields, errors);
  for (const entry of schema.fields) {
    for (const name of Object.keys(entry)) {
      if (!PLUGIN_ENTITY_FIELDS.has(name)) errors.push(`${name} is not a field of the plugins entity`);
    }
  }
  return errors;
}

/** The fields of a record, by name. */
function fieldsOf(field: KongField | undefined): Record<string, KongField> {
  return Object.assign({}, ...(field?.fields ?? []));
}

function configOf(schema: KongPluginSchema): KongField {
  return schema.fields[0].config;
}

describe('Kong schemas', () => {
  for (const [name, definition] of Object.entries(pluginConfigs)) {
    it(`${name}: passes the rules of Kong's metaschema and survives JSON`, () => {
      const schema = definition.kongSchema();
      expect(schema.name).toBe(name);
      expect(configOf(schema).type).toBe('record');
      expect(metaCheckPluginSchema(schema)).toEqual([]);
      expect(JSON.parse(JSON.stringify(schema))).toEqual(schema);
    });

    it(`${name}: kongFields is the config record's field list, as kong-pdk wraps it`, () => {
      expect(definition.kongFields()).toEqual(configOf(definition.kongSchema()).fields);
    });

    it(`${name}: every field has a description Kong accepts`, () => {
      const missing: string[] = [];
      const walk = (path: string, field: KongField) => {
        for (const [child, def] of Object.entries(fieldsOf(field))) {
          const at = `${path}.${child}`;
          if (typeof def.description !== 'string' || def.description.length < 10) missing.push(at);
          walk(at, def);
        }
        if (field.elements) walk(`${path}[]`, field.elements);
        if (field.values) walk(`${path}.<key>`, field.values);
      };
      walk('config', configOf(definition.kongSchema()));
      expect(missing).toEqual([]);
    });
  }

  it('the metaschema check itself catches broken schemas', () => {
    const broken = {
      name: 'broken',
      fields: [
        {
          config: {
            type: 'record',
            fields: [
              { a: { type: 'string', between: [1, 2], nullable: true } },
              { b: { type: 'array' } },
              { c: { type: 'integer', description: 'short', default: 'x' } },
              { d: { type: 'boolean' }, e: { type: 'boolean' } },
            ],
          },
        },
      ],
    } as unknown as KongPluginSchema;
    expect(metaCheckPluginSchema(broken)).toEqual([
      ".config.a: field of type 'string' cannot have attribute 'between'",
      '.config.a: unknown attribute nullable',
      ".config.b: field of type 'array' must declare 'elements'",
      '.config.c: description must be 10 to 500 characters',
      '.config.c: default does not match type integer',
      '.config: each entry in fields must map one name to one field',
    ]);
  });
});

describe('ai-router Kong schema', () => {
  const config = configOf(pluginConfigs['ai-router'].kongSchema());
  const top = fieldsOf(config);
  const targets = top.targets;
  const target = fieldsOf(targets.elements);
  const timeouts = fieldsOf(target.timeouts);

  it('has the release fields in order', () => {
    expect(config.fields?.map((f) => Object.keys(f)[0])).toEqual([
      'targets',
      'pools',
      'model_map',
      'allow_model_names',
      'default_target',
      'tasks',
      'experiments',
      'access',
      'residency',
      'redaction',
      'quality',
      'headers',
    ]);
    expect(targets.elements?.fields?.map((f) => Object.keys(f)[0])).toEqual([
      'name',
      'provider',
      'model',
      'base_url',
      'api_version',
      'aws',
      'api_key',
      'api_key_env',
      'headers',
      'timeouts',
      'context_window',
      'prices',
      'region',
      'capabilities',
      'weight',
      'trusted',
    ]);
  });

  it('requires at least one target', () => {
    expect(targets).toMatchObject({ type: 'array', required: true, len_min: 1 });
    expect(targets.elements?.type).toBe('record');
  });

  it('maps target fields to Kong attributes', () => {
    expect(target.name).toMatchObject({ type: 'string', required: true, len_min: 1, len_max: 64 });
    expect(target.provider).toMatchObject({
      type: 'string',
      required: true,
      default: 'openai',
      one_of: [
        'openai',
        'azure',
        'anthropic',
        'gemini',
        'bedrock',
        'mistral',
        'groq',
        'deepseek',
        'vllm',
        'ollama',
      ],
    });
    expect(target.model).toMatchObject({ type: 'string', required: true });
    expect(target.model.default).toBeUndefined();
    expect(target.base_url).toMatchObject({ type: 'string', required: false });
    expect(target.base_url.default).toBeUndefined();
    expect(target.api_key).toMatchObject({ type: 'string', required: false, referenceable: true });
    expect(target.api_key_env).toMatchObject({ type: 'string', required: false });
    expect(target.api_key_env.referenceable).toBeUndefined();
    expect(target.headers).toMatchObject({
      type: 'map',
      required: false,
      keys: { type: 'string' },
      values: { type: 'string' },
    });
  });

  it('never sends a JS regex as a Lua `match` pattern', () => {
    expect(JSON.stringify(config)).not.toMatch(/"(match|not_match|match_all|match_any|match_none)"/);
  });

  it('makes the timeouts record required so Kong fills in its defaults', () => {
    // entity.lua only auto-requires records directly under config, not inside array elements.
    expect(target.timeouts).toMatchObject({ type: 'record', required: true });
    expect(target.timeouts.default).toBeUndefined();
    expect(timeouts.connect_ms).toMatchObject({
      type: 'integer',
      default: 5000,
      between: [1, 600000],
      required: true,
    });
    expect(timeouts.first_byte_ms).toMatchObject({ type: 'integer', default: 60000, between: [1, 3600000] });
    expect(timeouts.idle_ms).toMatchObject({ type: 'integer', default: 60000, between: [1, 3600000] });
    expect(timeouts.total_ms).toMatchObject({ type: 'integer', default: 600000, between: [1, 3600000] });
  });

  it('leaves optional top-level fields nullable and gives defaults', () => {
    expect(top.default_target).toMatchObject({ type: 'string', required: false });
    expect(top.pools).toMatchObject({ type: 'array', required: true, default: [] });
    expect(top.headers).toMatchObject({ type: 'record', required: true });
  });
});

describe('other plugins', () => {
  it('ai-metrics: flat booleans, nested sink/content/traces records, referenceable collector tokens', () => {
    const schema = pluginConfigs['ai-metrics'].kongSchema() as unknown as {
      fields: [{ config: { fields: Record<string, Record<string, unknown>>[] } }];
    };
    type Field = Record<string, unknown> & { fields: Record<string, unknown>[] };
    const fields = Object.assign({}, ...schema.fields[0].config.fields) as Record<string, Field>;
    expect(Object.keys(fields)).toEqual([
      'log_requests',
      'log_consumer',
      'log_sink',
      'content',
      'metrics',
      'consumer_label',
      'traces',
      'prompt_patterns',
    ]);
    expect(fields.log_requests).toMatchObject({ type: 'boolean', required: true, default: true });
    expect(fields.log_consumer).toMatchObject({ type: 'boolean', required: true, default: false });
    const sink = Object.assign({}, ...fields.log_sink!.fields);
    expect(sink.type).toMatchObject({
      type: 'string',
      default: 'logger',
      one_of: ['logger', 'file', 'http'],
    });
    expect(sink.authorization).toMatchObject({ type: 'string', referenceable: true, required: false });
    const content = Object.assign({}, ...fields.content!.fields);
    expect(content.prompts).toMatchObject({ type: 'boolean', default: false });
    expect(content.answers).toMatchObject({ type: 'boolean', default: false });
    const traces = Object.assign({}, ...fields.traces!.fields);
    expect(traces.authorization).toMatchObject({ referenceable: true });
  });

  it('ai-semantic-cache: defaults Kong fills in, and a referenceable embedder key', () => {
    const schema = pluginConfigs['ai-semantic-cache'].kongSchema() as unknown as {
      fields: [{ config: { fields: Record<string, Record<string, unknown>>[] } }];
    };
    type Field = Record<string, unknown> & { fields: Record<string, unknown>[] };
    const fields = Object.assign({}, ...schema.fields[0].config.fields) as Record<string, Field>;
    expect(fields.scope).toMatchObject({
      type: 'string',
      default: 'consumer',
      one_of: ['consumer', 'credential', 'route', 'global'],
    });
    expect(fields.ttl_s).toMatchObject({ type: 'integer', default: 3600 });
    const embedder = Object.assign({}, ...fields.embedder!.fields);
    expect(embedder.api_key).toMatchObject({ type: 'string', referenceable: true, required: false });
    expect(embedder.kind).toMatchObject({ default: 'local' });
  });
});
