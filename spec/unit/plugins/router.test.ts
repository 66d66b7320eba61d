import type { Target } from '../../../lib/context';
import type { GatewayError } from '../../../lib/errors';
import { TargetHealth, TargetLoad } from '../../../lib/health';
import { allowedRegions, checkAccess, type Requester } from '../../../plugins/ai-router/policy';
import { needsOf, prefixKey, Router } from '../../../plugins/ai-router/router';
import { resolveTargets } from '../../../plugins/ai-router/targets';
import { routerConfig } from '../../../schemas/ai-router';

const chat = (extra: Record<string, unknown> = {}) => ({
  model: 'x',
  messages: [{ role: 'user', content: 'hello' }],
  ...extra,
});

function routerOf(raw: Record<string, unknown>, live: ConstructorParameters<typeof Router>[2] = {}) {
  const { config } = routerConfig.validate(raw);
  const targets = resolveTargets(config, {});
  return { router: new Router(config, targets, live), targets: new Map(targets.map((t) => [t.name, t])) };
}

function thrown(fn: () => unknown): GatewayError {
  try {
    fn();
  } catch (err) {
    return err as GatewayError;
  }
  throw new Error('expected a throw');
}

const names = (ts: readonly Target[]) => ts.map((t) => t.name);

/** A seeded generator, so distribution tests are reproducible. */
function seeded(seed = 42): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const three = (strategy: string, extra: Record<string, unknown> = {}) => ({
  targets: [
    { name: 'a', model: 'm-a', weight: 1 },
    { name: 'b', model: 'm-b', weight: 2 },
    { name: 'c', model: 'm-c', weight: 7 },
  ],
  pools: [{ name: 'p', targets: ['a', 'b', 'c'], strategy, ...extra }],
});

describe('Router: names', () => {
  const { router } = routerOf({
    targets: [
      { name: 'fast', model: 'gpt-4o-mini' },
      { name: 'twin', model: 'gpt-4o-mini', base_url: 'https://example.test/v1' },
      { name: 'smart', model: 'gpt-4o' },
    ],
    pools: [{ name: 'any', targets: ['fast', 'smart'] }],
  });
  const req = { endpoint: 'chat.completions' as const, body: chat() };

  it('routes a target name to that target alone, a model name to its targets in order, a pool to its targets', () => {
    expect(router.route('smart', req)).toMatchObject({ reason: 'target name' });
    expect(names(router.route('smart', req).targets)).toEqual(['smart']);
    expect(names(router.route('gpt-4o-mini', req).targets)).toEqual(['fast', 'twin']);
    expect(router.route('gpt-4o-mini', req).reason).toBe('model gpt-4o-mini');
    expect(new Set(names(router.route('any', req).targets))).toEqual(new Set(['fast', 'smart']));
    expect(router.route('any', req).reason).toBe('pool any: weighted');
  });

  it('refuses a name it does not know with 404, without echoing it', () => {
    const err = thrown(() => router.route('claude-9', req));
    expect(err).toMatchObject({ status: 404, code: 'AIGW_UNKNOWN_MODEL', param: 'model' });
    expect(err.message).not.toContain('claude-9');
  });

  it('does not accept provider model names when allow_model_names is off', () => {
    const { router: strict } = routerOf({
      targets: [{ name: 'fast', model: 'gpt-4o-mini' }],
      allow_model_names: false,
    });
    expect(strict.knows('fast')).toBe(true);
    expect(strict.knows('gpt-4o-mini')).toBe(false);
  });
});

