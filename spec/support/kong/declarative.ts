/**
 * DB-less declarative config (kong.yml, `_format_version: "3.0"`): the subset this project
 * uses — services, routes, consumers with keyauth_credentials, plugins (global, service,
 * route, consumer) — validated the way kong/db/schema/others/declarative_config.lua does,
 * with deterministic UUIDv5 ids for entities that have no id (generate_ids), so a reload of
 * the same file keeps plugin ids and only `__seq__` changes.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import {
  formatErrorTable,
  formatPath,
  isObject,
  type Json,
  processAutoFields,
  type SchemaError,
  type SchemaField,
  validateRecord,
} from './schema';

/** kong/constants.lua DECLARATIVE_DEFAULT_WORKSPACE_ID. */
export const DEFAULT_WORKSPACE_ID = '0dc6f45b-8f8d-40d2-a504-473544ee190b';

export interface ServiceEntity {
  id: string;
  name?: string;
  protocol: string;
  host: string;
  port: number;
  path?: string;
  retries: number;
  connect_timeout: number;
  write_timeout: number;
  read_timeout: number;
  enabled: boolean;
  tags?: string[];
  created_at: number;
  updated_at: number;
  ws_id: string;
}

export interface RouteEntity {
  id: string;
  name?: string;
  protocols: string[];
  methods?: string[];
  hosts?: string[];
  paths?: string[];
  headers?: Record<string, string[]>;
  strip_path: boolean;
  preserve_host: boolean;
  regex_priority: number;
  path_handling: string;
  https_redirect_status_code: number;
  request_buffering: boolean;
  response_buffering: boolean;
  service?: { id: string };
  tags?: string[];
  created_at: number;
  updated_at: number;
  ws_id: string;
}

export interface ConsumerEntity {
  id: string;
  username?: string;
  custom_id?: string;
  tags?: string[];
  created_at: number;
  updated_at: number;
  ws_id?: string;
}

export interface CredentialEntity {
  id: string;
  key: string;
  consumer: { id: string };
  ttl?: number;
  tags?: string[];
  created_at: number;
  ws_id: string;
}

export interface PluginEntity {
  id: string;
  name: string;
  instance_name?: string;
  enabled: boolean;
  protocols: string[];
  route?: { id: string };
  service?: { id: string };
  consumer?: { id: string };
  /** After process_auto_fields("insert"): defaults filled, absent optional fields null. */
  config: { [key: string]: Json };
  tags?: string[];
  created_at: number;
  ws_id: string;
}

export interface KongConfig {
  services: ServiceEntity[];
  routes: RouteEntity[];
  consumers: ConsumerEntity[];
  keyauthCredentials: CredentialEntity[];
  plugins: PluginEntity[];
}

/** What the declarative loader needs to know about each installed plugin. */
export interface PluginSchemaInfo {
  /** `{name, fields: [{config: {type: "record", fields}}, ...]}` as the plugin server dumped it. */
  schema: { fields?: Array<Record<string, SchemaField>> };
  /** typedefs.no_consumer / no_route / no_service in the plugin schema. */
  noConsumer?: boolean;
  noRoute?: boolean;
  noService?: boolean;
}

export interface DeclarativeIssue {
  /** Entity location, e.g. `plugins[2]` or `services[1].routes[1]`. */
  entity: string;
  /** Plugin name or entity name, when known. */
  label?: string;
  /** Field path inside the entity, e.g. `config.targets[1].model`. */
  field: string;
  message: string;
}

/** The error Kong refuses a declarative config with; the message names every field path. */
export class DeclarativeConfigError extends Error {
  override readonly name = 'DeclarativeConfigError';
  constructor(
    readonly issues: DeclarativeIssue[],
    /** Kong's nested error table, e.g. `{plugins={[1]={config={model="required field missing"}}}}`. */
    readonly errorTable: string,
  ) {
    super(
      `declarative config is invalid: ${issues
        .map(
          (i) => `${i.entity}${i.label ? ` (${i.label})` : ''}${i.field ? `: ${i.field}` : ''}: ${i.message}`,
        )
        .join('; ')}`,
    );
  }
}

