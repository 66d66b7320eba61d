import type { Endpoint, ProviderKind, Target, Usage } from '../../context/request-context';
import type { GatewayError } from '../../errors';
import type { SseEvent } from '../../llm/sse';
import { openaiAdapter } from './openai';

/** The HTTP request the relay sends to a provider. */
export interface UpstreamRequest {
  url: string;
  method: 'POST';
  headers: Record<string, string>;
  body: string;
}

/** A provider's JSON answer, in the client's (OpenAI) format. */
export interface ParsedResponse {
  /** Body for the client; the very `json` given to `parseResponse` when no translation was needed. */
  body: unknown;
  usage?: Usage;
  /** Model the provider says answered. */
  model?: string;
  /** Characters of generated text, for counting usage when the provider reports none. */
  contentChars: number;
}

/** What one upstream SSE event turns into. */
export interface StreamStep {
  /** Serialized SSE events for the client, each written on its own. */
  emit: string[];
  usage?: Usage;
  model?: string;
  /** Characters of generated text carried by this event. */
  contentChars?: number;
  /** The generated text of this event (first choice), for continuing a broken stream elsewhere. */
  content?: string;
  /** The provider's end-of-stream marker was seen; the answer is complete. */
  done?: boolean;
  /** The provider reported a failure inside the stream, or sent something unreadable. */
  error?: GatewayError;
}

export interface StreamTranslator {
  onEvent(event: SseEvent): StreamStep;
}

export interface StreamOptions {
  /** The client asked for `stream_options.include_usage`; otherwise the usage chunk is only recorded. */
  clientWantsUsage: boolean;
}

/** Speaks one provider's wire format. Pure: no I/O, so each adapter is tested from fixtures. */
export interface ProviderAdapter {
  readonly kind: ProviderKind;
  supports(endpoint: Endpoint): boolean;
  /** The client's OpenAI-format body, for `target`. Never carries client headers. */
  buildRequest(
    endpoint: Endpoint,
    body: Record<string, unknown>,
    target: Target,
    opts: { stream: boolean },
  ): UpstreamRequest;
  parseResponse(endpoint: Endpoint, json: unknown): ParsedResponse;
  streamTranslator(endpoint: Endpoint, opts: StreamOptions): StreamTranslator;
  /** An error answer as a GatewayError keeping the provider's status; secrets scrubbed from the message. */
  parseError(
    status: number,
    bodyText: string,
    headers: Record<string, string | string[] | undefined>,
  ): GatewayError;
}

const ADAPTERS: Record<ProviderKind, ProviderAdapter> = {
  openai: openaiAdapter,
};

export function adapterFor(kind: ProviderKind): ProviderAdapter | undefined {
  return Object.hasOwn(ADAPTERS, kind) ? ADAPTERS[kind] : undefined;
}
