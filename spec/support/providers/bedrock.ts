/**
 * Loopback mock of the AWS Bedrock runtime's Converse API: POST /model/{modelId}/converse
 * (JSON) and POST /model/{modelId}/converse-stream (AWS event stream framing,
 * application/vnd.amazon.eventstream). Its `url` is the endpoint root (no `/v1`), like
 * https://bedrock-runtime.REGION.amazonaws.com. Wire formats, headers and error bodies follow
 * the service; see spec/fixtures/providers/bedrock/ for reference transcripts.
 *
 * Authentication like AWS, when the mock has `credentials`: the SigV4 signature is verified by
 * signing the request again with @smithy/signature-v4 (403 MissingAuthenticationTokenException,
 * IncompleteSignatureException, UnrecognizedClientException for an unknown key id or session
 * token, InvalidSignatureException for a wrong signature, scope or an expired date). The mock
 * sees the parsed JSON body, so the payload hash is checked against the body re-serialized
 * compactly (what JSON.stringify sends).
 *
 * Requests are validated like Converse (alternating roles starting with user, no blank text,
 * images by base64 bytes in png/jpeg/gif/webp, tool blocks only with a toolConfig, inference
 * limits), with the service's wording. A model id without a dot is unknown (400).
 *
 * Tool calls: when the request declares tools and the last user turn has text (not only tool
 * results), the model calls a tool when the text names a declared tool, or when toolChoice is
 * `any` (first tool) or `tool` (that tool). The input has each schema property set to a fixed
 * value by type (string "mock", number 1, boolean true). After a tool result it answers text.
 *
 * Faults: content_filter answers stopReason `content_filtered` with no content; no_usage drops
 * `usage`; cut_stream sends that many event messages and drops the connection (a Converse
 * stream has no terminator besides its last `metadata` event); `nextStreamException` makes the
 * next stream end with an exception message after some events.
 */
import { createHash, randomUUID } from 'node:crypto';
import { EventStreamCodec } from '@smithy/eventstream-codec';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { fromUtf8, toUtf8 } from '@smithy/util-utf8';
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
  pause,
  randomId,
  sendJson,
  startMockServer,
} from './shared';

export interface AwsTestCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface BedrockMockOptions extends MockOptions {
  /** When set, requests must be SigV4-signed with these credentials. */
  credentials?: AwsTestCredentials;
  /** Region the signature must be scoped to, default us-east-1. */
  region?: string;
}

export interface BedrockMock extends ProviderMock {
  /** The next stream sends `afterEvents` event messages, then an exception message. */
  nextStreamException(afterEvents: number, exceptionType: string, message: string): void;
}

const codec = new EventStreamCodec(toUtf8, fromUtf8);
const sha256 = Hash.bind(null, 'sha256');
const IMAGE_FORMATS = new Set(['png', 'jpeg', 'gif', 'webp']);
const REQUEST_FIELDS = new Set([
  'messages',
  'system',
  'inferenceConfig',
  'toolConfig',
  'guardrailConfig',
  'additionalModelRequestFields',
  'additionalModelResponseFieldPaths',
  'promptVariables',
  'requestMetadata',
  'performanceConfig',
]);
// Bedrock pads stream events with a `p` field of varying length, so sizes do not reveal content.
const PADDING = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const SIGNATURE_MISMATCH =
  'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.';
const MAX_CLOCK_SKEW_MS = 5 * 60 * 1000;

interface AwsError {
  status: number;
  type: string;
  message: string;
}

const awsError = (status: number, type: string, message: string): AwsError => ({ status, type, message });
const invalid = (message: string) => awsError(400, 'ValidationException', message);

/** The error headers of the service: the error name (with Coral's namespace) and a request id. */
function errorHeaders(type: string): Record<string, string> {
  return {
    'x-amzn-errortype': `${type}:http://internal.amazon.com/coral/com.amazon.bedrock/`,
    'x-amzn-requestid': randomUUID(),
  };
}

