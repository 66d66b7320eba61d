/**
 * What only a real Kong can show (`npm run test:kong`): Kong registers the five plugins from
 * their query commands, refuses an invalid config at load naming the field, and costs the
 * round trips docs/decisions.md §2 counts. Runs on the kong-lab build (spec/kong/support.ts).
 */
import { SUITE_PLUGIN_NAMES } from '../../lib/kong/kong-conf';
import { chat, KEY, scenarioConfig } from '../e2e/scenarios';
import { type ProviderMock, rawRequest, sseJson, startOpenAIMock } from '../support/providers';
import { freePort } from '../support/redis';
import { KONG_START_TIMEOUT_MS, KongLab, kongVersion } from './support';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe(`real Kong ${kongVersion()}: the suite as Kong sees it`, () => {
  let mock: ProviderMock;
  let kong: KongLab;
  let suiteAdminPort: number;

  beforeAll(async () => {
    mock = await startOpenAIMock({ apiKey: KEY });
    suiteAdminPort = await freePort();
    const base = scenarioConfig(mock.url);
    kong = await KongLab.start({
      // The scenarios' routes a and b, plus a route whose ai-router config breaks a rule across
      // fields (default_target names no target): Kong's schema accepts it, the suite refuses it.
      declarative: (relayPort) => {
        const config = base(relayPort) as { services: Array<{ routes: unknown[] }>; consumers?: unknown[] };
        // A route whose budget is per consumer, with a priority class read from consumer tags.
        config.consumers = [
          { username: 'alice', keyauth_credentials: [{ key: 'alice-key' }] },
          { username: 'bob', tags: ['ai-priority:batch'], keyauth_credentials: [{ key: 'bob-key' }] },
        ];
        config.services[0]!.routes.push({
          name: 'team',
          paths: ['/team/v1'],
          strip_path: false,
          plugins: [
            { name: 'key-auth', config: { hide_credentials: true } },
            {
              name: 'ai-router',
              config: {
                targets: [{ name: 'target-a', model: 'gpt-4o-mini', base_url: mock.url, api_key: KEY }],
              },
            },
            {
              name: 'ai-budget',
              config: {
                limits: [{ name: 'team-day', scope: 'consumer', window: 'day', unit: 'tokens', limit: 200 }],
                on_exceed: 'reject',
                priority: { classes: [{ name: 'batch', share: 0.5 }] },
              },
            },
          ],
        });
        // A route whose ai-router reads the consumer: model allow-lists and residency per tag.
        config.consumers.push({
          username: 'eve',
          tags: ['team-eu'],
          keyauth_credentials: [{ key: 'eve-key' }],
        });
        const target = (name: string, region: string) => ({
          name,
          model: 'gpt-4o-mini',
          base_url: mock.url,
          api_key: KEY,
          region,
        });
        config.services[0]!.routes.push({
          name: 'routed',
          paths: ['/routed/v1'],
          strip_path: false,
          plugins: [
            { name: 'key-auth', config: { hide_credentials: true } },
            {
              name: 'ai-router',
              config: {
                targets: [target('paris', 'eu'), target('ohio', 'us')],
                pools: [{ name: 'fast', targets: ['paris', 'ohio'], strategy: 'round-robin' }],
                access: [
                  { consumers: ['alice', 'eve'], models: ['fast'] },
                  { consumers: ['bob'], models: ['ohio'] },
                ],
                residency: { consumers: [{ consumer_tags: ['team-eu'], regions: ['eu'] }] },
              },
            },
          ],
        });
        // A route that takes feedback on its answers, per consumer.
        config.services[0]!.routes.push({
          name: 'rated',
          paths: ['/rated/v1'],
          strip_path: false,
          plugins: [
            { name: 'key-auth', config: { hide_credentials: true } },
            {
              name: 'ai-router',
              config: {
                targets: [target('paris', 'eu')],
                quality: { enabled: true, feedback: { enabled: true } },
              },
            },
          ],
        });
        config.services[0]!.routes.push({
          name: 'bad',
          paths: ['/bad/v1'],
          strip_path: false,
          plugins: [
            {
              name: 'ai-router',
              config: {
                targets: [{ name: 't', model: 'gpt-4o-mini', base_url: mock.url, api_key: KEY }],
                default_target: 'nowhere',
              },
            },
          ],
        });
        return config;
      },
      // ai-metrics logs its request lines at info; the suite's admin endpoint serves /metrics.
      serverEnv: { AIGW_LOG_LEVEL: 'info', AIGW_ADMIN_PORT: String(suiteAdminPort) },
      // The README's advice caps bodies in Kong too; 1m here so a test can cross it cheaply.
      kongEnv: { KONG_NGINX_HTTP_CLIENT_MAX_BODY_SIZE: '1m' },
    });
  }, KONG_START_TIMEOUT_MS);
  afterAll(async () => {
    await kong?.stop();
    await mock?.close();
  }, KONG_START_TIMEOUT_MS);

  it('registers all five plugins (admin GET /plugins/enabled) with their schemas', async () => {
    const enabled = (await (await fetch(`${kong.adminUrl}/plugins/enabled`)).json()) as {
      enabled_plugins: string[];
    };
    for (const name of SUITE_PLUGIN_NAMES) expect(enabled.enabled_plugins).toContain(name);
    const schema = await fetch(`${kong.adminUrl}/plugins/schema/ai-router`);
    expect(schema.status).toBe(200);
    expect(JSON.stringify(await schema.json())).toContain('default_target');
  });

  /** The ai-metrics line of the request Kong served with this x-kong-request-id. */
  async function metricsLine(kongRequestId: string): Promise<Record<string, unknown>> {
    // Kong runs the log phase from a timer after the response: the line comes a little later.
    const deadline = Date.now() + 5_000;
    for (;;) {
      const line = kong
        .suiteLog()
        .find((l) => l.type === 'ai_request' && l.kong_request_id === kongRequestId);
      if (line) return line;
      if (Date.now() > deadline)
        throw new Error(`no ai-metrics line for request ${kongRequestId}\n${kong.diagnostics()}`);
      await sleep(50);
    }
  }

  it.each([
    ['a JSON answer', false],
    ['a streamed answer', true],
  ])('%s costs 2 Kong round trips per plugin with a phase (docs/decisions.md §8)', async (_n, stream) => {
    const res = await rawRequest(`${kong.proxyUrl}/a/v1/chat/completions`, {
      body: { ...chat('count my round trips'), stream },
    });
    expect(res.status).toBe(200);
    const id = res.headers['x-kong-request-id'];
    expect(typeof id).toBe('string');
    const line = await metricsLine(id as string);
    expect(line).toMatchObject({ status: 200, stream, target: 'target-a', end: 'complete' });
    // Route a has the five plugins. ai-router, ai-budget and ai-fallback: HandleEvent +
    // add_header (their tickets) = 2 each (this ai-budget needs no consumer); ai-metrics (log
    // phase): HandleEvent + serialize = 2; ai-semantic-cache (default scope: the consumer):
    // HandleEvent + get_consumer + add_header = 3.
    expect(line.kong_round_trips).toBe(11);
  });

  it("the suite's /metrics counts what Kong served: requests, every token, one round-trip observation each", async () => {
    const scrape = async () =>
      (await (await fetch(`http://127.0.0.1:${suiteAdminPort}/metrics`)).text()).split('\n');
    const sum = (lines: string[], prefix: string, ...parts: string[]) =>
      lines
        .filter((l) => l.startsWith(prefix) && parts.every((p) => l.includes(p)))
        .reduce((total, l) => total + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    const requests = (lines: string[]) =>
      sum(lines, 'aigw_ai_llm_requests_total{', 'route="a"', 'status="200"');
    const tokens = (lines: string[]) =>
      sum(lines, 'aigw_ai_llm_tokens_total{', 'route="a"', 'token_type="total_tokens"');
    const roundTrips = (lines: string[]) => sum(lines, 'aigw_kong_round_trips_count');
    const before = await scrape();
    let used = 0;
    for (const stream of [false, true, false]) {
      const res = await rawRequest(`${kong.proxyUrl}/a/v1/chat/completions`, {
        body: {
          ...chat(`metrics in real Kong ${stream}`),
          stream,
          stream_options: stream ? { include_usage: true } : undefined,
        },
      });
      expect(res.status).toBe(200);
      type Usage = { total_tokens: number };
      const usage = stream
        ? (sseJson(res.text).find((e) => e.usage)!.usage as Usage)
        : (JSON.parse(res.text).usage as Usage);
      used += usage.total_tokens;
      await metricsLine(res.headers['x-kong-request-id'] as string);
    }
    const after = await scrape();
    expect(requests(after) - requests(before)).toBe(3);
    expect(tokens(after) - tokens(before)).toBe(used);
    expect(roundTrips(after) - roundTrips(before)).toBe(3);
  });

  it('ignores a client’s own x-aigw-context header: the relay takes only tickets the plugins issued', async () => {
    const res = await rawRequest(`${kong.proxyUrl}/a/v1/chat/completions`, {
      headers: { 'x-aigw-context': 'forged-by-the-client' },
      body: chat('smuggle'),
    });
    expect(res.status).toBe(200);
    // And the relay itself refuses a request that did not come through the plugins.
    const direct = await rawRequest(`http://127.0.0.1:${kong.relayPort}/a/v1/chat/completions`, {
      headers: { 'x-aigw-context': 'forged-by-the-client' },
      body: chat('bypass Kong'),
    });
    expect(direct.status).toBe(403);
    expect(JSON.parse(direct.text)).toMatchObject({ error: { code: 'AIGW_CONTEXT_REQUIRED' } });
  });

  it('Kong’s own body cap (nginx_http_client_max_body_size) answers before any plugin, in Kong’s shape', async () => {
    // Below Kong's cap and above its 8 KiB buffer: read from nginx's temp file, answered.
    const fits = await rawRequest(`${kong.proxyUrl}/a/v1/chat/completions`, {
      body: chat('word '.repeat(150_000)), // ~750 KiB
    });
    expect(fits.status).toBe(200);
    // Above Kong's cap (and below AIGW_MAX_BODY_BYTES, 10 MiB): nginx refuses it, Kong's error
    // handler answers with its own JSON body, not the OpenAI shape (docs/kong-compat.md).
    const tooBig = await rawRequest(`${kong.proxyUrl}/a/v1/chat/completions`, {
      body: chat('x'.repeat(1536 * 1024)),
    });
    expect(tooBig.status).toBe(413);
    expect(JSON.parse(tooBig.text)).toMatchObject({ message: 'Payload too large' });
  });

  it('ai-budget reads the consumer and its tags from Kong: one counter each, classes from tags, one more round trip', async () => {
    const ask = (key: string, content: string, max_tokens = 60) =>
      rawRequest(`${kong.proxyUrl}/team/v1/chat/completions`, {
        headers: { apikey: key },
        body: { ...chat(content), max_tokens },
      });
    const alice = await ask('alice-key', 'first');
    expect(alice.status).toBe(200);
    expect(alice.headers['x-ratelimit-limit-tokens']).toBe('200');
    // bob is tagged ai-priority:batch: half of the cap is his.
    const bob = await ask('bob-key', 'first');
    expect(bob.status).toBe(200);
    expect(bob.headers['x-ratelimit-limit-tokens']).toBe('100');
    // The prompt and 95 answer tokens no longer fit in what bob has left of his 100.
    const bobAgain = await ask('bob-key', 'second', 95);
    expect(bobAgain.status).toBe(429);
    expect(JSON.parse(bobAgain.text)).toMatchObject({ error: { code: 'AIGW_BUDGET_EXCEEDED' } });
    expect(Number(bobAgain.headers['retry-after'])).toBeGreaterThan(0);
    // alice's counter is her own.
    expect((await ask('alice-key', 'second', 95)).status).toBe(200);
    // Round trips: ai-router 2, ai-budget 3 (its ticket + get_consumer), and from the service
    // ai-semantic-cache 3 (its ticket + get_consumer: each plugin asks Kong on its own),
    // ai-fallback 2 and ai-metrics 2. The route's ai-budget replaces the service's.
    const line = await metricsLine(alice.headers['x-kong-request-id'] as string);
    expect(line.kong_round_trips).toBe(12);
  });

  it('ai-router reads the consumer from Kong: a pool by round robin, allow-lists by username, residency by tag', async () => {
    let n = 0;
    // A new prompt each time: the service's semantic cache would answer a repeated one itself.
    const ask = (key: string, model: string) =>
      rawRequest(`${kong.proxyUrl}/routed/v1/chat/completions`, {
        headers: { apikey: key },
        body: { ...chat(`routing question number ${++n}`), model },
      });
    const alice = [await ask('alice-key', 'fast'), await ask('alice-key', 'fast')];
    expect(alice.map((r) => r.status)).toEqual([200, 200]);
    expect(new Set(alice.map((r) => r.headers['x-ai-target']))).toEqual(new Set(['paris', 'ohio']));
    expect(alice[0]!.headers['x-ai-route-reason']).toBe('pool fast: round-robin');
    expect(alice[0]!.headers['x-ai-provider']).toBe('openai');
    const denied = await ask('bob-key', 'fast');
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.text)).toMatchObject({ error: { code: 'AIGW_MODEL_NOT_ALLOWED' } });
    expect((await ask('bob-key', 'ohio')).headers['x-ai-target']).toBe('ohio');
    // eve is tagged team-eu: only the EU target, every time.
    for (let i = 0; i < 3; i++) expect((await ask('eve-key', 'fast')).headers['x-ai-target']).toBe('paris');
    // Round trips: ai-router 3 (its ticket + get_consumer) and, from the service,
    // ai-semantic-cache 3 (its own get_consumer), ai-budget 2, ai-fallback 2, ai-metrics 2.
    const line = await metricsLine(alice[0]!.headers['x-kong-request-id'] as string);
    expect(line.kong_round_trips).toBe(12);
  });

  it('takes feedback through Kong: one rating per answer, by the consumer who asked', async () => {
    const answer = await rawRequest(`${kong.proxyUrl}/rated/v1/chat/completions`, {
      headers: { apikey: 'alice-key' },
      body: { ...chat('a question worth rating'), model: 'paris' },
    });
    expect(answer.status).toBe(200);
    const id = answer.headers['x-ai-feedback-id'] as string;
    expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    const rate = (key: string, body: object) =>
      rawRequest(`${kong.proxyUrl}/rated/v1/feedback`, { headers: { apikey: key }, body });
    expect((await rate('bob-key', { request_id: id, label: 'good' })).status).toBe(403);
    let ok = await rate('alice-key', { request_id: id, label: 'good' });
    for (let i = 0; i < 20 && ok.status === 404; i++) {
      await sleep(50); // the record is written when the outcome is known
      ok = await rate('alice-key', { request_id: id, label: 'good' });
    }
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.text)).toEqual({ object: 'feedback', request_id: id, accepted: true });
    expect((await rate('alice-key', { request_id: id, score: 0.1 })).status).toBe(409);
    expect((await rate('alice-key', { request_id: 'AAAAAAAAAAAAAAAAAAAAAA', score: 1 })).status).toBe(404);
  });

  it('answers every request of a route whose config breaks a cross-field rule with 500 AIGW_CONFIG_INVALID naming the field', async () => {
    for (let i = 0; i < 2; i++) {
      const res = await rawRequest(`${kong.proxyUrl}/bad/v1/chat/completions`, { body: chat('hi') });
      expect(res.status).toBe(500);
      const body = JSON.parse(res.text) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('AIGW_CONFIG_INVALID');
      expect(body.error.message).toContain('default_target');
    }
    // The other routes are unaffected.
    const ok = await rawRequest(`${kong.proxyUrl}/a/v1/chat/completions`, { body: chat('fine') });
    expect(ok.status).toBe(200);
  });
});