// ------------------------------------------------------------- core entity schemas (subset)

const str = (extra: Partial<SchemaField> = {}): SchemaField => ({ type: 'string', ...extra });
const int = (extra: Partial<SchemaField> = {}): SchemaField => ({ type: 'integer', ...extra });
const bool = (dflt: boolean): SchemaField => ({ type: 'boolean', required: true, default: dflt });
const tags: SchemaField = { type: 'set', elements: { type: 'string' } };
const timeout = (): SchemaField => int({ default: 60000, between: [1, 2 ** 31 - 2] });
const foreign: SchemaField = { type: 'foreign' };
const PROTOCOLS = ['grpc', 'grpcs', 'http', 'https', 'tcp', 'tls', 'tls_passthrough', 'udp', 'ws', 'wss'];

const SERVICE_SCHEMA: SchemaField = {
  type: 'record',
  fields: [
    { id: str({ uuid: true }) },
    { name: str() },
    { retries: int({ default: 5, between: [0, 32767] }) },
    { protocol: str({ required: true, default: 'http', one_of: PROTOCOLS }) },
    { host: str({ required: true }) },
    { port: int({ required: true, default: 80, between: [0, 65535] }) },
    { path: str({ starts_with: '/' }) },
    { connect_timeout: timeout() },
    { write_timeout: timeout() },
    { read_timeout: timeout() },
    { tags },
    { enabled: bool(true) },
  ],
};

const ROUTE_SCHEMA: SchemaField = {
  type: 'record',
  fields: [
    { id: str({ uuid: true }) },
    { name: str() },
    {
      protocols: {
        type: 'set',
        required: true,
        default: ['http', 'https'],
        elements: str({ one_of: PROTOCOLS }),
      },
    },
    { methods: { type: 'set', elements: str({ match: '^%u+$' }) } },
    { hosts: { type: 'array', elements: str() } },
    {
      paths: {
        type: 'array',
        elements: str({
          match_any: { patterns: ['^/', '^~/'], err: 'should start with: / (fixed path) or ~/ (regex path)' },
        }),
      },
    },
    { headers: { type: 'map', keys: str(), values: { type: 'array', elements: str() } } },
    { https_redirect_status_code: int({ required: true, default: 426, one_of: [426, 301, 302, 307, 308] }) },
    { regex_priority: int({ default: 0 }) },
    { strip_path: bool(true) },
    { path_handling: str({ default: 'v0', one_of: ['v0', 'v1'] }) },
    { preserve_host: bool(false) },
    { request_buffering: bool(true) },
    { response_buffering: bool(true) },
    { tags },
    { service: foreign },
  ],
};

const CONSUMER_SCHEMA: SchemaField = {
  type: 'record',
  fields: [{ id: str({ uuid: true }) }, { username: str() }, { custom_id: str() }, { tags }],
  entity_checks: [{ at_least_one_of: ['custom_id', 'username'] }],
};

const KEYAUTH_CREDENTIAL_SCHEMA: SchemaField = {
  type: 'record',
  fields: [
    { id: str({ uuid: true }) },
    { key: str({ required: true }) },
    { ttl: int() },
    { tags },
    { consumer: foreign },
  ],
};

const PLUGIN_SCHEMA_FIELDS: Array<Record<string, SchemaField>> = [
  { id: str({ uuid: true }) },
  { name: str({ required: true }) },
  { instance_name: str() },
  { enabled: bool(true) },
  {
    protocols: {
      type: 'set',
      required: true,
      default: ['grpc', 'grpcs', 'http', 'https'],
      elements: str({ one_of: PROTOCOLS }),
    },
  },
  { tags },
  { route: foreign },
  { service: foreign },
  { consumer: foreign },
];

const TOP_LEVEL_KEYS = new Set([
  '_format_version',
  '_transform',
  '_comment',
  '_workspace',
  'services',
  'routes',
  'consumers',
  'plugins',
  'keyauth_credentials',
]);
const NOT_EMULATED = new Set([
  'upstreams',
  'targets',
  'certificates',
  'ca_certificates',
  'snis',
  'vaults',
  'consumer_groups',
  'acls',
  'basicauth_credentials',
  'jwt_secrets',
  'hmacauth_credentials',
  'oauth2_credentials',
  'key_sets',
  'keys',
  'filter_chains',
]);

