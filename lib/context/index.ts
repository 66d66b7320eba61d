export * from './context-store';
export * from './request-context';

/** Upstream request header that carries each suite plugin's ticket to the relay (one value per plugin). */
export const CONTEXT_HEADER = 'x-aigw-context';

/** The ticket ids in a context header, whether it arrives as lines (arrays) or joined with commas. */
export function ticketIds(value: string | readonly string[] | undefined): string[] {
  if (value === undefined) return [];
  const values = typeof value === 'string' ? [value] : value;
  return values
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v.length > 0);
}
