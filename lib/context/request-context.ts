import type { ErrorCode } from '../errors';

/** The OpenAI-compatible endpoints the suite serves. */
export type Endpoint = 'chat.completions' | 'completions' | 'embeddings' | 'models';

/** Which adapter speaks to a target. Grows with ai-router's providers. */
export type ProviderKind = 'openai';

export interface TargetTimeouts {
  /** TCP + TLS connect. */
  connect_ms: number;
  /** From request sent to response headers (first byte). */
  first_byte_ms: number;
  /** Longest silence between two body chunks. */
  idle_ms: number;
  /** Whole exchange, from connect to the last byte. */
  total_ms: number;
}

/** One model on one provider, fully resolved: what the relay needs to call it. */
export interface Target {
  /** Name from config, unique per router instance; used in logs, metrics and `x-ai-target`. */
  name: string;
  provider: ProviderKind;
  /** Model name sent upstream. */
  model: string;
  /** Base URL up to and including the API version, e.g. `https://api.openai.com/v1`. */
  base_url: string;
  /** Resolved secret; never logged, never returned to clients. */
  api_key?: string;
  /** Extra static headers sent upstream (e.g. `OpenAI-Organization`). */
  headers: Record<string, string>;
  timeouts: TargetTimeouts;
}

/** Where ai-router sends the request, and why. */
export interface RouteDecision {
  /** Primary first; later entries are failover candidates (ai-fallback). */
  targets: Target[];
  /** Human-readable reason, e.g. `alias fast → weighted`. */
  reason: string;
  /** Send `x-ai-target` / `x-ai-model` response headers naming who answered. */
  exposeTarget: boolean;
}

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  total_tokens: number;
  cached_input_tokens?: number;
}

/** How the relay's exchange ended. `rejected`: refused before any provider call (unsupported endpoint, no body). */
export type RelayEnd =
  | 'complete'
  | 'upstream_error'
  | 'stream_broken'
  | 'client_aborted'
  | 'timeout'
  | 'rejected';

/** What the relay recorded about the exchange; read by the log phase. */
export interface RelayOutcome {
  target: string;
  provider: ProviderKind;
  /** Model the request was sent to. */
  model: string;
  /** Model the provider says answered. */
  response_model?: string;
  /** Status sent to the client. */
  status: number;
  upstream_status?: number;
  usage?: Usage;
  /** Where `usage` came from: the provider's report, or counted by the relay. */
  usage_source?: 'provider' | 'counted';
  stream: boolean;
  started_at: number;
  /** Milliseconds from the upstream call to the first body byte (first token for streams). */
  ttft_ms?: number;
  latency_ms?: number;
  bytes_out: number;
  end: RelayEnd;
  error?: { code: ErrorCode; message: string };
}

export interface Consumer {
  id: string;
  username?: string;
  custom_id?: string;
}

export type HeaderMap = Record<string, string[]>;

/** What the first suite plugin learns from Kong, once per request. */
export interface RequestContextInit {
  requestId: string;
  method: string;
  path: string;
  endpoint: Endpoint;
  headers: HeaderMap;
  /** Parsed JSON body (undefined for GET). */
  body?: Record<string, unknown>;
  routeId?: string;
  serviceId?: string;
}

/**
 * Everything the suite knows about one request, kept in-process under an unguessable id.
 * Plugins add decisions, the relay adds the outcome, the log phase reads both.
 */
export class RequestContext {
  readonly createdAt = Date.now();
  readonly requestId: string;
  readonly method: string;
  readonly path: string;
  readonly endpoint: Endpoint;
  readonly headers: HeaderMap;
  readonly body?: Record<string, unknown>;
  readonly routeId?: string;
  readonly serviceId?: string;
  /** `undefined` until asked of Kong; `null` when the request has no consumer. */
  consumer?: Consumer | null;
  route?: RouteDecision;
  outcome?: RelayOutcome;
  /** Set once the relay has answered (or the request ended before reaching it). */
  settled = false;
  /** PDK round trips made by the suite for this request, all plugins together. */
  pdkCalls = 0;

  constructor(
    readonly id: string,
    init: RequestContextInit,
  ) {
    this.requestId = init.requestId;
    this.method = init.method;
    this.path = init.path;
    this.endpoint = init.endpoint;
    this.headers = init.headers;
    this.body = init.body;
    this.routeId = init.routeId;
    this.serviceId = init.serviceId;
  }

  /** The relay has taken it (or the request ended): its id must not be used again. */
  get used(): boolean {
    return this.settled || this.outcome !== undefined;
  }

  /** First value of a request header (names are lowercase). */
  header(name: string): string | undefined {
    return this.headers[name]?.[0];
  }

  get model(): string | undefined {
    const m = this.body?.model;
    return typeof m === 'string' ? m : undefined;
  }

  get stream(): boolean {
    return this.body?.stream === true;
  }
}
