/**
 * ai-semantic-cache through the Kong emulator and the in-process suite server, on the shared
 * Redis: exact and semantic hits, JSON and SSE replay (both ways), tenant isolation,
 * Cache-Control, what is never stored, TTL, eviction, shadow mode, purge, metrics and config.
 * Faults (Redis down, bad stored bytes, restart and other nodes) are in faults.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { storeNamespace } from '../../../lib/cache/keys';
import { LOCAL_EMBEDDER_DEFAULT_THRESHOLD } from '../../../lib/embed/local';
import { SseParser } from '../../../lib/llm/sse';
import type { DriverResponse } from '../../support/kong';
import { type ProviderMock, startOpenAIMock } from '../../support/providers';
import { chatBody, type InProcess, openAIError, postChat, startInProcess, until } from '../../support/suite';

const KEY = 'sk-proj-CacheKey0123456789abcdefXYZ';
/** Prompts are unique per run: the Redis is shared with other test files and runs. */
const RUN = randomBytes(4).toString('hex');

let mock: ProviderMock;
let gw: InProcess;

type Plugin = { name: string; config?: Record<string, unknown> };

function route(
  name: string,
  cache: Record<string, unknown>,
  extra: { auth?: boolean; before?: Plugin[] } = {},
) {
  return {
    name,
    path: `/${name}`,
    plugins: [
      ...(extra.auth ? [{ name: 'key-auth', config: {} }] : []),
      { name: 'ai-semantic-cache', config: cache },
      {
        name: 'ai-router',
        config: {
          targets: [{ name: 'gpt-4o-mini', model: 'gpt-4o-mini', base_url: mock.url, api_key: KEY }],
        },
      },
    ],
  };
}

beforeAll(async () => {
  mock = await startOpenAIMock({ apiKey: KEY, chunkDelayMs: 0 });
  gw = await startInProcess({
    serverEnv: { AIGW_STORE: process.env.AIGW_TEST_REDIS_URL! },
    consumers: [
      { username: 'alice', keyauth_credentials: [{ key: 'alice-key' }] },
      { username: 'bob', keyauth_credentials: [{ key: 'bob-key' }] },
    ],
    routes: () => [
      route('tenant', {}, { auth: true }),
      route('anon', {}),
      route('global', { scope: 'global' }),
      route('exact', { scope: 'global', semantic: { enabled: false } }),
      route('small', { scope: 'global', max_answer_bytes: 1024 }),
      route('ttl', { scope: 'global', ttl_s: 1, local_cache: { ttl_ms: 50 } }),
      route('evict', {
        scope: 'global',
        max_entries: 2,
        semantic: { enabled: false },
        local_cache: { ttl_ms: 50 },
      }),
      route('shadow', { scope: 'global', shadow: true }),
      route('hidden', { scope: 'global', expose_headers: false }),
      route('mockembed', {
        scope: 'global',
        embedder: {
          kind: 'openai',
          base_url: mock.url,
          api_key: KEY,
          dimensions: 64,
          model: 'text-embedding-3-small',
        },
        semantic: { threshold: 0.9 },
      }),
      route('badconfig', { embedder: { kind: 'openai', dimensions: 64 } }),
    ],
  });
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await mock?.close();
});

beforeEach(() => {
  mock.reset();
});

/** A chat request with one user message, unique to this run. */
const ask = (
  path: string,
  prompt: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
) =>
  postChat(
    gw.kong,
    path,
    chatBody({ messages: [{ role: 'user', content: `${prompt} [${RUN}]` }], ...extra }),
    headers,
  );

const chats = () => mock.requests.filter((r) => r.path === '/v1/chat/completions').length;
const status = (res: DriverResponse) => res.headers['x-cache-status'];

/** Asks until the answer comes from the cache (the fill runs after the answer has left). */
async function untilHit(send: () => Promise<DriverResponse>): Promise<DriverResponse> {
  return until(async () => {
    const res = await send();
    return status(res) === 'HIT' ? res : undefined;
  }, 'a cache hit');
}

