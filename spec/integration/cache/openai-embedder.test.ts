/** OpenAIEmbedder against the loopback OpenAI mock, and a raw server for answers of the wrong shape. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { OpenAIEmbedder } from '../../../lib/embed/openai-embedder';
import { rejection } from '../../support/errors';
import { embeddingVector, type ProviderMock, startOpenAIMock } from '../../support/providers';
import { freePort } from '../../support/redis';

const KEY = 'sk-proj-EmbedderKey0123456789abcdefXYZ';
let mock: ProviderMock;
let raw: Server;
let rawAnswer: { status: number; body: string } = { status: 200, body: '{}' };

beforeAll(async () => {
  mock = await startOpenAIMock({ apiKey: KEY });
  raw = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(rawAnswer.status, { 'content-type': 'application/json' });
      res.end(rawAnswer.body);
    });
  });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  await mock.close();
  await new Promise((resolve) => raw.close(resolve));
});

beforeEach(() => mock.reset());

const embedder = (extra: Partial<ConstructorParameters<typeof OpenAIEmbedder>[0]> = {}) =>
  new OpenAIEmbedder({
    baseUrl: mock.url,
    model: 'text-embedding-3-small',
    dimensions: 64,
    apiKey: KEY,
    timeoutMs: 2000,
    ...extra,
  });
const rawUrl = () => `http://127.0.0.1:${(raw.address() as AddressInfo).port}/v1`;

describe('OpenAIEmbedder', () => {
  it('posts {model, input, dimensions} with the key and returns unit vectors in order', async () => {
    const e = embedder();
    expect(e.id).toBe('openai:text-embedding-3-small');
    expect(e.dimensions).toBe(64);
    const [a, b] = await e.embed(['the cat sat', 'a dog ran']);
    expect(a).toHaveLength(64);
    expect(Math.hypot(...a!)).toBeCloseTo(1, 5);
    expect(Array.from(a!)).toEqual(
      embeddingVector('the cat sat', 64)
        .map((x) => Math.fround(x))
        .map((x) => expect.closeTo(x, 5)),
    );
    expect(Array.from(b!)).not.toEqual(Array.from(a!));
    const sent = mock.requests[0]!;
    expect(sent.path).toBe('/v1/embeddings');
    expect(sent.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(sent.body).toEqual({
      model: 'text-embedding-3-small',
      input: ['the cat sat', 'a dog ran'],
      dimensions: 64,
      encoding_format: 'float',
    });
    await e.close();
  });

  it('splits large inputs into batches', async () => {
    const e = embedder({ maxBatch: 2 });
    expect(await e.embed(['a', 'b', 'c', 'd', 'e'])).toHaveLength(5);
    expect(mock.requests).toHaveLength(3);
    expect(await e.embed([])).toEqual([]);
    await e.close();
  });

  it('a provider error keeps its reason and never the key', async () => {
    const e = embedder({ apiKey: 'sk-proj-WrongKey0123456789abcdefXYZ' });
    const err = await rejection(e.embed(['x']));
    expect(err.code).toBe('AIGW_UPSTREAM_ERROR');
    expect(err.message).toContain('401');
    expect(err.message).not.toContain('WrongKey0123456789');
    await e.close();
  });

  it('a slow endpoint times out', async () => {
    mock.nextFault({ kind: 'latency', ms: 500 });
    const e = embedder({ timeoutMs: 50 });
    expect((await rejection(e.embed(['x']))).code).toBe('AIGW_UPSTREAM_TIMEOUT');
    await e.close();
  });

  it('an unreachable endpoint is AIGW_UPSTREAM_UNAVAILABLE', async () => {
    const e = embedder({ baseUrl: `http://127.0.0.1:${await freePort()}/v1` });
    expect((await rejection(e.embed(['x']))).code).toBe('AIGW_UPSTREAM_UNAVAILABLE');
    await e.close();
  });

  it.each([
    ['not JSON', 'oops'],
    ['no data', '{"object":"list"}'],
    ['too few vectors', JSON.stringify({ data: [] })],
    ['a vector of another size', JSON.stringify({ data: [{ index: 0, embedding: [1, 0, 0] }] })],
    ['a bad index', JSON.stringify({ data: [{ index: 3, embedding: new Array(64).fill(0.1) }] })],
    ['a vector of strings', JSON.stringify({ data: [{ index: 0, embedding: new Array(64).fill('x') }] })],
  ])('an answer with %s is AIGW_UPSTREAM_PROTOCOL', async (_, body) => {
    rawAnswer = { status: 200, body };
    const e = embedder({ baseUrl: rawUrl() });
    expect((await rejection(e.embed(['x']))).code).toBe('AIGW_UPSTREAM_PROTOCOL');
    await e.close();
  });
});
