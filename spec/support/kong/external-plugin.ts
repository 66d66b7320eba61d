/**
 * One external plugin as Kong drives it: the instance cache of
 * kong/runloop/plugin_servers/plugin.lua (get_instance_id, reset_instance) and the event
 * bridge of rpc/mp_rpc.lua (handle_event, bridge_loop).
 *
 * Failure semantics, as in Kong 3.9:
 *   - StartInstance fails → `error(err)`: a Lua error (500 in rewrite/access).
 *   - HandleEvent/Step fail (connect error, "no data" after the read timeout, an error
 *     reply) → logged; the request continues without the plugin.
 *   - an error containing "no plugin instance" → every instance of the plugin is
 *     forgotten and the event is retried (which starts a new instance).
 *   - a PDK call Kong refuses → Lua error; no Step is ever sent for that event.
 */
import { fromWire, LuaError, LuaTable, type LuaValue, toWire } from './lua';
import { CoroutineYield, callPdkMethod, type LogLevel, NgxExit, type PdkCall } from './pdk';
import type { ExternalPluginInfo } from './plugin-servers';
import { KONG_SOCKET_TIMEOUT_MS, RpcFailure, type RpcPool } from './rpc';

/** The config table Kong passes to StartInstance (plugins_iterator.lua get_plugin_config). */
export type PluginConfig = { [key: string]: unknown } & { __plugin_id: string; __seq__: number };

/** What one request cost in round trips, per plugin (HandleEvent + each Step). */
export interface PluginTrace {
  roundTrips: number;
  events: number;
  steps: number;
  /** PDK methods the plugin called, in order, with the phase. */
  calls: Array<{ phase: string; method: string; outcome: 'answered' | 'lua-error' | 'yield' | 'exit' }>;
  /** Events that ended without `ret` reaching Kong, and why. */
  failures: Array<{ phase: string; reason: string }>;
}

export interface RequestTrace {
  plugins: Record<string, PluginTrace>;
  /** StartInstance/CloseInstance calls made while serving the request. */
  instanceRpcs: number;
}

export function newTrace(): RequestTrace {
  return { plugins: {}, instanceRpcs: 0 };
}

function traceFor(trace: RequestTrace, plugin: string): PluginTrace {
  trace.plugins[plugin] ??= { roundTrips: 0, events: 0, steps: 0, calls: [], failures: [] };
  return trace.plugins[plugin];
}

interface InstanceInfo {
  id?: number;
  seq: number;
  conf: PluginConfig;
  starting?: Promise<void>;
}

export interface ExternalPluginOptions {
  log(level: LogLevel, message: string, meta: { plugin?: string; requestId?: string }): void;
  rpcTimeoutMs?: number;
  /** The worker's connection pool. */
  rpc: RpcPool;
}