describe('Router: strategies', () => {
  const req = { endpoint: 'chat.completions' as const, body: chat({ max_tokens: 100 }) };

  it('weighted: shares traffic by weight, and orders the failover candidates too', () => {
    const { router } = routerOf(three('weighted'), { random: seeded() });
    const firsts: Record<string, number> = { a: 0, b: 0, c: 0 };
    for (let i = 0; i < 10_000; i++) {
      const ts = router.route('p', req).targets;
      expect(ts).toHaveLength(3);
      firsts[ts[0]!.name]!++;
    }
    expect(firsts.a! / 10_000).toBeCloseTo(0.1, 1);
    expect(firsts.b! / 10_000).toBeCloseTo(0.2, 1);
    expect(firsts.c! / 10_000).toBeCloseTo(0.7, 1);
  });

  it('weighted: a target of weight 0 takes no traffic but stays a failover candidate', () => {
    const raw = three('weighted');
    raw.targets[2]!.weight = 0;
    const { router } = routerOf(raw, { random: seeded() });
    for (let i = 0; i < 500; i++)
      expect(
        router
          .route('p', req)
          .targets.map((t) => t.name)
          .at(-1),
      ).toBe('c');
  });

  it('round-robin: each target in turn', () => {
    const { router } = routerOf(three('round-robin'));
    const firsts = Array.from({ length: 6 }, () => router.route('p', req).targets[0]!.name);
    expect(firsts).toEqual(['a', 'b', 'c', 'a', 'b', 'c']);
  });

  it('least-latency: lowest time to first token plus time per token for the expected answer; unmeasured first', () => {
    const load = new TargetLoad();
    const { router, targets } = routerOf(three('least-latency'), { load, random: seeded() });
    const sample = (name: string, ttftMs: number, msPerToken: number) => {
      load.started(targets.get(name)!);
      load.ended(targets.get(name)!, { ok: true, ttftMs, streamMs: msPerToken * 100, outputTokens: 101 });
    };
    sample('a', 100, 20); // 100 + 20 × 100 = 2100
    sample('b', 900, 5); // 900 + 500 = 1400
    expect(router.route('p', req).targets[0]!.name).toBe('c'); // never measured: tried first
    sample('c', 50, 30); // 50 + 3000
    expect(names(router.route('p', req).targets)).toEqual(['b', 'a', 'c']);
  });

  it('least-busy: fewest requests in flight, relative to weight', () => {
    const load = new TargetLoad();
    const { router, targets } = routerOf(three('least-busy'), { load, random: seeded() });
    for (let i = 0; i < 3; i++) load.started(targets.get('c')!); // (3+1)/7 = 0.57
    load.started(targets.get('b')!); // (1+1)/2 = 1
    expect(names(router.route('p', req).targets)).toEqual(['c', 'b', 'a']); // a: 1/1
    for (let i = 0; i < 6; i++) load.started(targets.get('c')!); // 10/7
    expect(router.route('p', req).targets[0]!.name).toBe('a');
  });

  it('least-cost: cheapest for the estimated tokens; a target without prices last', () => {
    const { router } = routerOf({
      targets: [
        { name: 'dear', model: 'x1', prices: { input_per_1m: 10, output_per_1m: 30 } },
        { name: 'unpriced', model: 'x2' },
        { name: 'cheap-out', model: 'x3', prices: { input_per_1m: 20, output_per_1m: 1 } },
      ],
      pools: [{ name: 'p', targets: ['dear', 'unpriced', 'cheap-out'], strategy: 'least-cost' }],
    });
    // 100 answer tokens: dear 10·in + 3000, cheap-out 20·in + 100 → cheap-out for a short prompt.
    expect(names(router.route('p', req).targets)).toEqual(['cheap-out', 'dear', 'unpriced']);
    // A long prompt (≈ 25 000 tokens): input dominates, dear wins.
    const long = chat({ max_tokens: 100, messages: [{ role: 'user', content: 'x'.repeat(100_000) }] });
    expect(router.route('p', { endpoint: 'chat.completions', body: long }).targets[0]!.name).toBe('dear');
  });

  it("quota-aware: most rate-limit headroom first, from the providers' headers; a 429 empties it until reset", () => {
    const load = new TargetLoad();
    const { router, targets } = routerOf(three('quota-aware'), { load, random: seeded() });
    const answered = (name: string, headers: Record<string, string>, status = 200) => {
      load.started(targets.get(name)!);
      load.ended(targets.get(name)!, { ok: status < 400, headers, status, retryAfterMs: 30_000 });
    };
    answered('a', {
      'x-ratelimit-limit-requests': '100',
      'x-ratelimit-remaining-requests': '90',
      'x-ratelimit-reset-requests': '6s',
    });
    answered('b', {
      'anthropic-ratelimit-tokens-limit': '1000',
      'anthropic-ratelimit-tokens-remaining': '50',
      'anthropic-ratelimit-tokens-reset': new Date(Date.now() + 60_000).toISOString(),
    });
    // c sent nothing: unlimited as far as we know.
    expect(names(router.route('p', req).targets)).toEqual(['c', 'a', 'b']);
    answered('c', {}, 429);
    expect(names(router.route('p', req).targets)).toEqual(['a', 'b', 'c']);
  });

  it('health-aware: open breakers go last (the relay skips them); all open: all kept for the panic rule', () => {
    const health = new TargetHealth();
    const { router, targets } = routerOf(three('round-robin'), { health });
    health.update(targets.get('a')!, 'open', Date.now() + 60_000);
    for (let i = 0; i < 4; i++) expect(router.route('p', req).targets.at(-1)!.name).toBe('a');
    expect(router.route('p', req).reason).toContain('1 open breaker passed over');
    health.update(targets.get('b')!, 'open', Date.now() + 60_000);
    health.update(targets.get('c')!, 'open', Date.now() + 60_000);
    expect(router.route('p', req).targets).toHaveLength(3);
  });

  it('health_aware off: breakers do not reorder the pool', () => {
    const health = new TargetHealth();
    const { router, targets } = routerOf(three('round-robin', { health_aware: false }), { health });
    health.update(targets.get('a')!, 'open', Date.now() + 60_000);
    expect(router.route('p', req).targets[0]!.name).toBe('a');
  });
});

