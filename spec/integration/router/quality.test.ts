/**
 * ai-router's quality signals through the Kong emulator and the in-process suite server: the
 * automatic checks (log line and metrics), client feedback by `x-ai-feedback-id` (accepted
 * once, refused when unknown or foreign), the judge, and an adaptive pool moving its traffic
 * away from a target whose answers fail the checks.
 */
import type { DriverResponse } from '../../support/kong';
import { type ProviderMock, startOpenAIMock } from '../../support/providers';
import { chatBody, type InProcess, openAIError, postChat, startInProcess, until } from '../../support/suite';

const KEY = 'sk-proj-QualityKey0123456789abcdefXYZ';

let good: ProviderMock;
let bad: ProviderMock;
let judge: ProviderMock;
let gw: InProcess;

const target = (name: string, m: { url: string }) => ({
  name,
  model: `${name}-model`,
  base_url: m.url,
  api_key: KEY,
  prices: { input_per_1m: 1, output_per_1m: 2 },
});

beforeAll(async () => {
  [good, bad, judge] = await Promise.all([
    startOpenAIMock({ apiKey: KEY, chunkDelayMs: 1 }),
    startOpenAIMock({ apiKey: KEY, chunkDelayMs: 1 }),
    startOpenAIMock({ apiKey: KEY }),
  ]);
  const router = {
    targets: [target('good', good), target('bad', bad), target('judge', judge)],
    pools: [
      {
        name: 'smart',
        targets: ['good', 'bad'],
        strategy: 'adaptive',
        adaptive: { min_explore: 0.02, max_explore: 0.05 },
      },
    ],
    quality: {
      enabled: true,
      feedback: { enabled: true },
      judge: { target: 'judge', sample_rate: 1, max_per_minute: 1000 },
    },
  };
  gw = await startInProcess({
    consumers: [
      { username: 'alice', keyauth_credentials: [{ key: 'alice-key' }] },
      { username: 'bob', keyauth_credentials: [{ key: 'bob-key' }] },
    ],
    routes: () => [
      {
        name: 'q',
        path: '/q',
        plugins: [
          { name: 'key-auth', config: {} },
          { name: 'ai-router', config: router },
          { name: 'ai-metrics' },
        ],
      },
    ],
  });
});

afterEach(() => {
  for (const m of [good, bad, judge]) m.reset();
});

afterAll(async () => {
  await gw?.close();
  await Promise.all([good?.close(), bad?.close(), judge?.close()]);
});

const as = (key: string) => ({ apikey: key });
const ask = (body: Record<string, unknown>, key = 'alice-key') =>
  postChat(gw.kong, '/q', chatBody(body), as(key));
const rate = (body: Record<string, unknown>, key = 'alice-key') =>
  gw.kong.request({ method: 'POST', path: '/q/v1/feedback', headers: as(key), body });

async function scrape(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${gw.server.adminPort}/metrics`)).text();
}

function counter(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && want.every((w) => l.includes(w)));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

async function logLine(res: DriverResponse): Promise<Record<string, unknown>> {
  await res.stats();
  const id = res.headers['x-kong-request-id'];
  return until(
    () => gw.log.records().find((l) => l.msg === 'ai request' && l.kong_request_id === id),
    'the request log line',
  );
}

describe('automatic checks', () => {
  it('judges every answer: a JSON-mode answer that is not JSON fails, the log line and the metrics say so', async () => {
    judge.setAnswer('{"score": 8, "reason": "fine"}');
    const before = await scrape();
    const res = await ask({ model: 'good', response_format: { type: 'json_object' } });
    expect(res.status).toBe(200);
    const line = await logLine(res);
    expect(line.quality).toEqual({ score: 0, failed: ['invalid_json'] });
    const after = await scrape();
    const labels = { target: 'good', result: 'invalid_json' };
    expect(
      counter(after, 'aigw_quality_checks_total', labels) -
        counter(before, 'aigw_quality_checks_total', labels),
    ).toBe(1);
  });

  it('passes a plain answer', async () => {
    const res = await ask({ model: 'good' });
    expect((await logLine(res)).quality).toEqual({ score: 1, failed: [] });
  });
});

describe('feedback', () => {
  it('takes one rating per answer, by its x-ai-feedback-id, from the consumer who asked', async () => {
    const res = await ask({ model: 'good' });
    const id = res.headers['x-ai-feedback-id'];
    expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    await res.stats(); // the record is written when the outcome is known

    const foreign = await rate({ request_id: id, label: 'good' }, 'bob-key');
    expect(foreign.status).toBe(403);
    expect(openAIError(foreign).code).toBe('AIGW_FORBIDDEN');

    const ok = await until(async () => {
      const r = await rate({ request_id: id, label: 'good' });
      return r.status === 200 ? r : undefined;
    }, 'the feedback record');
    expect(ok.json()).toEqual({ object: 'feedback', request_id: id, accepted: true });

    const again = await rate({ request_id: id, score: 0.2 });
    expect(again.status).toBe(409);
    expect(openAIError(again).code).toBe('AIGW_CONFLICT');

    const unknown = await rate({ request_id: 'AAAAAAAAAAAAAAAAAAAAAA', score: 1 });
    expect(unknown.status).toBe(404);
    const bad = await rate({ request_id: id, score: 7 });
    expect(bad.status).toBe(400);
    expect(openAIError(bad).param).toBe('score');
    expect(counter(await scrape(), 'aigw_quality_feedback_score_count', { target: 'good' })).toBe(1);
  });
});

describe('judge', () => {
  it('scores the sampled answers with the judge target, after they have left', async () => {
    judge.setAnswer('{"score": 10, "reason": "excellent"}');
    const res = await ask({
      model: 'good',
      messages: [{ role: 'user', content: 'Explain photosynthesis briefly.' }],
    });
    expect(res.status).toBe(200);
    await until(() => judge.requests.length > 0 || undefined, 'a judge call');
    const sent = JSON.stringify(judge.requests[0]!.body);
    expect(sent).toContain('Explain photosynthesis briefly.');
    await until(
      async () =>
        counter(await scrape(), 'aigw_quality_judge_calls_total', { outcome: 'judged' }) > 0 || undefined,
      'the judge counted',
    );
  });
});

describe('adaptive pool', () => {
  it('moves traffic away from the target whose answers fail the checks', async () => {
    judge.setAnswer('{"score": 5}');
    bad.setAnswer(''); // empty answers: quality 0
    const firsts: string[] = [];
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < 20; i++) {
        const res = await ask({
          model: 'smart',
          messages: [{ role: 'user', content: `question ${round}-${i}` }],
        });
        expect(res.status).toBe(200);
        firsts.push(String(res.headers['x-ai-target']));
      }
      await new Promise((r) => setTimeout(r, 1_100)); // one sync: the evidence reaches the strategy
    }
    // Past the first rounds at most max_explore (5 %) plus the floor (1 %) go elsewhere: 80 %
    // of the last 60 on the good target is more than 3 standard deviations below that.
    const last60 = firsts.slice(-60);
    expect(last60.filter((t) => t === 'good').length).toBeGreaterThanOrEqual(48);
    expect(firsts.slice(0, 20)).toContain('bad'); // it was explored
  });
});
