/** Response headers as undici gives them (lowercase names). */
export type IncomingHeaders = Record<string, string | string[] | undefined>;

/**
 * Provider response headers the client may see: rate-limit state and retry hints, which
 * SDKs use to back off, and the provider's request id (renamed so it cannot be mistaken
 * for Kong's). Everything else stays here: cookies, organization and project ids,
 * server and CDN details.
 */
export function passThroughHeaders(upstream: IncomingHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(upstream)) {
    if (value === undefined) continue;
    if (name.startsWith('x-ratelimit-') || name === 'retry-after' || name === 'retry-after-ms')
      out[name] = value;
    else if (name === 'x-request-id') out['x-upstream-request-id'] = value;
  }
  return out;
}

/** Config values such as target names may hold characters a header cannot carry. */
export function headerSafe(value: string): string | undefined {
  return /^[\x20-\x7e]*$/.test(value) ? value : undefined;
}
