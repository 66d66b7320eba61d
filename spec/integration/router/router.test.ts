/**
 * ai-router through the Kong emulator and the in-process suite server: pools and their
 * response headers, model mapping, the model list, access control, residency (also against a
 * fallback chain), task routing, experiments, and prompt redaction before untrusted targets.
 */
import type { DriverResponse } from '../../support/kong';
import { type ProviderMock, parseSse, startOpenAIMock } from '../../support/providers';
import {
  chatBody,
  type InProcess,
  openAIError,
  type PluginEntry,
  postChat,
  type RouteSpec,
  startInProcess,
} from '../../support/suite';

const KEY = 'sk-proj-RouterKey0123456789abcdefXYZ';

let eu: ProviderMock;
let us: ProviderMock;
let embeddings: ProviderMock;
let gw: InProcess;

const target = (name: string, m: { url: string }, extra: Record<string, unknown> = {}) => ({
  name,
  model: `${name}-model`,
  base_url: m.url,
  api_key: KEY,
  ...extra,
});

const route = (name: string, router: Record<string, unknown>, extra: PluginEntry[] = []): RouteSpec => ({
  name,
  path: `/${name}`,
  plugins: [...extra, { name: 'ai-router', config: router }],
});

const keyAuth = { name: 'key-auth', config: {} };

beforeAll(async () => {
  [eu, us, embeddings] = await Promise.all([
    startOpenAIMock({ apiKey: KEY, chunkDelayMs: 1 }),
    startOpenAIMock({ apiKey: KEY, chunkDelayMs: 1 }),
    startOpenAIMock({ apiKey: KEY }),
  ]);
  const twoRegions = [target('paris', eu, { region: 'eu' }), target('ohio', us, { region: 'us' })];
  gw = await startInProcess({
    consumers: [
      { username: 'alice', tags: ['team-eu'], keyauth_credentials: [{ key: 'alice-key' }] },
      { username: 'bob', keyauth_credentials: [{ key: 'bob-key' }] },
    ],
    routes: () => [
      route('pool', {
        targets: twoRegions,
        pools: [{ name: 'fast', targets: ['paris', 'ohio'], strategy: 'round-robin' }],
        model_map: { 'gpt-4': 'fast' },
      }),
      route('quiet', { targets: twoRegions, headers: { enabled: false } }),
      route(
        'access',
        {
          targets: twoRegions,
          pools: [{ name: 'any', targets: ['paris', 'ohio'] }],
          access: [
            { consumers: ['alice'], models: ['paris', 'any'] },
            { consumers: ['bob'], models: ['ohio'] },
            { groups: ['ops'], models: ['ohio'] },
          ],
        },
        [keyAuth],
      ),
      route(
        'residency',
        {
          targets: twoRegions,
          pools: [{ name: 'any', targets: ['paris', 'ohio'], strategy: 'round-robin' }],
          residency: { consumers: [{ consumer_tags: ['team-eu'], regions: ['eu'] }], header: 'x-ai-regions' },
        },
        [keyAuth],
      ),
      {
        ...route('residency-chain', { targets: twoRegions, residency: { regions: ['eu'] } }),
        plugins: [
          { name: 'ai-router', config: { targets: twoRegions, residency: { regions: ['eu'] } } },
          {
            name: 'ai-fallback',
            config: { chains: [{ target: 'paris', fallbacks: ['ohio'] }], breaker: { enabled: false } },
          },
        ],
      },
      route('tasks', {
        targets: [target('coder', eu), target('chatter', us), target('seer', us)],
        tasks: {
          rules: [
            { task: 'vision', has_image: true },
            { task: 'code', keywords: ['python', 'stack trace', 'function'] },
          ],
          routes: { code: 'coder', vision: 'seer', chat: 'chatter' },
          premium: { pool: 'seer', header: 'x-ai-tier' },
        },
      }),
      route('tasks-remote', {
        targets: [target('coder', eu), target('chatter', us)],
        tasks: {
          rules: [{ task: 'code', keywords: ['python'] }],
          embedder: { kind: 'openai', base_url: embeddings.url, api_key: KEY, dimensions: 64 },
          routes: {
            code: 'coder',
            chat: 'chatter',
            summarization: 'chatter',
            extraction: 'chatter',
            math: 'chatter',
          },
        },
      }),
      route('ab', {
        targets: twoRegions,
        experiments: [
          {
            name: 'move',
            model: 'paris',
            sticky_by: 'header',
            sticky_header: 'x-user',
            control: 'stay',
            arms: [
              { name: 'stay', route_to: 'paris', weight: 1 },
              { name: 'go', route_to: 'ohio', weight: 1 },
            ],
          },
        ],
      }),
      route('redact', {
        targets: [target('outsider', us, { trusted: false }), target('insider', eu)],
        redaction: { enabled: true },
      }),
    ],
  });
});