async function admin(
  path: string,
  method = 'GET',
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${gw.server.adminPort}${path}`, { method });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const metricsText = async () => (await fetch(`http://127.0.0.1:${gw.server.adminPort}/metrics`)).text();

/** The content of a JSON chat answer. */
const content = (res: DriverResponse) =>
  res.json<{ choices: Array<{ message: { content: string } }> }>().choices[0]!.message.content;

interface Chunk {
  id: string;
  object: string;
  model: string;
  choices: Array<{ index: number; delta: { role?: string; content?: string }; finish_reason: string | null }>;
  usage?: { total_tokens: number } | null;
}

/** Parses an SSE answer with the suite's own parser, checking it is well formed: JSON chunks, then [DONE] last. */
function streamOf(res: DriverResponse): { chunks: Chunk[]; text: string } {
  expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
  const parser = new SseParser();
  const events = [...parser.push(res.text()), ...parser.end()];
  expect(events.at(-1)?.data).toBe('[DONE]');
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data) as Chunk);
  for (const c of chunks) expect(c.object).toBe('chat.completion.chunk');
  const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
  return { chunks, text };
}

describe('exact tier', () => {
  it('a repeated request is answered from the cache without calling the provider', async () => {
    const first = await ask('/exact', 'What is the boiling point of water?');
    expect(first.status).toBe(200);
    expect(status(first)).toBe('MISS');
    const hit = await untilHit(() => ask('/exact', 'What is the boiling point of water?'));
    const callsAtHit = chats();
    expect(content(hit)).toBe(content(first));
    expect(hit.headers['x-cache-similarity']).toBeUndefined();
    expect(hit.json<{ object: string; usage: unknown }>()).toMatchObject({
      object: 'chat.completion',
      usage: first.json<{ usage: unknown }>().usage,
    });
    expect(Number(hit.headers.age)).toBeGreaterThanOrEqual(0);
    // One more hit: still no provider call.
    await ask('/exact', 'What is the boiling point of water?');
    expect(chats()).toBe(callsAtHit);
  });

  it('a different parameter (temperature) is another entry', async () => {
    await ask('/exact', 'Name a prime number', { temperature: 0 });
    await untilHit(() => ask('/exact', 'Name a prime number', { temperature: 0 }));
    const other = await ask('/exact', 'Name a prime number', { temperature: 0.5 });
    expect(status(other)).toBe('MISS');
  });

  it('a temperature above max_temperature is neither looked up nor stored', async () => {
    const first = await ask('/exact', 'Write a poem', { temperature: 1.5 });
    expect(status(first)).toBe('BYPASS');
    expect(status(await ask('/exact', 'Write a poem', { temperature: 1.5 }))).toBe('BYPASS');
    expect(chats()).toBe(2);
  });

  it('n > 1 is not cached', async () => {
    expect(status(await ask('/exact', 'Two options please', { n: 2 }))).toBe('BYPASS');
  });
});

