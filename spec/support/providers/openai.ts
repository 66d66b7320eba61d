/**
 * Loopback mock of the OpenAI API: POST /v1/chat/completions, POST /v1/completions,
 * POST /v1/embeddings, GET /v1/models, GET /v1/models/{id}. Wire formats, headers and error
 * bodies follow api.openai.com; see spec/fixtures/providers/openai/ for reference transcripts.
 *
 * Not modelled: `n` > 1 (one choice always), tools, logprobs, `stop`, the stream chunks'
 * `obfuscation` field. Any model name is accepted and echoed back unchanged.
 */
import { createHash } from 'node:crypto';
import {
  countTokens,
  defaultAnswer,
  type ErrorAnswer,
  type Exchange,
  header,
  isRecord,
  limitAnswer,
  type MockOptions,
  maskKey,
  type ProviderMock,
  randomId,
  sendJson,
  sendSse,
  sseData,
  startMockServer,
  textOf,
} from './shared';

export const OPENAI_MODELS = [
  'gpt-4o',
  'gpt-4o-mini',
  'gpt-4.1',
  'gpt-4.1-mini',
  'o3-mini',
  'gpt-3.5-turbo-instruct',
  'text-embedding-3-small',
  'text-embedding-3-large',
] as const;

const MODEL_CREATED = 1_715_367_049;
const SYSTEM_FINGERPRINT = 'fp_mock0a1b2c';
const RATE_LIMIT_REQUESTS = 10_000;
const RATE_LIMIT_TOKENS = 30_000_000;
// The legacy completions endpoint defaults max_tokens to 16.
const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;

interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

function openaiError(message: string, type: string, param: string | null = null, code: string | null = null) {
  return { error: { message, type, param, code } } satisfies OpenAIErrorBody;
}

const badJson = openaiError(
  "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library " +
    'correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble ' +
    'figuring out how to fix this, please contact us through our help center at help.openai.com.)',
  'invalid_request_error',
);

const noApiKey = openaiError(
  "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth " +
    "(i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the " +
    'API from your browser and are prompted for a username and password. You can obtain an API key from ' +
    'https://platform.openai.com/account/api-keys.',
  'invalid_request_error',
);

function wrongApiKey(key: string): OpenAIErrorBody {
  return openaiError(
    `Incorrect API key provided: ${maskKey(key)}. You can find your API key at https://platform.openai.com/account/api-keys.`,
    'invalid_request_error',
    null,
    'invalid_api_key',
  );
}

function missing(param: string): OpenAIErrorBody {
  return openaiError(
    `Missing required parameter: '${param}'.`,
    'invalid_request_error',
    param,
    'missing_required_parameter',
  );
}

function bearer(ex: Exchange): string | undefined {
  const value = header(ex, 'authorization');
  const match = value?.match(/^Bearer\s+(.+)$/i);
  return match ? match[1]!.trim() : undefined;
}

function modelOf(ex: Exchange): string {
  return isRecord(ex.body) && typeof ex.body['model'] === 'string' ? ex.body['model'] : 'gpt-4o-mini';
}

