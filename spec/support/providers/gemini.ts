/**
 * Loopback mock of the Gemini API (Generative Language API, v1beta):
 *   POST /v1beta/models/{model}:generateContent            JSON
 *   POST /v1beta/models/{model}:streamGenerateContent?alt=sse   SSE, one GenerateContentResponse per event
 *   POST /v1beta/models/{model}:streamGenerateContent      without alt=sse: one JSON array
 *   POST /v1beta/models/{model}:batchEmbedContents, :embedContent
 * Wire formats and error bodies follow generativelanguage.googleapis.com; see
 * spec/fixtures/providers/gemini/ for reference transcripts. The mock's `url` ends with `/v1beta`.
 *
 * Checks like the real API: the key in `x-goog-api-key` or `?key=` (when the mock has an
 * apiKey; none → 403 PERMISSION_DENIED, a wrong one → 400 API_KEY_INVALID), a known model
 * family (`gemini-*`; embeddings `text-embedding-*`, `gemini-embedding-*`), unknown fields
 * (400 "Unknown name"), `contents` present with roles user/model and non-empty parts, and
 * function parameters of type OBJECT with properties.
 *
 * The stream has no end marker, as the real one: its last event carries the finishReason and
 * the full usageMetadata. Earlier events carry the prompt count only.
 *
 * Tool calls: when the request declares functions, toolConfig's mode is not NONE, and the
 * last turn is user text (not function responses), the model calls the first declared (and
 * allowed) function whose name appears in that text, or with mode ANY the first allowed
 * function. The call's args give each required parameter (all, when none is required) a
 * fixed value: strings "mock", numbers 1, booleans true. The first call carries a
 * `thoughtSignature`, as Gemini 2.5 sends.
 *
 * Tokens: words, as in every mock (shared.ts), plus 258 per image or file part (Gemini's
 * count for an image). JSON mode (`responseMimeType: application/json`) answers
 * `{"answer": "<text>"}`. `candidateCount: n` gives n equal candidates.
 *
 * no_usage removes usageMetadata; content_filter answers a candidate stopped by SAFETY.
 */
import { embeddingVector } from './openai';
import {
  countTokens,
  defaultAnswer,
  type ErrorAnswer,
  type Exchange,
  header,
  isRecord,
  limitAnswer,
  type MockOptions,
  type ProviderMock,
  randomId,
  sendJson,
  sendSse,
  startMockServer,
} from './shared';

const IMAGE_TOKENS = 258;
const EMBEDDING_DIMENSIONS = 768;
const STATUS_NAMES: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  409: 'ABORTED',
  429: 'RESOURCE_EXHAUSTED',
  499: 'CANCELLED',
  500: 'INTERNAL',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
};

export interface GeminiError {
  error: { code: number; message: string; status: string; details?: unknown[] };
}

export function geminiError(code: number, message: string, details?: unknown[]): GeminiError {
  const status = STATUS_NAMES[code] ?? (code >= 500 ? 'INTERNAL' : 'FAILED_PRECONDITION');
  return { error: { code, message, status, ...(details ? { details } : {}) } };
}

const invalid = (message: string) => geminiError(400, message);

const REQUEST_FIELDS = [
  'contents',
  'systemInstruction',
  'tools',
  'toolConfig',
  'generationConfig',
  'safetySettings',
  'cachedContent',
];
const GENERATION_FIELDS = [
  'stopSequences',
  'responseMimeType',
  'responseSchema',
  'responseJsonSchema',
  'candidateCount',
  'maxOutputTokens',
  'temperature',
  'topP',
  'topK',
  'seed',
  'presencePenalty',
  'frequencyPenalty',
  'responseLogprobs',
  'logprobs',
  'thinkingConfig',
  'responseModalities',
  'mediaResolution',
];

