/**
 * Loopback mock of Azure OpenAI: POST /openai/deployments/{deployment}/chat/completions,
 * /completions and /embeddings with `?api-version=`. `url` is the resource root (what a
 * target's `base_url` holds), e.g. http://127.0.0.1:PORT.
 *
 * The answers come from the OpenAI mock (started inside, its code reused as is), reshaped as
 * Azure sends them: `prompt_filter_results` and per-choice `content_filter_results`, a first
 * stream chunk with empty `choices` (and empty id, model, object) carrying the prompt filter
 * results, the underlying model's name instead of the deployment's. Checks like the real
 * service:
 * - the `api-key` header (when the mock has an apiKey): 401 with Azure's `{"error": {"code":
 *   "401", ...}}`;
 * - `api-version`: missing → 404 "Resource not found" (what Azure answers, not a 400);
 *   unknown → 400 "API version not supported"; `stream_options` before 2024-09-01 → 400
 *   "Unrecognized request argument supplied: stream_options";
 * - an unknown deployment (when `deployments` is given) → 404 DeploymentNotFound.
 * Triggers, deterministic:
 * - a user message containing `[azure-filter]`: the prompt filter's 400 (`content_filter`,
 *   innererror ResponsibleAIPolicyViolation, violence filtered at severity high);
 * - the `content_filter` fault: HTTP 200, finish reason `content_filter`, violence filtered;
 * - tools declared and the last message a user message containing the word `tool`: a call of
 *   the first declared function, its string parameters set to "mock" (streamed in pieces).
 * Faults other than status and reset are passed to the inner OpenAI mock for the next request
 * it gets: tests that inject them should not send concurrent requests.
 */
import { randomUUID } from 'node:crypto';
import { startOpenAIMock } from './openai';
import { parseSse } from './raw-http';
import {
  countTokens,
  type ErrorAnswer,
  type Exchange,
  header,
  isRecord,
  type MockOptions,
  type ProviderMock,
  randomId,
  sendJson,
  sendSse,
  sseData,
  startMockServer,
  textOf,
} from './shared';

export interface AzureMockOptions extends MockOptions {
  /** Deployment name → model it runs; when absent any deployment runs a model of its name. */
  deployments?: Record<string, string>;
}

/** api-versions of the inference API (GA and preview) the mock knows. */
export const AZURE_API_VERSIONS = [
  '2023-05-15',
  '2024-02-01',
  '2024-06-01',
  '2024-08-01-preview',
  '2024-09-01-preview',
  '2024-10-21',
  '2024-12-01-preview',
  '2025-01-01-preview',
  '2025-04-01-preview',
] as const;
const STREAM_OPTIONS_SINCE = '2024-09-01';
const FILTER_TRIGGER = '[azure-filter]';
const OPERATIONS: Record<string, string> = {
  'chat/completions': 'ChatCompletions_Create',
  completions: 'Completions_Create',
  embeddings: 'Embeddings_Create',
};

const safe = () => ({ filtered: false, severity: 'safe' });
const SAFE_RESULTS = { hate: safe(), self_harm: safe(), sexual: safe(), violence: safe() };
const PROMPT_FILTER_RESULTS = [
  {
    prompt_index: 0,
    content_filter_results: { ...SAFE_RESULTS, jailbreak: { filtered: false, detected: false } },
  },
];
const VIOLENCE_FILTERED = { ...SAFE_RESULTS, violence: { filtered: true, severity: 'medium' } };

function azureError(code: string, message: string) {
  return { error: { code, message } };
}

const resourceNotFound = azureError('404', 'Resource not found');

const promptFiltered = {
  error: {
    message:
      "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please " +
      'modify your prompt and retry. To learn more about our content filtering policies please read our ' +
      'documentation: https://go.microsoft.com/fwlink/?linkid=2198766',
    type: null,
    param: 'prompt',
    code: 'content_filter',
    status: 400,
    innererror: {
      code: 'ResponsibleAIPolicyViolation',
      content_filter_result: {
        ...SAFE_RESULTS,
        jailbreak: { filtered: false, detected: false },
        violence: { filtered: true, severity: 'high' },
      },
    },
  },
};

