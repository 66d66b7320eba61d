import { unlinkSync } from 'node:fs';
import net from 'node:net';
import { decode, encode } from '@msgpack/msgpack';
import { listen } from '../listen';
import type { Logger } from '../log/logger';
import { scanFrame } from './msgpack-frame';

export interface RpcDispatcher {
  dispatch(method: string, args: unknown[]): Promise<unknown>;
}

/** A plugin socket being served. */
export interface RpcListener {
  /** Stops accepting connections; those Kong keeps alive still carry calls (requests draining). */
  stop(): void;
  /** Ends every connection. */
  close(): void;
}

/**
 * Serves msgpack-RPC on a Unix socket as Kong's mp_rpc.lua speaks it:
 * request `[0, msgid, method, args]`, response `[1, msgid, error, result]`.
 * Kong takes a connection per call from its keepalive pool: one connection carries many calls, one at a time.
 */
export async function listenRpc(
  socketPath: string,
  dispatcher: RpcDispatcher,
  logger: Logger,
): Promise<RpcListener> {
  try {
    unlinkSync(socketPath); // a stale socket from a killed process
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const connections = new Set<net.Socket>();
  const server = net.createServer((conn) => {
    connections.add(conn);
    conn.on('close', () => connections.delete(conn));
    serveConnection(conn, dispatcher, logger);
  });
  await listen(server, { path: socketPath });
  server.on('error', (err) => logger.error({ err, socket: socketPath }, 'rpc socket error'));
  return {
    stop: () => server.close(),
    close: () => {
      server.close();
      for (const conn of connections) conn.destroy();
    },
  };
}

function serveConnection(conn: net.Socket, dispatcher: RpcDispatcher, logger: Logger): void {
  let chunks: Buffer[] = [];
  let buffered = 0;
  let needed = 1;
  conn.on('error', () => conn.destroy()); // Kong went away; nothing to answer
  conn.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    buffered += chunk.length;
    while (buffered >= needed) {
      const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      let scan: ReturnType<typeof scanFrame>;
      try {
        scan = scanFrame(buf);
      } catch (err) {
        logger.error({ err }, 'malformed rpc message; closing connection');
        conn.destroy();
        return;
      }
      if (!scan.complete) {
        chunks = [buf];
        needed = scan.needed;
        return;
      }
      handleMessage(conn, buf.subarray(0, scan.length), dispatcher, logger);
      const rest = buf.subarray(scan.length);
      chunks = rest.length ? [rest] : [];
      buffered = rest.length;
      needed = 1;
    }
  });
}

function handleMessage(conn: net.Socket, frame: Uint8Array, dispatcher: RpcDispatcher, logger: Logger): void {
  let message: unknown;
  try {
    message = decode(frame);
  } catch (err) {
    logger.error({ err }, 'undecodable rpc message; closing connection');
    conn.destroy();
    return;
  }
  const [, msgid, method, args] = Array.isArray(message) ? message : [];
  if (typeof msgid !== 'number' || typeof method !== 'string') {
    logger.error('rpc message is not a request; ignored');
    return;
  }
  dispatcher.dispatch(method, Array.isArray(args) ? args : []).then(
    (result) => reply(conn, [1, msgid, null, result]),
    (err: unknown) => {
      const text = err instanceof Error ? err.message : String(err);
      if (!text.startsWith('no plugin instance')) logger.warn({ method, err: text }, 'rpc call failed');
      reply(conn, [1, msgid, text, null]);
    },
  );
}

function reply(conn: net.Socket, message: unknown[]): void {
  if (!conn.destroyed) conn.write(encode(message, { ignoreUndefined: false }));
}
