/**
 * Kong's side of the msgpack RPC (kong/runloop/plugin_servers/rpc/mp_rpc.lua, Rpc:call).
 *
 * Every call connects afresh to the plugin's Unix socket, sends `[0, msgid, method, [arg]]`
 * and reads msgpack objects until the `[1, msgid, err, result]` answer; `[2, label, args]`
 * notifications in between are handed to `onNotification`. Failures come back as
 * RpcFailure values ("nil, err" in Lua); a mismatching answer is an assert, i.e. a Lua error.
 */
import net from 'node:net';
import { decodeMultiStream, encode } from '@msgpack/msgpack';
import { LuaError } from './lua';

/** nginx's default lua_socket_{connect,send,read}_timeout: Kong sets none of them. */
export const KONG_SOCKET_TIMEOUT_MS = 60_000;

/** The `nil, err` an Rpc:call returns. */
export class RpcFailure extends Error {
  override readonly name = 'RpcFailure';
  constructor(
    message: string,
    /** connect: ngx.socket.connect failed (Kong logs "trying to connect: ..."). */
    readonly stage: 'connect' | 'read' | 'reply',
  ) {
    super(message);
  }
}

export interface RpcCallOptions {
  socket: string;
  msgId: number;
  method: string;
  /** Already in wire shape (see lua.ts toWire). */
  arg: unknown;
  timeoutMs?: number;
  onNotification?: (label: unknown, args: unknown) => void;
}

export async function rpcCall(options: RpcCallOptions): Promise<unknown> {
  const payload = encode([0, options.msgId, options.method, [options.arg]]);
  const sock = net.createConnection(options.socket);
  const timeoutMs = options.timeoutMs ?? KONG_SOCKET_TIMEOUT_MS;
  let connected = false;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new RpcFailure('timeout', 'connect')), timeoutMs);
      sock.once('connect', () => {
        clearTimeout(timer);
        connected = true;
        resolve();
      });
      sock.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new RpcFailure(socketErrorText(err), 'connect'));
      });
    });
    sock.setTimeout(timeoutMs, () => sock.destroy(new Error('timeout')));
    sock.write(payload);
    try {
      for await (const message of decodeMultiStream(sock)) {
        if (!Array.isArray(message)) throw new LuaError('RPC response expected from Go plugin server');
        if (message[0] === 2) {
          options.onNotification?.(message[1], message[2]);
          continue;
        }
        if (message[0] !== 1) throw new LuaError('RPC response expected from Go plugin server');
        if (message[1] !== options.msgId)
          throw new LuaError('unexpected RPC response ID from Go plugin server');
        if (message[2] !== null && message[2] !== undefined)
          throw new RpcFailure(String(message[2]), 'reply');
        return message[3];
      }
    } catch (err) {
      if (err instanceof LuaError || err instanceof RpcFailure) throw err;
      // reader() failed: closed, reset, timed out or undecodable.
      throw new RpcFailure('no data', 'read');
    }
    throw new RpcFailure('no data', 'read');
  } catch (err) {
    if (!connected && !(err instanceof RpcFailure)) throw new RpcFailure(String(err), 'connect');
    throw err;
  } finally {
    sock.destroy();
  }
}

/** The strings ngx.socket.connect reports for the usual failures. */
function socketErrorText(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ENOENT':
      return 'no such file or directory';
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'EACCES':
      return 'permission denied';
    default:
      return err.message;
  }
}
