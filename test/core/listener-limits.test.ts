// What one client may hold of a listener (README "Settings": request_timeout,
// keep_alive_timeout, max_connections). A request whose headers or body arrive slower than
// request_timeout gets 408 and its connection closed, on both listeners; a long response (a
// revocation stream) is not a slow request. Idle keep-alive connections stay for
// keep_alive_timeout. At max_connections a new connection is closed unanswered and counted,
// and one is served again once a place is free. With TLS the handshake is part of the request.
// A connection with more than 32 pipelined requests waiting is closed.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { basicHeader } from '../support/http.ts';
import { makeClient } from '../support/fixtures.ts';
import { scrapeMetrics, valueOf } from '../support/prometheus.ts';
import { MAX_PIPELINED_REQUESTS } from '../../src/http/listener-limits.ts';

const REQUEST_TIMEOUT_SECONDS = 2;
const KEEP_ALIVE_TIMEOUT_SECONDS = 20;
const MAX_CONNECTIONS = 16;
/** How long a test waits for the server to act on a deadline of a few seconds: generous, never the thing asserted. */
const PATIENCE_MS = 20_000;

/** A raw connection that records everything the server sends and when it closes. */
interface Raw {
  socket: Socket;
  received(): string;
  closed: Promise<void>;
  isClosed(): boolean;
  /** Resolves once `text` has arrived after the first `from` characters (or rejects after PATIENCE_MS). */
  waitFor(text: string, from?: number): Promise<void>;
}

