import { isObject } from '../openai/api';
import { refuseAudio, refuseSeveralChoices, renamed, unsupported } from './features';
import type { CompatProfile } from './profile';

/**
 * Ollama's OpenAI endpoint (default http://127.0.0.1:11434/v1, no key): chat, completions and
 * embeddings, usage in answers and (with `stream_options`) streams. It ignores fields it does
 * not know, so the ones whose loss would change the answer are refused here: `n` > 1 (one
 * choice always) and `logit_bias`. `max_completion_tokens` is sent as `max_tokens`, which
 * every version honours.
 */
export const ollama: CompatProfile = {
  provider: 'ollama',
  endpoints: ['chat.completions', 'completions', 'embeddings'],
  dialect: {},
  prepare(endpoint, body, target) {
    if (endpoint === 'embeddings') return body;
    refuseSeveralChoices(body, target);
    refuseAudio(body, target);
    if (isObject(body.logit_bias) && Object.keys(body.logit_bias).length > 0) {
      throw unsupported(target, 'logit_bias', 'logit_bias');
    }
    return renamed(body, 'max_completion_tokens', 'max_tokens');
  },
};
