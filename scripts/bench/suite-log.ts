/**
 * The suite server's JSON log lines (AIGW_LOG_FILE) written during a measured phase: take
 * `logSize(file)` before it, read the lines after that offset once it is over.
 */
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';

export const logSize = (file: string): number => (existsSync(file) ? statSync(file).size : 0);

/** Parsed lines after `offset` that contain `marker` (a cheap filter before JSON.parse). */
export async function readLogRecords(
  file: string,
  offset: number,
  marker: string,
): Promise<Array<Record<string, unknown>>> {
  const records: Array<Record<string, unknown>> = [];
  if (!existsSync(file)) return records;
  const rl = createInterface({
    input: createReadStream(file, { start: offset }),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  for await (const line of rl) {
    if (!line.includes(marker)) continue;
    try {
      records.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a line cut by the read; the next read gets it whole
    }
  }
  return records;
}
