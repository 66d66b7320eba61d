import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { definePluginConfig, embedConfigInReadme, renderConfigDocs } from '../../../lib/config';
import { pluginConfigs } from '../../../schemas';

const DOCS_FILE = join(__dirname, '..', '..', '..', 'docs', 'configuration.md');

describe('README.md', () => {
  it('holds the config tables the schemas generate now', () => {
    const readme = readFileSync(join(__dirname, '..', '..', '..', 'README.md'), 'utf8');
    if (embedConfigInReadme(readme, Object.values(pluginConfigs)) !== readme) {
      throw new Error(
        'the config tables of README.md are out of date: run `npm run docs:config` and commit it',
      );
    }
  });
});

describe('docs/configuration.md', () => {
  it('matches what the schemas generate now', () => {
    const expected = renderConfigDocs(Object.values(pluginConfigs));
    let actual: string | undefined;
    try {
      actual = readFileSync(DOCS_FILE, 'utf8');
    } catch {
      actual = undefined;
    }
    if (actual !== expected) {
      throw new Error(
        'docs/configuration.md is out of date with schemas/*.ts: run `npm run docs:config` and commit it',
      );
    }
  });
});

describe('docs table', () => {
  const router = pluginConfigs['ai-router'].docsTable();
  const row = (field: string) => router.split('\n').find((line) => line.startsWith(`| \`${field}\` |`));

  it('writes nested paths with their type, required flag, default and constraints', () => {
    expect(row('targets')).toContain('| array of record | yes |  | 1 to 256 items |');
    expect(row('targets[].name')).toContain(
      '| string | yes |  | 1 to 64 characters; matches `^[A-Za-z0-9._:-]+$` |',
    );
    expect(row('targets[].provider')).toContain(
      '| string | no | `openai` | one of: `openai`, `azure`, `anthropic`,',
    );
    expect(row('targets[].timeouts')).toContain('| record | no |');
    expect(row('targets[].timeouts.connect_ms')).toContain(
      '| integer | no | `5000` | between 1 and 600000 |',
    );
    expect(row('targets[].headers')).toContain('| map of string to string | no |');
    expect(row('headers.enabled')).toContain('| boolean | no | `true` |');
  });

  it('marks secrets as referenceable', () => {
    expect(row('targets[].api_key')).toContain('secret, referenceable');
    expect(row('targets[].api_key')).toContain('**Secret.**');
    expect(row('targets[].api_key_env')).not.toContain('Secret');
  });

  it('has one row per field, each with a description', () => {
    const rows = router.split('\n').filter((line) => line.startsWith('| `'));
    expect(rows.length).toBeGreaterThan(80);
    for (const line of rows) expect(line.split(' | ').at(-1)?.length).toBeGreaterThan(10);
  });

  it('escapes characters that would break the table', () => {
    const piped = definePluginConfig({
      name: 'piped',
      schema: Type.Object({
        choice: Type.String({ pattern: '^(a|b)$', description: 'Either a | or b,\nnever both.' }),
      }),
    });
    const line = piped.docsTable().split('\n')[2];
    expect(line).toBe(
      '| `choice` | string | yes |  | matches `^(a\\|b)$` | Either a \\| or b, never both. |',
    );
  });

  it('says when a plugin has no fields yet and lists cross-field rules', () => {
    const empty = definePluginConfig({ name: 'ai-empty', schema: Type.Object({}) });
    expect(renderConfigDocs([empty])).toContain('## ai-empty\n\n_No configuration fields in this release._');
    const doc = renderConfigDocs(Object.values(pluginConfigs));
    expect(doc).toContain('- `tasks.routes` has a route for `tasks.default_task`');
  });
});