export async function startGeminiMock(options: MockOptions = {}): Promise<ProviderMock> {
  function headers(_ex: Exchange): Record<string, string> {
    return {
      'content-type': 'application/json; charset=UTF-8',
      vary: 'Origin, X-Origin, Referer',
      server: 'scaffolding on HTTPServer2',
      'x-xss-protection': '0',
      'x-frame-options': 'SAMEORIGIN',
      'x-content-type-options': 'nosniff',
      'server-timing': 'gfet4t7; dur=412',
    };
  }

  function errorFor(status: number): ErrorAnswer {
    switch (status) {
      case 400:
        return { body: invalid('Request contains an invalid argument.') };
      case 401:
        return {
          body: geminiError(
            401,
            'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.',
            [
              {
                '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
                reason: 'ACCESS_TOKEN_TYPE_UNSUPPORTED',
                metadata: { service: 'generativelanguage.googleapis.com' },
              },
            ],
          ),
        };
      case 403:
        return { body: geminiError(403, 'The caller does not have permission') };
      case 404:
        return { body: geminiError(404, 'Requested entity was not found.') };
      case 429:
        return {
          body: geminiError(
            429,
            'You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.',
            [
              {
                '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
                violations: [
                  {
                    quotaMetric: 'generativelanguage.googleapis.com/generate_content_free_tier_requests',
                    quotaId: 'GenerateRequestsPerMinutePerProjectPerModel-FreeTier',
                    quotaDimensions: { location: 'global', model: 'gemini-2.0-flash' },
                    quotaValue: '15',
                  },
                ],
              },
              { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '2s' },
            ],
          ),
        };
      case 500:
        return {
          body: geminiError(
            500,
            'An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting',
          ),
        };
      case 503:
        return { body: geminiError(503, 'The model is overloaded. Please try again later.') };
      default:
        return {
          body: geminiError(
            status,
            status >= 500 ? 'Internal error encountered.' : 'Precondition check failed.',
          ),
        };
    }
  }

  const fail = (ex: Exchange, body: GeminiError) => sendJson(ex, body.error.code, headers(ex), body);

  async function handle(ex: Exchange): Promise<void> {
    const query = new URL(ex.req.url ?? '/', 'http://mock').searchParams;
    if (options.apiKey !== undefined) {
      const key = header(ex, 'x-goog-api-key') ?? query.get('key') ?? undefined;
      if (key === undefined || key === '') {
        return fail(
          ex,
          geminiError(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
          ),
        );
      }
      if (key !== options.apiKey) {
        return fail(
          ex,
          geminiError(400, 'API key not valid. Please pass a valid API key.', [
            {
              '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
              reason: 'API_KEY_INVALID',
              domain: 'googleapis.com',
              metadata: { service: 'generativelanguage.googleapis.com' },
            },
          ]),
        );
      }
    }
    const match = /^\/v1beta\/models\/([^/:]+):(\w+)$/.exec(ex.path);
    if (ex.method !== 'POST' || !match) {
      return fail(ex, geminiError(404, 'Requested entity was not found.'));
    }
    const model = decodeURIComponent(match[1]!);
    const method = match[2]!;
    const embedding = method === 'batchEmbedContents' || method === 'embedContent';
    const generation = method === 'generateContent' || method === 'streamGenerateContent';
    const known = embedding ? /^(text-embedding|gemini-embedding)-/.test(model) : /^gemini-/.test(model);
    if (!known || (!embedding && !generation)) {
      return fail(
        ex,
        geminiError(
          404,
          `models/${model} is not found for API version v1beta, or is not supported for ${method}. Call ListModels to see the list of available models and their supported methods.`,
        ),
      );
    }
    if (ex.bodyInvalid || !isRecord(ex.body)) {
      return fail(ex, invalid('Invalid JSON payload received. Unexpected token.'));
    }
    if (method === 'batchEmbedContents') return batchEmbed(ex, model, ex.body);
    if (method === 'embedContent') return embedOne(ex, model, ex.body);
    const sse = method === 'streamGenerateContent' && query.get('alt') === 'sse';
    return generate(ex, model, ex.body, method === 'streamGenerateContent', sse);
  }

  async function generate(
    ex: Exchange,
    model: string,
    body: Record<string, unknown>,
    stream: boolean,
    sse: boolean,
  ): Promise<void> {
    const problem = validate(body);
    if (problem) return fail(ex, invalid(problem));
    const contents = body['contents'] as Array<{ role?: string; parts: Record<string, unknown>[] }>;
    const config = isRecord(body['generationConfig']) ? body['generationConfig'] : {};
    const system = isRecord(body['systemInstruction']) ? [body['systemInstruction']] : [];
    const promptTokens = [...system, ...contents].reduce(
      (sum, c) => sum + partsTokens((c as { parts?: unknown }).parts),
      0,
    );
    const last = contents.at(-1)!;
    const lastText = partsText(last.parts);
    const call =
      last.role === 'user' && !last.parts.some((p) => p['functionResponse'])
        ? toolCall(body, lastText)
        : undefined;

    const responseId = randomId(22);
    const base = { modelVersion: model, responseId };
    const meta = (candidates?: number) =>
      ex.plan.noUsage
        ? {}
        : {
            usageMetadata: {
              promptTokenCount: promptTokens,
              ...(candidates === undefined ? {} : { candidatesTokenCount: candidates }),
              totalTokenCount: promptTokens + (candidates ?? 0),
              promptTokensDetails: [{ modality: 'TEXT', tokenCount: promptTokens }],
            },
          };
    const count = typeof config['candidateCount'] === 'number' ? config['candidateCount'] : 1;
    const candidates = (make: (index: number) => Record<string, unknown>) =>
      Array.from({ length: count }, (_, index) => make(index));

    if (ex.plan.contentFilter) {
      const filtered = {
        candidates: candidates((index) => ({
          finishReason: 'SAFETY',
          index,
          safetyRatings: [
            { category: 'HARM_CATEGORY_DANGEROUS_CONTENT', probability: 'HIGH', blocked: true },
          ],
        })),
        ...meta(0),
        ...base,
      };
      return answer(ex, stream, sse, [filtered]);
    }

    if (call) {
      const parts = [
        {
          functionCall: call,
          thoughtSignature: Buffer.from(`mock-signature-${responseId}`).toString('base64'),
        },
      ];
      const outputTokens = countTokens(`${call.name} ${JSON.stringify(call.args)}`);
      const response = {
        candidates: candidates((index) => ({
          content: { parts, role: 'model' },
          finishReason: 'STOP',
          index,
        })),
        ...meta(outputTokens),
        ...base,
      };
      return answer(ex, stream, sse, [response]);
    }

    let text = ex.answer ?? defaultAnswer(lastText);
    if (ex.answer === undefined && config['responseMimeType'] === 'application/json') {
      text = JSON.stringify({ answer: text });
    }
    const limited = limitAnswer(
      text,
      typeof config['maxOutputTokens'] === 'number' ? config['maxOutputTokens'] : undefined,
    );
    const finishReason = limited.truncated ? 'MAX_TOKENS' : 'STOP';
    const outputTokens = limited.pieces.length * count;
    if (!stream) {
      return answer(ex, false, false, [
        {
          candidates: candidates((index) => ({
            content: { parts: [{ text: limited.text }], role: 'model' },
            finishReason,
            index,
          })),
          ...meta(outputTokens),
          ...base,
        },
      ]);
    }
    // One word per event; the last one carries the finishReason and the answer's usage.
    const pieces = limited.pieces.length > 0 ? limited.pieces : [''];
    const events = pieces.map((piece, i) => {
      const lastEvent = i === pieces.length - 1;
      return {
        candidates: candidates((index) => ({
          content: { parts: [{ text: piece }], role: 'model' },
          ...(lastEvent ? { finishReason } : {}),
          index,
        })),
        ...meta(lastEvent ? outputTokens : undefined),
        ...base,
      };
    });
    return answer(ex, true, sse, events);
  }

  /** JSON, a JSON array (stream without alt=sse), or SSE events of which the last ends the stream. */
  function answer(ex: Exchange, stream: boolean, sse: boolean, events: unknown[]): Promise<void> {
    if (!stream) return sendJson(ex, 200, headers(ex), events[0]);
    if (!sse) return sendJson(ex, 200, headers(ex), events);
    const frames = events.map((event) => `data: ${JSON.stringify(event)}\r\n\r\n`);
    const last = frames.pop()!;
    return sendSse(
      ex,
      { ...headers(ex), 'content-type': 'text/event-stream', 'content-disposition': 'attachment' },
      frames,
      last,
    );
  }

  function batchEmbed(ex: Exchange, model: string, body: Record<string, unknown>): Promise<void> {
    const unknown = Object.keys(body).find((k) => k !== 'requests');
    if (unknown)
      return fail(
        ex,
        invalid(`Invalid JSON payload received. Unknown name "${unknown}": Cannot find field.`),
      );
    const requests = body['requests'];
    if (!Array.isArray(requests) || requests.length === 0) {
      return fail(ex, invalid('* BatchEmbedContentsRequest.requests: at least one request is required\n'));
    }
    if (requests.length > 100) {
      return fail(
        ex,
        invalid('* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n'),
      );
    }
    const embeddings: Array<{ values: number[] }> = [];
    for (const [i, request] of requests.entries()) {
      if (!isRecord(request) || request['model'] !== `models/${model}`) {
        return fail(
          ex,
          invalid(
            `* BatchEmbedContentsRequest.model: unexpected model name format\n* BatchEmbedContentsRequest.requests[${i}].model: unexpected model name format\n`,
          ),
        );
      }
      const vector = embedValues(request);
      if (typeof vector === 'string') return fail(ex, invalid(vector));
      embeddings.push({ values: vector });
    }
    return sendJson(ex, 200, headers(ex), { embeddings });
  }

  function embedOne(ex: Exchange, _model: string, body: Record<string, unknown>): Promise<void> {
    const vector = embedValues(body);
    if (typeof vector === 'string') return fail(ex, invalid(vector));
    return sendJson(ex, 200, headers(ex), { embedding: { values: vector } });
  }

  return startMockServer({ headers, errorFor, handle }, options).then((mock) => ({
    ...mock,
    url: mock.url.replace(/\/v1$/, '/v1beta'),
  }));
}

