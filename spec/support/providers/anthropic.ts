/**
 * Loopback mock of the Anthropic Messages API: POST /v1/messages, JSON or SSE (`stream: true`).
 * Wire formats, headers and error bodies follow api.anthropic.com; see
 * spec/fixtures/providers/anthropic/ for reference transcripts.
 *
 * Checks like the real API: `x-api-key` (when the mock has an apiKey), `anthropic-version`,
 * required `model`, `messages`, `max_tokens`, no unknown top-level field ("Extra inputs are not
 * permitted"), no "system" role inside `messages` (the system prompt is the top-level `system`
 * field, a string or text blocks), content blocks (non-empty text; images as base64 jpeg/png/
 * gif/webp or an http(s) url; tool_use only from the assistant, tool_result only from the user),
 * every tool_use answered by a tool_result in the next turn and no tool_result without its
 * tool_use, no trailing whitespace at the end of a final assistant turn, tool definitions and
 * tool_choice, temperature and top_p in [0, 1], stop_sequences.
 *
 * The deterministic "model":
 *  - input tokens: words of the system prompt and of every text, tool_use input and tool_result;
 *    each image counts IMAGE_TOKENS; tool definitions are not counted.
 *  - tool calls: when the request declares tools and tool_choice is not `none`, the answer calls
 *    a tool if the last user turn's text names one (e.g. "use get_weather"), or tool_choice forces
 *    one (`tool`: that one; `any`: the first). The call's input holds each required property of
 *    the tool's input_schema ("mock" for strings, 1 for numbers, true for booleans, [] and {}),
 *    after a text block `I will call NAME.`; stop_reason `tool_use`. A user turn made only of
 *    tool results names no tool, so the conversation goes on with a text answer.
 *  - stop_sequences: the answer is cut before the first one found (stop_reason `stop_sequence`).
 *
 * Faults: no_usage removes `usage` from the JSON answer and from message_start / message_delta;
 * content_filter answers stop_reason `refusal` with no content; `nextStreamError` makes the next
 * stream send an `event: error` after some events and end there, as Anthropic does when it is
 * overloaded mid-answer.
 */
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
  sseEvent,
  startMockServer,
  textOf,
} from './shared';

/** What `event: error` the next stream sends, after how many events. */
export interface StreamErrorFault {
  afterEvents: number;
  /** Anthropic error type, default `overloaded_error`. */
  type?: string;
  message?: string;
}

export interface AnthropicMock extends ProviderMock {
  /** The next streamed answer sends `afterEvents` events, then an error event, then ends. */
  nextStreamError(fault: StreamErrorFault): void;
}

/** Input tokens an image counts for (the real API counts about width × height / 750). */
export const IMAGE_TOKENS = 100;

const KNOWN_VERSIONS = ['2023-06-01', '2023-01-01'];
const RATE_LIMITS = {
  requests: 4_000,
  tokens: 2_000_000,
  'input-tokens': 2_000_000,
  'output-tokens': 400_000,
};

interface AnthropicErrorBody {
  type: 'error';
  error: { type: string; message: string };
  request_id: string;
}

function anthropicError(type: string, message: string): AnthropicErrorBody {
  return { type: 'error', error: { type, message }, request_id: `req_${randomId(24)}` };
}

const invalid = (message: string) => anthropicError('invalid_request_error', message);

// Anthropic says per status whether a retry can help; its SDKs obey this header.
function shouldRetry(status: number): string {
  return String(status === 408 || status === 409 || status === 429 || status >= 500);
}

