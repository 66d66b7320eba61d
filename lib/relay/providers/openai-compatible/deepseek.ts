import type { Usage } from '../../../context/request-context';
import { isObject } from '../openai/api';
import { openaiUsage } from '../openai/response';
import { contentParts, refuseAudio, refuseSeveralChoices, renamed, unsupported } from './features';
import type { CompatProfile } from './profile';

/**
 * DeepSeek (api.deepseek.com/v1). Chat only (its FIM completions live under /beta). Reports
 * cached input as `prompt_cache_hit_tokens` (read as cached input tokens) and the reasoner's
 * thinking as `reasoning_content` (counted as generated text, passed through). It has no
 * `n` (one choice always) and no image input: 400 here. `max_completion_tokens` is sent as
 * its `max_tokens`.
 */
export const deepseek: CompatProfile = {
  provider: 'deepseek',
  endpoints: ['chat.completions'],
  dialect: { usage: (json) => deepseekUsage(json.usage) },
  prepare(_endpoint, body, target) {
    refuseSeveralChoices(body, target);
    refuseAudio(body, target);
    if (contentParts(body).some((part) => part.type === 'image_url')) {
      throw unsupported(target, 'image input', 'messages');
    }
    return renamed(body, 'max_completion_tokens', 'max_tokens');
  },
};

function deepseekUsage(raw: unknown): Usage | undefined {
  const usage = openaiUsage(raw);
  if (usage && usage.cached_input_tokens === undefined && isObject(raw)) {
    const hit = raw.prompt_cache_hit_tokens;
    if (typeof hit === 'number') usage.cached_input_tokens = hit;
  }
  return usage;
}
