import { startOpenAIMock } from '../../support/providers';
import { startRealProcess, routerConfig, postChat } from '../../support/suite';
import { faultsPlugin } from '../../support/fixtures/suite-plugins';

test('scratch', async () => {
  const mock = await startOpenAIMock({ apiKey: 'sk-abc' });
  const h = await startRealProcess({
    fixtures: [faultsPlugin],
    routes: () => [
      { name: 'a', path: '/a', plugins: [{ name: 'ai-router', config: routerConfig(mock.url, [{ name: 'gpt-4o-mini', api_key: 'sk-abc' }]) }, { name: 'ai-metrics' }] },
      { name: 'b', path: '/b', plugins: [{ name: 'ai-router', config: routerConfig(mock.url, [{ name: 'gpt-4o-mini', api_key: 'sk-abc' }]) }, { name: 'test-faults', config: { access: 'reject' } }] },
      { name: 'c', path: '/c', plugins: [{ name: 'ai-router', config: routerConfig(mock.url, [{ name: 'gpt-4o-mini', api_key: 'sk-abc' }]) }, { name: 'test-faults', config: { access: 'uncaught' } }] },
    ],
  });
  try {
    const pid = h.pid();
    for (const p of ['/a', '/b', '/c', '/a']) {
      const res = await postChat(h.kong, p);
      console.log(p, res.status, res.text().slice(0, 100));
      const st = await res.stats();
      console.log(st.roundTrips, Object.entries(st.plugins).map(([k, v]) => `${k}:${v.roundTrips}`));
    }
    await new Promise((r) => setTimeout(r, 200));
    console.log(pid, h.pid());
    console.log(h.output());
    console.log(h.kong.logText());
  } finally {
    await h.close();
    await mock.close();
  }
});
