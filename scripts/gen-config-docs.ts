import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderConfigDocs } from '../lib/config';
import { pluginConfigs } from '../schemas';

/** Writes docs/configuration.md from the schemas. Run as `npm run docs:config` (from dist/scripts). */
const target = join(__dirname, '..', '..', 'docs', 'configuration.md');
writeFileSync(target, renderConfigDocs(Object.values(pluginConfigs)));
process.stderr.write(`wrote ${target}\n`);
