import { randomBytes } from 'node:crypto';
import type { Endpoint, Usage } from '../../../context/request-context';
import type { ParsedResponse, ResponseOptions } from '../index';
import { isObject } from '../openai/api';

/**
 * Gemini `GenerateContentResponse` → OpenAI `chat.completion`; `batchEmbedContents` answer →
 * OpenAI embeddings list. Each candidate is a choice; its text parts (thought summaries left
 * out) are the content, its functionCall parts the tool_calls.
 */
export function parseGeminiResponse(
  endpoint: Endpoint,
  json: unknown,
  opts?: ResponseOptions,
): ParsedResponse {
  if (endpoint === 'embeddings') return parseEmbeddings(json, opts);
  if (!isObject(json)) return { body: json, contentChars: 0 };
  const candidates = Array.isArray(json.candidates) ? json.candidates.filter(isObject) : [];
  const blocked = blockedPrompt(json);
  const choices = candidates.map((candidate, i) => {
    const { text, toolCalls } = candidateParts(candidate);
    const message: Record<string, unknown> = { role: 'assistant', content: text, refusal: null };
    if (toolCalls.length > 0) message.tool_calls = toolCalls;
    return {
      index: typeof candidate.index === 'number' ? candidate.index : i,
      message,
      logprobs: null,
      finish_reason: finishReason(candidate.finishReason, toolCalls.length > 0),
    };
  });
  // A blocked prompt has no candidates: an empty answer stopped by the filter.
  if (choices.length === 0 && blocked) {
    choices.push({
      index: 0,
      message: { role: 'assistant', content: null, refusal: null },
      logprobs: null,
      finish_reason: 'content_filter',
    });
  }
  const usage = geminiUsage(json.usageMetadata);
  const model = typeof json.modelVersion === 'string' ? json.modelVersion : undefined;
  const body: Record<string, unknown> = {
    id: completionId(json.responseId),
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: model ?? opts?.model ?? 'gemini',
    choices,
  };
  if (usage) body.usage = openaiUsage(json.usageMetadata as Record<string, unknown>);
  return { body, usage, model, contentChars: choicesChars(choices) };
}

export interface CandidateParts {
  /** Joined text parts; null when there are none. */
  text: string | null;
  toolCalls: ToolCall[];
}

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
  /** Gemini's thought signature, which it wants back with the call (Google's own OpenAI shape). */
  extra_content?: { google: { thought_signature: string } };
}

export function candidateParts(candidate: Record<string, unknown>): CandidateParts {
  const content = isObject(candidate.content) ? candidate.content : {};
  const parts = Array.isArray(content.parts) ? content.parts.filter(isObject) : [];
  let text: string | null = null;
  const toolCalls: ToolCall[] = [];
  for (const part of parts) {
    if (part.thought === true) continue;
    if (typeof part.text === 'string') text = (text ?? '') + part.text;
    if (isObject(part.functionCall)) toolCalls.push(toolCall(part.functionCall, part.thoughtSignature));
  }
  return { text, toolCalls };
}

function toolCall(call: Record<string, unknown>, signature: unknown): ToolCall {
  const out: ToolCall = {
    // Gemini API calls usually carry no id: one is made, and the tool message's answer is
    // matched back to the call's name by it.
    id: typeof call.id === 'string' && call.id !== '' ? call.id : callId(),
    type: 'function',
    function: {
      name: typeof call.name === 'string' ? call.name : '',
      arguments: JSON.stringify(isObject(call.args) ? call.args : {}),
    },
  };
  if (typeof signature === 'string' && signature !== '') {
    out.extra_content = { google: { thought_signature: signature } };
  }
  return out;
}

export function callId(): string {
  return `call_${randomBytes(12).toString('base64url')}`;
}

export function completionId(responseId: unknown): string {
  return `chatcmpl-${typeof responseId === 'string' && /^[\w-]{1,64}$/.test(responseId) ? responseId : randomBytes(12).toString('base64url')}`;
}