const ERRORS: Record<number, [string, string]> = {
  400: ['ValidationException', 'Malformed input request, please reformat your input and try again.'],
  403: ['AccessDeniedException', "You don't have access to the model with the specified model ID."],
  404: [
    'ResourceNotFoundException',
    'Could not resolve the foundation model from the provided model identifier.',
  ],
  408: ['ModelTimeoutException', 'Model has timed out in processing the request. Try your request again.'],
  424: [
    'ModelErrorException',
    'The system encountered an unexpected error during processing. Try your request again.',
  ],
  429: ['ThrottlingException', 'Too many requests, please wait before trying again.'],
  500: [
    'InternalServerException',
    'The system encountered an unexpected error during processing. Try your request again.',
  ],
  503: ['ServiceUnavailableException', 'Bedrock is unable to process your request.'],
};

export async function startBedrockMock(options: BedrockMockOptions = {}): Promise<BedrockMock> {
  const region = options.region ?? 'us-east-1';
  const exceptions: { afterEvents: number; type: string; message: string }[] = [];

  function headers(): Record<string, string> {
    return { 'x-amzn-requestid': randomUUID() };
  }

  function errorFor(status: number): ErrorAnswer {
    const [type, message] = ERRORS[status] ?? (status >= 500 ? ERRORS[500]! : ERRORS[400]!);
    return { body: { message }, headers: errorHeaders(type) };
  }

  function fail(ex: Exchange, error: AwsError): Promise<void> {
    return sendJson(ex, error.status, errorHeaders(error.type), { message: error.message });
  }

  async function handle(ex: Exchange): Promise<void> {
    if (options.credentials) {
      const problem = await verifySignature(ex, options.credentials, region);
      if (problem) return fail(ex, problem);
    }
    const match = /^\/model\/([^/]+)\/(converse|converse-stream)$/.exec(ex.path);
    if (ex.method !== 'POST' || !match) {
      return fail(ex, awsError(404, 'UnknownOperationException', 'Unknown operation'));
    }
    const modelId = decodeURIComponent(match[1]!);
    if (!modelId.includes('.')) return fail(ex, invalid('The provided model identifier is invalid.'));
    if (ex.bodyInvalid || !isRecord(ex.body)) {
      return fail(ex, awsError(400, 'SerializationException', 'Unable to parse the request body as JSON.'));
    }
    const problem = validate(ex.body);
    if (problem) return fail(ex, invalid(problem));
    const answer = answerFor(ex, ex.body);
    if (match[2] === 'converse') return sendJson(ex, 200, headers(), converseBody(ex, answer));
    return sendEventStream(ex, headers(), streamEvents(ex, answer), exceptions.shift());
  }

  const mock = await startMockServer({ headers, errorFor, handle }, options);
  return {
    url: mock.url.replace(/\/v1$/, ''),
    requests: mock.requests,
    nextFault: (fault) => mock.nextFault(fault),
    setFault: (fault) => mock.setFault(fault),
    setAnswer: (text) => mock.setAnswer(text),
    reset() {
      exceptions.length = 0;
      mock.reset();
    },
    close: () => mock.close(),
    nextStreamException(afterEvents, type, message) {
      exceptions.push({ afterEvents, type, message });
    },
  };
}

