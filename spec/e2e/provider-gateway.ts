/**
 * What the provider end-to-end tests share: the dev gateway (Kong emulator → suite server →
 * relay) with one ai-router route per entry, the official `openai` client on a route, and the
 * helpers that read what a request fails with. Needs the build (`npx tsc -p .`).
 */
import OpenAI from 'openai';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { startDevGateway } from '../../scripts/dev-gateway';
import { freePort } from '../support/redis';

export const TIMEOUT_MS = 60_000;

/** An ai-router route, served at `/<name>/v1`, with its targets as kong.yml gives them. */
export interface ProviderRoute {
  name: string;
  targets: object[];
}

export interface ProviderGateway {
  url: string;
  /** The official client on the route `name`, with a client key the provider must never see. */
  client(name: string): OpenAI;
  close(): Promise<void>;
}

/** The dev gateway with the routes given, all on one service that is the relay. */
export async function startProviderGateway(routes: ProviderRoute[]): Promise<ProviderGateway> {
  const relayPort = await freePort();
  const gateway = await startDevGateway({
    config: {
      _format_version: '3.0',
      services: [
        {
          name: 'relay',
          url: `http://127.0.0.1:${relayPort}`,
          routes: routes.map(({ name, targets }) => ({
            name,
            paths: [`/${name}/v1`],
            strip_path: false,
            plugins: [{ name: 'ai-router', config: { targets } }],
          })),
        },
      ],
    },
    port: await freePort(),
    relayPort,
    mock: false,
    env: { ...process.env, AIGW_LOG_LEVEL: 'warn' },
  });
  return {
    url: gateway.url,
    client: (name) =>
      new OpenAI({ baseURL: `${gateway.url}/${name}/v1`, apiKey: 'client-key', maxRetries: 0 }),
    close: () => gateway.close(),
  };
}

export type APIError = InstanceType<typeof OpenAI.APIError>;

/** The error a request fails with; the test fails if it succeeds. */
export async function failure(request: Promise<unknown>): Promise<APIError> {
  try {
    await request;
  } catch (err) {
    if (err instanceof OpenAI.APIError) return err;
    throw err;
  }
  throw new Error('the request succeeded');
}

/** The gateway's error message, as the body says it (the client's `message` adds the status). */
export const messageOf = (err: APIError) => (err.error as { message?: string }).message;

export const user = (content: string) => ({ role: 'user' as const, content });

/** The get_weather function tool, by default with one `location` argument. */
export function weatherTool(
  parameters: Record<string, unknown> = {
    type: 'object',
    properties: { location: { type: 'string' } },
    required: ['location'],
  },
  description = 'Weather of a city',
) {
  return { type: 'function' as const, function: { name: 'get_weather', description, parameters } };
}

/** One streamed tool call, folded from its chunks: what a client library assembles. */
export interface StreamedToolCall {
  text: string;
  id: string;
  name: string;
  /** The arguments joined, and how many chunks carried a piece of them. */
  args: string;
  pieces: number;
  /** Every tool-call index seen (a single call: all 0). */
  indexes: number[];
  finish: string | null;
}

export async function streamedToolCall(
  stream: AsyncIterable<ChatCompletionChunk>,
): Promise<StreamedToolCall> {
  const call: StreamedToolCall = {
    text: '',
    id: '',
    name: '',
    args: '',
    pieces: 0,
    indexes: [],
    finish: null,
  };
  for await (const chunk of stream) {
    const delta = chunk.choices[0]?.delta;
    call.text += delta?.content ?? '';
    for (const part of delta?.tool_calls ?? []) {
      call.indexes.push(part.index);
      call.id += part.id ?? '';
      call.name += part.function?.name ?? '';
      if (part.function?.arguments) {
        call.args += part.function.arguments;
        call.pieces += 1;
      }
    }
    call.finish = chunk.choices[0]?.finish_reason ?? call.finish;
  }
  return call;
}