/** The vector of one embed request, or the problem with it. */
function embedValues(request: Record<string, unknown>): number[] | string {
  const content = request['content'];
  if (!isRecord(content) || !Array.isArray(content['parts']) || content['parts'].length === 0) {
    return '* EmbedContentRequest.content: contents is not specified\n';
  }
  const dimensions = request['outputDimensionality'] ?? EMBEDDING_DIMENSIONS;
  if (
    typeof dimensions !== 'number' ||
    !Number.isInteger(dimensions) ||
    dimensions < 1 ||
    dimensions > 3072
  ) {
    return '* EmbedContentRequest.output_dimensionality: must be between 1 and 3072\n';
  }
  return embeddingVector(partsText(content['parts']), dimensions);
}

/** The first problem of a generateContent request, worded like the real API; undefined when valid. */
function validate(body: Record<string, unknown>): string | undefined {
  for (const key of Object.keys(body)) {
    if (!REQUEST_FIELDS.includes(key))
      return `Invalid JSON payload received. Unknown name "${key}": Cannot find field.`;
  }
  const config = body['generationConfig'];
  if (isRecord(config)) {
    for (const key of Object.keys(config)) {
      if (!GENERATION_FIELDS.includes(key)) {
        return `Invalid JSON payload received. Unknown name "${key}" at 'generation_config': Cannot find field.`;
      }
    }
  }
  const contents = body['contents'];
  if (!Array.isArray(contents) || contents.length === 0) {
    return '* GenerateContentRequest.contents: contents is not specified\n';
  }
  for (const [i, content] of contents.entries()) {
    if (!isRecord(content)) return `* GenerateContentRequest.contents[${i}]: must be an object\n`;
    if (content['role'] !== undefined && content['role'] !== 'user' && content['role'] !== 'model') {
      return 'Please use a valid role: user, model.';
    }
    if (!Array.isArray(content['parts']) || content['parts'].length === 0) {
      return `* GenerateContentRequest.contents[${i}].parts: contents.parts must not be empty.\n`;
    }
  }
  const tools = Array.isArray(body['tools']) ? body['tools'] : [];
  for (const [t, tool] of tools.entries()) {
    const declarations =
      isRecord(tool) && Array.isArray(tool['functionDeclarations']) ? tool['functionDeclarations'] : [];
    for (const [f, fn] of declarations.entries()) {
      const parameters = isRecord(fn) ? fn['parameters'] : undefined;
      if (isRecord(parameters) && parameters['type'] === 'OBJECT') {
        const properties = parameters['properties'];
        if (!isRecord(properties) || Object.keys(properties).length === 0) {
          return `* GenerateContentRequest.tools[${t}].function_declarations[${f}].parameters.properties: should be non-empty for OBJECT type\n`;
        }
      }
    }
  }
  return undefined;
}

