import type { TObject } from '@sinclair/typebox';
import type { ConfigOf, PluginConfig } from '../config/define';
import type { KongKeys } from '../config/validate';
import type { ContextStore } from '../context';
import type { Logger } from '../log/logger';
import type { Store } from '../store';
import { SUITE_VERSION } from '../version';
import type { KongPDK } from './pdk';

/** Phases a suite plugin may declare. Never `response`: it makes Kong buffer whole answers. */
export type Phase = 'access' | 'log';

/** Process-wide services shared by all plugins and the relay. */
export interface Suite {
  readonly contexts: ContextStore;
  /** Shared state across nodes (Redis) or this node only (memory): AIGW_STORE. */
  readonly store: Store;
  readonly logger: Logger;
  readonly limits: RequestLimits;
}

export interface RequestLimits {
  /** Largest request body accepted, checked before any parsing. */
  max_body_bytes: number;
  /** Deepest JSON nesting accepted. */
  max_json_depth: number;
}

/** What the server knows about one running event, handed to the phase handler. */
export interface EventScope {
  /** Round trips to Kong so far in this event (HandleEvent included). */
  readonly roundTrips: number;
  /** The event ended the request with `kong.response.exit`/`error`. */
  readonly exited: boolean;
  /** Runs once the event has ended, whatever the outcome. */
  onEnd(fn: () => void): void;
}

export type PhaseHandler = (kong: KongPDK, event: EventScope) => Promise<void>;

export type PluginInstance = Partial<Record<Phase, PhaseHandler>>;

export interface SuitePlugin {
  readonly name: string;
  /** `x.y.z`, as Kong requires. */
  readonly version: string;
  /** Kong runs higher priorities first. */
  readonly priority: number;
  readonly phases: readonly Phase[];
  /** The schema Kong validates the plugin config against. */
  kongSchema(): unknown;
  /**
   * Validates Kong's config (throwing an error that names the field) and builds the
   * instance's handlers. Runs once per Kong instance, not per request.
   */
  createInstance(rawConfig: unknown, suite: Suite): PluginInstance;
}

/** The JSON `query_cmd` prints for Kong (process.lua query_external_plugin_info). */
export function pluginInfo(plugin: SuitePlugin) {
  return {
    Name: plugin.name,
    Version: plugin.version,
    Priority: plugin.priority,
    Phases: [...plugin.phases],
    Schema: plugin.kongSchema(),
  };
}

export type { KongKeys };

/**
 * Declares a suite plugin: its config definition (schemas/<name>.ts), priority, phases, and
 * how an instance is built from a validated config. Config is validated once per instance.
 */
export function definePlugin<S extends TObject>(spec: {
  config: PluginConfig<S>;
  priority: number;
  phases: readonly Phase[];
  create(config: ConfigOf<S>, keys: KongKeys, suite: Suite): PluginInstance;
}): SuitePlugin {
  return {
    name: spec.config.name,
    version: SUITE_VERSION,
    priority: spec.priority,
    phases: spec.phases,
    kongSchema: () => spec.config.kongSchema(),
    createInstance(raw, suite) {
      const { config, kong } = spec.config.validate(raw);
      return spec.create(config, kong, suite);
    },
  };
}
