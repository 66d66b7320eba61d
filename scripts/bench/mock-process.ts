/**
 * The OpenAI mock of spec/support/providers in its own process, so that neither the load
 * generator nor the gateway shares an event loop with it. Started by scripts/bench.ts with
 * an IPC channel:
 *
 *   ← { type: 'start', apiKey, chunkDelayMs, answer }
 *   → { type: 'ready', url, pid }
 *   ← { type: 'close' }
 *
 * The mock records every request; the record is cleared every second (with the answer set
 * again) so that 100k requests do not grow this process.
 */
import { type ProviderMock, startOpenAIMock } from '../../spec/support/providers';

interface StartMessage {
  type: 'start';
  apiKey: string;
  chunkDelayMs: number;
  answer: string;
}

let mock: ProviderMock | undefined;

process.on('message', (msg: StartMessage | { type: 'close' }) => {
  if (msg.type === 'start') {
    void start(msg);
  } else if (msg.type === 'close') {
    void (mock?.close() ?? Promise.resolve()).finally(() => process.exit(0));
  }
});
process.on('disconnect', () => process.exit(0));

async function start(msg: StartMessage): Promise<void> {
  try {
    mock = await startOpenAIMock({ apiKey: msg.apiKey, chunkDelayMs: msg.chunkDelayMs });
    mock.setAnswer(msg.answer);
    setInterval(() => {
      mock?.reset();
      mock?.setAnswer(msg.answer);
    }, 1000);
    process.send?.({ type: 'ready', url: mock.url, pid: process.pid });
  } catch (err) {
    process.send?.({ type: 'error', message: (err as Error).message });
    process.exit(1);
  }
}