describe('streaming', () => {
  it('a streamed miss is filled, then served as a JSON hit', async () => {
    mock.setAnswer('Paris is the capital of France and its largest city.');
    const streamed = await ask('/exact', 'Capital of France, streamed first', { stream: true });
    expect(status(streamed)).toBe('MISS');
    const { text } = streamOf(streamed);
    const hit = await untilHit(() => ask('/exact', 'Capital of France, streamed first'));
    expect(content(hit)).toBe(text);
    expect(hit.json<{ choices: Array<{ finish_reason: string }> }>().choices[0]!.finish_reason).toBe('stop');
  });

  it('a JSON miss is filled, then replayed as well-formed SSE with usage and [DONE]', async () => {
    mock.setAnswer('The quick brown fox jumps over the lazy dog, twice over.');
    const first = await ask('/exact', 'Pangram, JSON first');
    const usage = first.json<{ usage: { total_tokens: number } }>().usage;
    const hit = await untilHit(() =>
      ask('/exact', 'Pangram, JSON first', { stream: true, stream_options: { include_usage: true } }),
    );
    const { chunks, text } = streamOf(hit);
    expect(text).toBe(content(first));
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    const contentChunks = chunks.filter((c) => c.choices[0]?.delta.content);
    expect(contentChunks.length).toBeGreaterThan(3);
    const finals = chunks.filter((c) => c.choices[0]?.finish_reason);
    expect(finals.map((c) => c.choices[0]!.finish_reason)).toEqual(['stop']);
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage });
    for (const c of chunks.slice(0, -1)) expect(c.usage).toBeNull();
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
  });

  it('a replay without include_usage has no usage chunk', async () => {
    await ask('/exact', 'Usage-free replay');
    const hit = await untilHit(() => ask('/exact', 'Usage-free replay', { stream: true }));
    const { chunks } = streamOf(hit);
    expect(chunks.every((c) => c.usage === undefined && c.choices.length === 1)).toBe(true);
  });

  it('a broken stream is not stored', async () => {
    mock.nextFault({ kind: 'cut_stream', afterChunks: 2 });
    const broken = await ask('/exact', 'This stream breaks', { stream: true });
    expect(broken.text()).toContain('AIGW_STREAM_BROKEN');
    await until(
      async () =>
        (await metricsText()).includes('aigw_cache_fills_total{result="incomplete"}') ? true : undefined,
      'the fill decision',
    );
    const again = await ask('/exact', 'This stream breaks', { stream: true });
    expect(status(again)).toBe('MISS');
    streamOf(again);
  });
});

describe('what is never stored', () => {
  it('an error answer', async () => {
    mock.nextFault({ kind: 'status', status: 500 });
    const failed = await ask('/exact', 'This fails once');
    expect(failed.status).toBe(500);
    expect(status(failed)).toBe('MISS');
    const ok = await ask('/exact', 'This fails once');
    expect(ok.status).toBe(200);
    expect(status(ok)).toBe('MISS');
  });

  it('an answer above max_answer_bytes', async () => {
    mock.setAnswer('word '.repeat(400));
    await ask('/small', 'A long answer please');
    await until(
      async () =>
        (await metricsText()).includes('aigw_cache_fills_total{result="too_large"}') ? true : undefined,
      'the fill decision',
    );
    expect(status(await ask('/small', 'A long answer please'))).toBe('MISS');
    mock.setAnswer('short');
    await ask('/small', 'A short answer please');
    await untilHit(() => ask('/small', 'A short answer please'));
  });
});