const FILTERED = new Set(['SAFETY', 'RECITATION', 'BLOCKLIST', 'PROHIBITED_CONTENT', 'SPII', 'IMAGE_SAFETY']);

/** Gemini's finishReason as OpenAI's; null while the candidate is not finished (streams). */
export function finishReason(reason: unknown, calledTools: boolean): string | null {
  if (typeof reason !== 'string') return null;
  if (reason === 'MAX_TOKENS') return 'length';
  if (FILTERED.has(reason)) return 'content_filter';
  // Gemini says STOP after function calls.
  return calledTools ? 'tool_calls' : 'stop';
}

/** The prompt itself was blocked (`promptFeedback.blockReason`). */
export function blockedPrompt(json: Record<string, unknown>): boolean {
  const feedback = json.promptFeedback;
  return isObject(feedback) && typeof feedback.blockReason === 'string';
}

/**
 * `usageMetadata` in the suite's terms. Thinking tokens are billed as output, tool-use prompt
 * tokens as input, so the parts add up to Gemini's total.
 */
export function geminiUsage(raw: unknown): Usage | undefined {
  if (!isObject(raw) || typeof raw.promptTokenCount !== 'number') return undefined;
  const input = raw.promptTokenCount + count(raw.toolUsePromptTokenCount);
  const output = count(raw.candidatesTokenCount) + count(raw.thoughtsTokenCount);
  const usage: Usage = {
    input_tokens: input,
    output_tokens: output,
    total_tokens: typeof raw.totalTokenCount === 'number' ? raw.totalTokenCount : input + output,
  };
  if (typeof raw.cachedContentTokenCount === 'number')
    usage.cached_input_tokens = raw.cachedContentTokenCount;
  return usage;
}

/** OpenAI's `usage` object for the client, from Gemini's `usageMetadata`. */
export function openaiUsage(raw: Record<string, unknown>): Record<string, unknown> {
  const usage = geminiUsage(raw)!;
  const out: Record<string, unknown> = {
    prompt_tokens: usage.input_tokens,
    completion_tokens: usage.output_tokens,
    total_tokens: usage.total_tokens,
  };
  if (usage.cached_input_tokens !== undefined) {
    out.prompt_tokens_details = { cached_tokens: usage.cached_input_tokens };
  }
  if (typeof raw.thoughtsTokenCount === 'number') {
    out.completion_tokens_details = { reasoning_tokens: raw.thoughtsTokenCount };
  }
  return out;
}

function count(value: unknown): number {
  return typeof value === 'number' ? value : 0;
}

function choicesChars(choices: Array<{ message: Record<string, unknown> }>): number {
  let chars = 0;
  for (const { message } of choices) {
    if (typeof message.content === 'string') chars += message.content.length;
    for (const call of (message.tool_calls as ToolCall[] | undefined) ?? [])
      chars += call.function.arguments.length;
  }
  return chars;
}

/**
 * `{embeddings: [{values}]}` → OpenAI's list, as float arrays or, when the client asked for
 * base64 (the official OpenAI SDKs do by default), little-endian float32 bytes in base64.
 * batchEmbedContents reports no usage: the relay counts it, and the body says 0 rather than a guess.
 */
function parseEmbeddings(json: unknown, opts: ResponseOptions | undefined): ParsedResponse {
  if (!isObject(json) || !Array.isArray(json.embeddings)) return { body: json, contentChars: 0 };
  const data = json.embeddings.map((embedding, index) => {
    const values: number[] = isObject(embedding) && Array.isArray(embedding.values) ? embedding.values : [];
    return {
      object: 'embedding',
      index,
      embedding: opts?.base64Embeddings
        ? Buffer.from(Float32Array.from(values).buffer).toString('base64')
        : values,
    };
  });
  return {
    body: {
      object: 'list',
      data,
      model: opts?.model ?? 'gemini',
      usage: { prompt_tokens: 0, total_tokens: 0 },
    },
    contentChars: 0,
  };
}
