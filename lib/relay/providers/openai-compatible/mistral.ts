import { isObject } from '../openai/api';
import { refuseAudio, refuseLogprobs, renamed, without } from './features';
import type { CompatProfile } from './profile';

/**
 * Mistral (api.mistral.ai/v1). Its API refuses any field it does not know (422
 * `extra_forbidden`), so OpenAI names are sent under Mistral's and the rest refused here:
 * - `seed` is `random_seed`, `max_completion_tokens` is `max_tokens`; embeddings'
 *   `dimensions` is `output_dimension`;
 * - no `stream_options`: the last chunk of every stream carries `usage` (moved to its own
 *   chunk for clients that asked for it);
 * - no `logprobs`, `top_logprobs`, `logit_bias`, audio: 400 here;
 * - `user` is dropped: an end-user id for OpenAI's abuse monitoring, it changes no answer;
 * - no legacy completions (Mistral's FIM endpoint takes another body).
 */
export const mistral: CompatProfile = {
  provider: 'mistral',
  endpoints: ['chat.completions', 'embeddings'],
  dialect: { streamOptions: false },
  prepare(endpoint, body, target) {
    if (endpoint === 'embeddings') return renamed(without(body, 'user'), 'dimensions', 'output_dimension');
    refuseLogprobs(body, target);
    refuseAudio(body, target);
    const sent = renamed(renamed(body, 'seed', 'random_seed'), 'max_completion_tokens', 'max_tokens');
    return without(sent, 'user');
  },
  errorMessage: validationMessage,
};

/**
 * Mistral's validation errors hold pydantic details instead of a message, sometimes as a JSON
 * string: `{"message": {"detail": [{"loc": ["body", "x"], "msg": "...", "input": ...}]}}`.
 * Field and reason only: `input` is the client's own value, never echoed.
 */
function validationMessage(json: unknown): string | undefined {
  if (!isObject(json)) return undefined;
  let message: unknown = json.message;
  if (typeof message === 'string' && message.startsWith('{')) {
    try {
      message = JSON.parse(message);
    } catch {
      return undefined;
    }
  }
  const detail = isObject(message) ? message.detail : json.detail;
  if (!Array.isArray(detail)) return undefined;
  const lines = detail.filter(isObject).map((d) => {
    const loc = Array.isArray(d.loc) ? d.loc.filter((l) => l !== 'body').join('.') : '';
    const msg = typeof d.msg === 'string' ? d.msg : 'invalid';
    return loc ? `${loc}: ${msg}` : msg;
  });
  return lines.length > 0 ? lines.join('; ') : undefined;
}
