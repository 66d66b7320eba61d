import { resolveTargets } from '../../../plugins/ai-router/targets';
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

describe('resolveTargets: providers', () => {
  it("fills each provider's base URL and API version", () => {
    const ts = resolveTargets(
      config({
        targets: [
          { name: 'c', provider: 'anthropic', model: 'claude-sonnet-4-5' },
          { name: 'g', provider: 'gemini', model: 'gemini-2.5-flash' },
          { name: 'z', provider: 'azure', model: 'prod-4o', base_url: 'https://r.openai.azure.com/' },
          { name: 'o', provider: 'ollama', model: 'llama3' },
        ],
      }),
      {},
    );
    expect(ts.map((t) => [t.base_url, t.api_version])).toEqual([
      ['https://api.anthropic.com/v1', '2023-06-01'],
      ['https://generativelanguage.googleapis.com/v1beta', undefined],
      ['https://r.openai.azure.com', '2024-10-21'],
      ['http://127.0.0.1:11434/v1', undefined],
    ]);
  });

  it("takes Bedrock credentials from config, else from the server's AWS environment, and names what is missing", () => {
    const bedrock = (aws: object) =>
      config({ targets: [{ name: 'b', provider: 'bedrock', model: 'm', aws }] });
    const [fromEnv] = resolveTargets(bedrock({ region: 'eu-west-1' }), {
      AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'secret',
    });
    expect(fromEnv).toMatchObject({
      base_url: 'https://bedrock-runtime.eu-west-1.amazonaws.com',
      aws: { region: 'eu-west-1', access_key_id: 'AKIAEXAMPLE', secret_access_key: 'secret' },
    });
    expect(fromEnv!.aws).not.toHaveProperty('session_token');
    expect(() => resolveTargets(bedrock({ region: 'eu-west-1', access_key_id: 'AKIA' }), {})).toThrow(
      /config\.targets\[0\]\.aws: no credentials \(set them, or AWS_SECRET_ACCESS_KEY/,
    );
  });
});
