/**
 * The proxy path of the driver (no plugin servers needed): route matching, upstream URI and
 * headers, streaming both ways without buffering the response, cut upstream bodies, and
 * Kong's error responses (404, 502, 504).
 */
import http from 'node:http';
import net from 'node:net';
import { KongDriver } from '../../support/kong';
import { startUpstream, type TestUpstream } from '../../support/kong/fixtures';

const drivers: KongDriver[] = [];
const upstreams: TestUpstream[] = [];

async function driver(services: Array<Record<string, unknown>>): Promise<KongDriver> {
  const kong = await KongDriver.start({
    pluginServers: [],
    declarative: { _format_version: '3.0', services },
  });
  drivers.push(kong);
  return kong;
}

async function upstream(handler?: Parameters<typeof startUpstream>[0]): Promise<TestUpstream> {
  const u = await startUpstream(handler);
  upstreams.push(u);
  return u;
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

afterEach(async () => {
  await Promise.all(drivers.splice(0).map((d) => d.close()));
  await Promise.all(upstreams.splice(0).map((u) => u.close()));
});

test('no matching route: 404 with Kong message and request id', async () => {
  const up = await upstream();
  const kong = await driver([{ name: 's', url: up.url, routes: [{ paths: ['/v1'] }] }]);
  const res = await kong.request({ path: '/other' });
  expect(res.status).toBe(404);
  expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
  expect(res.json()).toEqual({ message: 'no Route matched with those values', request_id: res.requestId });
  expect(res.headers.server).toBe('kong/3.9.3');
  expect(res.headers['x-kong-request-id']).toMatch(/^[0-9a-f]{32}$/);
});

test('longest path prefix wins; strip_path, service path, preserve_host and X-Forwarded-* as Kong sets them', async () => {
  const up = await upstream();
  const kong = await driver([
    { name: 'short', url: `${up.url}/base`, routes: [{ name: 'r-short', paths: ['/v1'] }] },
    {
      name: 'long',
      url: `${up.url}/`,
      routes: [{ name: 'r-long', paths: ['/v1/chat'], strip_path: false, preserve_host: true }],
    },
  ]);
  await kong.request({ path: '/v1/models?x=1' });
  await kong.request({
    path: '/v1/chat/completions',
    headers: { Host: 'api.example.com:8443', 'X-Forwarded-For': '10.0.0.1' },
  });
  expect(up.requests[0].url).toBe('/base/models?x=1');
  expect(up.requests[0].headers.host).toBe(`127.0.0.1:${up.port}`);
  expect(up.requests[0].headers['x-forwarded-prefix']).toBe('/v1');
  expect(up.requests[1].url).toBe('/v1/chat/completions');
  expect(up.requests[1].headers.host).toBe('api.example.com:8443');
  expect(up.requests[1].headers['x-forwarded-for']).toBe('10.0.0.1, 127.0.0.1');
  expect(up.requests[1].headers['x-forwarded-host']).toBe('api.example.com');
  expect(up.requests[1].headers['x-forwarded-prefix']).toBeUndefined(); // strip_path off
  expect(up.requests[1].headers.via).toBe('1.1 kong/3.9.3');
});

test('the response streams through chunk by chunk, never buffered', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const up = await upstream((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    res.write('data: one\n\n');
    void gate.then(() => {
      res.write('data: two\n\n');
      res.end('data: [DONE]\n\n');
    });
  });
  const kong = await driver([{ name: 's', url: up.url, routes: [{ paths: ['/v1'] }] }]);
  const chunks: string[] = [];
  const done = new Promise<{ complete: boolean; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
    http
      .get(`${kong.url}/v1/stream`, (res) => {
        res.on('data', (c: Buffer) => {
          chunks.push(c.toString());
          // The second chunk is only written once the first reached the client.
          if (chunks.length === 1) release();
        });
        res.on('end', () => resolve({ complete: res.complete, headers: res.headers }));
      })
      .on('error', reject);
  });
  const result = await done;
  expect(chunks[0]).toBe('data: one\n\n');
  expect(chunks.join('')).toBe('data: one\n\ndata: two\n\ndata: [DONE]\n\n');
  expect(result.complete).toBe(true);
  expect(result.headers['content-type']).toBe('text/event-stream');
  expect(result.headers.via).toBe('1.1 kong/3.9.3');
});

test('the request body reaches the upstream whole, with its length', async () => {
  const up = await upstream();
  const kong = await driver([{ name: 's', url: up.url, routes: [{ paths: ['/v1'] }] }]);
  const body = 'x'.repeat(100_000);
  const res = await kong.request({
    method: 'POST',
    path: '/v1/upload',
    body,
    headers: { 'Transfer-Encoding': 'chunked' },
  });
  expect(res.status).toBe(200);
  expect(up.requests[0].body).toBe(body);
  expect(up.requests[0].headers['content-length']).toBe('100000');
  expect(up.requests[0].headers['transfer-encoding']).toBeUndefined();
});

test.each([
  ['chunked', {}],
  ['with Content-Length', { 'Content-Length': '1000' }],
])(
  'an upstream that dies mid-body (%s) leaves the client with an incomplete response',
  async (_name, headers) => {
    const up = await upstream((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream', ...headers });
      res.write('data: partial\n\n');
      setTimeout(() => res.socket?.destroy(), 50);
    });
    const kong = await driver([{ name: 's', url: up.url, routes: [{ paths: ['/v1'] }] }]);
    const res = await kong.request({ path: '/v1/stream' });
    expect(res.status).toBe(200);
    expect(res.text()).toBe('data: partial\n\n');
    expect(res.complete).toBe(false);
  },
);

test('upstream connection refused: 502 error page (text/plain by default, JSON for a JSON request)', async () => {
  const port = await closedPort();
  const kong = await driver([{ name: 's', url: `http://127.0.0.1:${port}`, routes: [{ paths: ['/v1'] }] }]);
  const plain = await kong.request({ path: '/v1/x' });
  expect(plain.status).toBe(502);
  expect(plain.headers['content-type']).toBe('text/plain; charset=utf-8');
  expect(plain.text()).toBe(
    `An invalid response was received from the upstream server\nrequest_id: ${plain.requestId}\n`,
  );
  const json = await kong.request({ path: '/v1/x', body: { model: 'm' } });
  expect(json.status).toBe(502);
  expect(json.json()).toEqual({
    message: 'An invalid response was received from the upstream server',
    request_id: json.requestId,
  });
  expect(kong.logText()).toMatch(/ECONNREFUSED while connecting to upstream/);
});

test('an upstream that does not answer within read_timeout: 504', async () => {
  const up = await upstream(() => {
    // never answers
  });
  const kong = await driver([
    { name: 's', url: up.url, read_timeout: 200, retries: 0, routes: [{ paths: ['/v1'] }] },
  ]);
  const res = await kong.request({ path: '/v1/x', headers: { Accept: 'application/json' } });
  expect(res.status).toBe(504);
  expect(res.json()).toEqual({ message: 'The upstream server is timing out', request_id: res.requestId });
});
