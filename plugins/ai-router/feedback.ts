import { randomBytes } from 'node:crypto';
import { GatewayError } from '../../lib/errors';
import type { Logger } from '../../lib/log/logger';
import { key, type Store } from '../../lib/store';

/** What a rating is about: who asked, and what served the answer. */
export interface FeedbackRecord {
  /** Kong consumer id; absent for an anonymous request, which only an anonymous client may rate. */
  consumerId?: string;
  route?: string;
  pool: string;
  task?: string;
  /** The target that answered. */
  target: string;
  experiment?: { name: string; arm: string };
}

/** A client's rating, as `POST /v1/feedback` checked it (lib/llm/request.ts). */
export type Rating = { score: number } | { label: 'good' | 'bad' };

/** The client's answer to an accepted rating. */
export interface FeedbackAnswer {
  status: 200;
  body: { object: 'feedback'; request_id: string; accepted: true };
}

export type FeedbackResult =
  | {
      ok: true;
      record: FeedbackRecord;
      /** The rating on 0..1: good = 1, bad = 0, a score as given. */
      quality: number;
      answer: FeedbackAnswer;
    }
  | { ok: false; error: GatewayError };

interface Stored extends FeedbackRecord {
  /** Ledger clock (epoch ms) when the answer was issued its id. */
  issuedAt: number;
}

/** 128 random bits, base64url: unguessable, so only whoever got the answer can name it. */
export function newFeedbackId(): string {
  return randomBytes(16).toString('base64url');
}

/**
 * Explicit feedback: each answer gets a random id (sent as `x-ai-feedback-id`) under which the
 * store keeps what served it for `max_age_s`; a client rates the answer once by that id.
 *
 * Refusals: an unknown id and an expired one are the same 404 (after `max_age_s` the store has
 * dropped the record, so the two cannot be told apart); another consumer's answer, or a
 * consumer's answer rated anonymously and the reverse, 403; a second rating 409 (the first one
 * has already fed the router's statistics, and a replacement would count twice); a store that
 * fails, 503. Expected refusals are results, not exceptions; `take` never throws.
 */
export class FeedbackLedger {
  readonly stats = { issued: 0, writeFailures: 0 };
  private readonly maxAgeMs: number;

  constructor(
    private readonly store: Store,
    maxAgeS: number,
    private readonly now: () => number = Date.now,
    private readonly logger?: Logger,
  ) {
    this.maxAgeMs = maxAgeS * 1000;
  }

  /**
   * Records what served an answer and returns its feedback id at once; the write goes on in
   * the background and a failed one only means that answer cannot be rated. Pass `id` to
   * record under an id handed out earlier (e.g. sent in the headers before the answering
   * target was known).
   */
  issue(record: FeedbackRecord, id: string = newFeedbackId()): string {
    this.stats.issued++;
    void this.write(id, { ...record, issuedAt: this.now() });
    return id;
  }

  private async write(id: string, stored: Stored): Promise<void> {
    try {
      await this.store.set(recordKey(id), JSON.stringify(stored), this.maxAgeMs);
    } catch (err) {
      this.stats.writeFailures++;
      this.logger?.warn({ err }, 'feedback: an answer could not be recorded, so it cannot be rated');
    }
  }

  /** Takes one rating of answer `id` from `consumerId` (undefined: anonymous). */
  async take(id: string, consumerId: string | undefined, rating: Rating): Promise<FeedbackResult> {
    try {
      const raw = await this.store.get(recordKey(id));
      const stored = raw ? parseStored(raw) : undefined;
      if (!stored || this.now() - stored.issuedAt > this.maxAgeMs) return refuse('unknown');
      if (stored.consumerId !== consumerId) return refuse('foreign');
      // Atomic on every node: only the first rating sees 1.
      if ((await this.store.incrBy(ratedKey(id), 1, this.maxAgeMs)) > 1) return refuse('rated');
      const { issuedAt: _, ...record } = stored;
      return {
        ok: true,
        record,
        quality: 'label' in rating ? (rating.label === 'good' ? 1 : 0) : rating.score,
        answer: { status: 200, body: { object: 'feedback', request_id: id, accepted: true } },
      };
    } catch (err) {
      const error =
        err instanceof GatewayError && err.code === 'AIGW_STORE_UNAVAILABLE'
          ? err
          : new GatewayError('AIGW_STORE_UNAVAILABLE', 'feedback could not be recorded', { cause: err });
      return { ok: false, error };
    }
  }
}

/**
 * Keys spread by the id itself: it is random, and the record names the consumer, so there is
 * no tenant to group by; one fixed tag would put every answer of the day in one Redis slot.
 */
function recordKey(id: string): string {
  return key(id, 'feedback');
}

function ratedKey(id: string): string {
  return key(id, 'feedback', 'rated');
}

function refuse(why: 'unknown' | 'foreign' | 'rated'): FeedbackResult {
  const param = { param: 'request_id' };
  switch (why) {
    case 'unknown':
      return {
        ok: false,
        error: new GatewayError(
          'AIGW_NOT_FOUND',
          `no answer to rate with this request_id: unknown, or older than the route's feedback max_age_s`,
          param,
        ),
      };
    case 'foreign':
      return {
        ok: false,
        error: new GatewayError(
          'AIGW_FORBIDDEN',
          'only the consumer who made the request may rate it',
          param,
        ),
      };
    case 'rated':
      return {
        ok: false,
        error: new GatewayError('AIGW_CONFLICT', 'this answer has already been rated', param),
      };
  }
}

/** A record as stored, or undefined when it is not one (treated as unknown). */
function parseStored(raw: Buffer): Stored | undefined {
  try {
    const value = JSON.parse(raw.toString('utf8')) as Partial<Stored>;
    if (
      typeof value.issuedAt !== 'number' ||
      typeof value.pool !== 'string' ||
      typeof value.target !== 'string'
    ) {
      return undefined;
    }
    return value as Stored;
  } catch {
    return undefined;
  }
}