async function openRaw(url: string): Promise<Raw> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  let data = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => { data += chunk; });
  socket.on('error', () => {}); // a reset is a close here; what was received is what counts
  let isClosed = false;
  const closed = new Promise<void>((resolve) => socket.once('close', () => {
    isClosed = true;
    resolve();
  }));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return {
    socket,
    received: () => data,
    closed,
    isClosed: () => isClosed,
    async waitFor(text, from = 0) {
      const deadline = Date.now() + PATIENCE_MS;
      while (!data.slice(from).includes(text)) {
        assert.ok(Date.now() < deadline, `waited ${PATIENCE_MS} ms for ${JSON.stringify(text)}; received ${JSON.stringify(data)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

/** Resolves true if the connection closed within `ms`. */
async function closesWithin(raw: Raw, ms: number): Promise<boolean> {
  let timer!: NodeJS.Timeout;
  const timeout = new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), ms); });
  const result = await Promise.race([raw.closed.then(() => true as const), timeout]);
  clearTimeout(timer);
  return result;
}

/** True once a response's headers have arrived, false if the connection closed before. */
async function answered(raw: Raw): Promise<boolean> {
  const deadline = Date.now() + PATIENCE_MS;
  for (;;) {
    if (raw.received().includes('\r\n\r\n')) return true;
    if (raw.isClosed()) return false;
    assert.ok(Date.now() < deadline, `neither answered nor closed in ${PATIENCE_MS} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function waitUntil(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + PATIENCE_MS;
  while (!condition()) {
    assert.ok(Date.now() < deadline, `waited ${PATIENCE_MS} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The status line and headers of the one response a connection received. */
function statusLine(raw: Raw): string {
  return raw.received().split('\r\n')[0]!;
}

describe('listener limits', () => {
  let database: TestDatabase;
  let server: TestServer;
  const opened: Raw[] = [];
  const open = async (url: string) => {
    const raw = await openRaw(url);
    opened.push(raw);
    return raw;
  };

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url, {
      requestTimeout: REQUEST_TIMEOUT_SECONDS, keepAliveTimeout: KEEP_ALIVE_TIMEOUT_SECONDS, maxConnections: MAX_CONNECTIONS,
    });
  });
  after(async () => {
    for (const raw of opened) raw.socket.destroy();
    await server?.stop();
    await database?.drop();
  });

  it('a body that arrives slower than request_timeout gets 408 and the connection is closed; it is not taken for a database outage', async () => {
    const unavailable = async () => valueOf(await scrapeMetrics(server.managementUrl), 'km_http_request_duration_seconds_count', { route: 'unmatched', status: '503' });
    const before = await unavailable();
    const mark = server.logMark();
    const raw = await open(server.url);
    raw.socket.write('POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=client_credentials');
    assert.ok(await closesWithin(raw, PATIENCE_MS), 'the connection was still open');
    assert.equal(statusLine(raw), 'HTTP/1.1 408 Request Timeout');
    assert.match(raw.received(), /\r\nConnection: close\r\n/i);
    await waitUntil(() => server.logsSince(mark).some((l) => l.msg === 'request cut off before its body arrived'));
    assert.deepEqual(server.logsSince(mark).filter((l) => l.msg === 'database unreachable'), []);
    assert.equal(await unavailable(), before);
  });

  it('headers that arrive slower than request_timeout get 408 too (a slowloris holds nothing)', async () => {
    const raw = await open(server.url);
    raw.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    const stillSending = setInterval(() => raw.socket.write('a'), 200);
    try {
      assert.ok(await closesWithin(raw, PATIENCE_MS), 'the connection was still open');
    } finally {
      clearInterval(stillSending);
    }
    assert.equal(statusLine(raw), 'HTTP/1.1 408 Request Timeout');
  });

  it('the management listener has the same deadline', async () => {
    const raw = await open(server.managementUrl);
    raw.socket.write('GET /management/login HTTP/1.1\r\nHost: x\r\n');
    assert.ok(await closesWithin(raw, PATIENCE_MS), 'the connection was still open');
    assert.equal(statusLine(raw), 'HTTP/1.1 408 Request Timeout');
  });

  it('with TLS, a connection that never completes its handshake is closed at request_timeout too', async () => {
    const tls = await startTestServer(database.url, { tls: true, requestTimeout: REQUEST_TIMEOUT_SECONDS });
    try {
      for (const url of [tls.url, tls.managementUrl]) {
        const raw = await open(url.replace('https:', 'http:'));
        assert.ok(await closesWithin(raw, PATIENCE_MS), `${url}: the connection was still open`);
        assert.equal(raw.received(), '');
      }
    } finally {
      await tls.stop();
    }
  });

  it(`requests pipelined on one connection: ${MAX_PIPELINED_REQUESTS} waiting are answered, one more closes the connection`, async () => {
    const request = 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n';
    const answers = (raw: Raw) => raw.received().split('HTTP/1.1 200 OK').length - 1;
    const within = await open(server.url);
    within.socket.write(request.repeat(MAX_PIPELINED_REQUESTS));
    await waitUntil(() => answers(within) === MAX_PIPELINED_REQUESTS);
    assert.equal(within.isClosed(), false);
    const beyond = await open(server.url);
    beyond.socket.write(request.repeat(100));
    assert.ok(await closesWithin(beyond, PATIENCE_MS), 'the connection was still open');
    assert.ok(answers(beyond) <= MAX_PIPELINED_REQUESTS, `${answers(beyond)} answers`);
  });

  it('a request sent in time is answered however long its response lasts: a revocation stream outlives request_timeout', async () => {
    const gateway = await makeClient(database.db, { introspectAny: true, scope: ['introspect'] });
    const raw = await open(server.url);
    raw.socket.write(`GET /revocations HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nAuthorization: ${basicHeader(...gateway.basic)}\r\n\r\n`);
    await raw.waitFor('\r\n\r\n');
    assert.equal(statusLine(raw), 'HTTP/1.1 200 OK');
    assert.equal(await closesWithin(raw, (REQUEST_TIMEOUT_SECONDS + 3) * 1000), false, `the stream was closed: ${raw.received()}`);
  });

  it('an idle keep-alive connection stays open for keep_alive_timeout (longer than Node\'s 5 s) and is then usable', async () => {
    const raw = await open(server.url);
    raw.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await raw.waitFor('\r\n\r\n');
    assert.equal(statusLine(raw), 'HTTP/1.1 200 OK');
    assert.match(raw.received(), new RegExp(`\\r\\nKeep-Alive: timeout=${KEEP_ALIVE_TIMEOUT_SECONDS}\\r\\n`, 'i'));
    assert.equal(await closesWithin(raw, 7000), false, 'the idle connection was closed');
    const first = raw.received().length;
    raw.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await raw.waitFor('\r\n\r\n', first);
    assert.ok(raw.received().slice(first).startsWith('HTTP/1.1 200 OK\r\n'), raw.received().slice(first));
  });

  it('at max_connections a new connection is closed unanswered and counted; once one closes, a new one is served', async () => {
    const before = valueOf(await scrapeMetrics(server.managementUrl), 'km_connections_dropped_total', { listener: 'public' });
    // Connections of earlier tests may still be open (the stream): fill up to the limit, each
    // one answered so that the server has surely accepted it.
    const filling: Raw[] = [];
    for (;;) {
      const raw = await open(server.url);
      raw.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      if (!await answered(raw)) break; // the first one refused: the listener is full
      filling.push(raw);
      assert.ok(filling.length <= MAX_CONNECTIONS, `${filling.length} connections were all served`);
    }
    const refused = opened.at(-1)!;
    assert.equal(refused.received(), '', 'the refused connection got an answer');
    const after = valueOf(await scrapeMetrics(server.managementUrl), 'km_connections_dropped_total', { listener: 'public' });
    assert.equal(after - before, 1);

    filling[0]!.socket.destroy();
    await filling[0]!.closed;
    const deadline = Date.now() + PATIENCE_MS;
    for (;;) {
      const raw = await open(server.url);
      raw.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      if (await answered(raw)) {
        assert.equal(statusLine(raw), 'HTTP/1.1 200 OK');
        break;
      }
      // The server may not have seen the close yet: its place is free a moment later.
      assert.ok(Date.now() < deadline, 'no connection was served after one closed');
      await new Promise((r) => setTimeout(r, 100));
    }
  });
});