// ------------------------------------------------------------- ids

const ENTITIES_NAMESPACE = 'fd02801f-0957-4a15-a55a-c8d9606f30b5';

/** RFC 4122 UUIDv5, as resty.jit-uuid factory_v5 produces. */
function uuidV5(namespace: string, name: string): string {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  const hash = createHash('sha1').update(ns).update(name).digest();
  hash[6] = (hash[6] & 0x0f) | 0x50;
  hash[8] = (hash[8] & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** generate_uuid(schema_name, key) in declarative_config.lua. */
function entityId(schemaName: string, key: string | undefined): string {
  if (key === undefined) return randomUUID();
  return uuidV5(uuidV5(ENTITIES_NAMESPACE, schemaName), key);
}

// ------------------------------------------------------------- loading

/** Reads a kong.yml path (YAML or JSON) or takes an already-parsed object. */
export function readDeclarative(input: unknown): unknown {
  if (typeof input === 'string') return parseYaml(readFileSync(input, 'utf8')) as unknown;
  return input;
}

type Ref = { id?: string; name?: string; username?: string } | string;

interface PendingPlugin {
  at: Array<string | number>;
  raw: { [key: string]: Json };
  route?: Ref;
  service?: Ref;
  consumer?: Ref;
}

export function loadDeclarative(input: unknown, plugins: ReadonlyMap<string, PluginSchemaInfo>): KongConfig {
  const issues: DeclarativeIssue[] = [];
  const tableErrors: SchemaError[] = [];
  const report = (
    entityPath: Array<string | number>,
    label: string | undefined,
    errs: SchemaError[],
  ): void => {
    for (const e of errs) {
      issues.push({ entity: formatPath(entityPath), label, field: formatPath(e.path), message: e.message });
      tableErrors.push({ path: [...entityPath, ...e.path], message: e.message });
    }
  };
  const now = Math.floor(Date.now() / 1000);

  if (!isObject(input))
    throw new DeclarativeConfigError([{ entity: '', field: '', message: 'expected a table' }], '');
  const version = input._format_version;
  if (version === undefined || version === null)
    report([], undefined, [{ path: ['_format_version'], message: 'required field missing' }]);
  else if (!['1.1', '2.1', '3.0'].includes(String(version))) {
    report([], undefined, [{ path: ['_format_version'], message: 'expected one of: 1.1, 2.1, 3.0' }]);
  }
  for (const key of Object.keys(input)) {
    if (NOT_EMULATED.has(key))
      report([], undefined, [{ path: [key], message: 'not emulated by the Kong driver' }]);
    else if (!TOP_LEVEL_KEYS.has(key)) report([], undefined, [{ path: [key], message: 'unknown field' }]);
  }

  const config: KongConfig = { services: [], routes: [], consumers: [], keyauthCredentials: [], plugins: [] };
  const pendingRoutes: Array<{ at: Array<string | number>; raw: { [key: string]: Json }; service?: Ref }> =
    [];
  const pendingPlugins: PendingPlugin[] = [];
  const pendingCreds: Array<{ at: Array<string | number>; raw: { [key: string]: Json }; consumer?: Ref }> =
    [];

  const list = (value: Json | undefined, at: Array<string | number>): Array<{ [key: string]: Json }> => {
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) {
      report(at, undefined, [{ path: [], message: 'expected an array' }]);
      return [];
    }
    return value.map((item, i) => {
      if (isObject(item)) return item;
      report([...at, i + 1], undefined, [{ path: [], message: 'expected a record' }]);
      return {};
    });
  };
  const collectPlugins = (
    value: Json | undefined,
    at: Array<string | number>,
    owner: Partial<PendingPlugin>,
  ): void => {
    list(value, at).forEach((raw, i) => {
      pendingPlugins.push({ ...owner, at: [...at, i + 1], raw });
    });
  };

  list(input.services, ['services']).forEach((raw, i) => {
    const at = ['services', i + 1];
    const { routes, plugins: nestedPlugins, url, ...fields } = raw;
    const expanded = { ...fields, ...(typeof url === 'string' ? parseServiceUrl(url) : {}) };
    if (url !== undefined && typeof url !== 'string')
      report(at, undefined, [{ path: ['url'], message: 'expected a string' }]);
    const processed = processAutoFields(SERVICE_SCHEMA, expanded);
    report(at, nameOf(raw), validateRecord(SERVICE_SCHEMA, processed));
    const id = stringOr(raw.id) ?? entityId('services', stringOr(raw.name));
    const service = clean({
      ...processed,
      id,
      created_at: now,
      updated_at: now,
      ws_id: DEFAULT_WORKSPACE_ID,
    }) as unknown as ServiceEntity;
    config.services.push(service);
    list(routes, [...at, 'routes']).forEach((route, j) => {
      pendingRoutes.push({ at: [...at, 'routes', j + 1], raw: route, service: { id } });
    });
    collectPlugins(nestedPlugins, [...at, 'plugins'], { service: { id } });
  });
  list(input.routes, ['routes']).forEach((raw, i) => {
    pendingRoutes.push({ at: ['routes', i + 1], raw, service: raw.service as Ref | undefined });
  });
  for (const pending of pendingRoutes) {
    const { plugins: nestedPlugins, service: _service, ...fields } = pending.raw;
    const processed = processAutoFields(ROUTE_SCHEMA, fields);
    report(pending.at, nameOf(pending.raw), validateRecord(ROUTE_SCHEMA, processed));
    const id = stringOr(pending.raw.id) ?? entityId('routes', stringOr(pending.raw.name));
    let service: { id: string } | undefined;
    if (pending.service !== undefined && pending.service !== null) {
      const found = findByRef(config.services, pending.service, 'name');
      if (found) service = { id: found.id };
      else
        report(pending.at, nameOf(pending.raw), [
          { path: [], message: invalidReference('service', pending.service, 'services') },
        ]);
    }
    config.routes.push(
      clean({
        ...processed,
        id,
        service,
        created_at: now,
        updated_at: now,
        ws_id: DEFAULT_WORKSPACE_ID,
      }) as unknown as RouteEntity,
    );
    collectPlugins(nestedPlugins, [...pending.at, 'plugins'], { route: { id } });
  }

  list(input.consumers, ['consumers']).forEach((raw, i) => {
    const at = ['consumers', i + 1];
    const { keyauth_credentials, plugins: nestedPlugins, ...fields } = raw;
    const processed = processAutoFields(CONSUMER_SCHEMA, fields);
    report(at, nameOf(raw), validateRecord(CONSUMER_SCHEMA, processed));
    const id = stringOr(raw.id) ?? entityId('consumers', stringOr(raw.username));
    config.consumers.push(
      clean({ ...processed, id, created_at: now, updated_at: now }) as unknown as ConsumerEntity,
    );
    list(keyauth_credentials, [...at, 'keyauth_credentials']).forEach((cred, j) => {
      pendingCreds.push({ at: [...at, 'keyauth_credentials', j + 1], raw: cred, consumer: { id } });
    });
    collectPlugins(nestedPlugins, [...at, 'plugins'], { consumer: { id } });
  });
  list(input.keyauth_credentials, ['keyauth_credentials']).forEach((raw, i) => {
    pendingCreds.push({ at: ['keyauth_credentials', i + 1], raw, consumer: raw.consumer as Ref | undefined });
  });
  const seenKeys = new Set<string>();
  for (const pending of pendingCreds) {
    const { consumer: _consumer, ...fields } = pending.raw;
    // key-auth's `key` is auto-generated when absent (typedefs.auto... random_string).
    const processed = processAutoFields(KEYAUTH_CREDENTIAL_SCHEMA, {
      key: randomBytes(16).toString('hex'),
      ...fields,
    });
    report(pending.at, undefined, validateRecord(KEYAUTH_CREDENTIAL_SCHEMA, processed));
    const consumer =
      pending.consumer !== undefined ? findByRef(config.consumers, pending.consumer, 'username') : undefined;
    if (!consumer) {
      report(pending.at, undefined, [
        { path: [], message: invalidReference('consumer', pending.consumer ?? null, 'consumers') },
      ]);
      continue;
    }
    const key = String(processed.key);
    if (seenKeys.has(key)) {
      report(pending.at, undefined, [
        {
          path: [],
          message: `uniqueness violation: 'keyauth_credentials' entity with key set to '${key}' already declared`,
        },
      ]);
    }
    seenKeys.add(key);
    const id = stringOr(pending.raw.id) ?? entityId('keyauth_credentials', key);
    config.keyauthCredentials.push(
      clean({
        ...processed,
        id,
        consumer: { id: consumer.id },
        created_at: now,
        ws_id: DEFAULT_WORKSPACE_ID,
      }) as unknown as CredentialEntity,
    );
  }

  collectPlugins(input.plugins, ['plugins'], {});
  const seenCacheKeys = new Set<string>();
  for (const pending of pendingPlugins) {
    const raw = pending.raw;
    const name = typeof raw.name === 'string' ? raw.name : undefined;
    const at = pending.at;
    const route = resolveForeign(
      pending.route ?? (raw.route as Ref | undefined),
      config.routes,
      'route',
      'routes',
      'name',
    );
    const service = resolveForeign(
      pending.service ?? (raw.service as Ref | undefined),
      config.services,
      'service',
      'services',
      'name',
    );
    const consumer = resolveForeign(
      pending.consumer ?? (raw.consumer as Ref | undefined),
      config.consumers,
      'consumer',
      'consumers',
      'username',
    );
    for (const e of [route, service, consumer])
      if (e?.error) report(at, name, [{ path: [], message: e.error }]);

    const info = name ? plugins.get(name) : undefined;
    if (!name) {
      report(at, undefined, [{ path: ['name'], message: 'required field missing' }]);
      continue;
    }
    if (!info) {
      report(at, name, [
        {
          path: ['name'],
          message: `plugin '${name}' not enabled; add it to the 'plugins' configuration property`,
        },
      ]);
      continue;
    }
    const { config: rawConfig, route: _r, service: _s, consumer: _c, ...entityFields } = raw;
    const entityRecord: SchemaField = { type: 'record', fields: PLUGIN_SCHEMA_FIELDS };
    const entity = processAutoFields(entityRecord, entityFields);
    report(at, name, validateRecord(entityRecord, entity));
    if (info.noConsumer && consumer?.id)
      report(at, name, [{ path: ['consumer'], message: 'value must be null' }]);
    if (info.noRoute && route?.id) report(at, name, [{ path: ['route'], message: 'value must be null' }]);
    if (info.noService && service?.id)
      report(at, name, [{ path: ['service'], message: 'value must be null' }]);

    const configSchema = configRecordOf(info);
    let pluginConfig: { [key: string]: Json } = {};
    if (rawConfig !== undefined && rawConfig !== null && !isObject(rawConfig)) {
      report(at, name, [{ path: ['config'], message: 'expected a record' }]);
    } else {
      pluginConfig = processAutoFields(configSchema, isObject(rawConfig) ? rawConfig : {});
      report(
        at,
        name,
        validateRecord(configSchema, pluginConfig).map((e) => ({
          path: ['config', ...e.path],
          message: e.message,
        })),
      );
    }

    // Kong's plugin cache_key: name + route + service + consumer must be unique.
    const cacheKey = `${name}:${route?.id ?? ''}:${service?.id ?? ''}:${consumer?.id ?? ''}`;
    if (seenCacheKeys.has(cacheKey)) {
      report(at, name, [
        {
          path: [],
          message: `uniqueness violation: 'plugins' entity with name set to '${name}' already declared`,
        },
      ]);
    }
    seenCacheKeys.add(cacheKey);
    const id =
      stringOr(raw.id) ??
      entityId(
        'plugins',
        typeof raw.instance_name === 'string' ? raw.instance_name : `plugins:*:${cacheKey}`,
      );
    config.plugins.push({
      ...(clean(entity) as Omit<PluginEntity, 'config' | 'id' | 'created_at' | 'ws_id'>),
      id,
      name,
      route: route?.id ? { id: route.id } : undefined,
      service: service?.id ? { id: service.id } : undefined,
      consumer: consumer?.id ? { id: consumer.id } : undefined,
      config: pluginConfig,
      created_at: now,
      ws_id: DEFAULT_WORKSPACE_ID,
    });
  }

  for (const [kind, items] of [
    ['services', config.services],
    ['routes', config.routes],
    ['consumers', config.consumers],
  ] as const) {
    const seen = new Set<string>();
    for (const item of items as Array<{ id: string }>) {
      if (seen.has(item.id)) {
        report([kind], undefined, [
          {
            path: [],
            message: `uniqueness violation: '${kind}' entity with primary key set to '${item.id}' already declared`,
          },
        ]);
      }
      seen.add(item.id);
    }
  }

  if (issues.length > 0) throw new DeclarativeConfigError(issues, formatErrorTable(tableErrors));
  return config;
}

/** The `config` record of a plugin schema (kong-pdk wraps the plugin's fields in one). */
export function configRecordOf(info: PluginSchemaInfo): SchemaField {
  for (const f of info.schema.fields ?? []) {
    if (f.config) return f.config;
  }
  return { type: 'record', fields: [] };
}

/** services.lua `url` shorthand (socket.url parse). */
function parseServiceUrl(url: string): { [key: string]: Json } {
  const m = /^(?:([a-z][a-z0-9+.-]*):\/\/)?([^/:?#]*)(?::(\d+))?([^?#]*)/i.exec(url);
  if (!m) return {};
  const port = m[3] ? Number(m[3]) : undefined;
  const protocol = m[1]?.toLowerCase() ?? (port === 443 ? 'https' : 'http');
  return {
    protocol,
    host: m[2] || null,
    port: port ?? (protocol === 'https' ? 443 : 80),
    path: m[4] || null,
  };
}

function findByRef<T extends { id: string }>(
  items: T[],
  ref: Ref,
  nameKey: 'name' | 'username',
): T | undefined {
  if (typeof ref === 'string')
    return items.find((e) => e.id === ref || (e as Record<string, unknown>)[nameKey] === ref);
  if (isObject(ref as Json)) {
    const r = ref as Record<string, unknown>;
    if (typeof r.id === 'string') return items.find((e) => e.id === r.id);
    if (typeof r[nameKey] === 'string')
      return items.find((e) => (e as Record<string, unknown>)[nameKey] === r[nameKey]);
  }
  return undefined;
}

function resolveForeign<T extends { id: string }>(
  ref: Ref | undefined | null,
  items: T[],
  field: string,
  table: string,
  nameKey: 'name' | 'username',
): { id?: string; error?: string } | undefined {
  if (ref === undefined || ref === null) return undefined;
  if (typeof ref === 'object' && typeof ref.id === 'string' && Object.keys(ref).length === 1) {
    const found = items.find((e) => e.id === ref.id);
    return found ? { id: found.id } : { error: invalidReference(field, ref, table) };
  }
  const found = findByRef(items, ref, nameKey);
  return found ? { id: found.id } : { error: invalidReference(field, ref, table) };
}

function invalidReference(field: string, value: unknown, table: string): string {
  const shown = typeof value === 'string' ? value : JSON.stringify(value);
  return `invalid reference '${field}: ${shown}' (no such entry in '${table}')`;
}

function stringOr(value: Json | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function nameOf(raw: { [key: string]: Json }): string | undefined {
  return stringOr(raw.name) ?? stringOr(raw.username);
}

/** Entities as Kong hands them to plugins: null fields are absent (select without nulls). */
function clean(value: { [key: string]: unknown }): { [key: string]: unknown } {
  const out: { [key: string]: unknown } = {};
  for (const [k, v] of Object.entries(value)) if (v !== null && v !== undefined) out[k] = v;
  return out;
}