describe('real Kong: an invalid config is refused at load', () => {
  it(
    'a target without `model`: kong start fails, naming the field',
    async () => {
      const mock = await startOpenAIMock({ apiKey: KEY });
      try {
        const result = await KongLab.startExpectingFailure({
          declarative: (relayPort) => ({
            _format_version: '3.0',
            services: [
              {
                name: 'relay',
                url: `http://127.0.0.1:${relayPort}`,
                routes: [{ name: 'a', paths: ['/a/v1'], strip_path: false }],
                plugins: [
                  {
                    name: 'ai-router',
                    config: { targets: [{ name: 'no-model', base_url: mock.url, api_key: KEY }] },
                  },
                ],
              },
            ],
          }),
        });
        expect(result.code).not.toBe(0);
        // Kong validates the plugin config against the schema our query_cmd reported, in
        // init_by_lua, and names the path down to the missing field:
        //   error parsing declarative config file .../kong.yml:
        //   in 'services': ... in 'plugins': ... in 'config': in 'targets': - in entry 1 of 'targets':
        //   in 'model': required field missing
        expect(result.output).toMatch(/error parsing declarative config file/);
        expect(result.output).toMatch(
          /in 'config':\s+in 'targets':\s+- in entry 1 of 'targets':\s+in 'model': required field missing/,
        );
      } finally {
        await mock.close();
      }
    },
    KONG_START_TIMEOUT_MS,
  );
});
