/**
 * The project's OpenAI mock (spec/support/providers/openai.ts) as a standalone server, for
 * docker compose's `mock` profile or any manual test:
 *
 *   MOCK_HOST=0.0.0.0 MOCK_PORT=8080 MOCK_API_KEY=sk-mock node dist/scripts/mock-provider.js
 *
 * Environment: MOCK_HOST (default 127.0.0.1), MOCK_PORT (default 8080; 0 = any free port),
 * MOCK_API_KEY (when set, requests must carry it as `Authorization: Bearer ...`),
 * MOCK_CHUNK_DELAY_MS (delay between streamed chunks, default 5). Prints its base URL.
 */

import { intFromEnv } from '../lib/env';
import { startOpenAIMock } from '../spec/support/providers/openai';

async function main(): Promise<void> {
  const mock = await startOpenAIMock({
    host: process.env.MOCK_HOST || '127.0.0.1',
    port: intFromEnv('MOCK_PORT', 8080),
    apiKey: process.env.MOCK_API_KEY || undefined,
    chunkDelayMs: intFromEnv('MOCK_CHUNK_DELAY_MS', 5),
  });
  process.stdout.write(`OpenAI mock listening: ${mock.url}\n`);
  // As PID 1 in a container, node gets no default signal handling: stop on SIGTERM/SIGINT.
  const stop = () => {
    mock.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(
    `mock provider failed to start: ${err instanceof Error ? err.message : String(err)}\n`,
  );
  process.exit(1);
});
