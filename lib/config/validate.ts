import { Kind, type TObject, type TSchema } from '@sinclair/typebox';
import { type ValueError, ValueErrorType } from '@sinclair/typebox/errors';
import { Value } from '@sinclair/typebox/value';
import type { ConfigProblem } from './errors';
import { KONG_EXTRA_KEYS, type ValueModel } from './model';

/** Kong's own keys from the instance config. Plugins key per-instance state by `plugin_id`. */
export interface KongKeys {
  plugin_id?: string;
  route_id?: string;
  service_id?: string;
  consumer_id?: string;
  instance_name?: string;
  ws_id?: string;
  key?: string;
  seq?: number;
}

type Plain = Record<string, unknown>;

const OWN = { enumerable: true, writable: true, configurable: true };

const isPlain = (value: unknown): value is Plain =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Lua cannot tell an empty array from an empty map, so either may arrive for both. */
const isEmptyTable = (value: unknown): boolean =>
  (Array.isArray(value) && value.length === 0) || (isPlain(value) && Object.keys(value).length === 0);

/** Takes Kong's extra keys (plugins_iterator.lua get_plugin_config) out of an instance config. */
export function splitKongKeys(raw: Plain): { fields: Plain; kong: KongKeys } {
  const fields: Plain = {};
  const extra: Plain = {};
  for (const [key, value] of Object.entries(raw)) {
    if ((KONG_EXTRA_KEYS as readonly string[]).includes(key)) extra[key] = value;
    else fields[key] = value;
  }
  const text = (key: string) => (typeof extra[key] === 'string' ? (extra[key] as string) : undefined);
  const kong: KongKeys = {
    plugin_id: text('__plugin_id'),
    route_id: text('route_id'),
    service_id: text('service_id'),
    consumer_id: text('consumer_id'),
    instance_name: text('plugin_instance_name'),
    ws_id: text('__ws_id'),
    key: text('__key__'),
    seq: typeof extra.__seq__ === 'number' ? extra.__seq__ : undefined,
  };
  for (const key of Object.keys(kong) as (keyof KongKeys)[]) {
    if (kong[key] === undefined) delete kong[key];
  }
  return { fields, kong };
}

/**
 * Turns what Kong sends into what the TypeBox schema describes, reporting what only this
 * pass can see: null means absent (Kong sends null for unset optional fields), `$refs` is
 * Kong's bookkeeping of resolved vault references, unknown fields are errors (Kong rejects
 * them too), empty strings are refused unless len_min is 0 (Kong's default), and a missing
 * required record is filled from its fields' defaults, as Kong does.
 */
export function normalize(
  model: ValueModel,
  value: unknown,
  path: string,
  problems: ConfigProblem[],
): unknown {
  switch (model.type) {
    case 'record':
      return normalizeRecord(model, isEmptyTable(value) ? {} : value, path, problems);
    case 'array':
    case 'set': {
      const list = isEmptyTable(value) ? [] : value;
      if (!Array.isArray(list) || model.elements === undefined) return list;
      const elements = model.elements;
      return list.map((item, i) => normalize(elements, item, `${path}[${i}]`, problems));
    }
    case 'map': {
      const map = isEmptyTable(value) ? {} : value;
      if (!isPlain(map) || model.values === undefined) return map;
      const out: Plain = {};
      for (const [key, item] of Object.entries(map)) {
        const where = `${path}[${JSON.stringify(key)}]`;
        if (item === null) continue;
        if (key === '') {
          problems.push({ path: where, message: 'map keys must not be empty' });
        } else {
          // defineProperty: a `__proto__` key from JSON.parse stays a plain entry.
          const entry = normalize(model.values, item, where, problems);
          Object.defineProperty(out, key, { value: entry, ...OWN });
        }
      }
      return out;
    }
    case 'string':
      if (value === '' && model.lenMin === undefined) {
        problems.push({ path, message: 'length must be at least 1' });
      }
      return value;
    default:
      return value;
  }
}

function normalizeRecord(
  model: ValueModel,
  value: unknown,
  path: string,
  problems: ConfigProblem[],
): unknown {
  if (!isPlain(value)) return value;
  const refs = isPlain(value.$refs) ? value.$refs : {};
  const fields = new Map((model.fields ?? []).map((f) => [f.name, f]));
  const out: Plain = {};
  for (const [key, item] of Object.entries(value)) {
    const where = `${path}${fieldSegment(key)}`;
    const field = fields.get(key);
    if (key === '$refs' || item === null) continue;
    if (field === undefined) {
      problems.push({ path: where, message: 'unknown field' });
    } else if (item === '' && refs[key] !== undefined) {
      // Kong puts "" in place of a reference its vault could not resolve.
      problems.push({ path: where, message: 'vault reference could not be resolved' });
    } else {
      out[key] = normalize(field, item, where, problems);
    }
  }
  for (const field of fields.values()) {
    if (!(field.name in out) && field.required && field.type === 'record') {
      out[field.name] = normalize(field, {}, `${path}.${field.name}`, problems);
    }
  }
  return out;
}

