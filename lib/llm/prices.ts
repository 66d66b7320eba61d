/** USD per 1M tokens. */
export interface Prices {
  input_per_1m: number;
  output_per_1m: number;
  /** Prompt tokens the provider served from its prompt cache; the input price when absent. */
  cached_input_per_1m?: number;
}

/**
 * Public list prices of well-known models (USD per 1M tokens, standard tier, 2025), used when
 * an ai-router target sets no `prices`. Prices change: set `prices` on a target to be exact.
 * Self-hosted and unlisted models have none, so a cost limit on them is a config error until
 * their target says what they cost (0 is a valid price).
 */
const LIST_PRICES: Record<string, Prices> = {
  'gpt-5': { input_per_1m: 1.25, output_per_1m: 10, cached_input_per_1m: 0.125 },
  'gpt-5-mini': { input_per_1m: 0.25, output_per_1m: 2, cached_input_per_1m: 0.025 },
  'gpt-5-nano': { input_per_1m: 0.05, output_per_1m: 0.4, cached_input_per_1m: 0.005 },
  'gpt-4.1': { input_per_1m: 2, output_per_1m: 8, cached_input_per_1m: 0.5 },
  'gpt-4.1-mini': { input_per_1m: 0.4, output_per_1m: 1.6, cached_input_per_1m: 0.1 },
  'gpt-4.1-nano': { input_per_1m: 0.1, output_per_1m: 0.4, cached_input_per_1m: 0.025 },
  'gpt-4o': { input_per_1m: 2.5, output_per_1m: 10, cached_input_per_1m: 1.25 },
  'gpt-4o-mini': { input_per_1m: 0.15, output_per_1m: 0.6, cached_input_per_1m: 0.075 },
  'gpt-4-turbo': { input_per_1m: 10, output_per_1m: 30 },
  'gpt-3.5-turbo': { input_per_1m: 0.5, output_per_1m: 1.5 },
  o1: { input_per_1m: 15, output_per_1m: 60, cached_input_per_1m: 7.5 },
  o3: { input_per_1m: 2, output_per_1m: 8, cached_input_per_1m: 0.5 },
  'o3-mini': { input_per_1m: 1.1, output_per_1m: 4.4, cached_input_per_1m: 0.55 },
  'o4-mini': { input_per_1m: 1.1, output_per_1m: 4.4, cached_input_per_1m: 0.275 },
  'text-embedding-3-small': { input_per_1m: 0.02, output_per_1m: 0 },
  'text-embedding-3-large': { input_per_1m: 0.13, output_per_1m: 0 },
  'text-embedding-ada-002': { input_per_1m: 0.1, output_per_1m: 0 },
  'claude-opus-4': { input_per_1m: 15, output_per_1m: 75, cached_input_per_1m: 1.5 },
  'claude-sonnet-4': { input_per_1m: 3, output_per_1m: 15, cached_input_per_1m: 0.3 },
  'claude-3-7-sonnet': { input_per_1m: 3, output_per_1m: 15, cached_input_per_1m: 0.3 },
  'claude-3-5-sonnet': { input_per_1m: 3, output_per_1m: 15, cached_input_per_1m: 0.3 },
  'claude-3-5-haiku': { input_per_1m: 0.8, output_per_1m: 4, cached_input_per_1m: 0.08 },
  'gemini-2.5-pro': { input_per_1m: 1.25, output_per_1m: 10, cached_input_per_1m: 0.31 },
  'gemini-2.5-flash': { input_per_1m: 0.3, output_per_1m: 2.5, cached_input_per_1m: 0.075 },
  'gemini-2.0-flash': { input_per_1m: 0.1, output_per_1m: 0.4, cached_input_per_1m: 0.025 },
  'mistral-large': { input_per_1m: 2, output_per_1m: 6 },
  'mistral-small': { input_per_1m: 0.1, output_per_1m: 0.3 },
};

/**
 * The list price of a model name: the longest known name it starts with at a `-` boundary,
 * so dated versions (`gpt-4o-2024-08-06`) and provider prefixes (`openai/gpt-4o`) match.
 */
export function listPrice(model: string): Prices | undefined {
  const name = model.slice(model.lastIndexOf('/') + 1).toLowerCase();
  let best: string | undefined;
  for (const known of Object.keys(LIST_PRICES)) {
    if ((name === known || name.startsWith(`${known}-`)) && known.length > (best?.length ?? 0)) best = known;
  }
  return best === undefined ? undefined : LIST_PRICES[best];
}

/** Nano-USD per token for a price per 1M tokens, rounded up: budgets count money as integers. */
export function nanoUsdPerToken(perMillion: number): number {
  return Math.max(0, Math.ceil(perMillion * 1000 - 1e-9));
}

export const NANO_USD = 1e9;

/**
 * What a request's tokens cost; cached prompt tokens at the cached price when there is one.
 * `perToken` turns a price per 1M tokens into the unit wanted (USD by default; budgets count
 * integer nano-USD with `nanoUsdPerToken`).
 */
export function usageCost(
  prices: Prices,
  usage: { input_tokens: number; output_tokens: number; cached_input_tokens?: number },
  perToken: (perMillion: number) => number = (perMillion) => perMillion / 1_000_000,
): number {
  const cached = Math.min(usage.cached_input_tokens ?? 0, usage.input_tokens);
  return (
    (usage.input_tokens - cached) * perToken(prices.input_per_1m) +
    cached * perToken(prices.cached_input_per_1m ?? prices.input_per_1m) +
    usage.output_tokens * perToken(prices.output_per_1m)
  );
}