export async function startAnthropicMock(options: MockOptions = {}): Promise<AnthropicMock> {
  let served = 0;
  const streamErrors: StreamErrorFault[] = [];

  function headers(ex: Exchange): Record<string, string> {
    served += 1;
    // Anthropic's reset headers are RFC 3339 instants, not durations.
    const reset = new Date(Math.ceil((Date.now() + 1000) / 1000) * 1000).toISOString().replace('.000Z', 'Z');
    const used = countTokens(JSON.stringify(ex.body ?? ''));
    const result: Record<string, string> = {
      'request-id': `req_${randomId(24)}`,
      'anthropic-organization-id': '00000000-0000-4000-8000-000000000000',
    };
    for (const [kind, limit] of Object.entries(RATE_LIMITS)) {
      const remaining = kind === 'requests' ? Math.max(0, limit - served) : Math.max(0, limit - used);
      result[`anthropic-ratelimit-${kind}-limit`] = String(limit);
      result[`anthropic-ratelimit-${kind}-remaining`] = String(remaining);
      result[`anthropic-ratelimit-${kind}-reset`] = reset;
    }
    return result;
  }

  function errorFor(status: number): ErrorAnswer {
    const retry = { 'x-should-retry': shouldRetry(status) };
    switch (status) {
      case 400:
        return { body: invalid('Invalid request.'), headers: retry };
      case 401:
        return { body: anthropicError('authentication_error', 'invalid x-api-key'), headers: retry };
      case 403:
        return {
          body: anthropicError(
            'permission_error',
            'Your API key does not have permission to use the specified resource.',
          ),
          headers: retry,
        };
      case 404:
        return { body: anthropicError('not_found_error', 'Not found'), headers: retry };
      case 413:
        return {
          body: anthropicError('request_too_large', 'Request exceeds the maximum allowed number of bytes.'),
          headers: retry,
        };
      case 429:
        return {
          body: anthropicError(
            'rate_limit_error',
            'This request would exceed the rate limit for your organization of 4,000 requests per minute. ' +
              'For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers ' +
              'for current usage. Please reduce the number of requests or try again later.',
          ),
          headers: {
            ...retry,
            'retry-after': '1',
            'anthropic-ratelimit-requests-remaining': '0',
          },
        };
      case 529:
        return { body: anthropicError('overloaded_error', 'Overloaded'), headers: retry };
      default:
        return {
          body:
            status >= 500
              ? anthropicError('api_error', 'Internal server error')
              : invalid('Invalid request.'),
          headers: retry,
        };
    }
  }

  function fail(ex: Exchange, status: number, body: AnthropicErrorBody): Promise<void> {
    return sendJson(ex, status, { ...headers(ex), 'x-should-retry': shouldRetry(status) }, body);
  }

  async function handle(ex: Exchange): Promise<void> {
    if (options.apiKey !== undefined) {
      const key = header(ex, 'x-api-key');
      if (key === undefined || key === '') {
        return fail(ex, 401, anthropicError('authentication_error', 'x-api-key header is required'));
      }
      if (key !== options.apiKey)
        return fail(ex, 401, anthropicError('authentication_error', 'invalid x-api-key'));
    }
    const version = header(ex, 'anthropic-version');
    if (version === undefined) return fail(ex, 400, invalid('anthropic-version: header is required'));
    if (!KNOWN_VERSIONS.includes(version)) {
      return fail(ex, 400, invalid(`anthropic-version: ${JSON.stringify(version)} is not a valid version`));
    }
    if (`${ex.method} ${ex.path}` !== 'POST /v1/messages') {
      return fail(ex, 404, anthropicError('not_found_error', 'Not Found'));
    }
    if (ex.bodyInvalid) return fail(ex, 400, invalid('The request body is not valid JSON.'));
    return messages(ex, isRecord(ex.body) ? ex.body : {});
  }

  async function messages(ex: Exchange, body: Record<string, unknown>): Promise<void> {
    const problem = validate(body);
    if (problem) return fail(ex, 400, invalid(problem));
    const msgs = body['messages'] as Record<string, unknown>[];
    const model = body['model'] as string;
    const inputTokens =
      countTokens(textOf(body['system'])) + msgs.reduce((sum, m) => sum + contentTokens(m['content']), 0);
    const last = msgs[msgs.length - 1]!;
    const lastUser = [...msgs].reverse().find((m) => m['role'] === 'user');
    const tool = last['role'] === 'user' ? toolToCall(body, textOf(last['content'])) : undefined;

    let blocks: Block[];
    let stopReason: string;
    let stopSequence: string | null = null;
    let outputTokens: number;
    if (ex.plan.contentFilter) {
      blocks = [];
      stopReason = 'refusal';
      outputTokens = 0;
    } else if (tool) {
      const text = `I will call ${tool.name}.`;
      const input = toolInput(tool.input_schema);
      blocks = [
        { type: 'text', text },
        { type: 'tool_use', id: `toolu_01${randomId(22)}`, name: tool.name, input },
      ];
      stopReason = 'tool_use';
      outputTokens = countTokens(text) + countTokens(JSON.stringify(input));
    } else {
      const stopped = applyStop(
        ex.answer ?? defaultAnswer(textOf(lastUser?.['content'])),
        body['stop_sequences'],
      );
      const answer = limitAnswer(stopped.text, body['max_tokens'] as number);
      blocks = [{ type: 'text', text: answer.text }];
      stopReason = answer.truncated
        ? 'max_tokens'
        : stopped.sequence !== undefined
          ? 'stop_sequence'
          : 'end_turn';
      if (!answer.truncated && stopped.sequence !== undefined) stopSequence = stopped.sequence;
      outputTokens = answer.pieces.length;
    }

    const usage = (output: number) => ({
      input_tokens: inputTokens,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
      output_tokens: output,
      service_tier: 'standard',
    });
    const message = { id: `msg_01${randomId(22)}`, type: 'message', role: 'assistant', model };
    const withUsage = (output: number) => (ex.plan.noUsage ? {} : { usage: usage(output) });

    if (body['stream'] !== true) {
      return sendJson(ex, 200, headers(ex), {
        ...message,
        content: blocks,
        stop_reason: stopReason,
        stop_sequence: stopSequence,
        ...withUsage(outputTokens),
      });
    }
    const frames = [
      sseEvent('message_start', {
        type: 'message_start',
        message: { ...message, content: [], stop_reason: null, stop_sequence: null, ...withUsage(1) },
      }),
      ...blocks.flatMap((block, index) => blockEvents(block, index)),
      sseEvent('message_delta', {
        type: 'message_delta',
        delta: { stop_reason: stopReason, stop_sequence: stopSequence },
        ...(ex.plan.noUsage ? {} : { usage: { output_tokens: outputTokens } }),
      }),
    ];
    // Anthropic sends a ping after the first content block starts.
    frames.splice(Math.min(2, frames.length - 1), 0, sseEvent('ping', { type: 'ping' }));
    const streamError = streamErrors.shift();
    if (streamError) {
      const error = {
        type: 'error',
        error: { type: streamError.type ?? 'overloaded_error', message: streamError.message ?? 'Overloaded' },
      };
      return sendSse(
        ex,
        { ...headers(ex), 'cache-control': 'no-cache' },
        frames.slice(0, streamError.afterEvents),
        sseEvent('error', error),
      );
    }
    return sendSse(
      ex,
      { ...headers(ex), 'cache-control': 'no-cache' },
      frames,
      sseEvent('message_stop', { type: 'message_stop' }),
    );
  }

  const mock = await startMockServer({ headers, errorFor, handle }, options);
  return {
    ...mock,
    reset() {
      mock.reset();
      streamErrors.length = 0;
    },
    nextStreamError(fault) {
      streamErrors.push(fault);
    },
  };
}

