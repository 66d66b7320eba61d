import { ConfigError } from '../../../lib/config';
import { routerConfig } from '../../../schemas/ai-router';

const defaultTimeouts = { connect_ms: 5000, first_byte_ms: 60000, idle_ms: 60000, total_ms: 600000 };

/** What a target gets when its config leaves the routing fields out. */
const targetDefaults = { timeouts: defaultTimeouts, capabilities: [], weight: 1, trusted: true };

/** What a config gets when it sets nothing but targets (and headers). */
const routingDefaults = {
  pools: [],
  model_map: {},
  allow_model_names: true,
  experiments: [],
  access: [],
  quality: { enabled: false, max_answer_bytes: 262144, feedback: { enabled: false, max_age_s: 86400 } },
};

/** A target as the user writes it; tests override one part at a time. */
function target(overrides: Record<string, unknown> = {}) {
  return { name: 'gpt', model: 'gpt-4o-mini', ...overrides };
}

function problemsOf(raw: unknown): string[] {
  try {
    routerConfig.validate(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const error = err as ConfigError;
    for (const p of error.problems) expect(error.message).toContain(`${p.path}: ${p.message}`);
    return error.problems.map((p) => `${p.path}: ${p.message}`);
  }
  throw new Error('expected the config to be refused');
}

describe('ai-router config: defaults', () => {
  it('fills every default from a minimal config', () => {
    expect(routerConfig.validate({ targets: [target()] }).config).toEqual({
      targets: [
        {
          name: 'gpt',
          model: 'gpt-4o-mini',
          provider: 'openai',
          ...targetDefaults,
        },
      ],
      ...routingDefaults,
      headers: { enabled: true },
    });
  });

  it('fills the missing timeouts of a partly written timeouts record', () => {
    const { config } = routerConfig.validate({ targets: [target({ timeouts: { connect_ms: 100 } })] });
    expect(config.targets[0].timeouts).toEqual({ ...defaultTimeouts, connect_ms: 100 });
  });

  it('accepts what Kong sends: nulls for unset fields and its own keys', () => {
    const fromKong = {
      targets: [
        {
          name: 'local',
          provider: 'openai',
          model: 'llama3',
          base_url: 'http://127.0.0.1:11434/v1',
          api_key: null,
          api_key_env: null,
          headers: null,
          timeouts: { connect_ms: 5000, first_byte_ms: 60000, idle_ms: 60000, total_ms: 600000 },
        },
      ],
      default_target: null,
      tasks: null,
      residency: null,
      redaction: null,
      headers: { enabled: false },
      __plugin_id: 'b6f3c1a2-5d4e-4f60-8a7b-9c0d1e2f3a4b',
      __seq__: 7,
      __key__: 'plugins:ai-router:::::ws',
      __ws_id: 'ws',
      route_id: 'r-1',
    };
    const { config, kong } = routerConfig.validate(fromKong);
    expect(config).toEqual({
      targets: [
        {
          name: 'local',
          provider: 'openai',
          model: 'llama3',
          base_url: 'http://127.0.0.1:11434/v1',
          ...targetDefaults,
        },
      ],
      ...routingDefaults,
      headers: { enabled: false },
    });
    expect(kong).toEqual({
      plugin_id: 'b6f3c1a2-5d4e-4f60-8a7b-9c0d1e2f3a4b',
      seq: 7,
      key: 'plugins:ai-router:::::ws',
      ws_id: 'ws',
      route_id: 'r-1',
    });
  });

  it('accepts a full valid config unchanged', () => {
    const full = {
      targets: [
        target({ name: 'fast', api_key: 'sk-test', headers: { 'OpenAI-Organization': 'org-1' } }),
        target({
          name: 'smart',
          model: 'gpt-4o',
          api_key_env: 'OPENAI_API_KEY',
          base_url: 'https://example.test/v1',
        }),
      ],
      pools: [{ name: 'any', targets: ['fast', 'smart'], strategy: 'least-latency' }],
      model_map: { 'gpt-4': 'any' },
      default_target: 'fast',
      headers: { enabled: true },
    };
    const { config } = routerConfig.validate(full);
    expect(config.targets.map((t) => t.name)).toEqual(['fast', 'smart']);
    expect(config.targets[0].headers).toEqual({ 'OpenAI-Organization': 'org-1' });
    expect(config.default_target).toBe('fast');
  });
});

describe('ai-router config: cross-field rules', () => {
  it('refuses duplicate target names', () => {
    expect(problemsOf({ targets: [target(), target({ model: 'other' }), target()] })).toEqual([
      'config.targets[1].name: duplicate target name, already used by targets[0]',
      'config.targets[2].name: duplicate target name, already used by targets[0]',
    ]);
  });

  it('refuses a default_target that names no target', () => {
    expect(problemsOf({ targets: [target()], default_target: 'nope' })).toEqual([
      'config.default_target: names no target or pool',
    ]);
  });

  it('refuses api_key together with api_key_env', () => {
    expect(problemsOf({ targets: [target({ api_key: 'sk-x', api_key_env: 'KEY' })] })).toEqual([
      'config.targets[0].api_key: set api_key or api_key_env, not both',
    ]);
  });

  it.each(['Authorization', 'api-key', 'X-API-KEY'])(
    'refuses a %s header, without quoting its value',
    (name) => {
      const problems = problemsOf({ targets: [target({ headers: { [name]: 'Bearer sk-secret-value' } })] });
      expect(problems).toEqual([
        `config.targets[0].headers[${JSON.stringify(name)}]: credentials belong in api_key or api_key_env, not in headers`,
      ]);
      expect(problems.join()).not.toContain('sk-secret-value');
    },
  );

  it('refuses invalid header names and values that could inject headers', () => {
    expect(problems({ 'bad name': 'x', 'x-ok': 'a\r\nInjected: 1' })).toEqual([
      'config.targets[0].headers["bad name"]: not a valid HTTP header name',
      'config.targets[0].headers["x-ok"]: value must not contain line breaks',
    ]);
    function problems(headers: Record<string, string>) {
      return problemsOf({ targets: [target({ headers })] });
    }
  });

  it('refuses first_byte_ms or idle_ms above total_ms', () => {
    expect(
      problemsOf({ targets: [target({ timeouts: { first_byte_ms: 2000, idle_ms: 3000, total_ms: 1000 } })] }),
    ).toEqual([
      'config.targets[0].timeouts.first_byte_ms: must not exceed timeouts.total_ms',
      'config.targets[0].timeouts.idle_ms: must not exceed timeouts.total_ms',
    ]);
    // The defaults of first_byte_ms and idle_ms (60 s) also count against a short total.
    expect(problemsOf({ targets: [target({ timeouts: { total_ms: 30000 } })] })).toHaveLength(2);
  });

  it.each(['ftp://example.test/v1', 'api.openai.com/v1', 'https://user:pass@example.test/v1', 'not a url'])(
    'refuses base_url %s',
    (base_url) => {
      expect(problemsOf({ targets: [target({ base_url })] })).toEqual([
        'config.targets[0].base_url: must be an http(s) URL without credentials',
      ]);
    },
  );

  it('reports cross-field problems of several targets at once', () => {
    expect(
      problemsOf({
        targets: [target({ api_key: 'a', api_key_env: 'B' }), target({ base_url: 'file:///etc/passwd' })],
        default_target: 'missing',
      }),
    ).toEqual([
      'config.targets[0].api_key: set api_key or api_key_env, not both',
      'config.targets[1].name: duplicate target name, already used by targets[0]',
      'config.targets[1].base_url: must be an http(s) URL without credentials',
      'config.default_target: names no target or pool',
    ]);
  });
});

describe('ai-router config: bad input', () => {
  it('refuses a config without targets, or with none', () => {
    expect(problemsOf({})).toEqual(['config.targets: required field missing']);
    expect(problemsOf({ targets: [] })).toEqual(['config.targets: length must be at least 1']);
    expect(problemsOf({ targets: null })).toEqual(['config.targets: required field missing']);
  });

  it('names the missing field of the right target', () => {
    expect(problemsOf({ targets: [target(), { name: 'second' }] })).toEqual([
      'config.targets[1].model: required field missing',
    ]);
  });

  it('refuses a string where an integer belongs', () => {
    expect(problemsOf({ targets: [target({ timeouts: { connect_ms: '5000' } })] })).toEqual([
      'config.targets[0].timeouts.connect_ms: expected an integer',
    ]);
  });

  it.each([
    [-1, 'connect_ms'],
    [0, 'connect_ms'],
    [600001, 'connect_ms'],
    [1e12, 'total_ms'],
    [-5000, 'idle_ms'],
  ])('refuses %p for %s', (value, field) => {
    const bounds = field === 'connect_ms' ? '1 and 600000' : '1 and 3600000';
    expect(problemsOf({ targets: [target({ timeouts: { [field]: value } })] })).toContain(
      `config.targets[0].timeouts.${field}: value should be between ${bounds}`,
    );
  });

  it('refuses fractional timeouts', () => {
    expect(problemsOf({ targets: [target({ timeouts: { connect_ms: 1.5 } })] })).toEqual([
      'config.targets[0].timeouts.connect_ms: expected an integer',
    ]);
  });

  it('refuses unknown fields at every level', () => {
    expect(
      problemsOf({ targets: [target({ temperature: 1, timeouts: { read_ms: 5 } })], routes: [] }),
    ).toEqual([
      'config.targets[0].temperature: unknown field',
      'config.targets[0].timeouts.read_ms: unknown field',
      'config.routes: unknown field',
    ]);
  });

  it('refuses an unsupported provider', () => {
    expect(problemsOf({ targets: [target({ provider: 'cohere' })] })).toEqual([
      'config.targets[0].provider: expected one of: openai, azure, anthropic, gemini, bedrock, mistral, groq, deepseek, vllm, ollama',
    ]);
  });

  it('refuses target names outside the allowed characters or length', () => {
    expect(problemsOf({ targets: [target({ name: 'has space' })] })).toEqual([
      'config.targets[0].name: invalid value: must match ^[A-Za-z0-9._:-]+$',
    ]);
    expect(problemsOf({ targets: [target({ name: 'x'.repeat(65) })] })).toEqual([
      'config.targets[0].name: length must be at most 64',
    ]);
    expect(problemsOf({ targets: [target({ name: '' })] })).toEqual([
      'config.targets[0].name: length must be at least 1',
    ]);
  });

  it('refuses a malformed api_key_env name', () => {
    expect(problemsOf({ targets: [target({ api_key_env: 'OPENAI-KEY' })] })).toEqual([
      'config.targets[0].api_key_env: invalid value: must match ^[A-Za-z_][A-Za-z0-9_]*$',
    ]);
  });

  it('refuses wrong types for every kind of field', () => {
    expect(
      problemsOf({
        targets: [target({ model: 42, api_key: 7, headers: ['x'], timeouts: 'fast' })],
        headers: { enabled: 'yes' },
        default_target: false,
      }),
    ).toEqual([
      'config.targets[0].model: expected a string',
      'config.targets[0].api_key: expected a string',
      'config.targets[0].headers: expected a map',
      'config.targets[0].timeouts: expected a record',
      'config.default_target: expected a string',
      'config.headers.enabled: expected a boolean',
    ]);
  });

  it('refuses a targets value that is not an array', () => {
    expect(problemsOf({ targets: { name: 'gpt' } })).toEqual(['config.targets: expected an array']);
  });
});

describe('ai-router config: routing rules', () => {
  const two = [target({ name: 'a' }), target({ name: 'b', model: 'other' })];

  it('refuses pools naming unknown targets or reusing a name', () => {
    expect(
      problemsOf({
        targets: two,
        pools: [
          { name: 'a', targets: ['b'] },
          { name: 'p', targets: ['a', 'nope'] },
          { name: 'p', targets: ['a'] },
        ],
      }),
    ).toEqual([
      'config.pools[0].name: already the name of a target or pool',
      'config.pools[1].targets[1]: names no target',
      'config.pools[2].name: already the name of a target or pool',
    ]);
  });

  it('refuses a pool strategy it does not know and an absurd affinity prefix', () => {
    expect(
      problemsOf({
        targets: two,
        pools: [{ name: 'p', targets: ['a'], strategy: 'fastest', prompt_affinity: { min_prefix_chars: 3 } }],
      }),
    ).toEqual([
      'config.pools[0].strategy: expected one of: weighted, round-robin, least-latency, least-busy, least-cost, quota-aware, adaptive',
      'config.pools[0].prompt_affinity.min_prefix_chars: value should be between 64 and 1000000',
    ]);
  });

  it('refuses model_map entries and task routes naming nothing, and a task model that is a pool', () => {
    expect(
      problemsOf({
        targets: two,
        model_map: { 'gpt-4': 'missing' },
        tasks: {
          model: 'a',
          routes: { code: 'a', 'bad task': 'b' },
          rules: [
            { task: 'code' },
            { task: 'code', regex: '([' },
            { task: 'code', min_tokens: 10, max_tokens: 5 },
          ],
        },
      }),
    ).toEqual([
      'config.model_map["gpt-4"]: names no target or pool',
      'config.tasks.model: already the name of a target or pool',
      'config.tasks.routes.bad task: task names must match ^[A-Za-z0-9._:-]+$',
      'config.tasks.routes: needs a route for default_task "chat"',
      'config.tasks.rules[0]: has no condition: it would match every request',
      'config.tasks.rules[1].regex: not a valid regular expression',
      'config.tasks.rules[2].min_tokens: must not exceed max_tokens',
    ]);
  });

  it('refuses experiments whose arms, control, rollout or sticky header do not hold together', () => {
    expect(
      problemsOf({
        targets: two,
        experiments: [
          {
            name: 'e',
            model: 'a',
            sticky_by: 'header',
            control: 'x',
            arms: [
              { name: 'one', route_to: 'a' },
              { name: 'one', route_to: 'nowhere' },
            ],
            rollout: { arm: 'x', start: 'next tuesday', start_percent: 50, max_percent: 10 },
          },
          {
            name: 'e',
            model: 'a',
            control: 'k',
            arms: [
              { name: 'k', route_to: 'a', weight: 0 },
              { name: 'l', route_to: 'b', weight: 0 },
            ],
          },
        ],
      }),
    ).toEqual([
      'config.experiments[0].arms[1].name: duplicate arm name',
      'config.experiments[0].arms[1].route_to: names no target or pool',
      'config.experiments[0].control: names no arm',
      'config.experiments[0].sticky_header: required when sticky_by is header',
      'config.experiments[0].rollout.arm: must name an arm other than the control',
      'config.experiments[0].rollout.start: must be an RFC 3339 time, e.g. 2026-12-01T09:00:00Z',
      'config.experiments[0].rollout.start_percent: must not exceed max_percent',
      'config.experiments[1].name: duplicate experiment name',
      'config.experiments[1].model: already has an experiment',
      'config.experiments[1].arms: at least one arm needs a weight above 0',
    ]);
  });

  it('refuses access and residency rules that name nobody, and access to unknown models', () => {
    expect(
      problemsOf({
        targets: two,
        access: [{ models: ['a'] }, { consumers: ['alice'], models: ['*', 'nope'] }],
        residency: { consumers: [{ regions: ['eu'] }], header: 'X-Regions' },
      }),
    ).toEqual(["config.residency.header: invalid value: must match ^[!#$%&'*+.^_`|~0-9a-z-]+$"]);
    expect(
      problemsOf({
        targets: two,
        access: [{ models: ['a'] }, { consumers: ['alice'], models: ['*', 'nope'] }],
        residency: { consumers: [{ regions: ['eu'] }] },
      }),
    ).toEqual([
      'config.access[0]: names no consumer, tag or group',
      'config.access[1].models[1]: names no target, pool or task model',
      'config.residency.consumers[0]: names no consumer, tag or group',
    ]);
  });

  it('refuses provider settings on the wrong provider, and missing ones', () => {
    expect(
      problemsOf({
        targets: [
          target({ name: 'z', provider: 'azure', base_url: undefined }),
          target({ name: 'b', provider: 'bedrock' }),
          target({ name: 'o', aws: { region: 'us-east-1' } }),
          target({ name: 'w', weight: -1, capabilities: ['telepathy'] }),
        ],
      }),
    ).toEqual([
      'config.targets[3].capabilities[0]: expected one of: vision, tools, json, long-context, embeddings',
      'config.targets[3].weight: value should be between 0 and 10000',
    ]);
    expect(
      problemsOf({
        targets: [
          target({ name: 'z', provider: 'azure', base_url: undefined }),
          target({ name: 'b', provider: 'bedrock' }),
          target({ name: 'o', aws: { region: 'us-east-1' } }),
        ],
      }),
    ).toEqual([
      'config.targets[0].base_url: required for provider azure (https://RESOURCE.openai.azure.com)',
      'config.targets[1].aws: required for provider bedrock',
      'config.targets[2].aws: only for provider bedrock',
    ]);
  });
});