/** Checks the SigV4 signature by signing the request again; the error AWS would answer, if any. */
async function verifySignature(
  ex: Exchange,
  credentials: AwsTestCredentials,
  region: string,
): Promise<AwsError | undefined> {
  const authorization = header(ex, 'authorization');
  if (!authorization)
    return awsError(403, 'MissingAuthenticationTokenException', 'Missing Authentication Token');
  const parts =
    /^AWS4-HMAC-SHA256 Credential=([^,]+), ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(
      authorization,
    );
  const amzDate = header(ex, 'x-amz-date');
  if (!parts || !amzDate) {
    return awsError(
      403,
      'IncompleteSignatureException',
      `Authorization header requires 'Credential', 'Signature', 'SignedHeaders' and a valid 'X-Amz-Date' parameter.`,
    );
  }
  const [keyId, day, scopeRegion, service, terminator] = parts[1]!.split('/');
  if (keyId !== credentials.accessKeyId) {
    return awsError(
      403,
      'UnrecognizedClientException',
      'The security token included in the request is invalid.',
    );
  }
  const token = header(ex, 'x-amz-security-token');
  if (credentials.sessionToken !== undefined && token !== credentials.sessionToken) {
    return awsError(
      403,
      'UnrecognizedClientException',
      'The security token included in the request is invalid.',
    );
  }
  if (scopeRegion !== region || service !== 'bedrock' || terminator !== 'aws4_request') {
    return awsError(
      403,
      'InvalidSignatureException',
      `Credential should be scoped to a valid region and to service 'bedrock'.`,
    );
  }
  const signedAt = parseAmzDate(amzDate);
  if (signedAt === undefined || day !== amzDate.slice(0, 8)) {
    return awsError(403, 'IncompleteSignatureException', 'Date must be in ISO-8601 basic format.');
  }
  if (Math.abs(Date.now() - signedAt.getTime()) > MAX_CLOCK_SKEW_MS) {
    return awsError(
      403,
      'InvalidSignatureException',
      `Signature expired: ${amzDate} is out of the allowed time window.`,
    );
  }
  const signedHeaders = parts[2]!.split(';');
  if (!signedHeaders.includes('host')) return awsError(403, 'InvalidSignatureException', SIGNATURE_MISMATCH);

  const body = ex.body === undefined ? '' : JSON.stringify(ex.body);
  const bodyHash = createHash('sha256').update(body).digest('hex');
  const claimedHash = header(ex, 'x-amz-content-sha256');
  if (claimedHash !== undefined && claimedHash !== bodyHash) {
    return awsError(403, 'InvalidSignatureException', SIGNATURE_MISMATCH);
  }
  const signed: Record<string, string> = {};
  for (const name of signedHeaders) signed[name] = header(ex, name) ?? '';
  const url = new URL(ex.req.url ?? '/', 'http://mock');
  const signer = new SignatureV4({
    service: 'bedrock',
    region,
    credentials: {
      accessKeyId: credentials.accessKeyId,
      secretAccessKey: credentials.secretAccessKey,
      ...(signedHeaders.includes('x-amz-security-token') && token ? { sessionToken: token } : {}),
    },
    sha256,
    applyChecksum: signedHeaders.includes('x-amz-content-sha256'),
  });
  const expected = await signer.sign(
    {
      method: ex.method,
      protocol: 'http:',
      hostname: 'mock',
      path: ex.path,
      query: Object.fromEntries(url.searchParams),
      headers: signed,
      body,
    },
    { signingDate: signedAt },
  );
  const expectedSignature = /Signature=([0-9a-f]{64})$/.exec(expected.headers.authorization ?? '')?.[1];
  return expectedSignature === parts[3]
    ? undefined
    : awsError(403, 'InvalidSignatureException', SIGNATURE_MISMATCH);
}

