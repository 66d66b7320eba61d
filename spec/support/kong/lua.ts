/**
 * Lua values on Kong's side of the plugin-server boundary.
 *
 * Everything a JS plugin hands to Kong is msgpack-decoded into Lua values by lua-MessagePack
 * (kong/runloop/plugin_servers/rpc/mp_rpc.lua) and packed again when Kong answers. Modelling
 * Lua tables here reproduces the conversions a real Kong applies: `nil` values vanish from
 * tables, an empty table packs as an array, a table with holes packs as a map, and strings
 * come back as msgpack `str`.
 */

/** `cjson.null` / `ngx.null`: a value that packs as msgpack nil but keeps its table slot. */
export const LUA_NULL: unique symbol = Symbol('cjson.null');

/**
 * Pre-packed wire value, like the closures mp_rpc.lua's fix_mmap/fix_raw install as msgpack
 * packers. `packError` reproduces a packer that fails (fix_raw(nil) → "attempt to get length").
 */
export class WireValue {
  constructor(
    readonly wire: unknown,
    readonly packError?: string,
  ) {}
}

export type LuaKey = string | number | boolean;
export type LuaValue =
  | undefined
  | typeof LUA_NULL
  | boolean
  | number
  | string
  | Buffer
  | LuaTable
  | WireValue;

/** A Lua table. `arrayHint` mirrors cjson.array_mt: an empty table that cjson encodes as `[]`. */
export class LuaTable {
  private readonly slots = new Map<LuaKey, LuaValue>();

  constructor(readonly arrayHint = false) {}

  get(key: LuaKey): LuaValue {
    return this.slots.get(key);
  }

  /** Assigning nil removes the key, as in Lua. */
  set(key: LuaKey, value: LuaValue): void {
    if (value === undefined) this.slots.delete(key);
    else this.slots.set(key, value);
  }

  entries(): IterableIterator<[LuaKey, LuaValue]> {
    return this.slots.entries();
  }

  get size(): number {
    return this.slots.size;
  }

  /** Values 1..n of a sequence (stops at the first hole, like ipairs). */
  ipairs(): LuaValue[] {
    const out: LuaValue[] = [];
    for (let i = 1; this.slots.has(i); i++) out.push(this.slots.get(i));
    return out;
  }

  /** lua-MessagePack's rule (packers.table): an array when the keys are exactly 1..n (empty included). */
  packsAsArray(): boolean {
    let max = 0;
    for (const k of this.slots.keys()) {
      if (typeof k !== 'number' || k <= 0) return false;
      if (k > max) max = k;
    }
    return max === this.slots.size;
  }
}

/** A Lua runtime error raised by a PDK function (wrong phase, bad argument, unpackable value). */
export class LuaError extends Error {
  override readonly name = 'LuaError';
}

export function luaType(value: LuaValue): string {
  if (value === undefined) return 'nil';
  if (value === LUA_NULL) return 'userdata';
  if (typeof value === 'string' || Buffer.isBuffer(value)) return 'string';
  if (value instanceof LuaTable) return 'table';
  if (value instanceof WireValue) return 'function';
  return typeof value;
}

export function isLuaString(value: LuaValue): value is string | Buffer {
  return typeof value === 'string' || Buffer.isBuffer(value);
}

/** Lua string as JS text (Lua strings are bytes; JS plugins send UTF-8). */
export function luaToString(value: string | Buffer): string {
  return typeof value === 'string' ? value : value.toString('utf8');
}

/** Lua's tostring(), as kong.log and string concatenation use it. */
export function luaToStringLoose(value: LuaValue): string {
  if (value === undefined) return 'nil';
  if (value === LUA_NULL) return 'userdata: NULL';
  if (isLuaString(value)) return luaToString(value);
  if (typeof value === 'number') return formatNumber(value);
  if (typeof value === 'boolean') return String(value);
  return `table: 0x${tableAddress(value)}`;
}

const addresses = new WeakMap<object, string>();
let nextAddress = 0x7f0000001000;
function tableAddress(value: object): string {
  let a = addresses.get(value);
  if (!a) {
    a = nextAddress.toString(16).padStart(12, '0');
    nextAddress += 0x40;
    addresses.set(value, a);
  }
  return a;
}

/** Lua's "%.14g" number formatting (tostring and cjson both use it). */
export function formatNumber(n: number): string {
  if (Number.isNaN(n)) return n > 0 ? 'nan' : '-nan';
  if (!Number.isFinite(n)) return n > 0 ? 'inf' : '-inf';
  if (Number.isInteger(n) && Math.abs(n) < 1e14) return String(n);
  const exp = Math.floor(Math.log10(Math.abs(n)));
  if (exp < -4 || exp >= 14) {
    const [mant, e] = n.toExponential(13).split('e');
    const m = stripZeros(mant);
    const ev = Number(e);
    return `${m}e${ev < 0 ? '-' : '+'}${String(Math.abs(ev)).padStart(2, '0')}`;
  }
  return stripZeros(n.toPrecision(14));
}

