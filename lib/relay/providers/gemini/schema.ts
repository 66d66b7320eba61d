import type { GatewayError } from '../../../errors';
import { isObject } from '../openai/api';

/**
 * JSON Schema (OpenAI tool parameters, json_schema response formats) → Gemini's `Schema`, the
 * OpenAPI 3.0 subset that `functionDeclarations[].parameters` and `responseSchema` take.
 *
 * Kept: type (upper-cased; a `["x","null"]` union becomes `nullable`, other unions `anyOf`),
 * description, title, nullable, enum (strings only), properties, required (only names that
 * are properties), items, anyOf, minimum, maximum, minItems, maxItems, minLength, maxLength,
 * pattern, minProperties, maxProperties, default, example, propertyOrdering, and the formats
 * Gemini knows (string: enum, date-time; number: float, double; integer: int32, int64).
 * Rewritten: `const` → a one-value `enum`; `oneOf` → `anyOf` (looser: one-of is any-of with
 * one match); a `null` branch of `anyOf` → `nullable`; an `allOf` of one schema → that
 * schema; local `$ref`s (`#/$defs/X`, `#/definitions/X`) are inlined.
 * Stripped, as Gemini rejects them and they only narrow what a valid value is:
 * `$schema`, `$id`, `$comment`, `$defs`, `definitions`, `additionalProperties`, `strict`,
 * `examples`, `exclusiveMinimum`, `exclusiveMaximum`, `multipleOf`, `uniqueItems`,
 * `patternProperties`, `propertyNames`, `contains`, `prefixItems`, `readOnly`, `writeOnly`,
 * `deprecated`, `contentEncoding`, `contentMediaType`, other formats, non-string enums, and
 * any keyword not listed as kept.
 * Refused (400): `not`, `if`/`then`/`else`, an `allOf` of several schemas, a `$ref` that is not
 * local, and recursive `$ref`s: dropping those would change what a valid value is.
 */
export function toGeminiSchema(
  schema: unknown,
  refuse: (what: string) => GatewayError,
): Record<string, unknown> {
  if (!isObject(schema)) throw refuse('a JSON schema that is not an object');
  const defs = { ...asRecord(schema.definitions), ...asRecord(schema.$defs) };
  return convert(schema, { defs, refuse, refs: [] });
}

interface Context {
  defs: Record<string, unknown>;
  refuse: (what: string) => GatewayError;
  /** `$ref`s being inlined, outermost first: one seen again is recursion. */
  refs: string[];
}

const COPIED = [
  'description',
  'title',
  'nullable',
  'minimum',
  'maximum',
  'minItems',
  'maxItems',
  'minLength',
  'maxLength',
  'pattern',
  'minProperties',
  'maxProperties',
  'default',
  'example',
  'propertyOrdering',
] as const;

const FORMATS: Record<string, readonly string[]> = {
  STRING: ['enum', 'date-time'],
  NUMBER: ['float', 'double'],
  INTEGER: ['int32', 'int64'],
};

const TYPES = new Set(['string', 'number', 'integer', 'boolean', 'array', 'object', 'null']);

/** Deep enough for any real tool; bounds the work a hostile schema can cause. */
const MAX_DEPTH = 32;

function convert(schema: Record<string, unknown>, ctx: Context, depth = 0): Record<string, unknown> {
  if (depth > MAX_DEPTH) throw ctx.refuse(`a JSON schema nested deeper than ${MAX_DEPTH} levels`);
  if (typeof schema.$ref === 'string') return inlineRef(schema, ctx, depth);
  for (const keyword of ['not', 'if', 'then', 'else'] as const) {
    if (schema[keyword] !== undefined) throw ctx.refuse(`JSON schema keyword "${keyword}"`);
  }
  if (Array.isArray(schema.allOf)) {
    if (schema.allOf.length !== 1 || !isObject(schema.allOf[0])) {
      throw ctx.refuse('JSON schema "allOf" with more than one schema');
    }
    const { allOf: _allOf, ...rest } = schema;
    return convert({ ...rest, ...schema.allOf[0] }, ctx, depth + 1);
  }

  const out: Record<string, unknown> = {};
  const types = (Array.isArray(schema.type) ? schema.type : [schema.type]).filter(
    (t): t is string => typeof t === 'string' && TYPES.has(t),
  );
  if (types.includes('null') && types.length > 1) out.nullable = true;
  const concrete = types.length > 1 ? types.filter((t) => t !== 'null') : types;
  if (concrete.length > 1) {
    // Several types: one branch each, the rest of the schema applying to the matching branch.
    const { type: _type, ...rest } = schema;
    out.anyOf = concrete.map((t) => convert({ ...rest, type: t }, ctx, depth + 1));
    return out;
  }
  let type = concrete[0]?.toUpperCase();
  if (type === undefined && isObject(schema.properties)) type = 'OBJECT';
  if (type === undefined && schema.items !== undefined) type = 'ARRAY';
  if (type !== undefined) out.type = type;

  for (const key of COPIED) if (schema[key] !== undefined) out[key] = schema[key];
  if (typeof schema.format === 'string' && type && FORMATS[type]?.includes(schema.format)) {
    out.format = schema.format;
  }
  const values = schema.const !== undefined ? [schema.const] : schema.enum;
  if (Array.isArray(values) && values.length > 0 && values.every((v) => typeof v === 'string')) {
    out.enum = values;
    if (out.type === undefined) out.type = 'STRING';
  }

  if (isObject(schema.properties)) {
    const properties: Record<string, unknown> = {};
    for (const [name, sub] of Object.entries(schema.properties)) {
      properties[name] = convert(isObject(sub) ? sub : {}, ctx, depth + 1);
    }
    out.properties = properties;
    if (Array.isArray(schema.required)) {
      const required = schema.required.filter((n): n is string => typeof n === 'string' && n in properties);
      if (required.length > 0) out.required = required;
    }
  }
  if (isObject(schema.items)) out.items = convert(schema.items, ctx, depth + 1);
  const branches = Array.isArray(schema.anyOf) ? schema.anyOf : schema.oneOf;
  if (Array.isArray(branches)) {
    // `anyOf: [X, {type: null}]` (an optional X, as Pydantic writes it) is X, nullable.
    const isNull = (b: unknown) => isObject(b) && b.type === 'null' && Object.keys(b).length === 1;
    const rest = branches.filter((b) => !isNull(b));
    if (rest.length < branches.length) out.nullable = true;
    const converted = rest.map((b) => convert(isObject(b) ? b : {}, ctx, depth + 1));
    if (converted.length > 1) out.anyOf = converted;
    // One branch left: merged, the schema's own keywords (description...) winning.
    else if (converted.length === 1) for (const [k, v] of Object.entries(converted[0]!)) out[k] ??= v;
  }
  return out;
}

function inlineRef(schema: Record<string, unknown>, ctx: Context, depth: number): Record<string, unknown> {
  const ref = schema.$ref as string;
  const match = /^#\/(?:\$defs|definitions)\/([^/]+)$/.exec(ref);
  const target = match ? ctx.defs[decodeURIComponent(match[1]!)] : undefined;
  if (!isObject(target)) throw ctx.refuse('a JSON schema "$ref" that is not a local definition');
  if (ctx.refs.includes(ref)) throw ctx.refuse('a recursive JSON schema "$ref"');
  const { $ref: _ref, ...siblings } = schema;
  ctx.refs.push(ref);
  try {
    return convert({ ...target, ...siblings }, ctx, depth + 1);
  } finally {
    ctx.refs.pop();
  }
}

function asRecord(value: unknown): Record<string, unknown> {
  return isObject(value) ? value : {};
}
