import type { ErrorCode } from '../errors';
import type { Prices } from '../llm/prices';
import { countPromptTokens, type PromptCount } from '../llm/tokens';
import type { StreamTranslator } from '../relay/providers';

/** The OpenAI-compatible endpoints the suite serves. */
export type Endpoint = 'chat.completions' | 'completions' | 'embeddings' | 'models' | 'feedback';

/**
 * The provider API a target speaks. `mistral`, `groq`, `deepseek`, `vllm` and `ollama` speak
 * OpenAI's wire format with their own defaults; the others have their own adapter.
 */
export const PROVIDER_KINDS = [
  'openai',
  'azure',
  'anthropic',
  'gemini',
  'bedrock',
  'mistral',
  'groq',
  'deepseek',
  'vllm',
  'ollama',
] as const;
export type ProviderKind = (typeof PROVIDER_KINDS)[number];

/** AWS credentials and region of a Bedrock target (resolved secrets: never logged). */
export interface AwsCredentials {
  region: string;
  access_key_id: string;
  secret_access_key: string;
  session_token?: string;
}

/** What a target's model can do, for routing filters (a request needing one skips targets without it). */
export const CAPABILITIES = ['vision', 'tools', 'json', 'long-context', 'embeddings'] as const;
export type Capability = (typeof CAPABILITIES)[number];

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
  /** Largest prompt + answer, in tokens, the model takes; requests that cannot fit skip the target. */
  context_window?: number;
  /** What the model costs (configured, or its list price); absent when unknown. */
  prices?: Prices;
  /** API version: Azure's `api-version` query parameter, Anthropic's `anthropic-version` header. */
  api_version?: string;
  /** Bedrock only: region and credentials for SigV4 signing. */
  aws?: AwsCredentials;
  /** Where the model runs, as the operator names it (`eu`, `us-east`...), for residency policies. */
  region?: string;
  /** What the model can do; an empty set means unknown (no capability filter excludes it for lack of tags). */
  capabilities?: readonly Capability[];
  /** False for a provider that must not see personal data: prompts are redacted before they go there. */
  trusted?: boolean;
}

/** Where ai-router sends the request, and why. */
export interface RouteDecision {
  /** Primary first; later entries are failover candidates (ai-fallback). */
  targets: Target[];
  /** Every target of the router instance, by name: what fallback chains may name. */
  catalog?: ReadonlyMap<string, Target>;
  /** Human-readable reason, e.g. `alias fast → weighted`. */
  reason: string;
  /** Send `x-ai-target` / `x-ai-model` / `x-ai-provider` response headers naming who answered. */
  exposeTarget: boolean;
  /**
   * Which targets this request may go to at all (residency, access): failover chains added
   * after the router's choice (ai-fallback) must keep to it. Absent: any target.
   */
  admits?(target: Target): boolean;
  /** Masks personal data before targets with `trusted: false`, and restores it in their answers. */
  redactor?: PromptMasking;
  /** The pool the targets were chosen from (a target or model name for a one-target pool). */
  pool?: string;
  /** The task the request was classified as (task routing). */
  task?: string;
  /** The experiment arm serving the request. */
  experiment?: { name: string; arm: string };
}

/**
 * What an untrusted provider must not see, masked in the body sent to it and put back in its
 * answer: JSON answers whole, streams chunk by chunk (ai-router's `redaction`).
 */
export interface PromptMasking {
  mask(
    endpoint: Endpoint,
    body: Record<string, unknown>,
  ): { body: Record<string, unknown>; vault: ReadonlyMap<string, string> } | undefined;
  restoreAnswer(body: unknown, vault: ReadonlyMap<string, string>): unknown;
  restoringTranslator(inner: StreamTranslator, vault: ReadonlyMap<string, string>): StreamTranslator;
}

/** Why an attempt at a target failed, as the relay sees it. */
export type FailureKind = 'status' | 'connect' | 'timeout' | 'context_window' | 'content_filter';

export interface AttemptFailure {
  kind: FailureKind;
  /** The provider's HTTP status (`status`; also `context_window`/`content_filter` when the provider said so). */
  status?: number;
  /** How long the provider asked to be left alone (Retry-After, x-ratelimit-reset-*). */
  retryAfterMs?: number;
}

