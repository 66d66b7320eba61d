import { GatewayError } from '../errors';
import type { Logger } from '../log/logger';
import { configHash } from '../log/redact';
import type { KongPDK } from './pdk';
import {
  type EventScope,
  type Phase,
  type PluginInstance,
  pluginInfo,
  type Suite,
  type SuitePlugin,
} from './plugin';
import { exitWithError } from './respond';

// kong-pdk's RPC proxy: `kong.request.getHeaders()` becomes the step {Method: 'kong.request.get_headers'}.
// Only pdk.js is used: kong-pdk's server.js registers ts-node on load and leaks events (KONG.md §9).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const KongPDKProxy: new (pipe: RpcPipe) => { kong: KongPDK } = require('kong-pdk/pdk');

const RET = 'ret';
/** Calls after which Kong never answers: the event is over for Kong (KONG.md §3). */
const NON_RETURNING = new Set(['kong.response.exit', 'kong.response.error']);

interface PdkStep {
  Method: string;
  Args: unknown[];
}
type Outgoing = PdkStep | typeof RET;
type StepResult = [unknown, unknown];

interface RpcPipe {
  put(message: PdkStep): void;
  get(): Promise<StepResult>;
}

export interface PluginServerOptions {
  /** An access handler silent this long is answered with a 500 (Kong itself would wait 60 s, then skip the plugin). */
  handler_timeout_ms: number;
  /** Events whose Kong side went silent (a refused PDK call is never answered) are dropped after this. */
  event_max_age_ms: number;
  /** Instances unused this long are dropped; Kong starts a new one on "no plugin instance". */
  instance_idle_ms: number;
}

const DEFAULT_OPTIONS: PluginServerOptions = {
  handler_timeout_ms: 30_000,
  event_max_age_ms: 120_000,
  instance_idle_ms: 3_600_000,
};

/**
 * First instance id of this process. Ids never repeat across restarts (KONG.md §2: a stale id
 * held by Kong must not reach another config): a restart at least a second later starts above
 * every id the previous process handed out, unless it created more than 1024 per second of life.
 * Stays below 2^31 so Lua and msgpack keep it an integer.
 */
export function firstInstanceId(nowMs = Date.now()): number {
  return (Math.floor(nowMs / 1000) % 2 ** 21) * 1024;
}

interface Instance {
  readonly id: number;
  readonly plugin: SuitePlugin;
  readonly handlers: PluginInstance;
  /** The config as Kong sent it (InstanceStatus returns it). */
  readonly config: unknown;
  readonly startedAt: number;
  lastUsed: number;
}

/** One HandleEvent: a phase handler running, talking to Kong one PDK step at a time. */
class KongEvent implements RpcPipe, EventScope {
  roundTrips = 1;
  finished = false;
  exited = false;
  readonly startedAt = Date.now();
  private next?: (message: Outgoing) => void;
  private queued?: Outgoing;
  private answer?: (result: StepResult) => void;
  private endHooks: (() => void)[] = [];

  constructor(
    readonly id: number,
    readonly phase: Phase,
  ) {}

  // Plugin side (kong-pdk's proxy): send a PDK call, then wait for Kong's answer.
  put(message: PdkStep): void {
    if (this.finished) return;
    this.roundTrips++;
    this.deliver(message);
    if (NON_RETURNING.has(message.Method)) {
      this.exited = true;
      this.finish();
    }
  }

  get(): Promise<StepResult> {
    return new Promise((resolve) => {
      this.answer = resolve;
    });
  }

  onEnd(fn: () => void): void {
    this.endHooks.push(fn);
  }

  // Kong side: what to send Kong next (a PDK call, or "ret").
  nextMessage(): Promise<Outgoing> {
    if (this.queued !== undefined) {
      const m = this.queued;
      this.queued = undefined;
      return Promise.resolve(m);
    }
    return new Promise((resolve) => {
      this.next = resolve;
    });
  }

  /** Kong answered the pending PDK call. */
  step(result: StepResult): void {
    const answer = this.answer;
    this.answer = undefined;
    answer?.(result);
  }