afterEach(() => {
  eu.reset();
  us.reset();
  embeddings.reset();
});

afterAll(async () => {
  await gw?.close();
  await Promise.all([eu?.close(), us?.close(), embeddings?.close()]);
});

const post = (path: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  postChat(gw.kong, path, chatBody(body), headers);

function answeredBy(res: DriverResponse, target: string): void {
  expect(res.status).toBe(200);
  expect(res.headers['x-ai-target']).toBe(target);
}

describe('pools, mapping and headers', () => {
  it('serves a pool by its strategy and says who answered and why', async () => {
    const targets = [];
    for (let i = 0; i < 4; i++) {
      const res = await post('/pool', { model: 'fast' });
      expect(res.status).toBe(200);
      expect(res.headers['x-ai-provider']).toBe('openai');
      expect(res.headers['x-ai-route-reason']).toBe('pool fast: round-robin');
      targets.push(res.headers['x-ai-target']);
    }
    expect(targets).toEqual(['paris', 'ohio', 'paris', 'ohio']);
    expect(eu.requests.map((r) => (r.body as { model: string }).model)).toEqual([
      'paris-model',
      'paris-model',
    ]);
  });

  it('maps a client model name to a pool, and accepts a provider model name', async () => {
    const mapped = await post('/pool', { model: 'gpt-4' });
    expect(mapped.headers['x-ai-route-reason']).toBe('mapped to fast; pool fast: round-robin');
    answeredBy(await post('/pool', { model: 'ohio-model' }), 'ohio');
  });

  it('lists pools, targets and mapped names as models', async () => {
    const res = await gw.kong.request({ method: 'GET', path: '/pool/v1/models' });
    expect(res.json<{ data: Array<{ id: string }> }>().data.map((m) => m.id)).toEqual([
      'paris',
      'ohio',
      'fast',
      'gpt-4',
    ]);
  });

  it('sends no routing headers when they are turned off', async () => {
    const res = await post('/quiet', { model: 'paris' });
    expect(res.status).toBe(200);
    for (const h of ['x-ai-target', 'x-ai-model', 'x-ai-provider', 'x-ai-route-reason'])
      expect(res.headers[h]).toBeUndefined();
  });
});

describe('access control', () => {
  const as = (key: string) => ({ apikey: key });

  it('lets each consumer use only the models its rules list; others get 403 in OpenAI shape', async () => {
    answeredBy(await post('/access', { model: 'paris' }, as('alice-key')), 'paris');
    expect((await post('/access', { model: 'any' }, as('alice-key'))).status).toBe(200);
    const denied = await post('/access', { model: 'ohio' }, as('alice-key'));
    expect(denied.status).toBe(403);
    expect(openAIError(denied)).toMatchObject({
      code: 'AIGW_MODEL_NOT_ALLOWED',
      type: 'permission_error',
      param: 'model',
    });
    answeredBy(await post('/access', { model: 'ohio' }, as('bob-key')), 'ohio');
    expect((await post('/access', { model: 'paris' }, as('bob-key'))).status).toBe(403);
    // The three allowed requests reached a provider; the two refused ones none.
    expect(eu.requests.length + us.requests.length).toBe(3);
  });

  it("reads the consumer's groups from x-consumer-groups (as Kong's ACL plugin sets it)", async () => {
    expect((await post('/access', { model: 'ohio' }, as('alice-key'))).status).toBe(403);
    const inGroup = { ...as('alice-key'), 'x-consumer-groups': 'dev, ops' };
    answeredBy(await post('/access', { model: 'ohio' }, inGroup), 'ohio');
  });

  it('lists only the models a consumer may use', async () => {
    const list = async (key: string) =>
      (await gw.kong.request({ method: 'GET', path: '/access/v1/models', headers: as(key) }))
        .json<{ data: Array<{ id: string }> }>()
        .data.map((m) => m.id);
    expect(await list('alice-key')).toEqual(['paris', 'any']);
    expect(await list('bob-key')).toEqual(['ohio']);
  });
});

describe('residency', () => {
  it("keeps a consumer's requests in its regions, and a client header can narrow but never widen them", async () => {
    for (let i = 0; i < 3; i++)
      answeredBy(await post('/residency', { model: 'any' }, { apikey: 'alice-key' }), 'paris');
    const widened = await post(
      '/residency',
      { model: 'ohio' },
      { apikey: 'alice-key', 'x-ai-regions': 'us,eu' },
    );
    expect(widened.status).toBe(403);
    expect(openAIError(widened)).toMatchObject({ code: 'AIGW_REGION_NOT_ALLOWED', type: 'permission_error' });
    expect(us.requests).toHaveLength(0);
    // Bob has no rule: anywhere, unless his own header narrows it.
    const bob = new Set<unknown>();
    for (let i = 0; i < 2; i++)
      bob.add((await post('/residency', { model: 'any' }, { apikey: 'bob-key' })).headers['x-ai-target']);
    expect(bob).toEqual(new Set(['paris', 'ohio']));
    answeredBy(
      await post('/residency', { model: 'any' }, { apikey: 'bob-key', 'x-ai-regions': 'us' }),
      'ohio',
    );
    answeredBy(
      await post('/residency', { model: 'any' }, { apikey: 'bob-key', 'x-ai-regions': 'us' }),
      'ohio',
    );
  });

  it('a fallback chain never leaves the allowed regions: the failure is answered instead', async () => {
    eu.setFault({ kind: 'status', status: 503 });
    const res = await post('/residency-chain', { model: 'paris' });
    expect(res.status).toBe(503);
    expect(us.requests).toHaveLength(0);
  });
});

describe('task routing', () => {
  it('routes each request to the pool of its task and names the task', async () => {
    const code = await post('/tasks', {
      model: 'auto',
      messages: [{ role: 'user', content: 'Why does this Python function raise KeyError?' }],
    });
    answeredBy(code, 'coder');
    expect(code.headers['x-ai-task']).toBe('code');
    expect(code.headers['x-ai-route-reason']).toBe('task code: coder; target name');

    const image = await post('/tasks', {
      model: 'auto',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is this?' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
          ],
        },
      ],
    });
    answeredBy(image, 'seer');
    expect(image.headers['x-ai-task']).toBe('vision');

    const chat = await post('/tasks', {
      model: 'auto',
      messages: [{ role: 'user', content: 'hi there, how are you today?' }],
    });
    answeredBy(chat, 'chatter');
    expect(chat.headers['x-ai-task']).toBe('chat');
  });

  it('sends high-stakes requests (trusted header) to the premium pool whatever their task', async () => {
    const res = await post(
      '/tasks',
      { model: 'auto', messages: [{ role: 'user', content: 'python please' }] },
      { 'x-ai-tier': 'premium' },
    );
    answeredBy(res, 'seer');
    expect(res.headers['x-ai-task']).toBeUndefined();
  });
});

