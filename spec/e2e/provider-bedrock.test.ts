/**
 * End to end with AWS Bedrock: the official `openai` client → the dev gateway (Kong emulator →
 * suite server → relay → Bedrock adapter, SigV4-signed) → the Bedrock Converse mock, which
 * verifies every signature. Needs the build (`npx tsc -p .`).
 */
import OpenAI from 'openai';
import { PNG } from '../support/provider-fixtures';
import { type BedrockMock, startBedrockMock } from '../support/providers';
import {
  failure,
  messageOf,
  type ProviderGateway,
  startProviderGateway,
  streamedToolCall,
  TIMEOUT_MS,
  user,
  weatherTool,
} from './provider-gateway';

const CREDENTIALS = {
  accessKeyId: 'AKIAE2EBEDROCK000001',
  secretAccessKey: 'e2eSecretAccessKey/0123456789abcdefghijklm',
};
const REGION = 'us-east-1';
const MODEL = 'anthropic.claude-3-5-sonnet-20240620-v1:0';
const WEATHER_TOOL = weatherTool({
  type: 'object',
  properties: { city: { type: 'string' } },
  required: ['city'],
});

interface SentConverse {
  system?: { text: string }[];
  messages: { role: string; content: Record<string, unknown>[] }[];
  inferenceConfig?: Record<string, unknown>;
  toolConfig?: Record<string, unknown>;
}

