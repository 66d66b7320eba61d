import type { Static, TObject } from '@sinclair/typebox';
import { docRows, renderTable } from './docs';
import { ConfigError, type ConfigProblem } from './errors';
import { type KongFieldEntry, type KongPluginSchema, toKongFields, toKongSchema } from './kong-schema';
import { type FieldModel, readConfigModel, type ValueModel } from './model';
import { checkShape, deepFreeze, type KongKeys, normalize, splitKongKeys } from './validate';

export type DeepReadonly<T> = T extends (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

/**
 * A validated config. Fields with a default are declared without `Type.Optional`, so
 * `Static` already makes them non-optional; only fields without a default stay optional.
 */
export type ConfigOf<S extends TObject> = DeepReadonly<Static<S>>;

export interface ValidatedConfig<C> {
  config: C;
  kong: KongKeys;
}

export interface PluginConfigSpec<S extends TObject> {
  name: string;
  schema: S;
  /**
   * Cross-field rules, run once every field has the right shape (Kong never sees them).
   * Problem paths are relative to `config`, e.g. `targets[1].name`.
   */
  check?: (config: ConfigOf<S>) => ConfigProblem[];
  /** The cross-field rules in plain words, for the docs. */
  rules?: readonly string[];
}

export interface PluginConfig<S extends TObject> {
  readonly name: string;
  readonly schema: S;
  readonly rules: readonly string[];
  /** The schema Kong receives: `{ name, fields: [{ config: { type: 'record', fields } }] }`. */
  kongSchema(): KongPluginSchema;
  /** Just the config fields: what kong-pdk expects as a plugin module's `Schema` export. */
  kongFields(): KongFieldEntry[];
  /**
   * Kong's instance config in, a deep-frozen config with defaults out, plus Kong's own keys.
   * Throws ConfigError listing every problem.
   */
  validate(raw: unknown): ValidatedConfig<ConfigOf<S>>;
  /** The markdown table of fields for docs/configuration.md. */
  docsTable(): string;
}

/** One definition per plugin; throws SchemaDefinitionError at load when Kong could not take it. */
export function definePluginConfig<S extends TObject>(spec: PluginConfigSpec<S>): PluginConfig<S> {
  const fields: FieldModel[] = readConfigModel(spec.name, spec.schema);
  const root: ValueModel = { type: 'record', fields };

  return {
    name: spec.name,
    schema: spec.schema,
    rules: spec.rules ?? [],
    kongSchema: () => toKongSchema(spec.name, fields),
    kongFields: () => toKongFields(fields),
    docsTable: () => renderTable(docRows(fields)),
    validate(raw) {
      if (typeof raw !== 'object' || raw === null || (Array.isArray(raw) && raw.length > 0)) {
        throw new ConfigError(spec.name, [{ path: 'config', message: 'expected a record' }]);
      }
      const { fields: input, kong } = Array.isArray(raw)
        ? { fields: {}, kong: {} }
        : splitKongKeys(raw as Record<string, unknown>);
      const problems: ConfigProblem[] = [];
      const shaped = checkShape(spec.schema, root, normalize(root, input, 'config', problems), problems);
      if (problems.length === 0 && spec.check !== undefined) {
        for (const p of spec.check(shaped as ConfigOf<S>)) {
          const path = p.path === '' || p.path.startsWith('[') ? `config${p.path}` : `config.${p.path}`;
          problems.push({ path, message: p.message });
        }
      }
      if (problems.length > 0) throw new ConfigError(spec.name, problems);
      return deepFreeze({ config: shaped as ConfigOf<S>, kong });
    },
  };
}
