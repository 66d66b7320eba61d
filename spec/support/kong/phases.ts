/**
 * Kong's phase bits and the PDK phase checks (kong/pdk/private/phases.lua).
 * A failed check is a Lua error: "function cannot be called in <phase> phase (only in: ...)".
 */
import { LuaError } from './lua';

export const PHASES = {
  init_worker: 0x00000001,
  certificate: 0x00000002,
  client_hello: 0x00000008,
  rewrite: 0x00000010,
  access: 0x00000020,
  balancer: 0x00000040,
  response: 0x00000080,
  cluster_listener: 0x00000100,
  header_filter: 0x00000200,
  body_filter: 0x00000400,
  log: 0x00002000,
  preread: 0x00004000,
  error: 0x01000000,
  admin_api: 0x10000000,
} as const;

export type PhaseName = keyof typeof PHASES;

/** Phases a kong-pdk plugin can declare (lib/mod.js). */
export const PLUGIN_PHASES = ['certificate', 'rewrite', 'log', 'access', 'preread', 'response'] as const;

export function phaseSet(...names: PhaseName[]): number {
  return names.reduce((acc, n) => acc | PHASES[n], 0);
}

/** The `request` alias of phases.lua. */
export const REQUEST_PHASES = phaseSet(
  'rewrite',
  'access',
  'balancer',
  'response',
  'header_filter',
  'body_filter',
  'log',
  'error',
  'admin_api',
  'cluster_listener',
);

function phaseNames(mask: number): string[] {
  const names: string[] = [];
  for (let bit = 1; bit <= 0x40000000; bit *= 2) {
    if ((mask & bit) !== 0) {
      const name = (Object.keys(PHASES) as PhaseName[]).find((n) => PHASES[n] === bit);
      if (name) names.push(name);
    }
  }
  return names;
}

/** check_phase. */
export function checkPhase(current: PhaseName, accepted: number): void {
  if ((PHASES[current] & accepted) !== 0) return;
  throw new LuaError(
    `function cannot be called in ${current} phase (only in: ${phaseNames(accepted).join(', ')})`,
  );
}

/** check_not_phase. */
export function checkNotPhase(current: PhaseName, rejected: number): void {
  if ((PHASES[current] & rejected) === 0) return;
  throw new LuaError(
    `function cannot be called in ${current} phase (can be called in any phases except: ${phaseNames(rejected).join(', ')})`,
  );
}