export async function startOpenAIMock(options: MockOptions = {}): Promise<ProviderMock> {
  let served = 0;

  function headers(ex: Exchange): Record<string, string> {
    served += 1;
    return {
      'x-request-id': `req_${randomId(32)}`,
      'openai-organization': 'mock-org',
      'openai-processing-ms': String(Date.now() - ex.receivedAt),
      'openai-version': '2020-10-01',
      'x-ratelimit-limit-requests': String(RATE_LIMIT_REQUESTS),
      'x-ratelimit-limit-tokens': String(RATE_LIMIT_TOKENS),
      'x-ratelimit-remaining-requests': String(Math.max(0, RATE_LIMIT_REQUESTS - served)),
      'x-ratelimit-remaining-tokens': String(RATE_LIMIT_TOKENS - countTokens(JSON.stringify(ex.body ?? ''))),
      'x-ratelimit-reset-requests': '6ms',
      'x-ratelimit-reset-tokens': '0s',
    };
  }

  function errorFor(status: number, ex: Exchange): ErrorAnswer {
    switch (status) {
      case 400:
        return { body: openaiError('Invalid request.', 'invalid_request_error') };
      case 401:
        return { body: wrongApiKey(bearer(ex) ?? '') };
      case 403:
        return {
          body: openaiError(
            'Country, region, or territory not supported',
            'request_forbidden',
            null,
            'unsupported_country_region_territory',
          ),
        };
      case 404:
        return {
          body: openaiError(
            `The model \`${modelOf(ex)}\` does not exist or you do not have access to it.`,
            'invalid_request_error',
            null,
            'model_not_found',
          ),
        };
      case 429:
        return {
          body: openaiError(
            `Rate limit reached for ${modelOf(ex)} in organization org-mock on requests per min (RPM): Limit 500, ` +
              'Used 500, Requested 1. Please try again in 120ms. Visit https://platform.openai.com/account/rate-limits ' +
              'to learn more.',
            'requests',
            null,
            'rate_limit_exceeded',
          ),
          headers: { 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '120ms' },
        };
      case 500:
        return {
          body: openaiError(
            'The server had an error while processing your request. Sorry about that!',
            'server_error',
          ),
        };
      case 503:
        return { body: openaiError('The server is overloaded or not ready yet.', 'server_error') };
      default:
        return {
          body: openaiError(
            status >= 500 ? 'The server had an error processing your request.' : 'Invalid request.',
            status >= 500 ? 'server_error' : 'invalid_request_error',
          ),
        };
    }
  }

  function fail(ex: Exchange, status: number, body: OpenAIErrorBody): Promise<void> {
    return sendJson(ex, status, headers(ex), body);
  }

  async function handle(ex: Exchange): Promise<void> {
    if (options.apiKey !== undefined) {
      const key = bearer(ex);
      if (key === undefined) return fail(ex, 401, noApiKey);
      if (key !== options.apiKey) return fail(ex, 401, wrongApiKey(key));
    }
    const route = `${ex.method} ${ex.path}`;
    if (route === 'GET /v1/models') return listModels(ex);
    if (ex.method === 'GET' && ex.path.startsWith('/v1/models/')) return retrieveModel(ex);
    const post = {
      '/v1/chat/completions': chat,
      '/v1/completions': completions,
      '/v1/embeddings': embeddings,
    };
    const handler = ex.method === 'POST' ? post[ex.path as keyof typeof post] : undefined;
    if (!handler) return fail(ex, 404, openaiError(`Invalid URL (${route})`, 'invalid_request_error'));
    if (ex.bodyInvalid) return fail(ex, 400, badJson);
    const body = isRecord(ex.body) ? ex.body : {};
    if (typeof body['model'] !== 'string' || body['model'] === '') {
      return fail(ex, 400, openaiError('you must provide a model parameter', 'invalid_request_error'));
    }
    return handler(ex, body);
  }

  async function chat(ex: Exchange, body: Record<string, unknown>): Promise<void> {
    const messages = body['messages'];
    if (messages === undefined) return fail(ex, 400, missing('messages'));
    if (!Array.isArray(messages) || !messages.every(isRecord)) {
      return fail(
        ex,
        400,
        openaiError(
          "Invalid type for 'messages': expected an array of objects.",
          'invalid_request_error',
          'messages',
          'invalid_type',
        ),
      );
    }
    if (messages.length === 0) {
      return fail(ex, 400, openaiError("[] is too short - 'messages'", 'invalid_request_error', 'messages'));
    }
    const limit = maxTokensOf(body, ['max_completion_tokens', 'max_tokens']);
    if (typeof limit === 'object') return fail(ex, 400, limit);
    const streamProblem = checkStreamOptions(body);
    if (streamProblem) return fail(ex, 400, streamProblem);

    const promptTokens = messages.reduce((sum, m) => sum + countTokens(textOf(m['content'])), 0);
    const lastUser = [...messages].reverse().find((m) => m['role'] === 'user');
    const answer = ex.plan.contentFilter
      ? { text: '', pieces: [], truncated: false }
      : limitAnswer(ex.answer ?? defaultAnswer(textOf(lastUser?.['content'])), limit);
    const finishReason = ex.plan.contentFilter ? 'content_filter' : answer.truncated ? 'length' : 'stop';
    const usage = chatUsage(promptTokens, answer.pieces.length);
    const base = {
      id: `chatcmpl-${randomId(29)}`,
      created: Math.floor(ex.receivedAt / 1000),
      model: body['model'] as string,
    };

    if (body['stream'] !== true) {
      return sendJson(ex, 200, headers(ex), {
        ...base,
        object: 'chat.completion',
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: answer.text, refusal: null, annotations: [] },
            logprobs: null,
            finish_reason: finishReason,
          },
        ],
        ...(ex.plan.noUsage ? {} : { usage }),
        service_tier: 'default',
        system_fingerprint: SYSTEM_FINGERPRINT,
      });
    }

    const includeUsage = isRecord(body['stream_options']) && body['stream_options']['include_usage'] === true;
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
      sseData({
        ...base,
        object: 'chat.completion.chunk',
        service_tier: 'default',
        system_fingerprint: SYSTEM_FINGERPRINT,
        choices,
        ...(includeUsage ? { usage: null } : {}),
        ...extra,
      });
    const delta = (d: Record<string, unknown>, finish: string | null = null) => ({
      index: 0,
      delta: d,
      logprobs: null,
      finish_reason: finish,
    });
    const frames = [
      chunk([delta({ role: 'assistant', content: '', refusal: null })]),
      ...answer.pieces.map((piece) => chunk([delta({ content: piece })])),
      chunk([delta({}, finishReason)]),
    ];
    if (includeUsage && !ex.plan.noUsage) frames.push(chunk([], { usage }));
    return sendSse(ex, headers(ex), frames, 'data: [DONE]\n\n');
  }

  async function completions(ex: Exchange, body: Record<string, unknown>): Promise<void> {
    const prompt = body['prompt'];
    if (prompt === undefined) return fail(ex, 400, missing('prompt'));
    const promptText = Array.isArray(prompt) ? prompt.map((p) => textOf(p)).join('\n') : textOf(prompt);
    const limit = maxTokensOf(body, ['max_tokens']);
    if (typeof limit === 'object') return fail(ex, 400, limit);
    const streamProblem = checkStreamOptions(body);
    if (streamProblem) return fail(ex, 400, streamProblem);

    const answer = limitAnswer(
      ex.answer ?? defaultAnswer(promptText),
      limit ?? COMPLETIONS_DEFAULT_MAX_TOKENS,
    );
    const finishReason = answer.truncated ? 'length' : 'stop';
    const promptTokens = countTokens(promptText);
    const completionTokens = answer.pieces.length;
    const usage = {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
    };
    const base = {
      id: `cmpl-${randomId(29)}`,
      object: 'text_completion',
      created: Math.floor(ex.receivedAt / 1000),
      model: body['model'] as string,
    };

    if (body['stream'] !== true) {
      return sendJson(ex, 200, headers(ex), {
        ...base,
        choices: [{ text: answer.text, index: 0, logprobs: null, finish_reason: finishReason }],
        ...(ex.plan.noUsage ? {} : { usage }),
      });
    }
    const includeUsage = isRecord(body['stream_options']) && body['stream_options']['include_usage'] === true;
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
      sseData({ ...base, choices, ...(includeUsage ? { usage: null } : {}), ...extra });
    const frames = [
      ...answer.pieces.map((text) => chunk([{ text, index: 0, logprobs: null, finish_reason: null }])),
      chunk([{ text: '', index: 0, logprobs: null, finish_reason: finishReason }]),
    ];
    if (includeUsage && !ex.plan.noUsage) frames.push(chunk([], { usage }));
    return sendSse(ex, headers(ex), frames, 'data: [DONE]\n\n');
  }

  async function embeddings(ex: Exchange, body: Record<string, unknown>): Promise<void> {
    const input = body['input'];
    if (input === undefined) return fail(ex, 400, missing('input'));
    const texts = embeddingInputs(input);
    if (!texts) {
      return fail(
        ex,
        400,
        openaiError(
          "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
          'invalid_request_error',
        ),
      );
    }
    const model = body['model'] as string;
    const dimensions = body['dimensions'] ?? (model === 'text-embedding-3-large' ? 3072 : 1536);
    if (typeof dimensions !== 'number' || !Number.isInteger(dimensions) || dimensions < 1) {
      return fail(
        ex,
        400,
        openaiError(
          `Invalid value for 'dimensions': expected a positive integer.`,
          'invalid_request_error',
          'dimensions',
        ),
      );
    }
    const base64 = body['encoding_format'] === 'base64';
    const data = texts.map((text, index) => {
      const vector = embeddingVector(text, dimensions);
      return { object: 'embedding', index, embedding: base64 ? float32Base64(vector) : vector };
    });
    const tokens = texts.reduce((sum, text) => sum + countTokens(text), 0);
    return sendJson(ex, 200, headers(ex), {
      object: 'list',
      data,
      model,
      ...(ex.plan.noUsage ? {} : { usage: { prompt_tokens: tokens, total_tokens: tokens } }),
    });
  }

  function listModels(ex: Exchange): Promise<void> {
    return sendJson(ex, 200, headers(ex), { object: 'list', data: OPENAI_MODELS.map(modelObject) });
  }

  function retrieveModel(ex: Exchange): Promise<void> {
    const id = decodeURIComponent(ex.path.slice('/v1/models/'.length));
    if (!(OPENAI_MODELS as readonly string[]).includes(id)) {
      return fail(
        ex,
        404,
        openaiError(`The model '${id}' does not exist`, 'invalid_request_error', 'model', 'model_not_found'),
      );
    }
    return sendJson(ex, 200, headers(ex), modelObject(id));
  }

  return startMockServer({ headers, errorFor, handle }, options);
}

