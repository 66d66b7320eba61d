import { isObject } from '../openai/api';
import { openaiUsage } from '../openai/response';
import { refuseAudio, refuseLogprobs, refuseSeveralChoices, unsupported } from './features';
import type { CompatProfile } from './profile';

/**
 * Groq (api.groq.com/openai/v1). Its OpenAI compatibility answers 400 to `logprobs`,
 * `top_logprobs`, `logit_bias`, `messages[].name` and `n` other than 1: refused here with the
 * feature named. Streams report usage in `x_groq.usage` of the last chunk (and in OpenAI's
 * usage chunk when asked): either is read. Chat only (no legacy completions, no embeddings).
 */
export const groq: CompatProfile = {
  provider: 'groq',
  endpoints: ['chat.completions'],
  dialect: {
    usage: (json) =>
      openaiUsage(json.usage) ?? (isObject(json.x_groq) ? openaiUsage(json.x_groq.usage) : undefined),
  },
  prepare(_endpoint, body, target) {
    refuseSeveralChoices(body, target);
    refuseLogprobs(body, target);
    refuseAudio(body, target);
    if (Array.isArray(body.messages) && body.messages.some((m) => isObject(m) && m.name !== undefined)) {
      throw unsupported(target, 'messages[].name', 'messages');
    }
    return body;
  },
};
