import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { embedConfigInReadme, renderConfigDocs } from '../lib/config';
import { installationRoot } from '../lib/kong/kong-conf';
import { pluginConfigs } from '../schemas';

/** Writes docs/configuration.md and README.md's config tables from the schemas: `npm run docs:config`. */
const root = installationRoot();
const plugins = Object.values(pluginConfigs);
const docs = join(root, 'docs', 'configuration.md');
writeFileSync(docs, renderConfigDocs(plugins));
const readme = join(root, 'README.md');
writeFileSync(readme, embedConfigInReadme(readFileSync(readme, 'utf8'), plugins));
process.stderr.write(`wrote ${docs} and the config tables of ${readme}\n`);