describe('task routing with an embeddings endpoint', () => {
  const ask = (content: string) =>
    post('/tasks-remote', { model: 'auto', messages: [{ role: 'user', content }] });

  it('embeds the examples once and each undecided prompt there; rules need no call', async () => {
    answeredBy(await ask('fix my python script'), 'coder');
    const undecided = await ask('what a lovely morning it is');
    expect(undecided.status).toBe(200);
    const inputs = embeddings.requests.map((r) => (r.body as { input: string[] }).input);
    expect(inputs.at(-1)).toEqual(['what a lovely morning it is']);
    expect(inputs.slice(0, -1).flat().length).toBeGreaterThan(200); // the built-in examples
    const calls = embeddings.requests.length;
    answeredBy(await ask('python again'), 'coder');
    expect(embeddings.requests).toHaveLength(calls);
  });

  it('an embeddings endpoint that fails leaves undecided prompts to the default task, rules still work', async () => {
    embeddings.setFault({ kind: 'status', status: 503 });
    const undecided = await ask('tell me something nice');
    answeredBy(undecided, 'chatter');
    expect(undecided.headers['x-ai-task']).toBe('chat');
    answeredBy(await ask('python please'), 'coder');
  });
});

describe('experiments', () => {
  it('keeps each user on one arm and says which', async () => {
    const arms = new Map<string, string>();
    for (let u = 0; u < 20; u++) {
      const res = await post('/ab', { model: 'paris' }, { 'x-user': `user-${u}` });
      expect(res.status).toBe(200);
      const arm = String(res.headers['x-ai-experiment']);
      expect(arm).toMatch(/^move=(stay|go)$/);
      expect(res.headers['x-ai-target']).toBe(arm === 'move=stay' ? 'paris' : 'ohio');
      arms.set(`user-${u}`, arm);
    }
    expect(new Set(arms.values())).toEqual(new Set(['move=stay', 'move=go']));
    for (const [user, arm] of [...arms].slice(0, 5)) {
      expect((await post('/ab', { model: 'paris' }, { 'x-user': user })).headers['x-ai-experiment']).toBe(
        arm,
      );
    }
    // No user key: the control.
    expect((await post('/ab', { model: 'paris' })).headers['x-ai-experiment']).toBe('move=stay');
  });
});

