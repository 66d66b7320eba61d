import type { Endpoint, ProviderKind, Target, Usage } from '../../context/request-context';
import type { GatewayError } from '../../errors';
import type { SseEvent } from '../../llm/sse';
import { anthropicAdapter } from './anthropic';
import { azureAdapter } from './azure';
import { bedrockAdapter } from './bedrock';
import { geminiAdapter } from './gemini';
import { openaiAdapter } from './openai';
import {
  deepseekAdapter,
  groqAdapter,
  mistralAdapter,
  ollamaAdapter,
  vllmAdapter,
} from './openai-compatible';

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
  /** The model the request was sent to, for answers whose provider does not name it. */
  model?: string;
}

export interface ResponseOptions {
  /** The model the request was sent to, for answers whose provider does not name it. */
  model?: string;
  /** The client asked for embeddings as base64 (`encoding_format: base64`). */
  base64Embeddings?: boolean;
}

/** Splits a streamed answer's bytes into events; SSE unless the adapter says otherwise. */
export interface EventDecoder {
  /** Feeds the next bytes; returns the events they completed. Throws a GatewayError on a malformed stream. */
  push(chunk: Uint8Array): SseEvent[];
  /** The stream ended: what is left. */
  end(): SseEvent[];
  /** Bytes or characters held while waiting for the rest of an event. */
  readonly pendingLength: number;
}

/**
 * Speaks one provider's wire format. Pure: no I/O, so each adapter is tested from fixtures.
 * `buildRequest` throws a GatewayError `AIGW_UNSUPPORTED_FEATURE` (400) naming the feature
 * and the target when the request uses something the provider cannot do (never a silent drop).
 */
export interface ProviderAdapter {
  supports(endpoint: Endpoint): boolean;
  /** The client's OpenAI-format body, for `target`. Never carries client headers. */
  buildRequest(
    endpoint: Endpoint,
    body: Record<string, unknown>,
    target: Target,
    opts: { stream: boolean },
  ): UpstreamRequest;
  /** Signs the built request (Bedrock's SigV4), which needs async crypto; the relay awaits it before sending. */
  sign?(request: UpstreamRequest, target: Target): Promise<UpstreamRequest>;
  parseResponse(endpoint: Endpoint, json: unknown, opts?: ResponseOptions): ParsedResponse;
  streamTranslator(endpoint: Endpoint, opts: StreamOptions): StreamTranslator;
  /** How the answer's stream is framed, when it is not SSE (Bedrock's AWS event stream). */
  eventDecoder?(): EventDecoder;
  /** An error answer as a GatewayError keeping the provider's status; secrets scrubbed from the message. */
  parseError(
    status: number,
    bodyText: string,
    headers: Record<string, string | string[] | undefined>,
  ): GatewayError;
}

const ADAPTERS: Partial<Record<ProviderKind, ProviderAdapter>> = {
  openai: openaiAdapter,
  gemini: geminiAdapter,
  anthropic: anthropicAdapter,
  azure: azureAdapter,
  mistral: mistralAdapter,
  groq: groqAdapter,
  deepseek: deepseekAdapter,
  vllm: vllmAdapter,
  ollama: ollamaAdapter,
  bedrock: bedrockAdapter,
};

/**
 * Base URL of each provider's public API, used when a target sets none. Azure has none (each
 * resource has its own host); Bedrock's depends on the region.
 */
export function defaultBaseUrl(kind: ProviderKind, awsRegion?: string): string | undefined {
  switch (kind) {
    case 'openai':
      return 'https://api.openai.com/v1';
    case 'azure':
      return undefined;
    case 'anthropic':
      return 'https://api.anthropic.com/v1';
    case 'gemini':
      return 'https://generativelanguage.googleapis.com/v1beta';
    case 'bedrock':
      return awsRegion ? `https://bedrock-runtime.${awsRegion}.amazonaws.com` : undefined;
    case 'mistral':
      return 'https://api.mistral.ai/v1';
    case 'groq':
      return 'https://api.groq.com/openai/v1';
    case 'deepseek':
      return 'https://api.deepseek.com/v1';
    case 'vllm':
      return 'http://127.0.0.1:8000/v1';
    case 'ollama':
      return 'http://127.0.0.1:11434/v1';
  }
}

/** API version sent when a target sets none. */
export const DEFAULT_API_VERSION: Partial<Record<ProviderKind, string>> = {
  azure: '2024-10-21',
  anthropic: '2023-06-01',
};

export function adapterFor(kind: ProviderKind): ProviderAdapter | undefined {
  return Object.hasOwn(ADAPTERS, kind) ? ADAPTERS[kind] : undefined;
}