describe('e2e: AWS Bedrock through the dev gateway', () => {
  let mock: BedrockMock;
  let gateway: ProviderGateway;
  let client: OpenAI;
  const sent = (i = 0) => mock.requests[i]!.body as SentConverse;

  beforeAll(async () => {
    mock = await startBedrockMock({ credentials: CREDENTIALS, region: REGION });
    const route = (name: string, secret: string) => ({
      name,
      targets: [
        {
          name: 'claude-bedrock',
          provider: 'bedrock',
          model: MODEL,
          base_url: mock.url,
          aws: { region: REGION, access_key_id: CREDENTIALS.accessKeyId, secret_access_key: secret },
        },
      ],
    });
    gateway = await startProviderGateway([
      route('bedrock', CREDENTIALS.secretAccessKey),
      route('bedrock-wrong-key', 'wrongSecretAccessKey/0123456789abcdefghijk'),
    ]);
    client = gateway.client('bedrock');
  }, TIMEOUT_MS);
  afterAll(async () => {
    await gateway?.close();
    await mock?.close();
  }, TIMEOUT_MS);
  beforeEach(() => mock.reset());

  it('answers a chat completion from Converse, with a signed request and never the client key', async () => {
    const answer = await client.chat.completions.create({
      model: 'claude-bedrock',
      messages: [user('hello there')],
    });
    expect(answer.object).toBe('chat.completion');
    expect(answer.id).toMatch(/^chatcmpl-/);
    expect(answer.choices[0]!.message).toMatchObject({
      role: 'assistant',
      content: expect.stringMatching(/mock answer/),
    });
    expect(answer.choices[0]!.finish_reason).toBe('stop');
    expect(answer.usage).toEqual({
      prompt_tokens: 2,
      completion_tokens: expect.any(Number),
      total_tokens: 2 + answer.usage!.completion_tokens,
    });

    const request = mock.requests[0]!;
    expect(request.path).toBe('/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse');
    expect(request.headers.authorization).toMatch(
      new RegExp(
        `^AWS4-HMAC-SHA256 Credential=${CREDENTIALS.accessKeyId}/\\d{8}/${REGION}/bedrock/aws4_request, `,
      ),
    );
    expect(JSON.stringify(request.headers)).not.toContain('client-key');
    expect(sent()).toEqual({ messages: [{ role: 'user', content: [{ text: 'hello there' }] }] });
  });

  it('sends the system prompt as system and every turn in order, with the limits asked', async () => {
    const answer = await client.chat.completions.create({
      model: 'claude-bedrock',
      messages: [
        { role: 'system', content: 'You are terse.' },
        user('first question'),
        { role: 'assistant', content: 'first answer' },
        user('second question'),
      ],
      max_completion_tokens: 3,
      temperature: 0.5,
      top_p: 0.9,
      stop: ['never'],
    });
    expect(answer.choices[0]!.finish_reason).toBe('length');
    expect(answer.usage!.completion_tokens).toBe(3);
    expect(sent()).toEqual({
      system: [{ text: 'You are terse.' }],
      messages: [
        { role: 'user', content: [{ text: 'first question' }] },
        { role: 'assistant', content: [{ text: 'first answer' }] },
        { role: 'user', content: [{ text: 'second question' }] },
      ],
      inferenceConfig: { maxTokens: 3, temperature: 0.5, topP: 0.9, stopSequences: ['never'] },
    });
  });

  it('streams chunk by chunk from the AWS event stream, usage only when asked', async () => {
    mock.setFault({ kind: 'chunk_delay', ms: 40 });
    mock.setAnswer('one two three four five');
    const arrivals: number[] = [];
    let text = '';
    let role: string | undefined;
    let finish: string | null | undefined;
    const stream = await client.chat.completions.create({
      model: 'claude-bedrock',
      messages: [user('stream this please')],
      stream: true,
    });
    for await (const chunk of stream) {
      arrivals.push(Date.now());
      expect(chunk.object).toBe('chat.completion.chunk');
      expect(chunk.usage).toBeUndefined();
      role ??= chunk.choices[0]?.delta.role;
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(role).toBe('assistant');
    expect(text).toBe('one two three four five');
    expect(finish).toBe('stop');
    // Each word arrived in its own chunk: the gateway did not wait for the whole answer.
    expect(arrivals.length).toBeGreaterThanOrEqual(5);
    expect(mock.requests[0]!.path).toMatch(/\/converse-stream$/);

    const withUsage = await client.chat.completions.create({
      model: 'claude-bedrock',
      messages: [user('stream this please')],
      stream: true,
      stream_options: { include_usage: true },
    });
    const usages = [];
    for await (const chunk of withUsage) if (chunk.usage) usages.push(chunk);
    expect(usages).toHaveLength(1);
    expect(usages[0]!.choices).toEqual([]);
    expect(usages[0]!.usage).toEqual({ prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 });
  });

  it('returns a tool call, then answers with the tool result', async () => {
    const first = await client.chat.completions.create({
      model: 'claude-bedrock',
      messages: [user('Use get_weather for Paris')],
      tools: [WEATHER_TOOL],
    });
    const choice = first.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBeNull();
    const call = choice.message.tool_calls![0]!;
    expect(call).toEqual({
      id: expect.stringMatching(/^tooluse_/),
      type: 'function',
      function: { name: 'get_weather', arguments: '{"city":"mock"}' },
    });
    expect(sent().toolConfig).toEqual({
      tools: [
        {
          toolSpec: {
            name: 'get_weather',
            description: 'Weather of a city',
            inputSchema: { json: WEATHER_TOOL.function.parameters },
          },
        },
      ],
    });

    const second = await client.chat.completions.create({
      model: 'claude-bedrock',
      tools: [WEATHER_TOOL],
      messages: [
        user('Use get_weather for Paris'),
        choice.message,
        { role: 'tool', tool_call_id: call.id, content: 'sunny, 21 C' },
      ],
    });
    expect(second.choices[0]!.finish_reason).toBe('stop');
    expect(sent(1).messages.slice(1)).toEqual([
      {
        role: 'assistant',
        content: [{ toolUse: { toolUseId: call.id, name: 'get_weather', input: { city: 'mock' } } }],
      },
      { role: 'user', content: [{ toolResult: { toolUseId: call.id, content: [{ text: 'sunny, 21 C' }] } }] },
    ]);
  });

  it('streams a tool call with its arguments in pieces', async () => {
    const stream = await client.chat.completions.create({
      model: 'claude-bedrock',
      messages: [user('hello')],
      tools: [WEATHER_TOOL],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      stream: true,
    });
    const call = await streamedToolCall(stream);
    expect(call.indexes.every((i) => i === 0)).toBe(true);
    expect(call.id).toMatch(/^tooluse_/);
    expect(call.pieces).toBeGreaterThan(1);
    expect(JSON.parse(call.args)).toEqual({ city: 'mock' });
    expect(call.finish).toBe('tool_calls');
    expect(sent().toolConfig!.toolChoice).toEqual({ tool: { name: 'get_weather' } });
  });

  it('sends an image part as base64 bytes', async () => {
    const answer = await client.chat.completions.create({
      model: 'claude-bedrock',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is in this image?' },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } },
          ],
        },
      ],
    });
    expect(answer.choices[0]!.message.content).toMatch(/mock answer/);
    expect(sent().messages[0]!.content[1]).toEqual({ image: { format: 'png', source: { bytes: PNG } } });
  });

  it('refuses an image by URL and JSON mode with 400 naming the feature and the target, sending nothing', async () => {
    const byUrl = await failure(
      client.chat.completions.create({
        model: 'claude-bedrock',
        messages: [
          {
            role: 'user',
            content: [{ type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }],
          },
        ],
      }),
    );
    expect(byUrl).toBeInstanceOf(OpenAI.BadRequestError);
    expect(messageOf(byUrl)).toMatch(
      /^images by http\(s\) URL .* is not supported by target claude-bedrock \(bedrock\)$/,
    );
    const json = await failure(
      client.chat.completions.create({
        model: 'claude-bedrock',
        messages: [user('hi')],
        response_format: { type: 'json_object' },
      }),
    );
    expect(json.status).toBe(400);
    expect(messageOf(json)).toBe(
      'response_format json_object is not supported by target claude-bedrock (bedrock)',
    );
    const many = await failure(
      client.chat.completions.create({ model: 'claude-bedrock', messages: [user('hi')], n: 2 }),
    );
    expect(many.code).toBe('AIGW_UNSUPPORTED_FEATURE');
    expect(messageOf(many)).toBe('n > 1 is not supported by target claude-bedrock (bedrock)');
    const embeddings = await failure(client.embeddings.create({ model: 'claude-bedrock', input: 'hi' }));
    expect(embeddings.status).toBe(400);
    expect(messageOf(embeddings)).toBe(
      'the embeddings endpoint is not supported by target claude-bedrock (bedrock)',
    );
    expect(mock.requests).toHaveLength(0);
  });

  it("gives Bedrock's errors in OpenAI's shape with Bedrock's status", async () => {
    mock.nextFault({ kind: 'status', status: 429, headers: { 'retry-after': '2' } });
    const throttled = await failure(
      client.chat.completions.create({ model: 'claude-bedrock', messages: [user('hi')] }),
    );
    expect(throttled).toBeInstanceOf(OpenAI.RateLimitError);
    expect(throttled.status).toBe(429);
    expect(throttled.code).toBe('ThrottlingException');
    expect(throttled.type).toBe('rate_limit_error');
    expect(messageOf(throttled)).toBe(
      'ThrottlingException: Too many requests, please wait before trying again.',
    );
    expect(throttled.headers?.get('retry-after')).toBe('2');

    mock.nextFault({ kind: 'status', status: 503 });
    const unavailable = await failure(
      client.chat.completions.create({ model: 'claude-bedrock', messages: [user('hi')] }),
    );
    expect(unavailable.status).toBe(503);
    expect(unavailable.type).toBe('server_error');
    expect(unavailable.code).toBe('ServiceUnavailableException');
  });

  it('answers a wrong secret key with 403 InvalidSignatureException, the key never shown', async () => {
    const wrong = gateway.client('bedrock-wrong-key');
    const denied = await failure(
      wrong.chat.completions.create({ model: 'claude-bedrock', messages: [user('hi')] }),
    );
    expect(denied).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect(denied.status).toBe(403);
    expect(denied.type).toBe('authentication_error');
    expect(denied.code).toBe('InvalidSignatureException');
    expect(JSON.stringify(denied.error)).not.toContain('wrongSecretAccessKey');
    expect(mock.requests).toHaveLength(1);
  });

  it('breaks the stream on an exception message: the client sees an error, not a clean end', async () => {
    mock.nextStreamException(3, 'modelStreamErrorException', 'The model stopped producing output.');
    const stream = await client.chat.completions.create({
      model: 'claude-bedrock',
      messages: [user('stream this please')],
      stream: true,
    });
    let text = '';
    const read = async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    };
    await expect(read()).rejects.toThrow(/modelStreamErrorException/);
    expect(text.length).toBeGreaterThan(0);
  });
});
