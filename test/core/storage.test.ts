// What is stored and what happens when storage fails: no token or secret in clear anywhere in
// the database or the logs, and a 503 (never a token, never "active": true) without a database.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { getJson, postForm, UNAVAILABLE } from '../support/http.ts';
import { issueToken, makeClient, type TestClient } from '../support/fixtures.ts';
import { startTcpProxy, viaProxy, type TcpProxy } from '../support/tcp-proxy.ts';
import { waitFor } from '../support/wait.ts';


describe('storage', () => {
  let database: TestDatabase;
  let proxy: TcpProxy;
  let server: TestServer;
  let opaque: TestClient;
  let jwt: TestClient;

  before(async () => {
    database = await createTestDatabase();
    const target = new URL(database.url);
    proxy = await startTcpProxy(target.hostname, Number(target.port));
    server = await startTestServer(viaProxy(database.url, proxy));
    opaque = await makeClient(database.db);
    jwt = await makeClient(database.db, { tokenFormat: 'jwt' });
  });
  after(async () => {
    await server?.stop();
    await proxy?.close();
    await database?.drop();
  });

  it('keeps no token value and no client secret in clear in any table', async () => {
    const tokens = [await issueToken(server.url, opaque), await issueToken(server.url, jwt)];
    const dump = await database.dumpAllTables();
    assert.ok(dump.includes(opaque.id), 'the dump does contain the rows');
    for (const value of [...tokens, opaque.secret, jwt.secret]) {
      assert.equal(dump.includes(value), false, 'a token or secret is stored in clear');
    }
    // Nor any large piece of one (a prefix, or the JWT's signature).
    assert.equal(dump.includes(tokens[0]!.slice(0, 20)), false);
    assert.equal(dump.includes(tokens[1]!.split('.')[2]!.slice(0, 40)), false);
  });

  it('writes no token value and no client secret to the logs', async () => {
    const token = await issueToken(server.url, opaque);
    await postForm(`${server.url}/introspect`, { token }, { basic: opaque.basic });
    await postForm(`${server.url}/revoke`, { token }, { basic: opaque.basic });
    await postForm(`${server.url}/token`, { grant_type: 'client_credentials' }, { basic: [opaque.id, 'wrong-secret-value'] });
    const logs = server.logs.join('\n');
    assert.ok(logs.length > 0);
    for (const value of [token, opaque.secret, 'wrong-secret-value']) assert.equal(logs.includes(value), false);
  });

  describe('when the database is unreachable', () => {
    let token: string;
    before(async () => {
      token = await issueToken(server.url, opaque);
      await proxy.cut();
    });
    after(async () => {
      await proxy.restore();
    });

    it('/token answers 503 temporarily_unavailable and issues nothing', async () => {
      const res = await postForm(`${server.url}/token`, { grant_type: 'client_credentials' }, { basic: opaque.basic });
      assert.equal(res.status, 503, res.text);
      assert.deepEqual(res.json, UNAVAILABLE);
    });

    it('/introspect answers 503 temporarily_unavailable, never active', async () => {
      const res = await postForm(`${server.url}/introspect`, { token }, { basic: opaque.basic });
      assert.equal(res.status, 503, res.text);
      assert.deepEqual(res.json, UNAVAILABLE);
    });

    it('/revoke answers 503 temporarily_unavailable', async () => {
      const res = await postForm(`${server.url}/revoke`, { token }, { basic: opaque.basic });
      assert.equal(res.status, 503, res.text);
      assert.deepEqual(res.json, UNAVAILABLE);
    });

    it('/readyz answers 503 {"status":"database unreachable"} while /healthz stays 200 {"status":"ok"}', async () => {
      const ready = await getJson(`${server.url}/readyz`);
      assert.equal(ready.status, 503, ready.text);
      assert.deepEqual(ready.json, { status: 'database unreachable' });
      const health = await getJson(`${server.url}/healthz`);
      assert.equal(health.status, 200, health.text);
      assert.deepEqual(health.json, { status: 'ok' });
    });

    it('responses carry no stack trace or connection detail', async () => {
      const res = await postForm(`${server.url}/token`, { grant_type: 'client_credentials' }, { basic: opaque.basic });
      assert.doesNotMatch(res.text, /ECONNREFUSED|127\.0\.0\.1|\.ts:\d+|at /);
    });
  });

  it('recovers when the database comes back, and the token issued before is still good', async () => {
    const token = await issueToken(server.url, opaque);
    await proxy.cut();
    await proxy.restore();
    // A load balancer waits for /readyz, and so does this test; that no request fails once the
    // database is back is test/core/database-restart.test.ts's.
    await waitFor('/readyz to come back', async () => (await getJson(`${server.url}/readyz`)).status === 200);
    const res = await postForm(`${server.url}/introspect`, { token }, { basic: opaque.basic });
    assert.equal(res.status, 200);
    assert.equal(res.json.active, true);
  });
});