type Block = Record<string, unknown>;

/** One content block as stream events: text one word per delta, tool input in pieces of JSON. */
function blockEvents(block: Block, index: number): string[] {
  const start = (content_block: Block) =>
    sseEvent('content_block_start', { type: 'content_block_start', index, content_block });
  const delta = (delta: Block) =>
    sseEvent('content_block_delta', { type: 'content_block_delta', index, delta });
  const stop = sseEvent('content_block_stop', { type: 'content_block_stop', index });
  if (block['type'] === 'tool_use') {
    const json = JSON.stringify(block['input']);
    const pieces = ['', ...(json.match(/[\s\S]{1,8}/g) ?? [])];
    return [
      start({ ...block, input: {} }),
      ...pieces.map((partial_json) => delta({ type: 'input_json_delta', partial_json })),
      stop,
    ];
  }
  const text = block['text'] as string;
  return [
    start({ type: 'text', text: '' }),
    ...(text.match(/\s*\S+/g) ?? []).map((piece) => delta({ type: 'text_delta', text: piece })),
    stop,
  ];
}

/** Input tokens of a message content: words of text, tool input and tool results, images at a flat rate. */
function contentTokens(content: unknown): number {
  if (typeof content === 'string') return countTokens(content);
  if (!Array.isArray(content)) return 0;
  let tokens = 0;
  for (const block of content as Block[]) {
    if (block['type'] === 'text') tokens += countTokens(block['text'] as string);
    else if (block['type'] === 'image') tokens += IMAGE_TOKENS;
    else if (block['type'] === 'tool_use') tokens += countTokens(JSON.stringify(block['input']));
    else if (block['type'] === 'tool_result') tokens += contentTokens(block['content']);
  }
  return tokens;
}

