import { Kind, type TObject, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

/**
 * The field model: what a TypeBox config schema means in Kong's terms. It is read once per
 * plugin, checked against the limits of Kong 3.9's metaschema, and then drives the Kong
 * schema, the runtime normalisation and the docs table, so those three cannot disagree.
 */

export type KongType = 'string' | 'integer' | 'number' | 'boolean' | 'record' | 'array' | 'set' | 'map';

/** The shape of a value: a named field, an array element or a map value. */
export interface ValueModel {
  type: KongType;
  description?: string;
  default?: unknown;
  oneOf?: readonly (string | number)[];
  between?: readonly [number, number];
  gt?: number;
  lenMin?: number;
  lenMax?: number;
  /** A JS regex, checked at runtime only: Kong's `match` takes Lua patterns. */
  pattern?: string;
  /** Accepts a Kong vault reference (`{vault://env/NAME}`); also marks the field as a secret. */
  referenceable?: boolean;
  /** Array and set elements. */
  elements?: ValueModel;
  /** Map values (map keys are always strings). */
  values?: ValueModel;
  /** Record fields, in declaration order. */
  fields?: FieldModel[];
}

export interface FieldModel extends ValueModel {
  name: string;
  /** Not `Type.Optional`. A required field with a default may still be left out. */
  required: boolean;
  description: string;
}

/** Keys Kong adds to every plugin config it hands to a plugin server (plugins_iterator.lua). */
export const KONG_EXTRA_KEYS = [
  '__plugin_id',
  '__seq__',
  '__key__',
  '__ws_id',
  'plugin_instance_name',
  'route_id',
  'service_id',
  'consumer_id',
] as const;

/** Kong's metaschema: `description = { type = "string", len_min = 10, len_max = 500 }`. */
const DESCRIPTION_MIN = 10;
const DESCRIPTION_MAX = 500;

/** Config keys are snake_case, as in every Kong plugin. */
const FIELD_NAME = /^[a-z][a-z0-9_]*$/;

/** TypeBox's pattern for `Type.Record(Type.String(), ...)` keys: any string. */
const ANY_KEY_PATTERN = '^(.*)$';

/** A schema that Kong or the runtime could not honour: a programming error, found at load. */
export class SchemaDefinitionError extends Error {
  override readonly name = 'SchemaDefinitionError';
  constructor(
    readonly plugin: string,
    readonly problems: readonly string[],
  ) {
    super(`config schema of ${plugin} is not usable: ${problems.join('; ')}`);
  }
}

/** Reads a plugin's root schema into field models, or throws listing every problem. */
export function readConfigModel(plugin: string, schema: TObject): FieldModel[] {
  const problems: string[] = [];
  if (schema[Kind] !== 'Object') {
    throw new SchemaDefinitionError(plugin, ['the root schema must be Type.Object']);
  }
  const fields = readFields(schema, 'config', problems);
  for (const field of fields) {
    if ((KONG_EXTRA_KEYS as readonly string[]).includes(field.name)) {
      problems.push(`config.${field.name}: name is reserved by Kong`);
    }
  }
  if (problems.length > 0) throw new SchemaDefinitionError(plugin, problems);
  return fields;
}

function readFields(schema: TObject, path: string, problems: string[]): FieldModel[] {
  const required = new Set(schema.required ?? []);
  return Object.entries(schema.properties).map(([name, property]) => {
    const where = `${path}.${name}`;
    if (!FIELD_NAME.test(name)) problems.push(`${where}: field names must be snake_case`);
    const model = readValue(property, where, problems);
    const isRequired = required.has(name);
    if (!isRequired && model.default !== undefined) {
      problems.push(`${where}: a field with a default is always present; drop Type.Optional`);
    }
    if (model.description === undefined) problems.push(`${where}: every field needs a description`);
    return { ...model, name, required: isRequired, description: model.description ?? '' };
  });
}

function readValue(schema: TSchema, where: string, problems: string[]): ValueModel {
  const model = readShape(schema, where, problems);
  const description: unknown = schema.description;
  if (description !== undefined) {
    if (typeof description !== 'string') {
      problems.push(`${where}: description must be a string`);
    } else if (description.length < DESCRIPTION_MIN || description.length > DESCRIPTION_MAX) {
      problems.push(
        `${where}: Kong requires a description of ${DESCRIPTION_MIN} to ${DESCRIPTION_MAX} characters`,
      );
    } else {
      model.description = description;
    }
  }
  if (schema.default !== undefined) {
    if (model.type === 'record') {
      problems.push(`${where}: records take their defaults from their fields, not from a record default`);
    } else if (!Value.Check(schema, schema.default)) {
      problems.push(`${where}: the default does not match the field's own schema`);
    } else {
      model.default = schema.default;
    }
  }
  if (schema.referenceable === true) {
    if (model.type === 'string') model.referenceable = true;
    else problems.push(`${where}: only string fields can be referenceable`);
  }
  return model;
}

function readShape(schema: TSchema, where: string, problems: string[]): ValueModel {
  const kind = schema[Kind];
  switch (kind) {
    case 'String': {
      if (schema.format !== undefined)
        problems.push(`${where}: string formats are not supported; use check()`);
      return {
        type: 'string',
        lenMin: schema.minLength,
        lenMax: schema.maxLength,
        pattern: schema.pattern,
      };
    }
    case 'Integer':
    case 'Number':
      return readNumber(schema, kind === 'Integer' ? 'integer' : 'number', where, problems);
    case 'Boolean':
      return { type: 'boolean' };
    case 'Literal':
    case 'Union':
      return readLiterals(schema, where, problems);
    case 'Array': {
      if (schema.contains !== undefined) problems.push(`${where}: "contains" is not supported`);
      return {
        type: schema.uniqueItems === true ? 'set' : 'array',
        lenMin: schema.minItems,
        lenMax: schema.maxItems,
        elements: readValue(schema.items, `${where}[]`, problems),
      };
    }
    case 'Record': {
      const [keyPattern, valueSchema] = Object.entries(
        schema.patternProperties as Record<string, TSchema>,
      )[0];
      if (keyPattern !== ANY_KEY_PATTERN) {
        problems.push(`${where}: map keys must be Type.String() without a pattern; check keys in check()`);
      }
      return { type: 'map', values: readValue(valueSchema, `${where}[]`, problems) };
    }
    case 'Object':
      return { type: 'record', fields: readFields(schema as TObject, where, problems) };
    default:
      problems.push(`${where}: TypeBox kind ${String(kind)} has no Kong equivalent`);
      return { type: 'string' };
  }
}

function readNumber(
  schema: TSchema,
  type: 'integer' | 'number',
  where: string,
  problems: string[],
): ValueModel {
  const model: ValueModel = { type };
  const { minimum, maximum, exclusiveMinimum } = schema;
  // Kong has `between` (both bounds) and `gt`, nothing for a lone bound.
  if (minimum !== undefined && maximum !== undefined) model.between = [minimum, maximum];
  else if (minimum !== undefined || maximum !== undefined) {
    problems.push(`${where}: give both minimum and maximum (Kong's between needs two bounds)`);
  }
  if (exclusiveMinimum !== undefined) model.gt = exclusiveMinimum;
  if (schema.exclusiveMaximum !== undefined || schema.multipleOf !== undefined) {
    problems.push(`${where}: exclusiveMaximum and multipleOf have no Kong equivalent`);
  }
  return model;
}

/** `Type.Literal` or a union of literals (also what `Type.Enum` builds) becomes `one_of`. */
function readLiterals(schema: TSchema, where: string, problems: string[]): ValueModel {
  const members: TSchema[] = schema[Kind] === 'Union' ? schema.anyOf : [schema];
  const values: (string | number)[] = [];
  for (const member of members) {
    const value: unknown = member.const;
    if (member[Kind] !== 'Literal' || (typeof value !== 'string' && typeof value !== 'number')) {
      problems.push(`${where}: unions must list string or number literals only`);
      return { type: 'string' };
    }
    values.push(value);
  }
  if (values.every((v) => typeof v === 'string')) return { type: 'string', oneOf: values };
  if (values.every((v) => typeof v === 'number')) {
    return { type: values.every(Number.isInteger) ? 'integer' : 'number', oneOf: values };
  }
  problems.push(`${where}: a union cannot mix string and number literals`);
  return { type: 'string' };
}

/**
 * True when a user must write the field: required, no default, and (for a record) holding
 * such a field. Kong fills a missing required record from its fields' defaults.
 */
export function mustSupply(field: FieldModel): boolean {
  if (!field.required || field.default !== undefined) return false;
  if (field.type === 'record') return (field.fields ?? []).some(mustSupply);
  return true;
}