describe('semantic tier (local embedder)', () => {
  it('a paraphrase is answered from the cache with its similarity; a different question is not', async () => {
    mock.setAnswer('Open Settings, choose Security, then Reset password.');
    const first = await postChat(
      gw.kong,
      '/global',
      chatBody({ messages: [{ role: 'user', content: `How do I reset my password for account ${RUN}?` }] }),
    );
    expect(status(first)).toBe('MISS');
    // The original stored first; then the paraphrase, which must be found by meaning (no-store: never its own copy).
    await untilHit(() =>
      postChat(
        gw.kong,
        '/global',
        chatBody({ messages: [{ role: 'user', content: `How do I reset my password for account ${RUN}?` }] }),
      ),
    );
    const hit = await postChat(
      gw.kong,
      '/global',
      chatBody({ messages: [{ role: 'user', content: `how can I reset my password for account ${RUN}` }] }),
      { 'cache-control': 'no-store' },
    );
    expect(status(hit)).toBe('HIT');

    expect(content(hit)).toBe('Open Settings, choose Security, then Reset password.');
    const similarity = Number(hit.headers['x-cache-similarity']);
    expect(similarity).toBeGreaterThanOrEqual(LOCAL_EMBEDDER_DEFAULT_THRESHOLD);
    expect(similarity).toBeLessThan(1);
    const other = await postChat(
      gw.kong,
      '/global',
      chatBody({ messages: [{ role: 'user', content: `How do I delete my account ${RUN}?` }] }),
    );
    expect(status(other)).toBe('MISS');
  });

  it('matches only among entries with the same model and parameters', async () => {
    const body = (extra: Record<string, unknown>, q: string) =>
      chatBody({ messages: [{ role: 'user', content: `${q} ${RUN}` }], ...extra });
    await postChat(gw.kong, '/global', body({ temperature: 0 }, 'What is the capital city of Japan?'));
    await untilHit(() =>
      postChat(gw.kong, '/global', body({ temperature: 0 }, 'What is the capital city of Japan?')),
    );
    expect(
      status(
        await postChat(gw.kong, '/global', body({ temperature: 0 }, 'what is the capital city of japan')),
      ),
    ).toBe('HIT');
    expect(
      status(
        await postChat(gw.kong, '/global', body({ temperature: 0.2 }, 'what is the capital city of japan')),
      ),
    ).toBe('MISS');
    expect(
      status(
        await postChat(
          gw.kong,
          '/global',
          body({ temperature: 0, model: 'gpt-4o' }, 'what is the capital city of japan'),
        ),
      ),
    ).toBe('MISS');
    const system = { role: 'system', content: 'Answer in French.' };
    const withSystem = chatBody({
      temperature: 0,
      messages: [system, { role: 'user', content: `what is the capital city of japan ${RUN}` }],
    });
    expect(status(await postChat(gw.kong, '/global', withSystem))).toBe('MISS');
  });
});

describe('semantic tier (an OpenAI-compatible embeddings endpoint)', () => {
  it('embeds through the endpoint and serves a near-identical prompt', async () => {
    mock.setAnswer('Use a towel.');
    await ask('/mockembed', 'how to dry my hands quickly');
    await untilHit(() => ask('/mockembed', 'how to dry my hands quickly'));
    const hit = await ask('/mockembed', 'How to dry my hands quickly?', {}, { 'cache-control': 'no-store' });
    expect(status(hit)).toBe('HIT');
    expect(content(hit)).toBe('Use a towel.');
    expect(Number(hit.headers['x-cache-similarity'])).toBeGreaterThanOrEqual(0.9);
    const embeddings = mock.requests.filter((r) => r.path === '/v1/embeddings');
    expect(embeddings.length).toBeGreaterThan(0);
    expect(embeddings[0]!.body).toMatchObject({ model: 'text-embedding-3-small', dimensions: 64 });
    expect(embeddings[0]!.headers.authorization).toBe(`Bearer ${KEY}`);
  });
});

describe('isolation', () => {
  it('two consumers asking the same thing never share answers', async () => {
    mock.setAnswer('for alice only');
    const alice = () => ask('/tenant', 'What is my secret?', {}, { apikey: 'alice-key' });
    expect(status(await alice())).toBe('MISS');
    await untilHit(alice);
    mock.setAnswer('for bob only');
    const bob = await ask('/tenant', 'What is my secret?', {}, { apikey: 'bob-key' });
    expect(status(bob)).toBe('MISS');
    expect(content(bob)).toBe('for bob only');
    const bobHit = await untilHit(() => ask('/tenant', 'What is my secret?', {}, { apikey: 'bob-key' }));
    expect(content(bobHit)).toBe('for bob only');
    expect(content(await alice())).toBe('for alice only');
  });

  it('a request with no consumer under the consumer scope is neither looked up nor stored', async () => {
    const first = await ask('/anon', 'Anonymous question');
    expect(status(first)).toBe('BYPASS');
    expect(status(await ask('/anon', 'Anonymous question'))).toBe('BYPASS');
    expect(chats()).toBe(2);
  });
});