  /** The handler returned: tell Kong, unless the event already ended with exit(). */
  complete(): void {
    if (this.finished) return;
    this.deliver(RET);
    this.finish();
  }

  private deliver(message: Outgoing): void {
    const next = this.next;
    this.next = undefined;
    if (next) next(message);
    else this.queued = message;
  }

  private finish(): void {
    this.finished = true;
    for (const fn of this.endHooks.splice(0)) {
      try {
        fn();
      } catch {
        // end hooks only do bookkeeping; a failure there must not disturb Kong
      }
    }
  }
}

/**
 * Kong's side of the external plugin protocol (mp_rpc.lua), for all suite plugins in one
 * process. Compared with kong-pdk's server: events are dropped as soon as they end (exit,
 * no PDK call, error), instance ids never repeat across restarts, a throwing or hanging
 * handler answers the client with a 500 in OpenAI error shape instead of letting the
 * request through, and an invalid config fails every request it applies to (never open).
 */
export class PluginServer {
  private readonly plugins: Map<string, SuitePlugin>;
  private readonly instances = new Map<number, Instance>();
  private readonly events = new Map<number, KongEvent>();
  private readonly options: PluginServerOptions;
  private readonly log: Logger;
  private nextInstanceId = firstInstanceId();
  private nextEventId = 0;
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    plugins: readonly SuitePlugin[],
    private readonly suite: Suite,
    options: Partial<PluginServerOptions> = {},
  ) {
    this.plugins = new Map(plugins.map((p) => [p.name, p]));
    this.options = { ...DEFAULT_OPTIONS, ...options };
    this.log = suite.logger.child({ component: 'plugin-server' });
    this.sweeper = setInterval(() => this.sweep(), 1_000);
    this.sweeper.unref();
  }

  /** Live events and instances, for tests and metrics. */
  get stats() {
    return { events: this.events.size, instances: this.instances.size };
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const id of [...this.instances.keys()]) this.dropInstance(id);
  }

  /** Dispatches one RPC call (`plugin.<Method>`); throws to send Kong an error string. */
  async dispatch(method: string, args: unknown[]): Promise<unknown> {
    switch (method) {
      case 'plugin.StartInstance':
        return this.startInstance(args[0] as { Name: string; Config: string });
      case 'plugin.CloseInstance':
        return this.closeInstance(args[0] as number);
      case 'plugin.HandleEvent':
        return this.handleEvent(args[0] as { InstanceId: number; EventName: string });
      case 'plugin.Step':
      case 'plugin.StepMultiMap':
      case 'plugin.StepCredential':
      case 'plugin.StepConsumer':
      case 'plugin.StepRoute':
      case 'plugin.StepService':
      case 'plugin.StepMemoryStats':
        return this.step(args[0] as { EventId: number; Data: unknown }, false);
      case 'plugin.StepError':
        return this.step(args[0] as { EventId: number; Data: unknown }, true);
      case 'plugin.GetPluginInfo':
        return pluginInfo(this.plugin(args[0] as string));
      case 'plugin.InstanceStatus':
        return this.instanceStatus(args[0] as number);
      case 'plugin.GetStatus':
        return {
          Pid: process.pid,
          Plugins: Object.fromEntries([...this.plugins.keys()].map((n) => [n, { Name: n }])),
        };
      case 'plugin.SetPluginDir':
        return 'ok';
      default:
        throw new Error(`method ${method} not implemented`);
    }
  }

  private plugin(name: string): SuitePlugin {
    const plugin = this.plugins.get(name);
    if (!plugin) throw new Error(`${name} not initialized`);
    return plugin;
  }

  private startInstance({ Name, Config }: { Name: string; Config: string }) {
    const plugin = this.plugin(Name);
    const config: unknown = JSON.parse(Config);
    let handlers: PluginInstance;
    try {
      handlers = plugin.createInstance(config, this.suite);
    } catch (err) {
      // Fail closed: every request this config applies to gets a clear 500, and the
      // problem is logged once here, with the field path, never with the config itself.
      this.log.error(
        { plugin: Name, config_hash: configHash(config), err: String(err) },
        'invalid plugin config',
      );
      handlers = misconfigured(Name, err);
    }
    const id = this.nextInstanceId++;
    const now = Date.now();
    this.instances.set(id, { id, plugin, handlers, config, startedAt: now, lastUsed: now });
    this.log.info({ plugin: Name, instance: id, config_hash: configHash(config) }, 'instance started');
    return { Name, Id: id, Config: config, StartTime: now / 1000 };
  }

  private closeInstance(id: number) {
    const instance = this.instances.get(id);
    if (!instance) throw new Error(`no plugin instance #${id}`);
    this.dropInstance(id);
    return { Name: instance.plugin.name, Id: id, Config: instance.config };
  }

  private instanceStatus(id: number) {
    const instance = this.instances.get(id);
    if (!instance) throw new Error(`no plugin instance #${id}`);
    return {
      Name: instance.plugin.name,
      Id: id,
      Config: instance.config,
      StartTime: instance.startedAt / 1000,
    };
  }

  private async handleEvent({ InstanceId, EventName }: { InstanceId: number; EventName: string }) {
    const instance = this.instances.get(InstanceId);
    // Kong resets its cached ids and starts a new instance on this exact message.
    if (!instance) throw new Error(`no plugin instance #${InstanceId}`);
    instance.lastUsed = Date.now();

    const phase = EventName as Phase;
    const event = new KongEvent(this.nextEventId++, phase);
    const handler = instance.handlers[phase];
    if (!handler) {
      event.complete();
      return { Data: RET, EventId: event.id };
    }
    this.events.set(event.id, event);
    event.onEnd(() => this.events.delete(event.id));
    this.run(instance, event, handler);
    return { Data: await event.nextMessage(), EventId: event.id };
  }

  private async step({ EventId, Data }: { EventId: number; Data: unknown }, isError: boolean) {
    const event = this.events.get(EventId);
    if (!event) throw new Error(`event id ${EventId} not found`);
    event.step(isError ? [undefined, Data] : [Data, undefined]);
    return { Data: await event.nextMessage(), EventId };
  }

  /** Runs a handler with the crash guard: errors and hangs end as a 500, never as a pass. */
  private run(
    instance: Instance,
    event: KongEvent,
    handler: (kong: KongPDK, e: KongEvent) => Promise<void>,
  ): void {
    const kong = new KongPDKProxy(event).kong;
    const plugin = instance.plugin.name;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      // unref: a handler still waiting for Kong when the server closes must not keep it alive.
      timer = setTimeout(
        () => reject(new GatewayError('AIGW_INTERNAL', `${plugin} ${event.phase} handler timed out`)),
        this.options.handler_timeout_ms,
      ).unref();
    });
    Promise.race([handler(kong, event), timeout])
      .then(() => event.complete())
      .catch((err: unknown) => {
        this.log.error({ plugin, phase: event.phase, instance: instance.id, err }, 'plugin handler failed');
        if (event.phase === 'access' && !event.finished) void exitWithError(kong, err);
        event.complete();
      })
      .finally(() => clearTimeout(timer));
  }

  private sweep(now = Date.now()): void {
    for (const [id, event] of this.events) {
      if (now - event.startedAt > this.options.event_max_age_ms) this.events.delete(id);
    }
    for (const [id, instance] of this.instances) {
      if (now - instance.lastUsed > this.options.instance_idle_ms) this.dropInstance(id);
    }
  }

  private dropInstance(id: number): void {
    const instance = this.instances.get(id);
    this.instances.delete(id);
    try {
      instance?.handlers.close?.();
    } catch (err) {
      this.log.warn(
        { plugin: instance?.plugin.name, instance: id, err: String(err) },
        'instance close failed',
      );
    }
  }
}

/** Handlers for an instance whose config was refused: every request fails closed. */
function misconfigured(plugin: string, err: unknown): PluginInstance {
  const reason = err instanceof Error ? err.message : String(err);
  const error = new GatewayError('AIGW_CONFIG_INVALID', `plugin ${plugin} is misconfigured: ${reason}`);
  return { access: (kong) => exitWithError(kong, error) };
}
