/**
 * The OpenAI mock of spec/support/providers in its own process, so that neither the load
 * generator nor the gateway shares an event loop with it. Started by scripts/bench.ts and
 * scripts/bench-failover.ts with an IPC channel:
 *
 *   ← { type: 'start', apiKey, chunkDelayMs, answer, latencyMs? }
 *   → { type: 'ready', url, pid }
 *   ← { type: 'fault', fault }     → { type: 'fault-set' }   every request gets `fault` (null: healthy again)
 *   ← { type: 'count' }            → { type: 'count', requests }   requests received since the start
 *   ← { type: 'close' }
 *
 * Healthy, every answer waits `latencyMs` before its headers (a `latency` fault; default 0),
 * standing in for a provider's own time. A fault set over IPC replaces that latency: a
 * failing provider answers at once.
 *
 * The mock records every request; the record is cleared every second (with the answer and
 * the fault set again) so that 100k requests do not grow this process.
 */
import { type Fault, type ProviderMock, startOpenAIMock } from '../../spec/support/providers';

interface StartMessage {
  type: 'start';
  apiKey: string;
  chunkDelayMs: number;
  answer: string;
  latencyMs?: number;
}

type Message = StartMessage | { type: 'fault'; fault: Fault | null } | { type: 'count' } | { type: 'close' };

let mock: ProviderMock | undefined;
let healthy: Fault | undefined;
let standing: Fault | undefined;
/** Requests of the records already cleared. */
let cleared = 0;

process.on('message', (msg: Message) => {
  switch (msg.type) {
    case 'start':
      void start(msg);
      break;
    case 'fault':
      standing = msg.fault ?? healthy;
      mock?.setFault(standing);
      process.send?.({ type: 'fault-set' });
      break;
    case 'count':
      process.send?.({ type: 'count', requests: cleared + (mock?.requests.length ?? 0) });
      break;
    case 'close':
      void (mock?.close() ?? Promise.resolve()).finally(() => process.exit(0));
      break;
  }
});
process.on('disconnect', () => process.exit(0));

async function start(msg: StartMessage): Promise<void> {
  try {
    mock = await startOpenAIMock({ apiKey: msg.apiKey, chunkDelayMs: msg.chunkDelayMs });
    healthy = msg.latencyMs ? { kind: 'latency', ms: msg.latencyMs } : undefined;
    standing = healthy;
    mock.setAnswer(msg.answer);
    mock.setFault(standing);
    setInterval(() => {
      if (!mock) return;
      cleared += mock.requests.length;
      // reset() clears the answer and the fault too.
      mock.reset();
      mock.setAnswer(msg.answer);
      mock.setFault(standing);
    }, 1000);
    process.send?.({ type: 'ready', url: mock.url, pid: process.pid });
  } catch (err) {
    process.send?.({ type: 'error', message: (err as Error).message });
    process.exit(1);
  }
}
