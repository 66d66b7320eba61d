import type { FieldModel, KongType, ValueModel } from './model';

/**
 * Kong's plugin schema format, limited to the attributes this project emits. Every one is
 * listed in Kong 3.9.3's kong/db/schema/metaschema.lua; any other key (even `nullable`)
 * makes Kong refuse the whole schema at startup.
 */
export interface KongField {
  type: KongType;
  required?: boolean;
  default?: unknown;
  description?: string;
  one_of?: readonly (string | number)[];
  between?: readonly [number, number];
  gt?: number;
  len_min?: number;
  len_max?: number;
  referenceable?: boolean;
  elements?: KongField;
  keys?: KongField;
  values?: KongField;
  fields?: KongFieldEntry[];
}

/** One entry of a `fields` array: a single-key map from field name to definition. */
export type KongFieldEntry = Record<string, KongField>;

export interface KongPluginSchema {
  name: string;
  fields: [{ config: KongField }];
}

export function toKongSchema(name: string, fields: FieldModel[]): KongPluginSchema {
  return { name, fields: [{ config: { type: 'record', fields: toKongFields(fields) } }] };
}

export function toKongFields(fields: FieldModel[]): KongFieldEntry[] {
  return fields.map((field) => ({ [field.name]: toKongField(field) }));
}

function toKongField(field: FieldModel): KongField {
  // `required` is always explicit: Kong turns a record whose `required` is unset into a
  // required one (entity.lua make_records_required), and only a required record gets its
  // fields' defaults when left out (schema/init.lua handle_missing_field). A field that is
  // not required is nullable: Kong sends JSON null for it when unset.
  return { ...toKongValue(field), required: field.required };
}

function toKongValue(model: ValueModel): KongField {
  const out: KongField = { type: model.type };
  if (model.description !== undefined) out.description = model.description;
  if (model.default !== undefined) out.default = model.default;
  if (model.oneOf !== undefined) out.one_of = model.oneOf;
  if (model.between !== undefined) out.between = model.between;
  if (model.gt !== undefined) out.gt = model.gt;
  if (model.lenMin !== undefined) out.len_min = model.lenMin;
  if (model.lenMax !== undefined) out.len_max = model.lenMax;
  if (model.referenceable) out.referenceable = true;
  if (model.elements !== undefined) out.elements = toKongValue(model.elements);
  if (model.values !== undefined) {
    out.keys = { type: 'string' };
    out.values = toKongValue(model.values);
  }
  if (model.fields !== undefined) out.fields = toKongFields(model.fields);
  return out;
}