interface ToolDefinition {
  name: string;
  input_schema: Record<string, unknown>;
}

/** The tool the answer calls, if any (see the trigger in the header comment). */
function toolToCall(body: Record<string, unknown>, lastUserText: string): ToolDefinition | undefined {
  const tools = (body['tools'] ?? []) as ToolDefinition[];
  if (tools.length === 0) return undefined;
  const choice = isRecord(body['tool_choice']) ? body['tool_choice'] : { type: 'auto' };
  if (choice['type'] === 'none') return undefined;
  if (choice['type'] === 'tool') return tools.find((t) => t.name === choice['name']);
  const named = tools.find((t) => lastUserText.includes(t.name));
  return named ?? (choice['type'] === 'any' ? tools[0] : undefined);
}

function toolInput(schema: Record<string, unknown>): Record<string, unknown> {
  const properties = isRecord(schema['properties']) ? schema['properties'] : {};
  const required = Array.isArray(schema['required']) ? (schema['required'] as string[]) : [];
  const sample: Record<string, unknown> = {
    string: 'mock',
    number: 1,
    integer: 1,
    boolean: true,
    array: [],
    object: {},
  };
  const input: Record<string, unknown> = {};
  for (const name of required) {
    const property = properties[name];
    const type = isRecord(property) ? property['type'] : undefined;
    input[name] = typeof type === 'string' && type in sample ? sample[type] : null;
  }
  return input;
}

/** The answer cut before the first stop sequence it contains. */
function applyStop(text: string, sequences: unknown): { text: string; sequence?: string } {
  let cut: { text: string; sequence?: string } = { text };
  if (!Array.isArray(sequences)) return cut;
  for (const sequence of sequences as string[]) {
    const at = text.indexOf(sequence);
    if (at >= 0 && at < cut.text.length) cut = { text: text.slice(0, at), sequence };
  }
  return cut;
}

const TOP_LEVEL = new Set([
  'model',
  'messages',
  'max_tokens',
  'system',
  'stop_sequences',
  'stream',
  'temperature',
  'top_p',
  'top_k',
  'tools',
  'tool_choice',
  'metadata',
  'thinking',
  'service_tier',
]);
const IMAGE_TYPES = ['image/jpeg', 'image/png', 'image/gif', 'image/webp'];
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const TOOL_NAME = /^[a-zA-Z0-9_-]{1,128}$/;