function modelObject(id: string) {
  return { id, object: 'model', created: MODEL_CREATED, owned_by: 'system' };
}

function chatUsage(promptTokens: number, completionTokens: number) {
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}

/** The first present limit field: undefined when none, the error body when invalid. */
function maxTokensOf(body: Record<string, unknown>, fields: string[]): number | undefined | OpenAIErrorBody {
  for (const field of fields) {
    const value = body[field];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'number' || !Number.isInteger(value)) {
      return openaiError(
        `Invalid type for '${field}': expected an integer, but got ${typeof value} instead.`,
        'invalid_request_error',
        field,
        'invalid_type',
      );
    }
    if (value < 1) {
      return openaiError(
        `Invalid '${field}': integer below minimum value. Expected a value >= 1, but got ${value} instead.`,
        'invalid_request_error',
        field,
        'integer_below_min_value',
      );
    }
    return value;
  }
  return undefined;
}

function checkStreamOptions(body: Record<string, unknown>): OpenAIErrorBody | undefined {
  const options = body['stream_options'];
  if (options === undefined || options === null || body['stream'] === true) return undefined;
  return openaiError(
    "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
    'invalid_request_error',
    'stream_options',
  );
}

/** Texts to embed: a string, strings, token ids or arrays of token ids; undefined when invalid. */
function embeddingInputs(input: unknown): string[] | undefined {
  const one = (item: unknown): string | undefined => {
    if (typeof item === 'string') return item === '' ? undefined : item;
    if (Array.isArray(item) && item.length > 0 && item.every((n) => typeof n === 'number'))
      return item.join(' ');
    return undefined;
  };
  if (typeof input === 'string') return one(input) === undefined ? undefined : [input];
  if (!Array.isArray(input) || input.length === 0) return undefined;
  if (input.every((n) => typeof n === 'number')) return [input.join(' ')];
  const texts = input.map(one);
  return texts.every((t) => t !== undefined) ? (texts as string[]) : undefined;
}

/**
 * Deterministic unit vector: hashed bag of words (each lowercased word adds ±1 to one
 * dimension). Equal texts give equal vectors and texts sharing words have a higher cosine
 * similarity, which is what semantic-cache tests need. Values are float32 so the float and
 * base64 encodings agree exactly.
 */
export function embeddingVector(text: string, dimensions: number): number[] {
  const vector = new Array<number>(dimensions).fill(0);
  const words = text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
  for (const word of words) {
    const digest = createHash('sha256').update(word).digest();
    const slot = digest.readUInt32BE(0) % dimensions;
    vector[slot]! += digest[4]! & 1 ? 1 : -1;
  }
  const norm = Math.hypot(...vector);
  if (norm === 0) {
    vector[0] = 1;
    return vector;
  }
  return vector.map((v) => Math.fround(v / norm));
}

function float32Base64(vector: number[]): string {
  const buffer = Buffer.alloc(vector.length * 4);
  for (const [i, v] of vector.entries()) buffer.writeFloatLE(v, i * 4);
  return buffer.toString('base64');
}
