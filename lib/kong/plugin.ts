import type { TObject } from '@sinclair/typebox';
import type { Registry } from 'prom-client';
import type { AdminRoutes } from '../admin/routes';
import type { ConfigOf, PluginConfig } from '../config/define';
import type { KongKeys } from '../config/validate';
import { CONTEXT_HEADER, type ContextStore, type KongFacts, type RequestPolicy } from '../context';
import type { TargetHealth, TargetLoad } from '../health';
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
  /** This node's view of every target's circuit breaker (written by ai-fallback). */
  readonly health: TargetHealth;
  /** This node's live load of every target (in flight, latency, rate-limit headroom), written by the relay. */
  readonly load: TargetLoad;
  /** Resources plugins add to the admin endpoint (ai-budget's usage and reset). */
  readonly admin: AdminRoutes;
  /** Prometheus metrics of this node, served on the admin endpoint's `/metrics`. */
  readonly metrics: Registry;
  /**
   * Runs fn when the server closes, once the traffic has drained: plugins flush what they
   * buffer (log lines, spans). Awaited, with a bounded wait.
   */
  onClose(fn: () => Promise<void> | void): void;
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

export type PluginInstance = Partial<Record<Phase, PhaseHandler>> & {
  /** Frees what the instance holds (timers), when Kong closes it or it idles out. */
  close?(): void;
};

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

/** What a plugin instance does: its part in each request (run by the relay) and its log handler. */
export interface PluginBehaviour {
  /** Runs in the relay before the provider call; declaring it gives the plugin an access phase. */
  request?: RequestPolicy['apply'];
  /**
   * What the policy needs from Kong that the relay cannot see (the consumer...), asked in the
   * access phase: each PDK call is one more round trip, so ask only what the config uses.
   */
  gather?(kong: KongPDK): Promise<KongFacts | undefined>;
  log?: PhaseHandler;
  /** Frees what the instance holds (timers), when Kong closes it or it idles out. */
  close?(): void;
}

/**
 * Declares a suite plugin: its config definition (schemas/<name>.ts), priority, and how an
 * instance's behaviour is built from a validated config (once per instance, not per request).
 * A plugin with a `request` policy gets an access handler of two round trips (HandleEvent
 * and one `add_header`): it issues a ticket for the policy and adds it to the upstream
 * request, where the relay finds it. The body, the checks and the decisions all happen in
 * the relay, which receives the request anyway.
 */
export function definePlugin<S extends TObject>(spec: {
  config: PluginConfig<S>;
  priority: number;
  phases: readonly Phase[];
  create(config: ConfigOf<S>, keys: KongKeys, suite: Suite): PluginBehaviour;
}): SuitePlugin {
  const name = spec.config.name;
  return {
    name,
    version: SUITE_VERSION,
    priority: spec.priority,
    phases: spec.phases,
    kongSchema: () => spec.config.kongSchema(),
    createInstance(raw, suite) {
      const { config, kong } = spec.config.validate(raw);
      const behaviour = spec.create(config, kong, suite);
      const instance: PluginInstance = {};
      if (behaviour.request) {
        const policy: RequestPolicy = {
          plugin: name,
          priority: spec.priority,
          routeId: kong.route_id,
          serviceId: kong.service_id,
          apply: behaviour.request,
        };
        const gather = behaviour.gather;
        instance.access = async (kongPdk, event) => {
          const ticket = suite.contexts.issue(policy, gather ? await gather(kongPdk) : undefined);
          await kongPdk.service.request.addHeader(CONTEXT_HEADER, ticket.id);
          ticket.roundTrips = event.roundTrips; // final: the relay cannot see the request before `ret`
        };
      }
      if (behaviour.log) instance.log = behaviour.log;
      if (behaviour.close) instance.close = behaviour.close;
      return instance;
    },
  };
}
