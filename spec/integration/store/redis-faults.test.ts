/**
 * Redis trouble must never hang a call or crash the process, and the store must heal itself.
 * In the spirit of Kong's rate-limiting fault tests (spec/03-plugins/23-rate-limiting/
 * 04-access_spec.lua: the policy pointed at a dead Redis port). The time limits below are
 * hang detectors, generous on purpose, not performance targets.
 */
import net from 'node:net';
import { GatewayError } from '../../../lib/errors';
import { createLogger } from '../../../lib/log/logger';
import { createStore, key, parseStoreConfig, type Store } from '../../../lib/store';
import { eventually } from '../../support/eventually';
import { freePort, type RedisServer, startRedis } from '../../support/redis';

const HANG_LIMIT_MS = 2000;

interface LogLine {
  level: string;
  msg: string;
  reason?: string;
}

function capturingStore(redis: Record<string, unknown>): { store: Store; logs: LogLine[] } {
  const logs: LogLine[] = [];
  const logger = createLogger({
    level: 'debug',
    destination: { write: (line: string) => logs.push(JSON.parse(line)) },
  });
  return { store: createStore(parseStoreConfig({ kind: 'redis', redis }), logger), logs };
}

const calls: Array<[string, (s: Store) => Promise<unknown>]> = [
  ['get', (s) => s.get(key('t', 'k'))],
  ['set', (s) => s.set(key('t', 'k'), 'v', 1000)],
  ['delete', (s) => s.delete(key('t', 'k'))],
  ['incrBy', (s) => s.incrBy(key('t', 'c'), 1, 1000)],
  ['ping', (s) => s.ping()],
  [
    'reserve',
    (s) =>
      s.reserve({
        id: 'r',
        charges: [{ keys: [key('t', 'budget')], cap: 10, hard: true, fixed: 1, perOutput: 1, ttlMs: 1000 }],
        output: 5,
        minOutput: 0,
        holdMs: 1000,
      }),
  ],
  ['settle', (s) => s.settle('r', [{ key: key('t', 'budget'), amount: 3, ttlMs: 1000 }])],
  ['budgetUsage', (s) => s.budgetUsage(key('t', 'budget'))],
  ['resetBudget', (s) => s.resetBudget(key('t', 'budget'))],
];

/** Runs a call and returns how it failed and how long it took. */
async function failure(run: () => Promise<unknown>): Promise<{ err: GatewayError; ms: number }> {
  const started = performance.now();
  const outcome = await run().then(
    () => undefined,
    (e: unknown) => e,
  );
  const ms = performance.now() - started;
  if (!(outcome instanceof GatewayError)) throw new Error(`expected a GatewayError, got ${String(outcome)}`);
  return { err: outcome, ms };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('Redis store pointed at a dead port', () => {
  let store: Store;

  beforeAll(async () => {
    const port = await freePort(); // nothing listens there
    // Default timeouts (connect 1000 ms, command 250 ms), as a user would run it.
    ({ store } = capturingStore({ url: `redis://127.0.0.1:${port}` }));
  });

  afterAll(() => store.close());

  it.each(calls)('%s rejects with AIGW_STORE_UNAVAILABLE without hanging', async (_, call) => {
    const { err, ms } = await failure(() => call(store));
    expect(err.code).toBe('AIGW_STORE_UNAVAILABLE');
    expect(err.status).toBe(503);
    expect(ms).toBeLessThan(HANG_LIMIT_MS);
  });

  it('keeps failing the same way while it retries in the background', async () => {
    await sleep(300);
    for (const [, call] of calls) {
      const { err, ms } = await failure(() => call(store));
      expect(err.code).toBe('AIGW_STORE_UNAVAILABLE');
      expect(ms).toBeLessThan(HANG_LIMIT_MS);
    }
  });
});

describe('Redis store against a server that accepts connections and never answers', () => {
  let blackhole: net.Server;
  const sockets = new Set<net.Socket>();
  let store: Store;

  beforeAll(async () => {
    blackhole = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => blackhole.listen(0, '127.0.0.1', resolve));
    const { port } = blackhole.address() as net.AddressInfo;
    ({ store } = capturingStore({
      host: '127.0.0.1',
      port,
      connect_timeout_ms: 300,
      command_timeout_ms: 100,
    }));
  });

  afterAll(async () => {
    await store.close();
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => blackhole.close(resolve));
  });

  it.each(calls)('%s rejects with AIGW_STORE_UNAVAILABLE without hanging', async (_, call) => {
    const { err, ms } = await failure(() => call(store));
    expect(err.code).toBe('AIGW_STORE_UNAVAILABLE');
    expect(ms).toBeLessThan(HANG_LIMIT_MS);
  });
});