/** One attempt of a request at one target, for the log line and the metrics. */
export interface AttemptRecord {
  target: string;
  /**
   * Why it failed or was skipped (`circuit_open`, `budget`: not tried; `cancelled`: another
   * attempt answered first); absent for the attempt that answered.
   */
  failure?: FailureKind | 'circuit_open' | 'budget' | 'cancelled';
  status?: number;
  /** Sent as a hedge, racing a slow attempt. */
  hedge?: true;
  latency_ms: number;
}

/** How the relay fails over for one request: ai-fallback's settings, breakers and budget. */
export interface FailoverPlan {
  readonly maxAttempts: number;
  /** Time allowed for an answer to start (every attempt and backoff included), and its end (epoch ms). */
  readonly deadlineMs: number;
  readonly deadlineAt: number;
  /** One attempt's time to start its answer (JSON: all of it; stream: the first event). */
  readonly attemptTimeoutMs?: number;
  /** Time to the first byte of an answer. */
  readonly ttftTimeoutMs?: number;
  readonly midstream: 'error' | 'continue';
  readonly exposeHeaders: boolean;
  /** Does this failure move the request to the next target (the configured triggers)? */
  triggers(failure: AttemptFailure): boolean;
  /** Takes one retry from the traffic-wide budget; false when it is spent. */
  takeRetry(): boolean;
  /** Wait before attempt number `attempt` (2 = the first retry). */
  backoffMs(attempt: number): number;
  /**
   * May the target be tried now (its breaker is not open)? Counts a half-open probe when it
   * is taken. `panic`: every candidate is out, the target is tried anyway, as a probe.
   */
  admits(target: Target, panic?: boolean): Promise<boolean>;
  /**
   * The attempt's result, for the target's breaker: a failure, or undefined for success with
   * the time its answer took to be ready (JSON: whole; stream: first event).
   */
  report(target: Target, failure: AttemptFailure | undefined, readyMs?: number): void;
  /** When a hedge should race an attempt at this target (ms after it started); undefined: never. */
  hedgeAfterMs(target: Target): number | undefined;
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
  /** Milliseconds from the first upstream call to the answer's headers (JSON) or first token (stream). */
  ttft_ms?: number;
  /** Milliseconds from the first upstream call to the end of the exchange. */
  latency_ms?: number;
  bytes_out: number;
  end: RelayEnd;
  error?: { code: ErrorCode; message: string };
  /** Every attempt, in order, when more than one target was tried (or skipped). */
  attempts?: AttemptRecord[];
  /** Attempts that failed before the one that answered (or before giving up). */
  fallbacks?: number;
  /**
   * The answer the client got, when it was asked for (`ctx.keepAnswer`) and the exchange
   * ended `complete` with a 200 within the size asked; absent otherwise (never a partial answer).
   */
  answer?: RecordedAnswer;
}

/**
 * An answer as the client received it, in OpenAI's non-stream JSON shape whatever the
 * provider: a JSON answer as sent; a stream assembled into the equivalent object
 * (`chat.completion` or `text_completion`: each choice's content, refusal, tool_calls and
 * finish_reason, then the model, id and usage the chunks carried).
 */
export interface RecordedAnswer {
  body: Record<string, unknown>;
  /** Bytes of the answer as it went to the client (the JSON body, or the SSE events). */
  bytes: number;
}

export type HeaderMap = Record<string, string[]>;

/** An answer a policy gives in place of the provider's (e.g. `/v1/models`, a cache hit). */
export interface PolicyAnswer {
  status: number;
  /** Sent as JSON, unless `sse` is given. */
  body: unknown;
  /** Serialized SSE events sent as the whole `text/event-stream` body instead of `body` (a replayed stream). */
  sse?: string;
  /** Extra response headers; `ctx.responseHeaders` are added to every answer anyway. */
  headers?: Record<string, string>;
}

/** ai-router's automatic checks of an answer (quality signals). */
export interface QualitySummary {
  /** 1 when every check passed, lower for each failure, 0 for an unusable answer. */
  score: number;
  /** The checks that failed, e.g. `truncated`, `invalid_json`. */
  failed: string[];
}