/** cjson.encode of the config table: JSON with "/" escaped. */
export function cjsonEncodeConfig(conf: PluginConfig): string {
  return JSON.stringify(conf).replace(/\//g, '\\/');
}

export class ExternalPlugin {
  readonly name: string;
  readonly priority: number;
  readonly phases: ReadonlySet<string>;
  private msgId = 0;
  private serverPid?: number;
  private readonly instances = new Map<string, InstanceInfo>();

  constructor(
    readonly info: ExternalPluginInfo,
    private readonly options: ExternalPluginOptions,
  ) {
    this.name = info.name;
    this.priority = info.priority;
    this.phases = new Set(info.phases);
  }

  /** Rpc:call with the plugin's own msg_id counter. Returns RpcFailure instead of throwing it. */
  private async call(method: string, arg: LuaValue, requestId?: string): Promise<unknown> {
    this.msgId += 1;
    try {
      return await this.options.rpc.call({
        socket: this.info.server.socket,
        msgId: this.msgId,
        method,
        arg: toWire(arg),
        timeoutMs: this.options.rpcTimeoutMs ?? KONG_SOCKET_TIMEOUT_MS,
        onNotification: (label, args) => this.notification(label, args),
      });
    } catch (err) {
      if (err instanceof RpcFailure && err.stage === 'connect') {
        this.options.log('err', `trying to connect: ${err.message}`, { plugin: this.name, requestId });
      }
      if (err instanceof RpcFailure) return err;
      throw err;
    }
  }

  /** serverPid: a new pid means every instance on this socket is gone (plugin.lua rpc_notifications). */
  private notification(label: unknown, args: unknown): void {
    if (label !== 'serverPid') return;
    const pid = Number(args);
    if (this.serverPid !== undefined && pid !== this.serverPid) this.resetInstances();
    this.serverPid = pid;
  }

  resetInstances(): void {
    this.instances.clear();
  }

  /** get_instance_id: reuse while `__seq__` matches, else start a new one and close the old. */
  private async instanceId(conf: PluginConfig, trace: RequestTrace, requestId: string): Promise<number> {
    const key = conf.__plugin_id;
    let info = this.instances.get(key);
    while (info?.starting) {
      await info.starting.catch(() => undefined);
      info = this.instances.get(key);
    }
    if (info?.id !== undefined && info.seq === conf.__seq__ && info.conf.__plugin_id === key) return info.id;

    const oldId = info?.id;
    const claim: InstanceInfo = info ?? { seq: conf.__seq__, conf };
    claim.id = undefined;
    let release: () => void = () => undefined;
    claim.starting = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.instances.set(key, claim);
    try {
      const config = new LuaTable();
      config.set('Name', this.name);
      config.set('Config', cjsonEncodeConfig(conf));
      trace.instanceRpcs += 1;
      const status = await this.call('plugin.StartInstance', config, requestId);
      if (status instanceof RpcFailure || typeof status !== 'object' || status === null) {
        const message = status instanceof RpcFailure ? status.message : 'invalid StartInstance reply';
        this.options.log('err', `starting instance: ${message}`, { plugin: this.name, requestId });
        this.instances.delete(key);
        throw new LuaError(message);
      }
      claim.id = Number((status as { Id?: unknown }).Id);
      claim.seq = conf.__seq__;
      claim.conf = conf;
      if (oldId !== undefined) {
        trace.instanceRpcs += 1;
        await this.call('plugin.CloseInstance', oldId, requestId); // errors ignored: another thread may have closed it
      }
      return claim.id;
    } finally {
      claim.starting = undefined;
      release();
    }
  }

  /**
   * Rpc:handle_event. Resolves when the event ended (ret, a logged RPC failure, or an
   * exit that yields for good); throws LuaError or NgxExit to the phase runner.
   */
  async handleEvent(
    conf: PluginConfig,
    phase: string,
    pdk: PdkCall,
    trace: RequestTrace,
    depth = 0,
  ): Promise<void> {
    const id = await this.instanceId(conf, trace, pdk.req.id);
    const failure = await this.bridgeLoop(id, phase, pdk, trace);
    if (failure === undefined) return;
    const t = traceFor(trace, this.name);
    t.failures.push({ phase, reason: failure });
    if (failure.toLowerCase().includes('no plugin instance')) {
      this.resetInstances();
      this.options.log('warn', failure, { plugin: this.name, requestId: pdk.req.id });
      // Kong recurses without a bound; a server that keeps losing instances would loop forever.
      if (depth < 5) return this.handleEvent(conf, phase, pdk, trace, depth + 1);
    }
    this.options.log('err', failure, { plugin: this.name, requestId: pdk.req.id });
  }

  /** bridge_loop: HandleEvent, then answer each PDK request until Data == "ret". */
  private async bridgeLoop(
    instanceId: number,
    phase: string,
    pdk: PdkCall,
    trace: RequestTrace,
  ): Promise<string | undefined> {
    const t = traceFor(trace, this.name);
    const event = new LuaTable();
    event.set('InstanceId', instanceId);
    event.set('EventName', phase);
    t.roundTrips += 1;
    t.events += 1;
    let stepIn = await this.call('plugin.HandleEvent', event, pdk.req.id);
    if (stepIn instanceof RpcFailure) return stepIn.message;
    const eventId = (stepIn as { EventId?: unknown }).EventId;
    while (true) {
      const data = (stepIn as { Data?: unknown }).Data;
      if (data === 'ret') return undefined;
      if (typeof data !== 'object' || data === null)
        throw new LuaError("attempt to index field 'Data' (a nil value)");
      const method = String((data as { Method?: unknown }).Method);
      const args = fromWire((data as { Args?: unknown }).Args);
      let result: Awaited<ReturnType<typeof callPdkMethod>>;
      let step: LuaTable;
      try {
        result = await callPdkMethod(pdk, method, args);
        step = new LuaTable();
        step.set('EventId', eventId as number);
        step.set('Data', result.value);
        toWire(step); // a value Kong cannot pack fails here, before anything is sent
      } catch (err) {
        const outcome =
          err instanceof CoroutineYield ? 'yield' : err instanceof NgxExit ? 'exit' : 'lua-error';
        t.calls.push({ phase, method, outcome });
        if (err instanceof CoroutineYield) return undefined; // the coroutine is never resumed
        throw err;
      }
      t.calls.push({ phase, method, outcome: 'answered' });
      t.roundTrips += 1;
      t.steps += 1;
      stepIn = await this.call(result.stepMethod, step, pdk.req.id);
      if (stepIn instanceof RpcFailure) return stepIn.message;
    }
  }
}