function parseAmzDate(value: string): Date | undefined {
  const m = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/.exec(value);
  return m ? new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`) : undefined;
}

/** The first problem of a Converse request, worded like the service; undefined when valid. */
function validate(body: Record<string, unknown>): string | undefined {
  for (const key of Object.keys(body)) {
    if (!REQUEST_FIELDS.has(key)) {
      return `Malformed input request: extraneous key [${key}] is not permitted, please reformat your input and try again.`;
    }
  }
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0) {
    return 'A conversation must start with a user message. Try again with a conversation that starts with a user message.';
  }
  const hasTools = isRecord(body.toolConfig) && Array.isArray(body.toolConfig.tools);
  for (const [i, message] of messages.entries()) {
    if (!isRecord(message) || (message.role !== 'user' && message.role !== 'assistant')) {
      return `1 validation error detected: Value at 'messages.${i + 1}.member.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]`;
    }
    if (i === 0 && message.role !== 'user') {
      return 'A conversation must start with a user message. Try again with a conversation that starts with a user message.';
    }
    if (i > 0 && (messages[i - 1] as Record<string, unknown>).role === message.role) {
      return 'A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.';
    }
    if (!Array.isArray(message.content) || message.content.length === 0) {
      return `The content field in the Message object at messages.${i} is empty. Add a ContentBlock object to the content field and try again.`;
    }
    for (const [j, block] of message.content.entries()) {
      const problem = validateBlock(block, `messages.${i}.content.${j}`, hasTools);
      if (problem) return problem;
    }
  }
  if (body.system !== undefined) {
    if (!Array.isArray(body.system) || !body.system.every((b) => isRecord(b) && typeof b.text === 'string')) {
      return 'The system field must be a list of SystemContentBlock objects.';
    }
  }
  const inference = body.inferenceConfig;
  if (inference !== undefined) {
    if (!isRecord(inference)) return 'The inferenceConfig field must be an object.';
    const { maxTokens, temperature, topP, stopSequences } = inference;
    if (maxTokens !== undefined && !(Number.isInteger(maxTokens) && (maxTokens as number) >= 1)) {
      return "1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1";
    }
    for (const [name, value] of [
      ['temperature', temperature],
      ['topP', topP],
    ] as const) {
      if (value !== undefined && !(typeof value === 'number' && value >= 0 && value <= 1)) {
        return `1 validation error detected: Value at 'inferenceConfig.${name}' failed to satisfy constraint: Member must have value less than or equal to 1`;
      }
    }
    if (
      stopSequences !== undefined &&
      !(Array.isArray(stopSequences) && stopSequences.every((s) => typeof s === 'string'))
    ) {
      return 'The stopSequences field must be a list of strings.';
    }
  }
  if (body.toolConfig !== undefined) {
    const tools = isRecord(body.toolConfig) ? body.toolConfig.tools : undefined;
    if (!Array.isArray(tools) || tools.length === 0)
      return 'The toolConfig field must contain at least one tool.';
    for (const tool of tools) {
      const spec = isRecord(tool) ? tool.toolSpec : undefined;
      if (
        !isRecord(spec) ||
        typeof spec.name !== 'string' ||
        !isRecord(spec.inputSchema) ||
        !isRecord(spec.inputSchema.json)
      ) {
        return 'The toolSpec of each tool needs a name and an inputSchema with a json schema.';
      }
    }
  }
  return undefined;
}

function validateBlock(block: unknown, at: string, hasTools: boolean): string | undefined {
  if (!isRecord(block) || Object.keys(block).length !== 1) {
    return `The ContentBlock object at ${at} must set exactly one of its members.`;
  }
  if ('text' in block) {
    if (typeof block.text !== 'string' || block.text.trim() === '') {
      return `The text field in the ContentBlock object at ${at} is blank. Add text to the text field, and try again.`;
    }
    return undefined;
  }
  if ('image' in block) {
    const image = block.image;
    const bytes = isRecord(image) && isRecord(image.source) ? image.source.bytes : undefined;
    if (!isRecord(image) || !IMAGE_FORMATS.has(String(image.format))) {
      return `The format of the image at ${at} must be one of png, jpeg, gif, webp.`;
    }
    if (typeof bytes !== 'string' || bytes === '' || !/^[A-Za-z0-9+/]+={0,2}$/.test(bytes)) {
      return `The image bytes at ${at} are not valid base64.`;
    }
    return undefined;
  }
  if ('toolUse' in block || 'toolResult' in block) {
    if (!hasTools)
      return 'The toolConfig field must be defined when using toolUse and toolResult content blocks.';
    const use = block.toolUse ?? block.toolResult;
    if (!isRecord(use) || typeof use.toolUseId !== 'string')
      return `The tool block at ${at} needs a toolUseId.`;
    return undefined;
  }
  return `The ContentBlock object at ${at} has an unsupported member.`;
}

interface Answer {
  text: string;
  pieces: string[];
  toolUse?: { toolUseId: string; name: string; input: Record<string, unknown> };
  stopReason: string;
  inputTokens: number;
  outputTokens: number;
}

/** Words of every text the model reads: system, text blocks and tool results. */
function inputTokens(body: Record<string, unknown>): number {
  let words = 0;
  for (const block of (body.system as { text: string }[] | undefined) ?? []) words += countTokens(block.text);
  for (const message of body.messages as { content: Record<string, unknown>[] }[]) {
    for (const block of message.content) words += countTokens(blockText(block));
  }
  return words;
}