describe('redaction before untrusted targets', () => {
  const prompt = 'Write to jane.doe@example.com or call +44 20 7946 0958 about card 4111 1111 1111 1111.';

  it('masks personal data in what an untrusted target receives and restores it in the answer', async () => {
    us.setAnswer('I will write to [EMAIL_1] and call [PHONE_1].');
    const res = await post('/redact', { model: 'outsider', messages: [{ role: 'user', content: prompt }] });
    expect(res.status).toBe(200);
    const sent = JSON.stringify(us.requests[0]!.body);
    expect(sent).not.toContain('jane.doe@example.com');
    expect(sent).not.toContain('4111');
    expect(sent).toContain('[EMAIL_1]');
    expect(res.json<{ choices: Array<{ message: { content: string } }> }>().choices[0]!.message.content).toBe(
      'I will write to jane.doe@example.com and call +44 20 7946 0958.',
    );
  });

  it('restores placeholders split across stream chunks', async () => {
    us.setAnswer('Mail [EMAIL_1] today, then [CARD_1] is charged.');
    const res = await post('/redact', {
      model: 'outsider',
      stream: true,
      messages: [{ role: 'user', content: prompt }],
    });
    expect(res.status).toBe(200);
    const text = parseSse(res.text())
      .filter((e) => e.data !== '[DONE]')
      .map(
        (e) =>
          (JSON.parse(e.data) as { choices: Array<{ delta: { content?: string } }> }).choices[0]?.delta
            .content ?? '',
      )
      .join('');
    expect(text).toBe('Mail jane.doe@example.com today, then 4111 1111 1111 1111 is charged.');
  });

  it('sends the prompt unchanged to a trusted target', async () => {
    await post('/redact', { model: 'insider', messages: [{ role: 'user', content: prompt }] });
    expect(JSON.stringify(eu.requests[0]!.body)).toContain('jane.doe@example.com');
  });
});
