import { createLogger } from '../../../lib/log/logger';
import { createStore, MemoryStore, parseStoreConfig } from '../../../lib/store';
import { FeedbackLedger, type FeedbackRecord, newFeedbackId } from '../../../plugins/ai-router/feedback';
import { brokenStore } from '../../support/broken-store';

const MAX_AGE_S = 3_600;

const served: FeedbackRecord = {
  consumerId: 'alice',
  route: 'chat-route',
  pool: 'fast',
  task: 'code',
  target: 'gpt-mini',
  experiment: { name: 'exp', arm: 'candidate' },
};

/** A ledger and its memory store on one fake clock. */
function setup() {
  const clock = { t: 1_000_000 };
  const now = () => clock.t;
  const store = new MemoryStore({ now });
  const ledger = new FeedbackLedger(store, MAX_AGE_S, now);
  return { clock, store, ledger };
}

/** Lets the background write of `issue` land. */
const settled = () => new Promise((resolve) => setImmediate(resolve));

describe('FeedbackLedger', () => {
  it('issues 128-bit base64url ids, each new', () => {
    const ids = new Set(Array.from({ length: 1000 }, newFeedbackId));
    expect(ids.size).toBe(1000);
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(Buffer.from([...ids][0]!, 'base64url')).toHaveLength(16);
  });

  it('accepts a score, and returns the record with the score as quality', async () => {
    const { ledger } = setup();
    const id = ledger.issue(served);
    await settled();
    const result = await ledger.take(id, 'alice', { score: 0.7 });
    expect(result).toEqual({
      ok: true,
      record: served,
      quality: 0.7,
      answer: { status: 200, body: { object: 'feedback', request_id: id, accepted: true } },
    });
  });

  it.each([
    ['good', 1],
    ['bad', 0],
  ] as const)('accepts the label %s as quality %d', async (label, quality) => {
    const { ledger } = setup();
    const id = ledger.issue(served);
    await settled();
    expect(await ledger.take(id, 'alice', { label })).toMatchObject({ ok: true, quality });
  });

  it('records under an id handed out earlier', async () => {
    const { ledger } = setup();
    const id = newFeedbackId();
    expect(ledger.issue(served, id)).toBe(id);
    await settled();
    expect(await ledger.take(id, 'alice', { score: 1 })).toMatchObject({ ok: true });
  });

  it('lets an anonymous request be rated anonymously', async () => {
    const { ledger } = setup();
    const id = ledger.issue({ pool: 'fast', target: 'gpt-mini' });
    await settled();
    expect(await ledger.take(id, undefined, { label: 'good' })).toMatchObject({
      ok: true,
      record: { pool: 'fast', target: 'gpt-mini' },
    });
  });

  it('refuses an unknown id with 404', async () => {
    const { ledger } = setup();
    ledger.issue(served);
    await settled();
    const result = await ledger.take(newFeedbackId(), 'alice', { score: 1 });
    expect(result).toMatchObject({
      ok: false,
      error: { status: 404, code: 'AIGW_NOT_FOUND', param: 'request_id' },
    });
  });

  it('refuses an id older than max_age_s with 404, like an unknown one', async () => {
    const { clock, ledger } = setup();
    const id = ledger.issue(served);
    await settled();
    clock.t += MAX_AGE_S * 1000 + 1;
    expect(await ledger.take(id, 'alice', { score: 1 })).toMatchObject({ ok: false, error: { status: 404 } });
  });

  it('refuses an expired record the store still holds (its clock lags the ledger)', async () => {
    const clock = { t: 0 };
    const ledger = new FeedbackLedger(new MemoryStore({ now: () => 0 }), MAX_AGE_S, () => clock.t);
    const id = ledger.issue(served);
    await settled();
    clock.t = MAX_AGE_S * 1000;
    expect(await ledger.take(id, 'alice', { score: 1 })).toMatchObject({ ok: true });
    const other = ledger.issue(served);
    await settled();
    clock.t += MAX_AGE_S * 1000 + 1;
    expect(await ledger.take(other, 'alice', { score: 1 })).toMatchObject({
      ok: false,
      error: { status: 404 },
    });
  });

  it.each([
    ['another consumer', 'alice', 'mallory'],
    ['an anonymous client, for a consumer’s answer', 'alice', undefined],
    ['a consumer, for an anonymous answer', undefined, 'alice'],
  ])('refuses %s with 403', async (_name, owner, rater) => {
    const { ledger } = setup();
    const id = ledger.issue({ ...served, consumerId: owner });
    await settled();
    const result = await ledger.take(id, rater, { score: 1 });
    expect(result).toMatchObject({
      ok: false,
      error: { status: 403, type: 'permission_error', param: 'request_id' },
    });
    // A refused attempt does not use up the owner's rating.
    expect(await ledger.take(id, owner, { score: 1 })).toMatchObject({ ok: true });
  });

  it('refuses a second rating with 409, whatever it says', async () => {
    const { ledger } = setup();
    const id = ledger.issue(served);
    await settled();
    expect(await ledger.take(id, 'alice', { label: 'good' })).toMatchObject({ ok: true });
    expect(await ledger.take(id, 'alice', { label: 'bad' })).toMatchObject({
      ok: false,
      error: { status: 409 },
    });
    expect(await ledger.take(id, 'alice', { score: 0.5 })).toMatchObject({
      ok: false,
      error: { status: 409 },
    });
  });

  it('takes exactly one of many concurrent ratings', async () => {
    const { ledger } = setup();
    const id = ledger.issue(served);
    await settled();
    const results = await Promise.all(
      Array.from({ length: 50 }, () => ledger.take(id, 'alice', { score: 1 })),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    expect(results.filter((r) => !r.ok && r.error.status === 409)).toHaveLength(49);
  });

  it('treats a record that is not one as unknown', async () => {
    const { store, ledger } = setup();
    const id = ledger.issue(served);
    await settled();
    await store.set(`{${id}}:feedback`, 'not json');
    expect(await ledger.take(id, 'alice', { score: 1 })).toMatchObject({ ok: false, error: { status: 404 } });
  });
});

describe('FeedbackLedger: a failing store', () => {
  it('issues ids anyway, counting the lost writes, and answers ratings with 503', async () => {
    const ledger = new FeedbackLedger(brokenStore(), MAX_AGE_S);
    const ids = [ledger.issue(served), ledger.issue(served)];
    await settled();
    expect(ledger.stats).toEqual({ issued: 2, writeFailures: 2 });
    for (const id of [...ids, ...ids]) {
      const result = await ledger.take(id, 'alice', { score: 1 });
      expect(result).toMatchObject({ ok: false, error: { status: 503, code: 'AIGW_STORE_UNAVAILABLE' } });
    }
  });

  it('answers 503 when the store fails after the record was read', async () => {
    const { store, ledger } = setup();
    const id = ledger.issue(served);
    await settled();
    jest.spyOn(store, 'incrBy').mockRejectedValue(new Error('connection reset'));
    expect(await ledger.take(id, 'alice', { score: 1 })).toMatchObject({
      ok: false,
      error: { status: 503, code: 'AIGW_STORE_UNAVAILABLE' },
    });
  });

  it('answers 503 from a Redis store on a dead port', async () => {
    const store = createStore(
      parseStoreConfig({
        kind: 'redis',
        redis: { url: 'redis://127.0.0.1:1', connect_timeout_ms: 200, command_timeout_ms: 200 },
      }),
      createLogger({ level: 'silent' }),
    );
    try {
      const ledger = new FeedbackLedger(store, MAX_AGE_S);
      const id = ledger.issue(served);
      const result = await ledger.take(id, 'alice', { label: 'good' });
      expect(result).toMatchObject({ ok: false, error: { status: 503, code: 'AIGW_STORE_UNAVAILABLE' } });
    } finally {
      await store.close();
    }
  });
});