/** The first problem of a Messages request, worded like the real API; undefined when valid. */
function validate(body: Record<string, unknown>): string | undefined {
  for (const field of ['model', 'messages', 'max_tokens']) {
    if (body[field] === undefined) return `${field}: Field required`;
  }
  for (const field of Object.keys(body)) {
    if (!TOP_LEVEL.has(field)) return `${field}: Extra inputs are not permitted`;
  }
  if (typeof body['model'] !== 'string') return 'model: Input should be a valid string';
  const maxTokens = body['max_tokens'];
  if (typeof maxTokens !== 'number' || !Number.isInteger(maxTokens))
    return 'max_tokens: Input should be a valid integer';
  if (maxTokens < 1) return 'max_tokens: Input should be greater than or equal to 1';
  for (const field of ['temperature', 'top_p']) {
    const value = body[field];
    if (value === undefined) continue;
    if (typeof value !== 'number') return `${field}: Input should be a valid number`;
    if (value < 0) return `${field}: Input should be greater than or equal to 0`;
    if (value > 1) return `${field}: Input should be less than or equal to 1`;
  }
  const stops = body['stop_sequences'];
  if (stops !== undefined) {
    if (!Array.isArray(stops) || stops.some((s) => typeof s !== 'string'))
      return 'stop_sequences: Input should be a valid list';
    if (stops.some((s: string) => s.trim() === ''))
      return 'stop_sequences: each stop sequence must contain non-whitespace';
  }
  const system = body['system'];
  if (system !== undefined && typeof system !== 'string' && !Array.isArray(system)) {
    return 'system: Input should be a valid list';
  }
  const toolProblem = validateTools(body['tools'], body['tool_choice']);
  if (toolProblem) return toolProblem;
  const msgs = body['messages'];
  if (!Array.isArray(msgs)) return 'messages: Input should be a valid list';
  if (msgs.length === 0) return 'messages: at least one message is required';
  for (const [i, m] of msgs.entries()) {
    if (!isRecord(m)) return `messages.${i}: Input should be a valid dictionary`;
    if (m['role'] === 'system') {
      return 'messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, not "system" as an input message role.';
    }
    if (m['role'] !== 'user' && m['role'] !== 'assistant')
      return `messages.${i}.role: Input should be 'user' or 'assistant'`;
    if (typeof m['content'] !== 'string' && !Array.isArray(m['content'])) {
      return `messages.${i}.content: Input should be a valid list`;
    }
    const problem = Array.isArray(m['content'])
      ? validateBlocks(m['content'], m['role'], `messages.${i}.content`)
      : undefined;
    if (problem) return problem;
  }
  return (
    validateToolPairs(msgs as Record<string, unknown>[]) ??
    validateFinalAssistant(msgs as Record<string, unknown>[])
  );
}

function validateTools(tools: unknown, choice: unknown): string | undefined {
  if (tools !== undefined) {
    if (!Array.isArray(tools)) return 'tools: Input should be a valid list';
    for (const [i, tool] of tools.entries()) {
      if (!isRecord(tool)) return `tools.${i}: Input should be a valid dictionary`;
      if (typeof tool['name'] !== 'string' || !TOOL_NAME.test(tool['name']))
        return `tools.${i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'`;
      if (!isRecord(tool['input_schema'])) return `tools.${i}.custom.input_schema: Field required`;
      if (tool['input_schema']['type'] !== 'object')
        return `tools.${i}.custom.input_schema.type: Input should be 'object'`;
    }
  }
  if (choice === undefined) return undefined;
  if (!isRecord(choice) || !['auto', 'any', 'tool', 'none'].includes(choice['type'] as string)) {
    return "tool_choice: Input tag found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'";
  }
  if (choice['type'] === 'tool') {
    if (typeof choice['name'] !== 'string') return 'tool_choice.tool.name: Field required';
    const names = Array.isArray(tools) ? tools.map((t: Record<string, unknown>) => t['name']) : [];
    if (!names.includes(choice['name'])) return `Tool '${choice['name']}' not found in provided tools`;
  }
  return undefined;
}