/** What ai-semantic-cache did with a request, for the log line and the metrics. */
export interface CacheSummary {
  /** HIT: answered from the cache; MISS: looked up, not found; BYPASS: not looked up; SHADOW: a semantic would-be hit, forwarded. */
  status: 'HIT' | 'MISS' | 'BYPASS' | 'SHADOW';
  /** Which tier matched (HIT, SHADOW). */
  tier?: 'exact' | 'semantic';
  /** Cosine similarity of the semantic match. */
  similarity?: number;
}

/**
 * A plugin instance's part in one request. Its access handler issues a ticket for it; the
 * relay runs the policies of a request's tickets in Kong's priority order, before the
 * provider call. A policy decides (route, budget...) by writing to the context, answers
 * the request itself by returning an answer, or refuses it by throwing a GatewayError.
 */
export interface RequestPolicy {
  readonly plugin: string;
  /** Kong's priority of the plugin: higher runs first, as in Kong. */
  readonly priority: number;
  /** The route and service the plugin instance is attached to (Kong's ids), if any. */
  readonly routeId?: string;
  readonly serviceId?: string;
  apply(ctx: RequestContext): PolicyAnswer | undefined | Promise<PolicyAnswer | undefined>;
}

/** What plugins learned from Kong in the access phase (only what a configured feature needs). */
export interface KongFacts {
  /** Kong's authenticated consumer. */
  consumer?: { id: string; username?: string; custom_id?: string; tags?: string[] };
  /** Id of the credential the consumer authenticated with. */
  credentialId?: string;
  /** The matched route and its service, when the plugin instance is not attached to them. */
  routeId?: string;
  serviceId?: string;
}

export interface BudgetSummary {
  /** Answer tokens reserved (the request's `max_tokens` from then on). */
  reserved_output: number;
  /** `max_tokens` was lowered to what the budget affords. */
  clamped: boolean;
  /** Soft limits the request went past. */
  soft_exceeded?: string[];
  /** Reserved on this node alone: the shared store was unavailable. */
  local?: true;
}

/**
 * ai-budget's reservation for one request. The relay re-prices fallback hops with it and
 * settles it once the exchange ended (or the request was refused before it).
 */
export interface BudgetHold {
  /** For the log line: what was reserved, and how the budget shaped the request. */
  readonly summary: BudgetSummary;
  /** Before trying a target other than the one priced: reserves the difference when it costs more; false when that does not fit. */
  retarget(target: Target): Promise<boolean>;
  /** Releases the reservation and counts what the request really used. Never throws. */
  settle(outcome: RelayOutcome | undefined): Promise<void>;
}

/** What the relay learns from the request Kong proxies to it. */
export interface RequestContextInit {
  requestId: string;
  method: string;
  path: string;
  headers: HeaderMap;
  /** The policies of the request's tickets, highest priority first. */
  policies: readonly RequestPolicy[];
  facts?: KongFacts;
}

/**
 * Everything the suite knows about one request. Built by the relay from the tickets the
 * plugins issued in Kong's access phase; policies add decisions, the exchange adds the
 * outcome, the log phase reads both.
 */
export class RequestContext {
  readonly createdAt = Date.now();
  readonly requestId: string;
  readonly method: string;
  readonly path: string;
  readonly headers: HeaderMap;
  readonly policies: readonly RequestPolicy[];
  /** Known once the request line and body have been checked. */
  endpoint?: Endpoint;
  /** Parsed JSON body (undefined for GET); policies may rewrite it before the provider call. */
  body?: Record<string, unknown>;
  route?: RouteDecision;
  /** Set by ai-fallback: how to fail over. Without it, the relay makes one attempt. */
  failover?: FailoverPlan;
  /** Set by ai-budget: the request's reservation. */
  budget?: BudgetHold;
  /** Set by ai-semantic-cache: how the cache treated the request (a HIT made no provider call). */
  cache?: CacheSummary;
  /** Set by ai-router's checks as soon as the outcome is known (before the log phase can read it). */
  quality?: QualitySummary;
  /**
   * Asked for by whoever needs the answer after the exchange (`keepAnswer`): the exchange then
   * keeps it, up to `maxBytes` (above it, nothing), in `outcome.answer`.
   */
  recordAnswer?: { maxBytes: number };
  /** Headers policies add to the answer (ai-budget's x-ratelimit-*); they win over the provider's. */
  readonly responseHeaders: Record<string, string> = {};
  readonly facts: KongFacts;
  outcome?: RelayOutcome;
  /** The relay answered with an error before any provider call (bad input, unknown model...). */
  refusal?: { status: number; code: ErrorCode };
  /** When the relay finished with the request; the log phase has a grace period after it. */
  settledAt?: number;
  /** Kong ↔ suite round trips spent on this request by the access phase of its plugins. */
  pdkCalls = 0;
  private readonly tokenCounts = new Map<string, PromptCount>();
  private readonly afterExchangeHooks: Array<() => unknown> = [];
  private readonly outcomeHooks: Array<() => void> = [];

