/**
 * Kong's side of the msgpack RPC (kong/runloop/plugin_servers/rpc/mp_rpc.lua, Rpc:call).
 *
 * A call takes a connection to the plugin's Unix socket (`ngx.socket.connect`, which reuses
 * one from the worker's keepalive pool when there is one), sends `[0, msgid, method, [arg]]`
 * and reads msgpack objects until the `[1, msgid, err, result]` answer; `[2, label, args]`
 * notifications in between are handed to `onNotification`. Then `c:setkeepalive()` puts the
 * connection back. Failures come back as RpcFailure values ("nil, err" in Lua); a mismatching
 * answer is an assert, i.e. a Lua error.
 */
import net from 'node:net';
import { decode, encode } from '@msgpack/msgpack';
import { scanFrame } from '../../../lib/kong/msgpack-frame';
import { LuaError } from './lua';

/** nginx's default lua_socket_{connect,send,read}_timeout: Kong sets none of them. */
export const KONG_SOCKET_TIMEOUT_MS = 60_000;
/** nginx's lua_socket_pool_size and lua_socket_keepalive_timeout defaults. */
const POOL_SIZE = 30;
const KEEPALIVE_MS = 60_000;

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

/** One connection to a plugin server: decodes whole msgpack objects as they arrive. */
class RpcConnection {
  private pending: Buffer = Buffer.alloc(0);
  private readonly messages: unknown[] = [];
  private waiter?: (message: unknown | typeof CLOSED) => void;
  private ended = false;
  idleTimer?: NodeJS.Timeout;

  constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('close', () => this.end());
    socket.on('error', () => this.end());
  }

  private receive(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    try {
      for (;;) {
        const scan = scanFrame(this.pending);
        if (!scan.complete) return;
        this.deliver(decode(this.pending.subarray(0, scan.length)));
        this.pending = this.pending.subarray(scan.length);
      }
    } catch {
      this.socket.destroy(); // undecodable: the reader fails, "no data"
    }
  }

  private deliver(message: unknown): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    if (waiter) waiter(message);
    else this.messages.push(message);
  }

  private end(): void {
    this.ended = true;
    this.socket.destroy();
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.(CLOSED);
  }

  /** The next msgpack object, or CLOSED when the connection ends or the read times out. */
  next(timeoutMs: number): Promise<unknown | typeof CLOSED> {
    if (this.messages.length > 0) return Promise.resolve(this.messages.shift());
    if (this.ended) return Promise.resolve(CLOSED);
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.socket.destroy(), timeoutMs);
      this.waiter = (message) => {
        clearTimeout(timer);
        resolve(message);
      };
    });
  }

  /** Open, with no data nobody asked for (nginx closes a keepalive connection that receives any). */
  get reusable(): boolean {
    return !this.ended && !this.socket.destroyed && this.messages.length === 0 && this.pending.length === 0;
  }
}

const CLOSED = Symbol('closed');

/** A worker's cosocket keepalive pool, per socket path. */
export class RpcPool {
  private readonly idle = new Map<string, RpcConnection[]>();
  private closed = false;

  /** ngx.socket.connect: an idle pooled connection, or a new one. */
  private async connect(socket: string, timeoutMs: number): Promise<RpcConnection> {
    const pooled = this.idle.get(socket);
    while (pooled?.length) {
      const conn = pooled.pop()!;
      clearTimeout(conn.idleTimer);
      if (conn.reusable) return conn;
      conn.socket.destroy();
    }
    const sock = net.createConnection(socket);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new RpcFailure('timeout', 'connect'));
      }, timeoutMs);
      sock.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      sock.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new RpcFailure(socketErrorText(err), 'connect'));
      });
    });
    return new RpcConnection(sock);
  }

  /** c:setkeepalive(): back to the pool, or closed when the pool is full or the socket is gone. */
  private keepalive(socket: string, conn: RpcConnection): void {
    const pooled = this.idle.get(socket) ?? [];
    this.idle.set(socket, pooled);
    if (this.closed || !conn.reusable || pooled.length >= POOL_SIZE) {
      conn.socket.destroy();
      return;
    }
    conn.idleTimer = setTimeout(() => {
      conn.socket.destroy();
      pooled.splice(pooled.indexOf(conn), 1);
    }, KEEPALIVE_MS).unref();
    conn.socket.unref();
    pooled.push(conn);
  }

  async call(options: RpcCallOptions): Promise<unknown> {
    const timeoutMs = options.timeoutMs ?? KONG_SOCKET_TIMEOUT_MS;
    const conn = await this.connect(options.socket, timeoutMs);
    conn.socket.ref();
    try {
      conn.socket.write(encode([0, options.msgId, options.method, [options.arg]]));
      for (;;) {
        const message = await conn.next(timeoutMs);
        if (message === CLOSED) throw new RpcFailure('no data', 'read');
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
      // A Lua error aborts the request's thread: the cosocket is closed, not kept alive.
      if (err instanceof LuaError) conn.socket.destroy();
      throw err;
    } finally {
      this.keepalive(options.socket, conn);
    }
  }

  /** Closes every idle connection (the worker exits). */
  close(): void {
    this.closed = true;
    for (const pooled of this.idle.values()) {
      for (const conn of pooled) {
        clearTimeout(conn.idleTimer);
        conn.socket.destroy();
      }
    }
    this.idle.clear();
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