/**
 * Checks a normalised value against the schema after applying its defaults, and reports
 * the first failure of each field (as Kong does) with a readable path. Never quotes the
 * value: it may be a secret.
 */
export function checkShape(
  schema: TObject,
  model: ValueModel,
  value: unknown,
  problems: ConfigProblem[],
): unknown {
  const withDefaults = Value.Default(schema, value);
  const flagged = new Set(problems.map((p) => p.path));
  for (const error of Value.Errors(schema, withDefaults)) {
    // A missing required field also fails its type check; report it once.
    if (error.value === undefined && error.type !== ValueErrorType.ObjectRequiredProperty) continue;
    const path = displayPath(model, error.path);
    if (flagged.has(path)) continue;
    flagged.add(path);
    problems.push({ path, message: describe(error) });
  }
  return withDefaults;
}

/** `/targets/1/headers/x-a` → `config.targets[1].headers["x-a"]`, guided by the model. */
export function displayPath(root: ValueModel, pointer: string): string {
  let path = 'config';
  let model: ValueModel | undefined = root;
  const segments = pointer === '' ? [] : pointer.slice(1).split('/');
  for (const raw of segments) {
    const segment = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (model?.type === 'record') {
      path += fieldSegment(segment);
      model = model.fields?.find((f) => f.name === segment);
    } else if (model?.type === 'map') {
      path += `[${JSON.stringify(segment)}]`;
      model = model.values;
    } else if (model?.type === 'array' || model?.type === 'set' || /^\d+$/.test(segment)) {
      path += `[${segment}]`;
      model = model?.elements;
    } else {
      path += fieldSegment(segment);
      model = undefined;
    }
  }
  return path;
}

function fieldSegment(name: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? `.${name}` : `[${JSON.stringify(name)}]`;
}

/** Kong's wording (schema/init.lua validation_errors) where Kong has one. */
function describe(error: ValueError): string {
  const schema: TSchema = error.schema;
  const bounds = () =>
    schema.minimum !== undefined && schema.maximum !== undefined
      ? `value should be between ${schema.minimum} and ${schema.maximum}`
      : schema.minimum !== undefined
        ? `value must be at least ${schema.minimum}`
        : `value must be at most ${schema.maximum}`;
  switch (error.type) {
    case ValueErrorType.ObjectRequiredProperty:
      return 'required field missing';
    case ValueErrorType.ObjectAdditionalProperties:
      return 'unknown field';
    case ValueErrorType.Object:
      return schema[Kind] === 'Record' ? 'expected a map' : 'expected a record';
    case ValueErrorType.Array:
      return schema.uniqueItems === true ? 'expected a set' : 'expected an array';
    case ValueErrorType.String:
      return 'expected a string';
    case ValueErrorType.Integer:
      return 'expected an integer';
    case ValueErrorType.Number:
      return 'expected a number';
    case ValueErrorType.Boolean:
      return 'expected a boolean';
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.NumberMinimum:
    case ValueErrorType.NumberMaximum:
      return bounds();
    case ValueErrorType.IntegerExclusiveMinimum:
    case ValueErrorType.NumberExclusiveMinimum:
      return `value must be greater than ${schema.exclusiveMinimum}`;
    case ValueErrorType.StringMinLength:
      return `length must be at least ${schema.minLength}`;
    case ValueErrorType.StringMaxLength:
      return `length must be at most ${schema.maxLength}`;
    case ValueErrorType.ArrayMinItems:
      return `length must be at least ${schema.minItems}`;
    case ValueErrorType.ArrayMaxItems:
      return `length must be at most ${schema.maxItems}`;
    case ValueErrorType.ArrayUniqueItems:
      return 'elements must be unique';
    case ValueErrorType.StringPattern:
      return `invalid value: must match ${schema.pattern}`;
    case ValueErrorType.Literal:
    case ValueErrorType.Union: {
      const members: TSchema[] = schema[Kind] === 'Union' ? schema.anyOf : [schema];
      return `expected one of: ${members.map((m) => String(m.const)).join(', ')}`;
    }
    default:
      return error.message;
  }
}

/** Freezes a validated config all the way down: plugins share it across requests. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const item of Object.values(value)) deepFreeze(item);
    Object.freeze(value);
  }
  return value;
}