function stripZeros(s: string): string {
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

/** msgpack-decoded JS value → Lua value, as lua-MessagePack unpacks it (nil slots disappear). */
export function fromWire(value: unknown): LuaValue {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return value;
  if (typeof value === 'bigint') return Number(value);
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (Array.isArray(value)) {
    const t = new LuaTable();
    value.forEach((v, i) => {
      t.set(i + 1, fromWire(v));
    });
    return t;
  }
  if (typeof value === 'object') {
    const t = new LuaTable();
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) t.set(k, fromWire(v));
    return t;
  }
  return undefined;
}

/** Lua value → the JS shape @msgpack/msgpack encodes the way lua-MessagePack would. */
export function toWire(value: LuaValue): unknown {
  if (value === undefined || value === LUA_NULL) return null;
  if (value instanceof WireValue) {
    if (value.packError) throw new LuaError(value.packError);
    return value.wire;
  }
  if (Buffer.isBuffer(value)) return value.toString('utf8'); // Lua strings pack as msgpack str
  if (value instanceof LuaTable) {
    if (value.packsAsArray()) {
      const arr: unknown[] = [];
      for (let i = 1; i <= value.size; i++) arr.push(toWire(value.get(i)));
      return arr;
    }
    const obj: Record<string, unknown> = {};
    for (const [k, v] of value.entries()) obj[String(k)] = toWire(v);
    return obj;
  }
  return value;
}

/** Plain JS data (Kong-internal: entities, headers) → Lua value. `null` becomes cjson.null. */
export function fromJs(value: unknown): LuaValue {
  if (value === undefined) return undefined;
  if (value === null) return LUA_NULL;
  if (value instanceof LuaTable || value instanceof WireValue || Buffer.isBuffer(value)) return value;
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return value;
  if (Array.isArray(value)) {
    const t = new LuaTable(true);
    value.forEach((v, i) => {
      t.set(i + 1, fromJs(v));
    });
    return t;
  }
  if (typeof value === 'object') {
    const t = new LuaTable();
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) t.set(k, fromJs(v));
    return t;
  }
  return undefined;
}

/** Lua value → plain JS for the driver's own logic (tables become arrays when they are sequences). */
export function toJs(value: LuaValue): unknown {
  if (value === undefined || value === LUA_NULL) return null;
  if (value instanceof WireValue) return value.wire;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (value instanceof LuaTable) {
    const n = cjsonArrayLength(value);
    if (n !== undefined && (n > 0 || value.arrayHint)) {
      const arr: unknown[] = [];
      for (let i = 1; i <= n; i++) arr.push(toJs(value.get(i)));
      return arr;
    }
    const obj: Record<string, unknown> = {};
    for (const [k, v] of value.entries()) obj[String(k)] = toJs(v);
    return obj;
  }
  return value;
}

/** cjson's lua_array_length: max index when every key is a positive integer, else undefined. */
function cjsonArrayLength(t: LuaTable): number | undefined {
  let max = 0;
  for (const k of t.entries()) {
    const key = k[0];
    if (typeof key !== 'number' || !Number.isInteger(key) || key < 1) return undefined;
    if (key > max) max = key;
  }
  // encode_sparse_array(false, 2, 10): excessively sparse arrays are an error in cjson.
  if (max > 10 && max > t.size * 2) throw new LuaError('Cannot serialise table: excessively sparse array');
  return max;
}

/** cjson.encode as Kong uses it (escapes "/", "%.14g" numbers, empty table → `{}` unless array_mt). */
export function cjsonEncode(value: LuaValue): string {
  if (value === undefined || value === LUA_NULL) return 'null';
  if (typeof value === 'boolean') return String(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new LuaError('Cannot serialise number: must not be NaN or Infinity');
    return formatNumber(value);
  }
  if (isLuaString(value)) return encodeJsonString(luaToString(value));
  if (value instanceof WireValue) throw new LuaError('Cannot serialise function: type not supported');
  const n = cjsonArrayLength(value);
  if (n !== undefined && (n > 0 || value.arrayHint)) {
    const parts: string[] = [];
    for (let i = 1; i <= n; i++) parts.push(cjsonEncode(value.get(i)));
    return `[${parts.join(',')}]`;
  }
  const parts: string[] = [];
  for (const [k, v] of value.entries()) {
    if (typeof k === 'boolean')
      throw new LuaError('Cannot serialise boolean: table key must be a number or string');
    parts.push(`${encodeJsonString(typeof k === 'number' ? formatNumber(k) : k)}:${cjsonEncode(v)}`);
  }
  return `{${parts.join(',')}}`;
}

function encodeJsonString(s: string): string {
  return JSON.stringify(s).replace(/\//g, '\\/');
}

/** cjson.decode (decode_with_array_mt): JSON null → cjson.null, arrays keep array_mt. */
export function cjsonDecode(text: string): LuaValue {
  return fromJs(JSON.parse(text));
}
