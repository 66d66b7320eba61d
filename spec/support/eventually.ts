/** Polling helpers for tests: hang detectors with generous limits, never timing assertions. */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until fn returns something other than undefined. */
export async function until<T>(
  fn: () => T | undefined | Promise<T | undefined>,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Retries attempt until it stops throwing. */
export async function eventually<T>(what: string, attempt: () => Promise<T>, limitMs = 10_000): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (Date.now() > deadline)
        throw new Error(`${what} did not happen within ${limitMs} ms: ${String(err)}`);
      await sleep(50);
    }
  }
}
