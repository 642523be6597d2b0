// The gateway-side library (src/gateway/client.ts) in front of a tiny backend: answers are
// cached for as long as the server's Cache-Control allows, a revoked token is refused as soon
// as its event arrives although its answer was cached for a minute, and without the feed
// nothing is cached (every request asks the server).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { issueToken, makeClient, type TestClient } from '../support/fixtures.ts';
import { createGatewayClient, type GatewayClient } from '../../src/gateway/client.ts';

/** A backend protected by the gateway client: 200 with the token's client_id, or 401. */
async function protectedBackend(km: GatewayClient): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const token = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
    const answer = token ? km.introspect(token) : Promise.resolve({ active: false as const });
    answer.then((a) => {
      res.writeHead(a.active ? 200 : 401, { 'content-type': 'application/json' });
      res.end(JSON.stringify(a.active ? { client_id: a.client_id } : { error: 'invalid_token' }));
    }, () => {
      res.writeHead(503);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

const until = async (what: string, condition: () => boolean | Promise<boolean>, ms = 15_000) => {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('gateway client library', () => {
  let database: TestDatabase;
  let km: TestServer;
  let app: TestClient;
  let gateway: TestClient;
  const closers: (() => unknown)[] = [];

  before(async () => {
    database = await createTestDatabase();
    km = await startTestServer(database.url);
    app = await makeClient(database.db, { scope: ['read'] });
    gateway = await makeClient(database.db, { introspectAny: true, scope: ['introspect'] });
  });
  after(async () => {
    for (const close of closers.reverse()) await close();
    await km?.stop();
    await database?.drop();
  });

  const call = (backend: string, token: string) => fetch(`${backend}/orders`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.status);

  it('caches an active answer, and refuses the token as soon as it is revoked, long before the cached answer would expire', async () => {
    const client = createGatewayClient({ issuer: km.url, credentials: { clientId: gateway.id, clientSecret: gateway.secret } });
    closers.push(() => client.close());
    const backend = await protectedBackend(client);
    closers.push(() => new Promise((r) => backend.server.close(r)));
    await until('the feed to connect', () => client.following);

    const token = await issueToken(km.url, app, 'read');
    assert.equal(await call(backend.url, token), 200);
    assert.equal(await call(backend.url, token), 200);
    assert.deepEqual(client.stats, { fetched: 1, cached: 1, revocations: 0 });

    const revokedAt = Date.now();
    assert.equal((await postForm(`${km.url}/revoke`, { token }, { basic: app.basic })).status, 200);
    await until('the revoked token to be refused', async () => (await call(backend.url, token)) === 401);
    const latency = Date.now() - revokedAt;
    assert.equal(client.stats.revocations, 1);
    // The server said the answer could be kept for 60 s: only the event can have dropped it.
    assert.ok(latency < 60_000);
    process.stderr.write(`gateway client: revoked token refused ${latency} ms after /revoke answered\n`);
    assert.equal(await call(backend.url, await issueToken(km.url, app, 'read')), 200);
  });

  it('a bearer with the introspect scope works as the gateway\'s credentials too', async () => {
    const bearer = await issueToken(km.url, gateway, 'introspect');
    const client = createGatewayClient({ issuer: km.url, credentials: { bearer } });
    closers.push(() => client.close());
    await until('the feed to connect', () => client.following);
    const token = await issueToken(km.url, app, 'read');
    assert.equal((await client.introspect(token)).active, true);
    assert.equal((await client.introspect('forged')).active, false);
  });

  it('without the feed nothing is cached: every request asks the server', async () => {
    // A proxy that lets introspection through but cuts the event stream.
    const cutFeed: typeof fetch = (input, init) => String(input).endsWith('/revocations')
      ? Promise.reject(new Error('connection refused by the test proxy'))
      : fetch(input, init);
    const errors: unknown[] = [];
    const client = createGatewayClient({ issuer: km.url, credentials: { clientId: gateway.id, clientSecret: gateway.secret }, fetch: cutFeed, onFeedError: (e) => errors.push(e) });
    closers.push(() => client.close());
    await until('a failed feed attempt', () => errors.length > 0);
    const token = await issueToken(km.url, app, 'read');
    for (let i = 0; i < 3; i++) assert.equal((await client.introspect(token)).active, true);
    assert.equal(client.following, false);
    assert.deepEqual(client.stats, { fetched: 3, cached: 0, revocations: 0 });
  });
});