function validateBlocks(blocks: unknown[], role: unknown, at: string): string | undefined {
  for (const [j, block] of blocks.entries()) {
    const where = `${at}.${j}`;
    if (!isRecord(block)) return `${where}: Input should be a valid dictionary`;
    switch (block['type']) {
      case 'text':
        if (typeof block['text'] !== 'string') return `${where}.text.text: Input should be a valid string`;
        if (block['text'] === '') return 'messages: text content blocks must be non-empty';
        break;
      case 'image': {
        const source = block['source'];
        if (!isRecord(source)) return `${where}.image.source: Field required`;
        if (source['type'] === 'base64') {
          if (!IMAGE_TYPES.includes(source['media_type'] as string)) {
            return `${where}.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'`;
          }
          if (typeof source['data'] !== 'string' || !BASE64.test(source['data']))
            return `${where}.image.source.base64: The image was specified using the image/png media type, but the image data is not valid base64`;
        } else if (source['type'] === 'url') {
          if (typeof source['url'] !== 'string' || !/^https?:\/\//.test(source['url']))
            return `${where}.image.source.url.url: Only HTTP and HTTPS URLs are supported`;
        } else
          return `${where}.image.source: Input tag does not match any of the expected tags: 'base64', 'url', 'file'`;
        break;
      }
      case 'tool_use':
        if (role !== 'assistant') return `${where}: tool_use blocks can only be in assistant messages`;
        if (typeof block['id'] !== 'string' || typeof block['name'] !== 'string' || !isRecord(block['input']))
          return `${where}.tool_use: id, name and input are required`;
        break;
      case 'tool_result':
        if (role !== 'user') return `${where}: tool_result blocks can only be in user messages`;
        if (typeof block['tool_use_id'] !== 'string')
          return `${where}.tool_result.tool_use_id: Field required`;
        break;
      default:
        return `${where}: Input tag '${String(block['type'])}' found using 'type' does not match any of the expected tags`;
    }
  }
  return undefined;
}

const toolUseIds = (content: unknown, type: 'tool_use' | 'tool_result') =>
  Array.isArray(content)
    ? (content as Block[])
        .filter((b) => b['type'] === type)
        .map((b) => (type === 'tool_use' ? b['id'] : b['tool_use_id']) as string)
    : [];

/** Every tool_use is answered in the next (user) turn, and every tool_result answers one. */
function validateToolPairs(msgs: Record<string, unknown>[]): string | undefined {
  for (const [i, m] of msgs.entries()) {
    const results = toolUseIds(m['content'], 'tool_result');
    const asked = i > 0 ? toolUseIds(msgs[i - 1]!['content'], 'tool_use') : [];
    const stray = results.filter((id) => !asked.includes(id));
    if (stray.length > 0) {
      return `messages.${i}.content.0: unexpected \`tool_use_id\` found in \`tool_result\` blocks: ${stray.join(', ')}. Each \`tool_result\` block must have a corresponding \`tool_use\` block in the previous message.`;
    }
    const uses = toolUseIds(m['content'], 'tool_use');
    if (uses.length === 0 || i === msgs.length - 1) continue;
    const answered = toolUseIds(msgs[i + 1]!['content'], 'tool_result');
    const missing = uses.filter((id) => !answered.includes(id));
    if (missing.length > 0) {
      return `messages.${i + 1}: \`tool_use\` ids were found without \`tool_result\` blocks immediately after: ${missing.join(', ')}. Each \`tool_use\` block must have a corresponding \`tool_result\` block in the next message.`;
    }
  }
  return undefined;
}

function validateFinalAssistant(msgs: Record<string, unknown>[]): string | undefined {
  const last = msgs[msgs.length - 1]!;
  if (last['role'] !== 'assistant') return undefined;
  const content = last['content'];
  const text =
    typeof content === 'string' ? content : textOf(Array.isArray(content) ? content.slice(-1) : []);
  return /\s$/.test(text)
    ? 'messages: final assistant content cannot end with trailing whitespace'
    : undefined;
}
