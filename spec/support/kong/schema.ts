/**
 * Kong's schema engine for plugin configs (kong/db/schema/init.lua), on plain JSON values.
 *
 * Three steps, as Kong runs them on a declarative config:
 *   1. processAutoFields ("insert"): defaults filled, absent optional fields become null,
 *      missing required records expanded, sets deduplicated (adjust_field_for_context).
 *   2. validateRecord: types, required, unknown fields, validators in Kong's order
 *      (Schema.validators_order), entity checks; messages are Kong's validation_errors.
 *   3. selectView ("select", what the plugins iterator gets from kong.db.plugins:each):
 *      nulls removed, referenceable `{vault://...}` values resolved with a `$refs` record,
 *      empty strings dropped.
 * `null` in a value stands for ngx.null; `undefined` for a missing key (Lua nil).
 */
import { isVaultReference } from './vault';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A field definition in Kong's schema format, as a plugin server reports it. */
export interface SchemaField {
  type: string;
  required?: boolean;
  default?: Json;
  fields?: Array<Record<string, SchemaField>>;
  elements?: SchemaField;
  keys?: SchemaField;
  values?: SchemaField;
  entity_checks?: Array<Record<string, unknown>>;
  referenceable?: boolean;
  err?: string;
  eq?: Json;
  ne?: Json;
  one_of?: Json[];
  not_one_of?: Json[];
  gt?: number;
  between?: [number, number];
  len_eq?: number;
  len_min?: number;
  len_max?: number;
  starts_with?: string;
  match?: string;
  not_match?: string;
  match_all?: Array<{ pattern: string; err: string }>;
  match_none?: Array<{ pattern: string; err: string }>;
  match_any?: { patterns: string[]; err: string };
  contains?: Json;
  uuid?: boolean;
  timestamp?: boolean;
  /** Internal schemas only (key-auth): a Lua custom_validator. */
  custom_validator?: (value: Json) => true | string;
  [other: string]: unknown;
}

/** One validation failure: where (path segments) and Kong's message. */
export interface SchemaError {
  path: Array<string | number>;
  message: string;
}

const MSG = {
  ARRAY: 'expected an array',
  SET: 'expected a set',
  MAP: 'expected a map',
  RECORD: 'expected a record',
  STRING: 'expected a string',
  NUMBER: 'expected a number',
  BOOLEAN: 'expected a boolean',
  INTEGER: 'expected an integer',
  REQUIRED: 'required field missing',
  UNKNOWN: 'unknown field',
  REQUIRED_FOR_ENTITY_CHECK: 'field required for entity check',
} as const;

type JsonObject = { [key: string]: Json };

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function fieldEntries(record: SchemaField): Array<[string, SchemaField]> {
  return (record.fields ?? []).map((f) => Object.entries(f)[0] as [string, SchemaField]);
}

function clone<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}

/** Lua's `#` / table length as Kong's length validators see it. */
function luaLength(value: Json): number {
  if (typeof value === 'string') return Buffer.byteLength(value);
  if (Array.isArray(value)) return value.length;
  if (isObject(value)) return Object.keys(value).length; // maps count their pairs (make_length_validator)
  return 0;
}

function isNonEmpty(value: Json | undefined): boolean {
  if (value === undefined || value === null) return false;
  if (typeof value === 'string') return value !== '';
  if (Array.isArray(value)) return value.length > 0;
  if (isObject(value)) return Object.keys(value).length > 0;
  return true;
}

function quotedList(words: unknown[]): string {
  return words.map((w) => (Array.isArray(w) ? `(${quotedList(w)})` : `'${String(w)}'`)).join(', ');
}

function luaToString(value: Json | undefined): string {
  if (value === null || value === undefined) return 'nil';
  if (typeof value === 'object') return 'table';
  return String(value);
}

// ---------------------------------------------------------------- step 1: insert

/** Schema:process_auto_fields(data, "insert") for a record schema. */
export function processAutoFields(record: SchemaField, data: JsonObject): JsonObject {
  const out = clone(data);
  for (const [name, field] of fieldEntries(record)) {
    const value = adjustForInsert(field, out[name]);
    if (value === undefined) delete out[name];
    else out[name] = value;
  }
  return out;
}