function blockText(block: Record<string, unknown>): string {
  if (typeof block.text === 'string') return block.text;
  const result = block.toolResult;
  if (isRecord(result) && Array.isArray(result.content)) {
    return result.content
      .map((c: unknown) => (isRecord(c) && typeof c.text === 'string' ? c.text : ''))
      .join(' ');
  }
  return '';
}

function answerFor(ex: Exchange, body: Record<string, unknown>): Answer {
  const messages = body.messages as { role: string; content: Record<string, unknown>[] }[];
  const last = messages[messages.length - 1]!;
  const lastText = last.content
    .map((b) => (typeof b.text === 'string' ? b.text : ''))
    .filter((t) => t !== '')
    .join('\n');
  const input = inputTokens(body);
  const tool = last.role === 'user' && lastText !== '' ? toolToCall(body.toolConfig, lastText) : undefined;
  if (ex.plan.contentFilter) {
    return { text: '', pieces: [], stopReason: 'content_filtered', inputTokens: input, outputTokens: 0 };
  }
  if (tool) {
    const toolUse = { toolUseId: `tooluse_${randomId(22)}`, name: tool.name, input: tool.input };
    const outputTokens = countTokens(JSON.stringify(toolUse.input)) + 1;
    return { text: '', pieces: [], toolUse, stopReason: 'tool_use', inputTokens: input, outputTokens };
  }
  const inference = isRecord(body.inferenceConfig) ? body.inferenceConfig : {};
  let text = ex.answer ?? defaultAnswer(lastText || last.content.map(blockText).join(' '));
  let stopReason = 'end_turn';
  const stops = (inference.stopSequences as string[] | undefined) ?? [];
  const cut = Math.min(...stops.map((s) => text.indexOf(s)).filter((i) => i >= 0));
  if (Number.isFinite(cut)) {
    text = text.slice(0, cut);
    stopReason = 'stop_sequence';
  }
  const limited = limitAnswer(text, inference.maxTokens as number | undefined);
  if (limited.truncated) stopReason = 'max_tokens';
  return {
    text: limited.text,
    pieces: limited.pieces,
    stopReason,
    inputTokens: input,
    outputTokens: limited.pieces.length,
  };
}

/** The tool the model calls, if the request makes it call one (see the header comment). */
function toolToCall(
  toolConfig: unknown,
  text: string,
): { name: string; input: Record<string, unknown> } | undefined {
  if (!isRecord(toolConfig) || !Array.isArray(toolConfig.tools)) return undefined;
  const specs = toolConfig.tools.map((t) => (t as { toolSpec: Record<string, unknown> }).toolSpec);
  const choice = isRecord(toolConfig.toolChoice) ? toolConfig.toolChoice : {};
  const forced = isRecord(choice.tool) ? choice.tool.name : undefined;
  const spec =
    specs.find((s) => s.name === forced) ??
    specs.find((s) => new RegExp(`\\b${String(s.name).replace(/\W/g, '\\$&')}\\b`).test(text)) ??
    (isRecord(choice.any) ? specs[0] : undefined);
  if (!spec) return undefined;
  const schema = (spec.inputSchema as { json: Record<string, unknown> }).json;
  const input: Record<string, unknown> = {};
  for (const [name, prop] of Object.entries(isRecord(schema.properties) ? schema.properties : {})) {
    const type = isRecord(prop) ? prop.type : undefined;
    input[name] =
      type === 'string'
        ? 'mock'
        : type === 'number' || type === 'integer'
          ? 1
          : type === 'boolean'
            ? true
            : null;
  }
  return { name: String(spec.name), input };
}

function usageOf(answer: Answer): Record<string, number> {
  return {
    inputTokens: answer.inputTokens,
    outputTokens: answer.outputTokens,
    totalTokens: answer.inputTokens + answer.outputTokens,
  };
}

function converseBody(ex: Exchange, answer: Answer): Record<string, unknown> {
  const content: Record<string, unknown>[] = [];
  if (answer.text !== '') content.push({ text: answer.text });
  if (answer.toolUse) content.push({ toolUse: answer.toolUse });
  return {
    output: { message: { role: 'assistant', content } },
    stopReason: answer.stopReason,
    ...(ex.plan.noUsage ? {} : { usage: usageOf(answer) }),
    metrics: { latencyMs: Math.max(1, Date.now() - ex.receivedAt) },
  };
}

