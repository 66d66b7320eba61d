/**
 * Kong's bundled `key-auth` plugin (kong/plugins/key-auth/handler.lua and schema.lua, 3.9.3),
 * a Lua plugin: it runs in-process, so it costs no round trip. It calls the same emulated
 * PDK functions the Lua handler calls, so its exits and headers behave like Kong's.
 */
import { fromJs, LuaTable, type LuaValue } from './lua';
import { callLuaPdk, type PdkCall } from './pdk';
import type { SchemaField } from './schema';

export const KEY_AUTH_PRIORITY = 1250;

/** typedefs.header_name. */
function headerName(value: unknown): true | string {
  return typeof value === 'string' && /^[A-Za-z0-9_-]+$/.test(value)
    ? true
    : `bad header name '${String(value)}', allowed characters are A-Z, a-z, 0-9, '_', and '-'`;
}

export const KEY_AUTH_SCHEMA: { name: string; fields: Array<Record<string, SchemaField>> } = {
  name: 'key-auth',
  fields: [
    {
      config: {
        type: 'record',
        fields: [
          {
            key_names: {
              type: 'array',
              required: true,
              default: ['apikey'],
              elements: { type: 'string', custom_validator: headerName },
            },
          },
          { hide_credentials: { type: 'boolean', required: true, default: false } },
          { anonymous: { type: 'string' } },
          { key_in_header: { type: 'boolean', required: true, default: true } },
          { key_in_query: { type: 'boolean', required: true, default: true } },
          { key_in_body: { type: 'boolean', required: true, default: false } },
          { run_on_preflight: { type: 'boolean', required: true, default: true } },
          { realm: { type: 'string', required: false } },
        ],
      },
    },
  ],
};

export interface KeyAuthDb {
  credentialByKey(key: string): Record<string, unknown> | undefined;
  consumer(idOrUsername: string, byUsername: boolean): Record<string, unknown> | undefined;
}

type Conf = {
  key_names?: string[];
  hide_credentials?: boolean;
  anonymous?: string;
  key_in_header?: boolean;
  key_in_query?: boolean;
  key_in_body?: boolean;
  run_on_preflight?: boolean;
  realm?: string;
};

type Failure = { status: number; message: string; headers?: Record<string, string> };

const pdk = (call: PdkCall, method: string, ...args: LuaValue[]) => callLuaPdk(call, method, args);

async function setConsumer(
  call: PdkCall,
  consumer: LuaTable | undefined,
  credential: LuaTable | undefined,
): Promise<void> {
  await pdk(call, 'kong.client.authenticate', consumer, credential);
  const header = async (name: string, value: LuaValue) => {
    if (value === undefined) await pdk(call, 'kong.service.request.clear_header', name);
    else await pdk(call, 'kong.service.request.set_header', name, value);
  };
  await header('X-Consumer-ID', consumer?.get('id'));
  await header('X-Consumer-Custom-ID', consumer?.get('custom_id'));
  await header('X-Consumer-Username', consumer?.get('username'));
  await header('X-Credential-Identifier', credential?.get('id'));
  if (credential) await pdk(call, 'kong.service.request.clear_header', 'X-Anonymous-Consumer');
  else await pdk(call, 'kong.service.request.set_header', 'X-Anonymous-Consumer', true);
}

async function doAuthentication(call: PdkCall, conf: Conf, db: KeyAuthDb): Promise<Failure | undefined> {
  if (!Array.isArray(conf.key_names)) {
    call.kong.log('err', 'no conf.key_names set, aborting plugin execution', {
      plugin: 'key-auth',
      requestId: call.req.id,
    });
    return { status: 500, message: 'Invalid plugin configuration' };
  }
  const www = conf.realm ? `Key realm="${conf.realm}"` : 'Key';
  const headers = call.req.headers;
  const query = (await pdk(call, 'kong.request.get_query')) as LuaTable;
  let body: LuaValue;
  let key: string | undefined;
  for (const name of conf.key_names) {
    let v: LuaValue;
    if (conf.key_in_header) {
      const values = headers.getAll(name); // the get_headers table looks names up case-insensitively
      v = values.length === 0 ? undefined : values.length === 1 ? values[0] : fromJs(values);
    }
    if (v === undefined && conf.key_in_query) v = query.get(name);
    if (v === undefined && conf.key_in_body) {
      body ??= ((await pdk(call, 'kong.request.get_body')) as LuaValue) ?? new LuaTable();
      v = body instanceof LuaTable ? body.get(name) : undefined;
    }
    if (typeof v === 'string' || Buffer.isBuffer(v)) {
      key = v.toString();
      if (conf.hide_credentials) {
        await pdk(call, 'kong.service.request.clear_query_arg', name);
        await pdk(call, 'kong.service.request.clear_header', name);
        if (conf.key_in_body && body instanceof LuaTable && body.size > 0) {
          body.set(name, undefined);
          await pdk(call, 'kong.service.request.set_body', body);
        }
      }
      break;
    }
    if (v instanceof LuaTable)
      return { status: 401, message: 'Duplicate API key found', headers: { 'WWW-Authenticate': www } };
  }
  if (!key)
    return { status: 401, message: 'No API key found in request', headers: { 'WWW-Authenticate': www } };

  const credential = db.credentialByKey(key);
  if (!credential) return { status: 401, message: 'Unauthorized', headers: { 'WWW-Authenticate': www } };
  const consumerId = (credential.consumer as { id: string }).id;
  const consumer = db.consumer(consumerId, false);
  if (!consumer) {
    call.kong.log('err', `consumer ${consumerId} not found`, { plugin: 'key-auth', requestId: call.req.id });
    return { status: 500, message: 'An unexpected error occurred' };
  }
  await setConsumer(call, fromJs(consumer) as LuaTable, fromJs(credential) as LuaTable);
  return undefined;
}

/** KeyAuthHandler:access. Exits go through kong.response.error (delayed in access). */
export async function keyAuthAccess(call: PdkCall, conf: Conf, db: KeyAuthDb): Promise<void> {
  if (!conf.run_on_preflight && call.req.method === 'OPTIONS') return;
  if (conf.anonymous) {
    if ((await pdk(call, 'kong.client.get_credential')) !== undefined) return;
    const failure = await doAuthentication(call, conf, db);
    if (failure) {
      const consumer = db.consumer(conf.anonymous, true);
      await setConsumer(call, consumer ? (fromJs(consumer) as LuaTable) : undefined, undefined);
    }
    return;
  }
  const failure = await doAuthentication(call, conf, db);
  if (failure) {
    await pdk(
      call,
      'kong.response.error',
      failure.status,
      failure.message,
      failure.headers ? fromJs(failure.headers) : undefined,
    );
  }
}