describe('Cache-Control', () => {
  it('no-cache skips the lookup but stores the fresh answer', async () => {
    await ask('/exact', 'Cache-control no-cache');
    await untilHit(() => ask('/exact', 'Cache-control no-cache'));
    mock.setAnswer('a fresher answer');
    const fresh = await ask('/exact', 'Cache-control no-cache', {}, { 'cache-control': 'no-cache' });
    expect(status(fresh)).toBe('BYPASS');
    expect(content(fresh)).toBe('a fresher answer');
    await until(async () => {
      const res = await ask('/exact', 'Cache-control no-cache');
      return status(res) === 'HIT' && content(res) === 'a fresher answer' ? true : undefined;
    }, 'the fresh answer stored');
  });

  it('no-store looks up but never stores', async () => {
    const first = await ask('/exact', 'Cache-control no-store', {}, { 'cache-control': 'no-store' });
    expect(status(first)).toBe('MISS');
    await until(
      async () =>
        (await metricsText()).includes('aigw_cache_fills_total{result="no_store"}') ? true : undefined,
      'the fill decision',
    );
    expect(status(await ask('/exact', 'Cache-control no-store'))).toBe('MISS');
    // ... while an entry stored before is still served to a no-store request.
    await untilHit(() => ask('/exact', 'Cache-control no-store'));
    expect(status(await ask('/exact', 'Cache-control no-store', {}, { 'cache-control': 'no-store' }))).toBe(
      'HIT',
    );
  });

  it('both: BYPASS', async () => {
    const res = await ask('/exact', 'Both directives', {}, { 'cache-control': 'no-cache, no-store' });
    expect(status(res)).toBe('BYPASS');
  });
});

describe('lifetime', () => {
  it('an entry expires after ttl_s', async () => {
    await ask('/ttl', 'Short-lived');
    await untilHit(() => ask('/ttl', 'Short-lived'));
    const hitAfterMemory = await ask('/ttl', 'Short-lived', {}, { 'cache-control': 'no-store' });
    expect(status(hitAfterMemory)).toBe('HIT');
    await until(
      async () =>
        status(await ask('/ttl', 'Short-lived', {}, { 'cache-control': 'no-store' })) === 'MISS'
          ? true
          : undefined,
      'the entry to expire',
    );
  });

  it('past max_entries the oldest entry is evicted', async () => {
    for (const q of ['first', 'second']) {
      await ask('/evict', `Evict ${q}`);
      await untilHit(() => ask('/evict', `Evict ${q}`));
    }
    await ask('/evict', 'Evict third');
    await untilHit(() => ask('/evict', 'Evict third'));
    // The store holds two: `first` went. (The node's memory may still hold it for local_cache.ttl_ms.)
    await until(
      async () =>
        status(await ask('/evict', 'Evict first', {}, { 'cache-control': 'no-store' })) === 'MISS'
          ? true
          : undefined,
      'the eviction',
    );
    expect(status(await ask('/evict', 'Evict third'))).toBe('HIT');
  });
});

describe('shadow mode', () => {
  it('forwards semantic would-be hits, compares the answers and exports the false-hit rate', async () => {
    const q = (text: string) =>
      postChat(gw.kong, '/shadow', chatBody({ messages: [{ role: 'user', content: `${text} ${RUN}` }] }));
    mock.setAnswer('Boil water for ten minutes.');
    await q('How long should I boil an egg?');
    await untilHit(() => q('How long should I boil an egg?')); // exact hits are served
    const before = chats();
    const agree = await q('how long should i boil an egg');
    expect(status(agree)).toBe('SHADOW');
    expect(Number(agree.headers['x-cache-similarity'])).toBeGreaterThanOrEqual(
      LOCAL_EMBEDDER_DEFAULT_THRESHOLD,
    );
    expect(chats()).toBe(before + 1);
    await until(
      async () =>
        ((await admin('/cache')).body.shadow as { comparisons: number }).comparisons >= 1 ? true : undefined,
      'the comparison',
    );
    mock.setAnswer('Quantum chromodynamics binds quarks with gluons.');
    const disagree = await q('how long should I boil an egg?');
    expect(status(disagree)).toBe('SHADOW');
    const shadow = await until(async () => {
      const s = (await admin('/cache')).body.shadow as { comparisons: number };
      return s.comparisons >= 2 ? s : undefined;
    }, 'the second comparison');
    expect(shadow).toMatchObject({
      comparisons: 2,
      agree: 1,
      disagree: 1,
      false_hit_ratio: 0.5,
      exact_match_rate: 0.5,
    });
    const text = await metricsText();
    expect(text).toContain('aigw_cache_shadow_false_hit_ratio 0.5');
    expect(text).toContain('aigw_cache_shadow_comparisons_total{verdict="agree"} 1');
    expect(text).toContain('aigw_cache_shadow_comparisons_total{verdict="disagree"} 1');
  });
});