describe('Redis store when Redis hangs or goes away mid-run', () => {
  let server: RedisServer;

  beforeAll(async () => {
    server = await startRedis();
  });

  afterAll(() => server.destroy());

  it('times out calls on a hung server, then gets the right answers once it is back', async () => {
    const { store } = capturingStore({ url: server.url, command_timeout_ms: 150 });
    try {
      await store.ping();
      await store.set(key('t', 'a'), 'value-a');
      await store.set(key('t', 'b'), 'value-b');

      server.pause();
      for (const [name, call] of calls) {
        const { err, ms } = await failure(() => call(store));
        expect(err.code).toBe('AIGW_STORE_UNAVAILABLE');
        expect(err.message).toMatch(new RegExp(`redis ${name}: timed out after 150 ms`));
        expect(ms).toBeLessThan(HANG_LIMIT_MS);
      }
      const { err } = await failure(() => store.get(key('t', 'a')));
      expect(err.message).toMatch(/timed out/);

      server.resume();
      // The late reply to the timed-out GET of `a` must not be taken for this GET of `b`.
      expect(await store.get(key('t', 'b'))).toEqual(Buffer.from('value-b'));
      expect(await store.get(key('t', 'a'))).toEqual(Buffer.from('value-a'));
    } finally {
      server.resume();
      await store.close();
    }
  });

  it('fails fast while Redis is down, logs each transition once, and recovers by itself', async () => {
    // A long command timeout: failing well within it shows calls are refused, not queued.
    const { store, logs } = capturingStore({ url: server.url, command_timeout_ms: 1500 });
    try {
      await store.ping();
      expect(await store.incrBy(key('t', 'before'), 1)).toBe(1);
      const warnings = () => logs.filter((l) => l.msg.startsWith('redis store unavailable'));
      const connected = () => logs.filter((l) => l.msg === 'redis store connected');
      expect(connected()).toHaveLength(1);

      await server.stop();
      await eventually(
        'the store noticing Redis is gone',
        async () => {
          if (warnings().length === 0) throw new Error('no warning yet');
        },
        8_000,
      );
      for (const [name, call] of calls.filter(([n]) => n !== 'ping')) {
        const { err, ms } = await failure(() => call(store));
        expect(err.code).toBe('AIGW_STORE_UNAVAILABLE');
        expect(err.message).toContain(`redis ${name}: not connected`);
        expect(ms).toBeLessThan(500);
      }
      await sleep(800); // several reconnect attempts fail meanwhile (50, 100, 200, 400 ms apart)
      expect(warnings()).toHaveLength(1);

      await server.start(); // same port, empty data set
      await eventually('the store reconnecting', () => store.set(key('t', 'after'), 'back'), 8_000);
      expect(await store.get(key('t', 'after'))).toEqual(Buffer.from('back'));
      expect(await store.incrBy(key('t', 'before'), 1)).toBe(1); // Redis lost the old count
      await store.ping();
      expect(connected()).toHaveLength(2);
      expect(warnings()).toHaveLength(1);
    } finally {
      await store.close();
    }
  });

  it('connects by itself when Redis starts after the store', async () => {
    await server.stop();
    const { store } = capturingStore({ url: server.url, connect_timeout_ms: 200 });
    try {
      expect((await failure(() => store.ping())).err.code).toBe('AIGW_STORE_UNAVAILABLE');
      await server.start();
      await eventually('the first connection', () => store.ping(), 8_000);
      await store.set(key('t', 'late'), 'ok');
      expect(await store.get(key('t', 'late'))).toEqual(Buffer.from('ok'));
    } finally {
      await store.close();
    }
  });
});