describe('Router: filters', () => {
  const raw = {
    targets: [
      { name: 'eu-vision', model: 'v', region: 'eu', capabilities: ['vision', 'tools'] },
      { name: 'us-text', model: 't', region: 'us', capabilities: ['tools'] },
      { name: 'untagged', model: 'u' },
    ],
    pools: [{ name: 'p', targets: ['eu-vision', 'us-text', 'untagged'], strategy: 'round-robin' }],
  };
  const image = chat({
    messages: [
      { role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AA==' } }] },
    ],
  });

  it('sends a request needing a capability only to targets that have it (untagged targets are not excluded)', () => {
    const { router } = routerOf(raw);
    for (let i = 0; i < 3; i++) {
      expect(names(router.route('p', { endpoint: 'chat.completions', body: image }).targets).sort()).toEqual([
        'eu-vision',
        'untagged',
      ]);
    }
  });

  it('refuses with 400 naming the capability when no target of the pool has it', () => {
    const { router } = routerOf({ ...raw, pools: [{ name: 'p', targets: ['us-text'] }] });
    const err = thrown(() => router.route('p', { endpoint: 'chat.completions', body: image }));
    expect(err).toMatchObject({ status: 400, code: 'AIGW_UNSUPPORTED_FEATURE' });
    expect(err.message).toBe('no target of p supports vision');
  });

  it('keeps to the allowed regions; no allowed target: 403, never routed elsewhere', () => {
    const { router, targets } = routerOf(raw);
    const eu = router.route('p', { endpoint: 'chat.completions', body: chat(), regions: new Set(['eu']) });
    expect(names(eu.targets)).toEqual(['eu-vision']);
    // A fallback chain may not leave the region either.
    expect(eu.admits?.(targets.get('us-text')!)).toBe(false);
    expect(eu.admits?.(targets.get('untagged')!)).toBe(false);
    const err = thrown(() =>
      router.route('us-text', { endpoint: 'chat.completions', body: chat(), regions: new Set(['eu']) }),
    );
    expect(err).toMatchObject({ status: 403, code: 'AIGW_REGION_NOT_ALLOWED' });
    expect(err.message).toContain('(eu)');
  });

  it('knows what a request needs', () => {
    expect(needsOf('embeddings', { input: 'x' })).toEqual(['embeddings']);
    // Image parts in every shape task routing counts as one.
    for (const type of ['image_url', 'input_image', 'image']) {
      expect(
        needsOf('chat.completions', chat({ messages: [{ role: 'user', content: [{ type }] }] })),
      ).toEqual(['vision']);
    }
    expect(
      needsOf(
        'chat.completions',
        chat({ tools: [{ type: 'function' }], response_format: { type: 'json_object' } }),
      ),
    ).toEqual(['tools', 'json']);
    expect(needsOf('chat.completions', chat({ tools: [], response_format: { type: 'text' } }))).toEqual([]);
  });
});

describe('Router: prompt affinity', () => {
  const raw = three('round-robin', { prompt_affinity: { min_prefix_chars: 256 } });
  const withPrefix = (system: string, question: string) =>
    chat({
      messages: [
        { role: 'system', content: system },
        { role: 'user', content: question },
      ],
    });

  it('keeps requests sharing a long prefix on one target, whatever follows it', () => {
    const { router } = routerOf(raw);
    const system = 'You are a support agent for ACME. '.repeat(20);
    const firsts = new Set(
      Array.from(
        { length: 30 },
        (_, i) =>
          router.route('p', { endpoint: 'chat.completions', body: withPrefix(system, `question ${i}`) })
            .targets[0]!.name,
      ),
    );
    expect(firsts.size).toBe(1);
    expect(router.route('p', { endpoint: 'chat.completions', body: withPrefix(system, 'q') }).reason).toBe(
      'pool p: prompt affinity',
    );
  });

  it('spreads different prefixes by weight, and moves only the keys of a target that leaves', () => {
    const health = new TargetHealth();
    const { router, targets } = routerOf(raw, { health });
    const systems = Array.from({ length: 600 }, (_, i) => `${i} `.padEnd(300, 'context '));
    const pick = (s: string) =>
      router.route('p', { endpoint: 'chat.completions', body: withPrefix(s, 'q') }).targets[0]!.name;
    const before = systems.map(pick);
    const share = (name: string) => before.filter((n) => n === name).length / systems.length;
    expect(share('c')).toBeGreaterThan(0.55); // weight 7 of 10
    expect(share('a')).toBeGreaterThan(0.03);
    health.update(targets.get('b')!, 'open', Date.now() + 60_000);
    const after = systems.map(pick);
    after.forEach((name, i) => {
      if (before[i] !== 'b') expect(name).toBe(before[i]);
      else expect(name).not.toBe('b');
    });
  });

  it('leaves short prompts to the strategy', () => {
    const { router } = routerOf(raw);
    expect(prefixKey(chat(), 256)).toBeUndefined();
    const firsts = Array.from(
      { length: 3 },
      () => router.route('p', { endpoint: 'chat.completions', body: chat() }).targets[0]!.name,
    );
    expect(firsts).toEqual(['a', 'b', 'c']);
  });
});

describe('access and residency policies', () => {
  const alice: Requester = {
    consumer: { id: 'id-alice', username: 'alice', tags: ['team-a'] },
    groups: ['eng'],
  };
  const bob: Requester = { consumer: { id: 'id-bob', username: 'bob' }, groups: [] };
  const anonymous: Requester = { groups: [] };
  const rules = routerConfig.validate({
    targets: [
      { name: 'cheap', model: 'c' },
      { name: 'smart', model: 's' },
    ],
    access: [
      { consumers: ['alice'], models: ['smart'] },
      { consumer_tags: ['team-a'], models: ['cheap'] },
      { groups: ['admins'], models: ['*'] },
    ],
  }).config.access;

  it('lets a consumer use the models of every rule covering it, by username, id, tag or group', () => {
    expect(() => checkAccess(rules, alice, ['smart'])).not.toThrow();
    expect(() => checkAccess(rules, alice, ['cheap'])).not.toThrow();
    expect(() => checkAccess(rules, { groups: ['admins'] }, ['anything'])).not.toThrow();
  });

  it('refuses others with 403, and a consumer no rule covers gets nothing', () => {
    expect(thrown(() => checkAccess(rules, bob, ['smart']))).toMatchObject({
      status: 403,
      code: 'AIGW_MODEL_NOT_ALLOWED',
    });
    expect(() => checkAccess(rules, anonymous, ['cheap'])).toThrow(/not allowed/);
    expect(() => checkAccess([], anonymous, ['cheap'])).not.toThrow();
  });

  const residency = routerConfig.validate({
    targets: [{ name: 't', model: 'm' }],
    residency: {
      regions: ['eu', 'us', 'ch'],
      consumers: [{ consumer_tags: ['team-a'], regions: ['eu', 'ch'] }],
      header: 'x-ai-regions',
    },
  }).config.residency;
  const header = (value?: string) => (name: string) => (name === 'x-ai-regions' ? value : undefined);

  it('narrows the route regions by consumer rule, then by the client header, which can never widen them', () => {
    expect(allowedRegions(residency, bob, header())).toEqual(new Set(['eu', 'us', 'ch']));
    expect(allowedRegions(residency, alice, header())).toEqual(new Set(['eu', 'ch']));
    expect(allowedRegions(residency, alice, header('ch, us'))).toEqual(new Set(['ch']));
    expect(allowedRegions(residency, alice, header('us'))).toEqual(new Set());
    expect(allowedRegions(undefined, alice, header('us'))).toBeUndefined();
  });

  it('with no route regions, a consumer rule or the header alone restricts', () => {
    const open = routerConfig.validate({
      targets: [{ name: 't', model: 'm' }],
      residency: { header: 'x-ai-regions' },
    }).config.residency;
    expect(allowedRegions(open, bob, header())).toBeUndefined();
    expect(allowedRegions(open, bob, header('eu'))).toEqual(new Set(['eu']));
  });
});