function adjustForInsert(field: SchemaField, value: Json | undefined): Json | undefined {
  let v = value;
  if (field.type === 'record') {
    if (v !== null && (v !== undefined || field.required === true)) {
      v = v ?? handleMissingField(field);
      if (isObject(v)) return processAutoFields(field, v);
    }
  } else if (Array.isArray(v) || isObject(v)) {
    let sub: SchemaField | undefined;
    if (field.type === 'array') sub = field.elements;
    else if (field.type === 'set') {
      if (Array.isArray(v)) v = dedupe(v);
      sub = field.elements;
    } else if (field.type === 'map') sub = field.values;
    if (sub) {
      const subfield = sub;
      if (Array.isArray(v)) v = v.map((e) => adjustForInsert(subfield, e) ?? null);
      else if (isObject(v)) {
        const obj: JsonObject = {};
        for (const [k, e] of Object.entries(v)) {
          const adjusted = adjustForInsert(subfield, e);
          if (adjusted !== undefined) obj[k] = adjusted;
        }
        v = obj;
      }
    }
  }
  if (v === undefined) return handleMissingField(field);
  return v;
}

/** make_set: sets drop duplicate elements. */
function dedupe(values: Json[]): Json[] {
  const seen = new Set<string>();
  return values.filter((v) => {
    const key = JSON.stringify(v);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function handleMissingField(field: SchemaField): Json | undefined {
  if (field.default !== undefined) return clone(field.default);
  if (field.required !== true) return null;
  if (field.type === 'record') return processAutoFields(field, {});
  return undefined;
}

// ---------------------------------------------------------------- step 2: validate

/** Schema:validate on a record value; returns every error with its path. */
export function validateRecord(
  record: SchemaField,
  input: JsonObject,
  path: Array<string | number> = [],
): SchemaError[] {
  const errors: SchemaError[] = [];
  const byField = new Map<string, boolean>();
  const fields = new Map(fieldEntries(record));
  for (const [key, value] of Object.entries(input)) {
    if (key === '$refs') continue;
    const field = fields.get(key);
    if (!field) {
      errors.push({ path: [...path, key], message: MSG.UNKNOWN });
      byField.set(key, true);
      continue;
    }
    const errs = validateField(field, value, [...path, key]);
    if (errs.length > 0) byField.set(key, true);
    errors.push(...errs);
  }
  for (const [name, field] of fields) {
    if (field.required && (input[name] === null || input[name] === undefined)) {
      if (!byField.has(name)) errors.push({ path: [...path, name], message: MSG.REQUIRED });
      byField.set(name, true);
    }
  }
  errors.push(...runEntityChecks(record, input, byField, path));
  return errors;
}

/** Schema:validate_field. */
export function validateField(
  field: SchemaField,
  value: Json | undefined,
  path: Array<string | number>,
): SchemaError[] {
  const fail = (message: string): SchemaError[] => [{ path, message }];
  if (value === null || value === undefined) {
    if (field.ne === null) return fail(field.err ?? 'value must not be null');
    if (field.eq !== undefined && field.eq !== null) return fail(`value must be ${luaToString(field.eq)}`);
    if (field.required) return fail(MSG.REQUIRED);
    return [];
  }
  if (field.eq === null) return fail(field.err ?? 'value must be null');

  switch (field.type) {
    case 'array':
    case 'set': {
      if (!Array.isArray(value)) return fail(field.type === 'array' ? MSG.ARRAY : MSG.SET);
      const errs: SchemaError[] = [];
      const elements = field.elements ?? { type: 'any' };
      value.forEach((e, i) => {
        errs.push(...validateField({ ...elements, required: true }, e, [...path, i + 1]));
      });
      if (errs.length > 0) return errs;
      break;
    }
    case 'map': {
      if (!isObject(value) && !Array.isArray(value)) return fail(MSG.MAP);
      const entries: Array<[string | number, Json]> = Array.isArray(value)
        ? value.map((v, i) => [i + 1, v])
        : Object.entries(value);
      for (const [k, v] of entries) {
        const keyErrs = validateField({ ...(field.keys ?? { type: 'any' }), required: true }, k as Json, [
          ...path,
          k,
        ]);
        if (keyErrs.length > 0) return keyErrs;
        const valueErrs = validateField({ ...(field.values ?? { type: 'any' }), required: true }, v, [
          ...path,
          k,
        ]);
        if (valueErrs.length > 0) return valueErrs;
      }
      break;
    }
    case 'record': {
      if (!isObject(value)) return fail(MSG.RECORD);
      const errs = validateRecord(field, processAutoFields(field, value), path);
      if (errs.length > 0) return errs;
      break;
    }
    case 'integer':
      if (typeof value !== 'number' || !Number.isInteger(value)) return fail(MSG.INTEGER);
      break;
    case 'number':
      if (typeof value !== 'number') return fail(MSG.NUMBER);
      break;
    case 'boolean':
      if (typeof value !== 'boolean') return fail(MSG.BOOLEAN);
      break;
    case 'string':
      if (typeof value !== 'string') return fail(MSG.STRING);
      if (field.referenceable && isVaultReference(value)) return [];
      break;
    case 'foreign':
    case 'json':
    case 'any':
      break;
    default:
      return fail(`invalid type: ${field.type}`);
  }

  const message = runValidators(field, value);
  return message ? fail(field.err ?? message) : [];
}

/** Schema.validators in Schema.validators_order; the first failure wins. */
function runValidators(field: SchemaField, value: Json): string | undefined {
  const f = field;
  if (f.eq !== undefined && value !== f.eq) return `value must be ${luaToString(f.eq)}`;
  if (f.ne !== undefined && value === f.ne) return `value must not be ${luaToString(value)}`;
  if (f.not_one_of?.includes(value)) return `must not be one of: ${f.not_one_of.join(', ')}`;
  if (f.one_of && !f.one_of.includes(value)) return `expected one of: ${f.one_of.join(', ')}`;
  if (f.gt !== undefined && !((value as number) > f.gt)) return `value must be greater than ${f.gt}`;
  if (f.timestamp && !((value as number) > 0)) return 'expected a valid timestamp';
  if (f.uuid && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(String(value))) {
    return 'expected a valid UUID';
  }
  if (f.between) {
    const [lo, hi] = f.between;
    if ((value as number) < lo || (value as number) > hi) {
      return `value should be between ${Math.trunc(lo)} and ${Math.trunc(hi)}`;
    }
  }
  // Strings get len_min = 1 unless the schema says otherwise ("empty strings are not accepted by default").
  const lenMin = f.len_min ?? (f.type === 'string' ? 1 : undefined);
  if (f.len_eq !== undefined && luaLength(value) !== f.len_eq) return `length must be ${f.len_eq}`;
  if (lenMin !== undefined && luaLength(value) < lenMin) return `length must be at least ${lenMin}`;
  if (f.len_max !== undefined && luaLength(value) > f.len_max) return `length must be at most ${f.len_max}`;
  if (typeof value === 'string') {
    if (f.starts_with !== undefined && !value.startsWith(f.starts_with))
      return `should start with: ${f.starts_with}`;
    if (f.not_match !== undefined && luaMatch(value, f.not_match) === true) return `invalid value: ${value}`;
    for (const m of f.match_none ?? []) if (luaMatch(value, m.pattern) === true) return m.err;
    if (f.match !== undefined && luaMatch(value, f.match) === false) return `invalid value: ${value}`;
    for (const m of f.match_all ?? []) if (luaMatch(value, m.pattern) === false) return m.err;
    if (f.match_any?.patterns.every((p) => luaMatch(value, p) === false)) return f.match_any.err;
  }
  if (f.contains !== undefined && Array.isArray(value) && !value.includes(f.contains)) {
    return `expected to contain: ${luaToString(f.contains)}`;
  }
  if (f.custom_validator) {
    const result = f.custom_validator(value);
    if (result !== true) return result;
  }
  return undefined;
}

/** Lua string.match with a pattern translated to a RegExp; undefined when the pattern cannot be translated. */
function luaMatch(value: string, pattern: string): boolean | undefined {
  const re = luaPatternToRegExp(pattern);
  return re ? re.test(value) : undefined;
}

const LUA_CLASSES: Record<string, string> = {
  a: 'A-Za-z',
  d: '0-9',
  l: 'a-z',
  s: '\\s',
  u: 'A-Z',
  w: 'A-Za-z0-9',
  x: '0-9A-Fa-f',
  p: '!-\\/:-@\\[-`{-~',
  c: '\\x00-\\x1f',
};

function luaPatternToRegExp(pattern: string): RegExp | undefined {
  let out = '';
  let inSet = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '%') {
      const n = pattern[++i];
      if (n === undefined || n === 'b' || n === 'f') return undefined;
      const cls = LUA_CLASSES[n.toLowerCase()];
      if (cls) {
        const negated = n !== n.toLowerCase();
        out += inSet ? (negated ? '' : cls) : negated ? `[^${cls}]` : `[${cls}]`;
        if (inSet && negated) return undefined;
      } else out += `\\${n}`;
    } else if (c === '[') {
      inSet = true;
      out += '[';
      if (pattern[i + 1] === '^') {
        out += '^';
        i++;
      }
    } else if (c === ']' && inSet) {
      inSet = false;
      out += ']';
    } else if (inSet) {
      out += c === '\\' ? '\\\\' : c;
    } else if (c === '-') {
      out += '*?';
    } else if (c === '^' && i === 0) {
      out += '^';
    } else if (c === '$' && i === pattern.length - 1) {
      out += '$';
    } else if ('*+?.'.includes(c)) {
      out += c;
    } else {
      out += c.replace(/[\\^$|(){}[\]/]/g, '\\$&');
    }
  }
  try {
    return new RegExp(out, 's');
  } catch {
    return undefined;
  }
}

const ENTITY_CHECK_MESSAGES: Record<string, string> = {
  at_least_one_of: 'at least one of these fields must be non-empty: %s',
  only_one_of: 'exactly one of these fields must be non-empty: %s',
  mutually_required: 'all or none of these fields must be set: %s',
  mutually_exclusive: 'only one or none of these fields must be set: %s',
  distinct: 'values of these fields must be distinct: %s',
  conditional: "failed conditional validation given value of field '%s'",
};

/** The common entity checkers (Schema.entity_checkers); others are not emulated. */
function runEntityChecks(
  record: SchemaField,
  input: JsonObject,
  failed: Map<string, boolean>,
  path: Array<string | number>,
): SchemaError[] {
  const errors: SchemaError[] = [];
  const fields = new Map(fieldEntries(record));
  for (const check of record.entity_checks ?? []) {
    const [name, arg] = Object.entries(check)[0] ?? [];
    if (!name || arg === undefined || arg === null) continue;
    const names: string[] = Array.isArray(arg)
      ? (arg as string[])
      : name === 'conditional'
        ? [(arg as { if_field: string }).if_field, (arg as { then_field: string }).then_field]
        : [];
    const values = names.map((n) => input[n]);
    const runWithInvalid = name !== 'mutually_required' && name !== 'mutually_exclusive';
    if (!runWithInvalid && names.some((n) => failed.get(n))) continue;
    if (names.some((n, i) => fields.get(n)?.referenceable && isVaultReference(values[i]))) continue;
    let failure: string | undefined;
    switch (name) {
      case 'at_least_one_of':
        if (!values.some(isNonEmpty)) failure = quotedList(names);
        break;
      case 'only_one_of':
        if (values.filter(isNonEmpty).length !== 1) failure = quotedList(names);
        break;
      case 'mutually_required': {
        const n = values.filter(isNonEmpty).length;
        if (n !== 0 && n !== names.length) failure = quotedList(names);
        break;
      }
      case 'mutually_exclusive':
        if (values.filter(isNonEmpty).length > 1) failure = quotedList(names);
        break;
      case 'distinct': {
        const present = values.filter(isNonEmpty).map((v) => JSON.stringify(v));
        if (new Set(present).size !== present.length) failure = quotedList(names);
        break;
      }
      case 'conditional': {
        const c = arg as {
          if_field: string;
          if_match: SchemaField;
          then_field: string;
          then_match: SchemaField;
          then_err?: string;
        };
        const ifField = fields.get(c.if_field);
        const thenField = fields.get(c.then_field);
        if (!ifField || !thenField) break;
        const ifValue = input[c.if_field];
        if (validateField({ ...ifField, ...c.if_match }, ifValue, []).length > 0) break;
        const thenValue = input[c.then_field] ?? null;
        const thenErrs =
          c.then_match.required === true && thenValue === null
            ? [{ path: [], message: MSG.REQUIRED }]
            : validateField({ ...thenField, ...c.then_match }, thenValue, []);
        if (thenErrs.length > 0) {
          errors.push(
            ...thenErrs.map((e) => ({ path: [...path, c.then_field, ...e.path], message: e.message })),
          );
          failure = c.then_err ? c.then_err.replace('%s', c.if_field) : c.if_field;
          if (c.then_err) {
            errors.push({ path: [...path, '@entity'], message: failure });
            failure = undefined;
          }
        }
        break;
      }
      default:
        break;
    }
    if (failure !== undefined) {
      const fmt = ENTITY_CHECK_MESSAGES[name];
      errors.push({ path: [...path, '@entity'], message: fmt ? fmt.replace('%s', failure) : failure });
    }
  }
  return errors;
}

// ---------------------------------------------------------------- step 3: select

/** Resolves one vault reference; returns undefined when it cannot (Kong then uses ""). */
export type ReferenceResolver = (reference: string) => string | undefined;

/** Schema:process_auto_fields(data, "select") without nulls, resolving references. */
export function selectView(record: SchemaField, data: JsonObject, resolve: ReferenceResolver): JsonObject {
  const out: JsonObject = {};
  const refs: JsonObject = {};
  const fields = fieldEntries(record);
  const known = new Set(fields.map(([n]) => n));
  for (const [name, field] of fields) {
    let value = adjustForSelect(field, data[name], resolve);
    if (value === null || value === undefined) continue;
    if (field.type === 'integer' && typeof value === 'number') value = Math.floor(value);
    if (
      field.type === 'string' &&
      field.referenceable &&
      typeof value === 'string' &&
      isVaultReference(value)
    ) {
      refs[name] = value;
      value = resolve(value) ?? '';
    } else if ((field.type === 'array' || field.type === 'set') && Array.isArray(value)) {
      if (field.elements?.type === 'string' && field.elements.referenceable) {
        const arrRefs: Json[] = [];
        let any = false;
        value = value.map((v, i) => {
          if (typeof v === 'string' && isVaultReference(v)) {
            arrRefs[i] = v;
            any = true;
            return resolve(v) ?? '';
          }
          return v;
        });
        if (any) refs[name] = Array.from(arrRefs, (r) => r ?? null);
      }
    } else if (
      field.type === 'map' &&
      isObject(value) &&
      field.values?.type === 'string' &&
      field.values.referenceable
    ) {
      const mapRefs: JsonObject = {};
      const resolved: JsonObject = {};
      for (const [k, v] of Object.entries(value)) {
        if (typeof v === 'string' && isVaultReference(v)) {
          mapRefs[k] = v;
          resolved[k] = resolve(v) ?? '';
        } else resolved[k] = v;
      }
      if (Object.keys(mapRefs).length > 0) refs[name] = mapRefs;
      value = resolved;
    }
    // Empty strings are dropped unless they came from a reference (len_min defaults to 1).
    if (field.type === 'string' && value === '' && (field.len_min ?? 1) > 0 && refs[name] === undefined)
      continue;
    out[name] = value;
  }
  for (const key of Object.keys(out)) if (!known.has(key)) delete out[key];
  if (Object.keys(refs).length > 0) out.$refs = refs;
  return out;
}

function adjustForSelect(
  field: SchemaField,
  value: Json | undefined,
  resolve: ReferenceResolver,
): Json | undefined {
  let v = value;
  if (v === null && field.required) v = handleMissingField(field) ?? null;
  if (field.type === 'record') {
    if (isObject(v)) return selectView(field, v, resolve);
    return v;
  }
  const sub =
    field.type === 'array' || field.type === 'set'
      ? field.elements
      : field.type === 'map'
        ? field.values
        : undefined;
  if (sub && Array.isArray(v)) return v.map((e) => adjustForSelect(sub, e, resolve) ?? null);
  if (sub && isObject(v)) {
    const obj: JsonObject = {};
    for (const [k, e] of Object.entries(v)) {
      const adjusted = adjustForSelect(sub, e, resolve);
      if (adjusted !== undefined && adjusted !== null) obj[k] = adjusted;
    }
    return obj;
  }
  return v;
}

// ---------------------------------------------------------------- messages

/** `config.targets[1].model`: the flattened path Kong's /config?flatten_errors=1 reports. */
export function formatPath(path: Array<string | number>): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? seg : `.${seg}`;
  }
  return out;
}

/** Kong's nested error table (pl.pretty style), e.g. `{config={targets={{model="required field missing"}}}}`. */
export function formatErrorTable(errors: SchemaError[]): string {
  type Tree = { [key: string]: Tree | string };
  const root: Tree = {};
  for (const e of errors) {
    let node = root;
    e.path.forEach((seg, i) => {
      const key = String(seg);
      if (i === e.path.length - 1) {
        if (key === '@entity') {
          const list = (node[key] as Tree | undefined) ?? {};
          list[String(Object.keys(list).length + 1)] = e.message;
          node[key] = list;
        } else node[key] = e.message;
      } else {
        if (typeof node[key] !== 'object') node[key] = {};
        node = node[key] as Tree;
      }
    });
  }
  const write = (tree: Tree | string): string => {
    if (typeof tree === 'string') return JSON.stringify(tree);
    const parts = Object.entries(tree).map(([k, v]) => {
      const key = /^\d+$/.test(k)
        ? `[${k}]`
        : /^[A-Za-z_][A-Za-z0-9_]*$/.test(k)
          ? k
          : `[${JSON.stringify(k)}]`;
      return `${key}=${write(v)}`;
    });
    return `{${parts.join(',')}}`;
  };
  return write(root);
}