interface StreamEvent {
  type: string;
  payload: Record<string, unknown>;
}

function streamEvents(ex: Exchange, answer: Answer): StreamEvent[] {
  const events: StreamEvent[] = [{ type: 'messageStart', payload: { role: 'assistant' } }];
  let index = 0;
  if (answer.pieces.length > 0) {
    for (const text of answer.pieces) {
      events.push({ type: 'contentBlockDelta', payload: { contentBlockIndex: index, delta: { text } } });
    }
    events.push({ type: 'contentBlockStop', payload: { contentBlockIndex: index } });
    index += 1;
  }
  if (answer.toolUse) {
    const { toolUseId, name, input } = answer.toolUse;
    events.push({
      type: 'contentBlockStart',
      payload: { contentBlockIndex: index, start: { toolUse: { toolUseId, name } } },
    });
    // The input arrives as pieces of its JSON text.
    const json = JSON.stringify(input);
    const half = Math.ceil(json.length / 2);
    for (const piece of [json.slice(0, half), json.slice(half)].filter((p) => p !== '')) {
      events.push({
        type: 'contentBlockDelta',
        payload: { contentBlockIndex: index, delta: { toolUse: { input: piece } } },
      });
    }
    events.push({ type: 'contentBlockStop', payload: { contentBlockIndex: index } });
  }
  events.push({ type: 'messageStop', payload: { stopReason: answer.stopReason } });
  events.push({
    type: 'metadata',
    payload: {
      ...(ex.plan.noUsage ? {} : { usage: usageOf(answer) }),
      metrics: { latencyMs: Math.max(1, Date.now() - ex.receivedAt) },
    },
  });
  return events;
}

/** One event message of a ConverseStream answer, padded like the service's. */
export function encodeEvent(type: string, payload: Record<string, unknown>): Uint8Array {
  const padded = { ...payload, p: PADDING.slice(0, 1 + Math.floor(Math.random() * PADDING.length)) };
  return codec.encode({
    headers: {
      ':event-type': { type: 'string', value: type },
      ':content-type': { type: 'string', value: 'application/json' },
      ':message-type': { type: 'string', value: 'event' },
    },
    body: fromUtf8(JSON.stringify(padded)),
  });
}

/** An exception message, as the service sends one inside a stream. */
export function encodeException(type: string, message: string): Uint8Array {
  return codec.encode({
    headers: {
      ':exception-type': { type: 'string', value: type },
      ':content-type': { type: 'string', value: 'application/json' },
      ':message-type': { type: 'string', value: 'exception' },
    },
    body: fromUtf8(JSON.stringify({ message })),
  });
}

/** Writes the event messages one at a time, `chunkDelayMs` apart, honouring the stream faults. */
async function sendEventStream(
  ex: Exchange,
  headers: Record<string, string>,
  events: StreamEvent[],
  exception: { afterEvents: number; type: string; message: string } | undefined,
): Promise<void> {
  const { res, plan } = ex;
  res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream', ...headers, ...plan.headers });
  res.flushHeaders();
  if (plan.slowFirstByteMs > 0 && !(await pause(plan.slowFirstByteMs, ex.signal))) return;
  const frames = events.map((e) => encodeEvent(e.type, e.payload));
  if (exception) {
    frames.splice(exception.afterEvents, frames.length, encodeException(exception.type, exception.message));
  }
  const cutAt = plan.cutAfterChunks;
  for (let i = 0; i < frames.length; i++) {
    if (cutAt !== undefined && i >= cutAt) {
      res.destroy();
      return;
    }
    if (i > 0 && !(await pause(plan.chunkDelayMs, ex.signal))) return;
    await new Promise<void>((resolve) => (res.destroyed ? resolve() : res.write(frames[i], () => resolve())));
  }
  if (cutAt !== undefined) {
    res.destroy();
    return;
  }
  res.end();
}