describe('purge through the admin endpoint', () => {
  it('purges a namespace and a single key', async () => {
    await ask('/global', 'Purge me, namespace');
    await untilHit(() => ask('/global', 'Purge me, namespace'));
    const listed = (await admin('/cache')).body.namespaces as Array<{ namespace: string }>;
    const namespace = listed.map((n) => n.namespace).find((n) => n.startsWith('global@'))!;
    expect(namespace).toBe('global@local-v1-384:384');
    const counted = await admin(`/cache/${encodeURIComponent(namespace)}`);
    expect(counted.body.entries).toBeGreaterThan(0);
    const purged = await admin(`/cache/${encodeURIComponent(namespace)}`, 'DELETE');
    expect(purged.status).toBe(200);
    expect(purged.body.purged).toBeGreaterThan(0);
    expect(status(await ask('/global', 'Purge me, namespace', {}, { 'cache-control': 'no-store' }))).toBe(
      'MISS',
    );
    expect((await admin(`/cache/${encodeURIComponent(namespace)}`)).body.entries).toBe(0);

    await ask('/global', 'Purge me, key');
    await untilHit(() => ask('/global', 'Purge me, key'));
    const scan = await gw.server.store.cacheScan(storeNamespace(namespace), 0, 100, 3_600_000);
    expect(scan.records).toHaveLength(1);
    const entryKey = scan.records[0]!.id;
    const deleted = await admin(`/cache/${encodeURIComponent(namespace)}/${entryKey}`, 'DELETE');
    expect(deleted.body).toEqual({ namespace, key: entryKey, deleted: true });
    expect(status(await ask('/global', 'Purge me, key', {}, { 'cache-control': 'no-store' }))).toBe('MISS');
  });

  it('answers 405 for other methods', async () => {
    expect((await admin('/cache', 'DELETE')).status).toBe(405);
  });
});

describe('headers and config', () => {
  it('expose_headers: false sends no cache headers, still caches', async () => {
    const first = await ask('/hidden', 'Quiet cache');
    expect(first.headers['x-cache-status']).toBeUndefined();
    await until(async () => {
      const before = chats();
      const res = await ask('/hidden', 'Quiet cache');
      expect(res.headers['x-cache-status']).toBeUndefined();
      return chats() === before ? true : undefined;
    }, 'a hit');
  });

  it('an invalid config answers 500 naming the field', async () => {
    const res = await ask('/badconfig', 'anything');
    expect(res.status).toBe(500);
    const error = openAIError(res);
    expect(error.code).toBe('AIGW_CONFIG_INVALID');
    expect(error.message).toContain('config.embedder.base_url');
    expect(error.message).toContain('config.semantic.threshold');
  });

  it('exports the lookup and fill metrics with bounded labels only', async () => {
    const text = await metricsText();
    for (const name of ['aigw_cache_lookups_total', 'aigw_cache_fills_total']) expect(text).toContain(name);
    const lookups = text.split('\n').filter((l) => l.startsWith('aigw_cache_lookups_total{'));
    for (const line of lookups) {
      expect(line).toMatch(
        /^aigw_cache_lookups_total\{tier="(exact|semantic|none)",result="(hit|miss|bypass|shadow)"\} \d+$/,
      );
    }
    expect(text).not.toContain(RUN);
  });
});
