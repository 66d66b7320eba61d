import type { GatewayError } from '../../../lib/errors';
import { TargetHealth } from '../../../lib/health';
import { resolveTargets, TargetTable } from '../../../plugins/ai-router/targets';
import { routerConfig } from '../../../schemas/ai-router';

const config = (raw: unknown) => routerConfig.validate(raw).config;

describe('resolveTargets', () => {
  it('reads api_key_env from the environment and trims the base URL', () => {
    const [t] = resolveTargets(
      config({ targets: [{ name: 'a', model: 'gpt-4o', base_url: 'http://x/v1/', api_key_env: 'K' }] }),
      { K: 'sk-abc' },
    );
    expect(t).toMatchObject({
      name: 'a',
      model: 'gpt-4o',
      base_url: 'http://x/v1',
      api_key: 'sk-abc',
      provider: 'openai',
    });
    expect(t!.timeouts).toEqual({ connect_ms: 5000, first_byte_ms: 60000, idle_ms: 60000, total_ms: 600000 });
  });

  it('names the variable, never a value, when api_key_env is unset', () => {
    expect(() =>
      resolveTargets(config({ targets: [{ name: 'a', model: 'm', api_key_env: 'MISSING_KEY' }] }), {}),
    ).toThrow(/config\.targets\[0\]\.api_key_env: environment variable MISSING_KEY is not set/);
  });

  it('leaves the key out for keyless local servers', () => {
    const [t] = resolveTargets(
      config({ targets: [{ name: 'local', model: 'llama3', base_url: 'http://127.0.0.1:11434/v1' }] }),
      {},
    );
    expect(t).not.toHaveProperty('api_key');
  });
});

describe('TargetTable', () => {
  const targets = resolveTargets(
    config({
      targets: [
        { name: 'fast', model: 'gpt-4o-mini' },
        { name: 'smart', model: 'gpt-4o' },
      ],
    }),
    {},
  );

  it('routes by target name, then by model, then to the default', () => {
    const table = new TargetTable(targets, 'fast', true);
    expect(table.route('smart')).toMatchObject({
      targets: [{ name: 'smart' }],
      reason: 'target name',
      exposeTarget: true,
    });
    expect(table.route('gpt-4o')).toMatchObject({ targets: [{ name: 'smart' }], reason: 'target model' });
    expect(table.route('unknown')).toMatchObject({ targets: [{ name: 'fast' }], reason: 'default target' });
    expect(table.route(undefined)).toMatchObject({ targets: [{ name: 'fast' }] });
  });

  it('among targets serving the requested model, passes over one whose breaker is open', () => {
    const twins = resolveTargets(
      config({
        targets: [
          { name: 'openai-mini', model: 'gpt-4o-mini', base_url: 'https://api.openai.com/v1' },
          { name: 'azure-mini', model: 'gpt-4o-mini', base_url: 'https://example.openai.azure.com/v1' },
        ],
      }),
      {},
    );
    const health = new TargetHealth();
    const table = new TargetTable(twins, undefined, true, health);
    expect(table.route('gpt-4o-mini')).toMatchObject({
      targets: [{ name: 'openai-mini' }],
      reason: 'target model',
    });
    health.update(twins[0]!, 'open', Date.now() + 60_000);
    expect(table.route('gpt-4o-mini')).toMatchObject({
      targets: [{ name: 'azure-mini' }],
      reason: 'target model, passing over open breakers',
    });
    // A target named explicitly is the client's choice: ai-fallback decides what its breaker means.
    expect(table.route('openai-mini')).toMatchObject({ targets: [{ name: 'openai-mini' }] });
    // Every one open: the first, as before (ai-fallback's panic rule applies there).
    health.update(twins[1]!, 'open', Date.now() + 60_000);
    expect(table.route('gpt-4o-mini')).toMatchObject({ targets: [{ name: 'openai-mini' }] });
    // Half open again: the first may be probed.
    health.update(twins[0]!, 'open', Date.now() - 1);
    expect(table.route('gpt-4o-mini')).toMatchObject({ targets: [{ name: 'openai-mini' }] });
  });

  it('refuses unknown models with 404 and a missing model with 400 when there is no default', () => {
    const table = new TargetTable(targets, undefined, false);
    const unknown = (() => {
      try {
        table.route('claude-9');
      } catch (err) {
        return err as GatewayError;
      }
    })();
    expect(unknown).toMatchObject({ status: 404, code: 'AIGW_UNKNOWN_MODEL', param: 'model' });
    expect(unknown?.message).not.toContain('claude-9');
    expect(() => table.route(undefined)).toThrow(/'model' is required/);
  });

  it('lists target names as models', () => {
    expect(new TargetTable(targets, undefined, true).modelList()).toEqual({
      object: 'list',
      data: [
        { id: 'fast', object: 'model', created: 0, owned_by: 'openai' },
        { id: 'smart', object: 'model', created: 0, owned_by: 'openai' },
      ],
    });
  });
});