/** The function the model calls for this request, if any (see the trigger in the header comment). */
function toolCall(
  body: Record<string, unknown>,
  text: string,
): { name: string; args: Record<string, unknown> } | undefined {
  const declarations = (Array.isArray(body['tools']) ? body['tools'] : []).flatMap((tool) =>
    isRecord(tool) && Array.isArray(tool['functionDeclarations'])
      ? tool['functionDeclarations'].filter(isRecord)
      : [],
  );
  const toolConfig = isRecord(body['toolConfig']) ? body['toolConfig'] : {};
  const calling = isRecord(toolConfig['functionCallingConfig']) ? toolConfig['functionCallingConfig'] : {};
  const mode = calling['mode'] ?? 'AUTO';
  if (declarations.length === 0 || mode === 'NONE') return undefined;
  const allowed = Array.isArray(calling['allowedFunctionNames'])
    ? calling['allowedFunctionNames']
    : undefined;
  const candidates = declarations.filter((d) => !allowed || allowed.includes(d['name']));
  const chosen =
    candidates.find((d) => typeof d['name'] === 'string' && text.includes(d['name'])) ??
    (mode === 'ANY' ? candidates[0] : undefined);
  if (!chosen) return undefined;
  return { name: String(chosen['name']), args: argsFor(chosen['parameters']) };
}

