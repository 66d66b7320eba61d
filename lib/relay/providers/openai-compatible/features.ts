import type { Target } from '../../../context/request-context';
import { isObject } from '../openai/api';
import { unsupported } from '../refusal';

export { unsupported } from '../refusal';

/** `n` above 1: several choices. */
export function refuseSeveralChoices(body: Record<string, unknown>, target: Target): void {
  if (typeof body.n === 'number' && body.n > 1) throw unsupported(target, 'n > 1 (several choices)', 'n');
}

/** Token log probabilities and biases, where the server has none. */
export function refuseLogprobs(body: Record<string, unknown>, target: Target): void {
  if (body.logprobs === true || (typeof body.logprobs === 'number' && body.logprobs > 0)) {
    throw unsupported(target, 'logprobs', 'logprobs');
  }
  if (typeof body.top_logprobs === 'number') throw unsupported(target, 'top_logprobs', 'top_logprobs');
  if (isObject(body.logit_bias) && Object.keys(body.logit_bias).length > 0) {
    throw unsupported(target, 'logit_bias', 'logit_bias');
  }
}

/** Audio in or out (`modalities: ['audio']`, `audio`, `input_audio` parts). */
export function refuseAudio(body: Record<string, unknown>, target: Target): void {
  if (Array.isArray(body.modalities) && body.modalities.includes('audio')) {
    throw unsupported(target, 'audio output', 'modalities');
  }
  if (body.audio !== undefined && body.audio !== null) throw unsupported(target, 'audio output', 'audio');
  if (contentParts(body).some((part) => part.type === 'input_audio' || part.type === 'file')) {
    throw unsupported(target, 'audio and file parts', 'messages');
  }
}

/** Every content part of every message. */
export function contentParts(body: Record<string, unknown>): Record<string, unknown>[] {
  const parts: Record<string, unknown>[] = [];
  if (!Array.isArray(body.messages)) return parts;
  for (const message of body.messages) {
    if (isObject(message) && Array.isArray(message.content)) {
      for (const part of message.content) if (isObject(part)) parts.push(part);
    }
  }
  return parts;
}

/**
 * `from` sent under the server's name `to` (a copy: the client's body is not changed). The
 * client's own `to` wins when both are set.
 */
export function renamed(body: Record<string, unknown>, from: string, to: string): Record<string, unknown> {
  if (body[from] === undefined) return body;
  const { [from]: value, ...rest } = body;
  return rest[to] === undefined ? { ...rest, [to]: value } : rest;
}

/** The body without `field`. Callers say in a comment why dropping it is harmless. */
export function without(body: Record<string, unknown>, field: string): Record<string, unknown> {
  if (!(field in body)) return body;
  const { [field]: _dropped, ...rest } = body;
  return rest;
}
