/**
 * The relay inside the real suite server process (dist/lib/kong/main.js started by the Kong
 * emulator as kong.conf would): it serves only tickets the plugins issued, once each,
 * and provider keys (from a vault reference or from the server's environment) never reach
 * a client or the server's own output, also when the provider answers 401 and echoes part
 * of the key. A tap between Kong and the relay records the tickets the relay receives.
 */
import { randomBytes } from 'node:crypto';
import type { DriverResponse } from '../../support/kong';
import { type ProviderMock, rawRequest, startOpenAIMock } from '../../support/providers';
import { maskKey } from '../../support/providers/shared';
import { freePort } from '../../support/redis';
import {
  chatBody,
  openAIError,
  postChat,
  type RealProcess,
  routerConfig,
  startRealProcess,
  startTap,
  until,
} from '../../support/suite';

const KEY = 'sk-proj-RelayProcessKeyQ7Zt0123456789abKq7ZtW9x';
const WRONG_KEY = 'sk-proj-WrongProcessKeyM3Vd9876543210zyPn4HsR2c';

let mock: ProviderMock;
let gw: RealProcess;
let tap: Awaited<ReturnType<typeof startTap>>;
let relayUrl: string;

beforeAll(async () => {
  mock = await startOpenAIMock({ apiKey: KEY, chunkDelayMs: 1 });
  const relayPort = await freePort();
  relayUrl = `http://127.0.0.1:${relayPort}`;
  tap = await startTap(relayPort);
  const vaultKey = [{ name: 'gpt-4o-mini', api_key: '{vault://env/AIGW_TEST_OPENAI_KEY}' }];
  gw = await startRealProcess({
    relayPort,
    env: { AIGW_TEST_OPENAI_KEY: KEY },
    // api_key_env: the key lives in the suite server's environment (the start_cmd's /usr/bin/env).
    serverEnv: { AIGW_TEST_WRONG_KEY: WRONG_KEY },
    routes: () => [
      {
        name: 'good',
        path: '/good',
        plugins: [{ name: 'ai-router', config: routerConfig(mock.url, vaultKey) }, { name: 'ai-metrics' }],
      },
      {
        name: 'wrong',
        path: '/wrong',
        plugins: [
          {
            name: 'ai-router',
            config: routerConfig(mock.url, [{ name: 'gpt-4o-mini', api_key_env: 'AIGW_TEST_WRONG_KEY' }]),
          },
          { name: 'ai-metrics' },
        ],
      },
      {
        name: 'tapped',
        path: '/tapped',
        upstream: tap.url,
        plugins: [{ name: 'ai-router', config: routerConfig(mock.url, vaultKey) }, { name: 'ai-metrics' }],
      },
      {
        name: 'tappedbare',
        path: '/tappedbare',
        upstream: tap.url,
        plugins: [{ name: 'ai-router', config: routerConfig(mock.url, vaultKey) }],
      },
    ],
  });
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await tap?.close();
  await mock?.close();
});

beforeEach(() => mock.reset());

