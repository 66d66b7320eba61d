import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pluginInfo } from '../../../lib/kong/plugin';
import { firstInstanceId } from '../../../lib/kong/plugin-server';
import { SUITE_VERSION } from '../../../lib/version';
import { suitePlugins } from '../../../plugins';

describe('what Kong is told about the plugins', () => {
  it('reports package.json’s version, in the x.y.z form Kong requires', () => {
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as {
      version: string;
    };
    expect(SUITE_VERSION).toBe(pkg.version);
    expect(SUITE_VERSION).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('runs the five plugins in the documented order and never declares the response phase', () => {
    const infos = suitePlugins.map(pluginInfo);
    expect(infos.map((i) => [i.Name, i.Priority])).toEqual([
      ['ai-semantic-cache', 760],
      ['ai-router', 750],
      ['ai-budget', 740],
      ['ai-fallback', 730],
      ['ai-metrics', 720],
    ]);
    for (const info of infos) {
      expect(Number.isInteger(info.Priority)).toBe(true);
      expect(info.Phases).not.toContain('response');
    }
  });

  it('starts instance ids above every id of a process started a second earlier, below 2^31', () => {
    const t = Date.UTC(2026, 10, 25, 12, 0, 0);
    expect(firstInstanceId(t + 1_000)).toBeGreaterThanOrEqual(firstInstanceId(t) + 1024);
    expect(firstInstanceId(t)).toBeLessThan(2 ** 31);
  });
});
