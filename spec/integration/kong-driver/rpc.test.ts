/**
 * The emulator's side of the plugin RPC keeps connections alive between calls, as Kong's
 * cosocket pool does (mp_rpc.lua calls c:setkeepalive() after every answer).
 */
import net from 'node:net';
import path from 'node:path';
import { decode, encode } from '@msgpack/msgpack';
import { makeSocketDir } from '../../support/kong/fixtures';
import { LuaError } from '../../support/kong/lua';
import { RpcFailure, RpcPool } from '../../support/kong/rpc';

type Reply = (msg: [number, number, string, unknown[]], conn: net.Socket) => void;

/** A msgpack-RPC server (one message per packet is enough here) that counts connections. */
async function startServer(socket: string, reply: Reply) {
  const conns: net.Socket[] = [];
  const server = net.createServer((conn) => {
    conns.push(conn);
    conn.on('data', (data) => reply(decode(data) as [number, number, string, unknown[]], conn));
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return {
    conns,
    close: () => {
      for (const c of conns) c.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const echo: Reply = ([, id, method, args], conn) =>
  conn.write(encode([1, id, null, { method, arg: args[0] }]));

let sockets: ReturnType<typeof makeSocketDir>;
let pool: RpcPool;
let socket: string;

beforeEach(() => {
  sockets = makeSocketDir();
  socket = path.join(sockets.dir, 'p.sock');
  pool = new RpcPool();
});

afterEach(() => {
  pool.close();
  sockets.remove();
});

test('sequential calls share one kept-alive connection', async () => {
  const server = await startServer(socket, echo);
  for (let id = 1; id <= 20; id++) {
    await expect(pool.call({ socket, msgId: id, method: 'plugin.Echo', arg: id })).resolves.toEqual({
      method: 'plugin.Echo',
      arg: id,
    });
  }
  expect(server.conns).toHaveLength(1);
  await server.close();
});

test('concurrent calls each get their own connection, then reuse them', async () => {
  const server = await startServer(socket, (msg, conn) => setTimeout(() => echo(msg, conn), 5));
  const round = (base: number) =>
    Promise.all([1, 2, 3].map((i) => pool.call({ socket, msgId: base + i, method: 'm', arg: i })));
  await round(0);
  await round(10);
  expect(server.conns).toHaveLength(3);
  await server.close();
});

test('a pooled connection the server closed is replaced', async () => {
  const server = await startServer(socket, echo);
  await pool.call({ socket, msgId: 1, method: 'm', arg: 1 });
  server.conns[0]!.destroy();
  await new Promise((r) => setTimeout(r, 20));
  await expect(pool.call({ socket, msgId: 2, method: 'm', arg: 2 })).resolves.toEqual({
    method: 'm',
    arg: 2,
  });
  expect(server.conns).toHaveLength(2);
  await server.close();
});

test('notifications before the answer reach the caller', async () => {
  const server = await startServer(socket, ([, id], conn) => {
    conn.write(encode([2, 'serverPid', 42]));
    conn.write(encode([1, id, null, 'ok']));
  });
  const seen: unknown[] = [];
  const result = await pool.call({
    socket,
    msgId: 1,
    method: 'm',
    arg: null,
    onNotification: (label, args) => seen.push([label, args]),
  });
  expect(result).toBe('ok');
  expect(seen).toEqual([['serverPid', 42]]);
  await server.close();
});

test('failures: error reply, wrong id (a Lua error, connection dropped), read timeout, nobody listening', async () => {
  let mode = 'error';
  const server = await startServer(socket, ([, id], conn) => {
    if (mode === 'error') conn.write(encode([1, id, 'no plugin instance 3', null]));
    if (mode === 'wrong-id') conn.write(encode([1, id + 1, null, 'x']));
    // 'silent': never answers
  });
  await expect(pool.call({ socket, msgId: 1, method: 'm', arg: null })).rejects.toEqual(
    new RpcFailure('no plugin instance 3', 'reply'),
  );
  mode = 'wrong-id';
  await expect(pool.call({ socket, msgId: 2, method: 'm', arg: null })).rejects.toBeInstanceOf(LuaError);
  mode = 'silent';
  const timedOut = pool.call({ socket, msgId: 3, method: 'm', arg: null, timeoutMs: 50 });
  await expect(timedOut).rejects.toMatchObject({ name: 'RpcFailure', stage: 'read', message: 'no data' });
  // The error reply kept its connection; the Lua error and the timeout each closed theirs.
  expect(server.conns).toHaveLength(2);
  await server.close();
  await expect(pool.call({ socket, msgId: 4, method: 'm', arg: null })).rejects.toMatchObject({
    stage: 'connect',
  });
});