describe('the relay refuses requests that did not come through the plugins', () => {
  const direct = (headers: Record<string, string> = {}) =>
    rawRequest(`${relayUrl}/v1/chat/completions`, { body: chatBody(), headers });

  async function expectRefused(res: Awaited<ReturnType<typeof direct>>) {
    expect(res.status).toBe(403);
    expect(JSON.parse(res.text)).toEqual({
      error: {
        message: 'this endpoint serves only requests admitted by the AI gateway plugins of the local Kong',
        type: 'permission_error',
        code: 'AIGW_CONTEXT_REQUIRED',
        param: null,
      },
    });
  }

  test('no x-aigw-context → 403, no provider call', async () => {
    await expectRefused(await direct());
    expect(mock.requests).toHaveLength(0);
  });

  test('a forged id → 403', async () => {
    await expectRefused(await direct({ 'x-aigw-context': randomBytes(16).toString('base64url') }));
    expect(mock.requests).toHaveLength(0);
  });

  test('a reused id → 403, after the log phase dropped it and while it is still kept for the grace', async () => {
    for (const prefix of ['/tapped', '/tappedbare']) {
      const before = tap.contextIds.length;
      const res = await postChat(gw.kong, prefix);
      expect(res.status).toBe(200);
      await res.stats();
      expect(tap.contextIds).toHaveLength(before + 1);
      const id = tap.contextIds.at(-1)!;
      expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/); // 128 bits, base64url
      // /tapped: ai-metrics dropped the ticket; /tappedbare: it is kept, taken, for the grace.
      await expectRefused(await direct({ 'x-aigw-context': id }));
    }
    expect(mock.requests).toHaveLength(2);
  });

  test('a reused id while its own stream is still running → 403; the stream completes', async () => {
    mock.nextFault({ kind: 'chunk_delay', ms: 30 });
    const before = tap.contextIds.length;
    const streaming = postChat(gw.kong, '/tapped', chatBody({ stream: true }));
    const id = await until(() => tap.contextIds[before], 'the stream to reach the relay');
    await until(() => (mock.requests.length > 0 ? true : undefined), 'the provider call');
    await expectRefused(await direct({ 'x-aigw-context': id }));
    const res = await streaming;
    expect(res.status).toBe(200);
    expect(res.text().trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(mock.requests).toHaveLength(1);
  });

  // The plugins add their tickets to whatever the client sent (kong.service.request.add_header);
  // the relay takes only live ones, so a client value neither blocks nor steers the request.
  test('a client-sent x-aigw-context naming a used ticket is ignored beside the plugin’s own, and the request is served', async () => {
    const res = await postChat(gw.kong, '/tappedbare');
    expect(res.status).toBe(200);
    await res.stats();
    const used = tap.contextIds.at(-1)!;
    const before = tap.contextIds.length;
    const replay = await postChat(gw.kong, '/tappedbare', chatBody(), { 'x-aigw-context': used });
    expect(tap.contextIds.slice(before)).toEqual([used, expect.not.stringMatching(used)]);
    expect(replay.status).toBe(200);
    expect(mock.requests).toHaveLength(2);
  });
});

describe('provider keys never leave the suite server', () => {
  const secrets = [KEY, WRONG_KEY];
  /** Whole keys, their masked echo (OpenAI's 401), and recognisable pieces of them. */
  const fragments = secrets.flatMap((k) => [k, maskKey(k), k.slice(-8), k.slice(0, 16)]);

  function expectNoKey(where: string, text: string) {
    for (const f of fragments) {
      if (text.includes(f)) throw new Error(`${where} contains "${f}"`);
    }
  }

  function expectCleanResponse(res: DriverResponse) {
    expectNoKey(`response headers of ${res.requestId}`, JSON.stringify(res.headers));
    expectNoKey(`response body of ${res.requestId}`, res.text());
  }

  test('JSON, SSE, a 401 for a wrong key, a 401 echoing the right key, bad input: no key in any answer or in the server output', async () => {
    const responses: DriverResponse[] = [];

    const ok = await postChat(gw.kong, '/good');
    expect(ok.status).toBe(200);
    responses.push(ok, await postChat(gw.kong, '/good', chatBody({ stream: true })));
    // The provider really got the key: it is used, just never shown.
    expect(mock.requests[0]?.headers.authorization).toBe(`Bearer ${KEY}`);

    const wrong = await postChat(gw.kong, '/wrong');
    expect(wrong.status).toBe(401);
    const wrongError = openAIError(wrong);
    expect(wrongError.code).toBe('invalid_api_key');
    expect(wrongError.message).toContain('[REDACTED]');
    responses.push(wrong, await postChat(gw.kong, '/wrong', chatBody({ stream: true })));

    // The mock's 401 echoes the masked key it was sent: here the right one.
    mock.nextFault({ kind: 'status', status: 401 });
    const echoed = await postChat(gw.kong, '/good');
    expect(echoed.status).toBe(401);
    expect(openAIError(echoed).code).toBe('invalid_api_key');
    responses.push(echoed);

    responses.push(
      await postChat(gw.kong, '/good', { model: 'gpt-4o-mini' }),
      await postChat(gw.kong, '/good', chatBody({ model: 'nope-model' })),
      await gw.kong.request({ method: 'GET', path: '/good/v1/models' }),
    );
    for (const res of responses) {
      expectCleanResponse(res);
      await res.stats();
    }
    // Let the server's asynchronous log writes land, then read everything it wrote.
    await until(
      () =>
        gw
          .output()
          .split('\n')
          .filter((l) => l.includes('"msg":"ai request"')).length >= responses.length
          ? true
          : undefined,
      'the ai-metrics lines of every request',
    );
    const output = gw.output();
    expect(output).toContain('"msg":"relay exchange"'); // debug level: the most the server says
    expectNoKey('the suite server output', output);
  });
});
