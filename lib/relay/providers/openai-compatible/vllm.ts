import type { CompatProfile } from './profile';

/**
 * vLLM's OpenAI server (default http://127.0.0.1:8000/v1): chat, completions and embeddings
 * (the one the served model does), with `stream_options`, `n` and logprobs. It ignores
 * fields it does not know. Its errors, `{"object":"error","message","type":"BadRequestError",
 * "code":400}`, get OpenAI's types and, for a prompt over the context length,
 * `context_length_exceeded` (shared handling in index.ts).
 */
export const vllm: CompatProfile = {
  provider: 'vllm',
  endpoints: ['chat.completions', 'completions', 'embeddings'],
  dialect: {},
  prepare: (_endpoint, body) => body,
};
