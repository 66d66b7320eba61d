import type { Target } from '../../context/request-context';
import { GatewayError } from '../../errors';

/** A request field the target cannot honour: a 400 naming the feature and the target, never a silent drop. */
export function unsupported(target: Target, feature: string, param?: string): GatewayError {
  return new GatewayError(
    'AIGW_UNSUPPORTED_FEATURE',
    `${feature} is not supported by target ${target.name} (${target.provider})`,
    param !== undefined ? { param } : {},
  );
}