  constructor(init: RequestContextInit) {
    this.requestId = init.requestId;
    this.method = init.method;
    this.path = init.path;
    this.headers = init.headers;
    this.policies = init.policies;
    this.facts = init.facts ?? {};
  }

  /** Prompt tokens of the body for a model, counted once per request and model, shared by every plugin. */
  promptTokens(model: string): PromptCount {
    let count = this.tokenCounts.get(model);
    if (!count) {
      count = countPromptTokens(this.endpoint ?? 'chat.completions', this.body, model);
      this.tokenCounts.set(model, count);
    }
    return count;
  }

  /**
   * Runs `fn` synchronously the moment the exchange records its outcome, before the context is
   * settled and the log phase can read it: cheap derivations the log line needs (ai-router's
   * quality checks). Slow or fallible work belongs in `afterExchange`.
   */
  onOutcome(fn: () => void): void {
    this.outcomeHooks.push(fn);
  }

  /** Runs the outcome hooks; one that throws stops none of the others. Returns their errors. */
  runOutcomeHooks(): unknown[] {
    const errors: unknown[] = [];
    for (const fn of this.outcomeHooks.splice(0)) {
      try {
        fn();
      } catch (err) {
        errors.push(err);
      }
    }
    return errors;
  }

  /**
   * Runs `fn` once the exchange has ended and its answer has left (the outcome is recorded):
   * work that must not delay the client, such as storing the answer. Not run when a policy
   * answered or refused the request.
   */
  afterExchange(fn: () => unknown): void {
    this.afterExchangeHooks.push(fn);
  }

  /** Runs the after-exchange hooks in order; one that throws or rejects stops none of the others. Returns their errors. */
  async runAfterExchange(): Promise<unknown[]> {
    const errors: unknown[] = [];
    for (const fn of this.afterExchangeHooks.splice(0)) {
      try {
        await fn();
      } catch (err) {
        errors.push(err);
      }
    }
    return errors;
  }

  /**
   * Asks the exchange to keep the answer, up to `maxBytes`. Several may ask (ai-semantic-cache's
   * fill, ai-metrics' answer logging): the largest size asked wins, and each checks
   * `outcome.answer.bytes` against its own.
   */
  keepAnswer(maxBytes: number): void {
    this.recordAnswer = { maxBytes: Math.max(this.recordAnswer?.maxBytes ?? 0, maxBytes) };
  }

  /** First value of a request header (names are lowercase). */
  header(name: string): string | undefined {
    return this.headers[name]?.[0];
  }

  /** The consumer's groups, as Kong's ACL plugin lists them in `x-consumer-groups` (comma-separated). */
  get consumerGroups(): string[] {
    const header = this.header('x-consumer-groups');
    return header
      ? header
          .split(',')
          .map((g) => g.trim())
          .filter((g) => g.length > 0)
      : [];
  }

  /** Kong's ids of the route and service, as the plugins' configs know them. */
  get routeId(): string | undefined {
    return this.policies.find((p) => p.routeId)?.routeId;
  }

  get serviceId(): string | undefined {
    return this.policies.find((p) => p.serviceId)?.serviceId;
  }

  get model(): string | undefined {
    const m = this.body?.model;
    return typeof m === 'string' ? m : undefined;
  }

  get stream(): boolean {
    return this.body?.stream === true;
  }
}