export async function startAzureMock(options: AzureMockOptions = {}): Promise<ProviderMock> {
  // The answers' text, usage and validation are the OpenAI mock's; this one reshapes them.
  const inner = await startOpenAIMock({ chunkDelayMs: 0 });

  function headers(_ex: Exchange): Record<string, string> {
    const id = randomUUID();
    return {
      'apim-request-id': id,
      'x-request-id': id,
      'x-ms-region': 'East US',
      'x-ms-client-request-id': 'Not-Set',
      'x-ratelimit-remaining-requests': '99',
      'x-ratelimit-remaining-tokens': '99000',
    };
  }

  function errorFor(status: number, ex: Exchange): ErrorAnswer {
    switch (status) {
      case 400:
        return {
          body: {
            error: { message: 'Invalid request.', type: 'invalid_request_error', param: null, code: null },
          },
        };
      case 401:
        return { body: invalidKey };
      case 403:
        return { body: azureError('403', 'Access denied due to Virtual Network/Firewall rules.') };
      case 404:
        return { body: deploymentNotFound };
      case 429:
        return {
          body: azureError(
            '429',
            `Requests to the ${operationOf(ex)} Operation under Azure OpenAI API version ${apiVersionOf(ex) ?? '2024-10-21'} ` +
              'have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 1 second. ' +
              'Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.',
          ),
          headers: { 'retry-after': '1', 'retry-after-ms': '1000', 'x-ratelimit-remaining-requests': '0' },
        };
      case 500:
        return {
          body: azureError(
            'InternalServerError',
            'The service is temporarily unable to process your request. Please try again later.',
          ),
        };
      case 503:
        return {
          body: azureError(
            'ServiceUnavailable',
            'The service is temporarily unable to process your request.',
          ),
        };
      default:
        return {
          body: azureError(String(status), status >= 500 ? 'The server had an error.' : 'Invalid request.'),
        };
    }
  }

  const fail = (ex: Exchange, status: number, body: unknown) => sendJson(ex, status, headers(ex), body);

  async function handle(ex: Exchange): Promise<void> {
    if (options.apiKey !== undefined) {
      const key = header(ex, 'api-key');
      if (key === undefined) return fail(ex, 401, missingKey);
      if (key !== options.apiKey) return fail(ex, 401, invalidKey);
    }
    const match = /^\/openai\/deployments\/([^/]+)\/(chat\/completions|completions|embeddings)$/.exec(
      ex.path,
    );
    const version = apiVersionOf(ex);
    if (!match || ex.method !== 'POST' || version === undefined) return fail(ex, 404, resourceNotFound);
    if (!(AZURE_API_VERSIONS as readonly string[]).includes(version)) {
      return fail(ex, 400, azureError('BadRequest', 'API version not supported'));
    }
    const deployment = decodeURIComponent(match[1]!);
    const deployments = options.deployments;
    const model =
      deployments === undefined
        ? deployment
        : Object.hasOwn(deployments, deployment)
          ? deployments[deployment]
          : undefined;
    if (model === undefined) return fail(ex, 404, deploymentNotFound);
    // The OpenAI mock answers unreadable JSON as OpenAI does, which Azure copies.
    if (ex.bodyInvalid) return forward(ex, match[2]!, model, undefined);
    const body = isRecord(ex.body) ? ex.body : {};
    if (body.stream_options !== undefined && version < STREAM_OPTIONS_SINCE) {
      return fail(ex, 400, {
        error: {
          message: 'Unrecognized request argument supplied: stream_options',
          type: 'invalid_request_error',
          param: null,
          code: null,
        },
      });
    }
    if (match[2] === 'chat/completions') {
      const messages = Array.isArray(body.messages) ? body.messages.filter(isRecord) : [];
      if (messages.some((m) => m.role === 'user' && textOf(m.content).includes(FILTER_TRIGGER))) {
        return fail(ex, 400, promptFiltered);
      }
      const call = toolCallFor(body, messages);
      if (call) return answerToolCall(ex, body, model, call);
    }
    return forward(ex, match[2]!, model, body);
  }

  /** The OpenAI mock's answer to the same request, reshaped as Azure's. */
  async function forward(ex: Exchange, path: string, model: string, body: unknown): Promise<void> {
    inner.setAnswer(ex.answer);
    if (ex.plan.contentFilter) inner.nextFault({ kind: 'content_filter' });
    if (ex.plan.noUsage) inner.nextFault({ kind: 'no_usage' });
    const sent = isRecord(body) ? { ...body, model } : body;
    const response = await fetch(`${inner.url}/${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: ex.bodyInvalid ? '{' : JSON.stringify(sent),
      signal: ex.signal,
    });
    const text = await response.text();
    if (response.status !== 200) return sendJson(ex, response.status, headers(ex), JSON.parse(text));
    if (!(response.headers.get('content-type') ?? '').includes('text/event-stream')) {
      return sendJson(ex, 200, headers(ex), reshapeAnswer(JSON.parse(text), path, ex.plan.contentFilter));
    }
    const frames = parseSse(text)
      .filter((frame) => frame.data !== '[DONE]')
      .map((frame) => sseData(reshapeChunk(JSON.parse(frame.data), ex.plan.contentFilter)));
    return sendSse(ex, headers(ex), [firstChunk(), ...frames], 'data: [DONE]\n\n');
  }

  async function answerToolCall(
    ex: Exchange,
    body: Record<string, unknown>,
    model: string,
    call: { name: string; arguments: string },
  ): Promise<void> {
    const id = `call_${randomId(24)}`;
    const base = { id: `chatcmpl-${randomId(29)}`, created: Math.floor(ex.receivedAt / 1000), model };
    const promptTokens = countTokens(JSON.stringify(body.messages ?? []));
    const completionTokens = countTokens(call.arguments) + 1;
    const usage = {
      completion_tokens: completionTokens,
      prompt_tokens: promptTokens,
      total_tokens: promptTokens + completionTokens,
    };
    if (body.stream !== true) {
      return sendJson(ex, 200, headers(ex), {
        ...base,
        object: 'chat.completion',
        choices: [
          {
            content_filter_results: {},
            finish_reason: 'tool_calls',
            index: 0,
            logprobs: null,
            message: {
              content: null,
              refusal: null,
              role: 'assistant',
              tool_calls: [{ function: call, id, type: 'function' }],
            },
          },
        ],
        prompt_filter_results: PROMPT_FILTER_RESULTS,
        system_fingerprint: 'fp_azure0mock',
        ...(ex.plan.noUsage ? {} : { usage }),
      });
    }
    const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
      sseData({
        ...base,
        object: 'chat.completion.chunk',
        choices: [{ content_filter_results: {}, delta, finish_reason: finish, index: 0, logprobs: null }],
        system_fingerprint: 'fp_azure0mock',
      });
    const third = Math.ceil(call.arguments.length / 3);
    const pieces = [0, 1, 2].map((i) => call.arguments.slice(i * third, (i + 1) * third)).filter((p) => p);
    const frames = [
      firstChunk(),
      chunk({
        content: null,
        role: 'assistant',
        tool_calls: [{ function: { arguments: '', name: call.name }, id, index: 0, type: 'function' }],
      }),
      ...pieces.map((arguments_) =>
        chunk({ tool_calls: [{ function: { arguments: arguments_ }, index: 0 }] }),
      ),
      chunk({}, 'tool_calls'),
    ];
    const options = body.stream_options;
    if (isRecord(options) && options.include_usage === true && !ex.plan.noUsage) {
      frames.push(sseData({ ...base, object: 'chat.completion.chunk', choices: [], usage }));
    }
    return sendSse(ex, headers(ex), frames, 'data: [DONE]\n\n');
  }

  const mock = await startMockServer({ headers, errorFor, handle }, options);
  return {
    ...mock,
    url: mock.url.replace(/\/v1$/, ''),
    async close() {
      await mock.close();
      await inner.close();
    },
  };
}

const invalidKey = azureError(
  '401',
  'Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an ' +
    'active subscription and use a correct regional API endpoint for your resource.',
);
const missingKey = azureError(
  '401',
  'Access denied due to missing subscription key. Make sure to include subscription key when making requests to ' +
    'an API.',
);
const deploymentNotFound = azureError(
  'DeploymentNotFound',
  'The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, ' +
    'please wait a moment and try again.',
);

function apiVersionOf(ex: Exchange): string | undefined {
  return new URL(ex.req.url ?? '/', 'http://mock').searchParams.get('api-version') ?? undefined;
}

function operationOf(ex: Exchange): string {
  const path = ex.path.replace(/^\/openai\/deployments\/[^/]+\//, '');
  return OPERATIONS[path] ?? 'ChatCompletions_Create';
}

/** Azure's first stream chunk: only the prompt filter's results. */
function firstChunk(): string {
  return sseData({
    choices: [],
    created: 0,
    id: '',
    model: '',
    object: '',
    prompt_filter_results: PROMPT_FILTER_RESULTS,
  });
}

function reshapeAnswer(answer: unknown, path: string, filtered: boolean): unknown {
  if (!isRecord(answer) || path === 'embeddings') return answer;
  const { service_tier: _none, ...rest } = answer;
  const choices = Array.isArray(rest.choices) ? rest.choices : [];
  return {
    ...rest,
    choices: choices.map((choice) =>
      isRecord(choice)
        ? { ...choice, content_filter_results: filtered ? VIOLENCE_FILTERED : SAFE_RESULTS }
        : choice,
    ),
    prompt_filter_results: PROMPT_FILTER_RESULTS,
  };
}

function reshapeChunk(chunk: unknown, filtered: boolean): unknown {
  if (!isRecord(chunk)) return chunk;
  const { service_tier: _none, ...rest } = chunk;
  if (!Array.isArray(rest.choices) || rest.choices.length === 0) return rest;
  return {
    ...rest,
    choices: rest.choices.map((choice) => {
      if (!isRecord(choice)) return choice;
      const delta = isRecord(choice.delta) ? choice.delta : {};
      const text =
        typeof delta.content === 'string'
          ? delta.content
          : typeof choice.text === 'string'
            ? choice.text
            : '';
      const results =
        choice.finish_reason === 'content_filter' && filtered ? VIOLENCE_FILTERED : text ? SAFE_RESULTS : {};
      return { ...choice, content_filter_results: results };
    }),
  };
}

/** The tool call the trigger asks for: tools declared, the last message a user's naming `tool`. */
function toolCallFor(
  body: Record<string, unknown>,
  messages: Record<string, unknown>[],
): { name: string; arguments: string } | undefined {
  const last = messages.at(-1);
  if (!Array.isArray(body.tools) || body.tools.length === 0 || last?.role !== 'user') return undefined;
  if (!/\btool\b/i.test(textOf(last.content)) || body.tool_choice === 'none') return undefined;
  const fn = isRecord(body.tools[0]) && isRecord(body.tools[0].function) ? body.tools[0].function : undefined;
  if (!fn || typeof fn.name !== 'string') return undefined;
  const properties =
    isRecord(fn.parameters) && isRecord(fn.parameters.properties) ? fn.parameters.properties : {};
  const args: Record<string, string> = {};
  for (const [name, schema] of Object.entries(properties)) {
    if (isRecord(schema) && schema.type === 'string') args[name] = 'mock';
  }
  return { name: fn.name, arguments: JSON.stringify(args) };
}
