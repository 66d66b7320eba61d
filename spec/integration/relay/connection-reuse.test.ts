/**
 * Regression: the relay left its read loop at [DONE] and destroyed the provider's body, so a
 * provider that sends [DONE] and the end of the body in two writes lost its connection on
 * every stream (a TCP + TLS handshake per stream against a real provider).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CONTEXT_HEADER, ContextStore } from '../../../lib/context';
import { createLogger } from '../../../lib/log/logger';
import { type Relay, startRelay } from '../../../lib/relay/server';
import { rawRequest } from '../../support/providers/raw-http';
import { issueRouteTicket } from '../../support/tickets';

const chunk = (content: string) =>
  `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;

let provider: Server;
let connections = 0;
let contexts: ContextStore;
let relay: Relay;

beforeAll(async () => {
  provider = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(chunk('hello'));
      res.write('data: [DONE]\n\n');
      setTimeout(() => res.end(), 5); // the end of the body comes in its own write
    });
  });
  provider.on('connection', () => connections++);
  await new Promise<void>((resolve) => provider.listen(0, '127.0.0.1', resolve));
  contexts = new ContextStore();
  relay = await startRelay({
    port: 0,
    contexts,
    logger: createLogger({ level: 'silent' }),
    limits: { max_body_bytes: 1024 * 1024, max_json_depth: 64 },
  });
});

afterAll(async () => {
  await relay.close();
  await new Promise((resolve) => provider.close(resolve));
  contexts.close();
});

it('keeps the provider connection across streams whose body ends after [DONE]', async () => {
  const { port } = provider.address() as AddressInfo;
  for (let i = 0; i < 10; i++) {
    const route = {
      reason: 'test',
      exposeTarget: false,
      targets: [
        {
          name: 't',
          provider: 'openai' as const,
          model: 'm',
          base_url: `http://127.0.0.1:${port}/v1`,
          headers: {},
          timeouts: { connect_ms: 1_000, first_byte_ms: 2_000, idle_ms: 2_000, total_ms: 5_000 },
        },
      ],
    };
    const ticket = issueRouteTicket(contexts, route);
    const res = await rawRequest(`http://127.0.0.1:${relay.port}/v1/chat/completions`, {
      method: 'POST',
      headers: { [CONTEXT_HEADER]: ticket.id },
      body: { model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] },
    });
    expect(res.status).toBe(200);
    expect(res.text).toContain('data: [DONE]');
    expect(contexts.find([ticket.id])?.outcome).toMatchObject({ end: 'complete' });
    await new Promise((r) => setTimeout(r, 20)); // the provider's body has ended
  }
  expect(connections).toBe(1);
});