function argsFor(parameters: unknown): Record<string, unknown> {
  if (!isRecord(parameters) || !isRecord(parameters['properties'])) return {};
  const properties = parameters['properties'];
  const required = Array.isArray(parameters['required']) ? parameters['required'] : Object.keys(properties);
  const args: Record<string, unknown> = {};
  for (const name of required) {
    const schema = properties[name];
    const type = isRecord(schema) ? schema['type'] : undefined;
    args[name] = type === 'NUMBER' || type === 'INTEGER' ? 1 : type === 'BOOLEAN' ? true : 'mock';
  }
  return args;
}

function partsText(parts: unknown): string {
  if (!Array.isArray(parts)) return '';
  return parts
    .map((p) => (isRecord(p) && typeof p['text'] === 'string' ? p['text'] : ''))
    .filter((t) => t !== '')
    .join('\n');
}

function partsTokens(parts: unknown): number {
  if (!Array.isArray(parts)) return 0;
  let tokens = 0;
  for (const part of parts) {
    if (!isRecord(part)) continue;
    if (typeof part['text'] === 'string') tokens += countTokens(part['text']);
    if (part['inlineData'] || part['fileData']) tokens += IMAGE_TOKENS;
    if (part['functionCall'] || part['functionResponse']) tokens += countTokens(JSON.stringify(part));
  }
  return tokens;
}
