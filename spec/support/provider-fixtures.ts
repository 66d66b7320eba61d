/**
 * What the provider adapter tests share: the recorded wire transcripts in
 * spec/fixtures/providers/<provider>/, a target with test timeouts, the error a build refuses
 * with, and a 1×1 PNG.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Target } from '../../lib/context';
import { GatewayError } from '../../lib/errors';

const PROVIDER_FIXTURES = join(__dirname, '../fixtures/providers');

/** A 1×1 PNG, base64. */
export const PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';

/** The text of one recorded transcript of a provider. */
export const providerFixture = (provider: string, name: string): string =>
  readFileSync(join(PROVIDER_FIXTURES, provider, name), 'utf8');

/** One provider's transcripts, as text and as parsed JSON (typed `J`). */
export function providerFixtures<J = unknown>(provider: string) {
  const fixture = (name: string) => providerFixture(provider, name);
  return { fixture, fixtureJson: (name: string): J => JSON.parse(fixture(name)) };
}

/** A target from its own fields, with no extra headers and short timeouts; `overrides` last. */
export function adapterTarget(
  fields: Omit<Target, 'headers' | 'timeouts'>,
  overrides: Partial<Target> = {},
): Target {
  return {
    ...fields,
    headers: {},
    timeouts: { connect_ms: 1000, first_byte_ms: 1000, idle_ms: 1000, total_ms: 5000 },
    ...overrides,
  };
}

/** The GatewayError `fn` throws; fails the test when it returns or throws anything else. */
export function refusal(fn: () => unknown): GatewayError {
  try {
    fn();
  } catch (err) {
    if (err instanceof GatewayError) return err;
    throw err;
  }
  throw new Error('the request was not refused');
}
