/** One problem in a plugin config, e.g. `{ path: 'config.targets[1].model', message: 'required field missing' }`. */
export interface ConfigProblem {
  path: string;
  message: string;
}

/**
 * A plugin config that cannot be used. The message lists every problem with its field path
 * and never quotes a configured value, so logging it cannot leak a key.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'AIGW_CONFIG_INVALID';

  constructor(
    readonly plugin: string,
    readonly problems: readonly ConfigProblem[],
  ) {
    const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
    const list = problems.map((p) => `${p.path}: ${p.message}`).join('; ');
    super(`invalid ${plugin} config (${count}): ${list}`);
  }
}
