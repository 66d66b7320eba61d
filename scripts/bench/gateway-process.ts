/**
 * The dev gateway (Kong emulator + the real suite server it spawns) in its own process, so
 * the emulator does not share an event loop with the load generator. Started by
 * scripts/bench.ts with an IPC channel:
 *
 *   ← { type: 'start', config, port, relayPort, env }
 *   → { type: 'ready', url, suitePid, pid }
 *   ← { type: 'stats-reset' }            → { type: 'stats', ... }   (counters since the reset)
 *   ← { type: 'stats-get' }              → { type: 'stats', requests, roundTrips: {n: count}, statuses, errLogs }
 *   ← { type: 'close' }                  → exits once the gateway (and the suite server) stopped
 *
 * Round trips per request come from the emulator's own count (HandleEvent + every PDK step,
 * all plugins, all phases: `RequestStats.roundTrips`).
 */
import { type DevGateway, startDevGateway } from '../dev-gateway';

interface StartMessage {
  type: 'start';
  config: object;
  port: number;
  relayPort: number;
  env: Record<string, string>;
}

let gateway: DevGateway | undefined;
let counters = fresh();

function fresh() {
  return {
    requests: 0,
    roundTrips: {} as Record<string, number>,
    statuses: {} as Record<string, number>,
    errLogs: 0,
    firstErrLog: undefined as string | undefined,
  };
}

process.on('message', (msg: StartMessage | { type: 'stats-reset' | 'stats-get' | 'close' }) => {
  switch (msg.type) {
    case 'start':
      void start(msg);
      break;
    case 'stats-reset':
      counters = fresh();
      process.send?.({ type: 'stats', ...counters });
      break;
    case 'stats-get':
      process.send?.({ type: 'stats', ...counters });
      break;
    case 'close':
      void (gateway?.close() ?? Promise.resolve()).finally(() => process.exit(0));
      break;
  }
});
process.on('disconnect', () => {
  void (gateway?.close() ?? Promise.resolve()).finally(() => process.exit(0));
});

async function start(msg: StartMessage): Promise<void> {
  try {
    gateway = await startDevGateway({
      config: msg.config,
      port: msg.port,
      relayPort: msg.relayPort,
      mock: false,
      env: msg.env,
    });
    const { kong } = gateway;
    kong.on('request', (stats: { roundTrips: number; status: number }) => {
      counters.requests++;
      counters.roundTrips[stats.roundTrips] = (counters.roundTrips[stats.roundTrips] ?? 0) + 1;
      counters.statuses[stats.status] = (counters.statuses[stats.status] ?? 0) + 1;
    });
    kong.on('log', (line: { level: string; message: string }) => {
      if (line.level === 'err' || line.level === 'crit' || line.level === 'alert' || line.level === 'emerg') {
        counters.errLogs++;
        counters.firstErrLog ??= line.message.slice(0, 300);
      }
    });
    process.send?.({
      type: 'ready',
      url: kong.url,
      suitePid: kong.pluginServers.pid('ai-router'),
      pid: process.pid,
    });
  } catch (err) {
    process.send?.({ type: 'error', message: (err as Error).message });
    process.exit(1);
  }
}
