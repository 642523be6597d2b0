// JWT access tokens are recorded as part of being created, whatever led there: every access
// token the server hands out introspects active and can be revoked. The engine is reached only
// through the documented paths, spelled exactly: a case or trailing-slash variant of an
// endpoint is a 404 and issues nothing.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { basicHeader, postForm, rawRequest } from '../support/http.ts';
import { makeClient, makeScope, makeUser, type TestClient } from '../support/fixtures.ts';

describe('JWT access tokens are recorded wherever they are issued', () => {
  let database: TestDatabase;
  let server: TestServer;
  let jwtClient: TestClient;
  let userClient: TestClient;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    jwtClient = await makeClient(database.db, { scope: ['read'], tokenFormat: 'jwt' });
    await makeScope(database.db, 'profile');
    userClient = await makeClient(database.db, { grantTypes: ['password', 'refresh_token'], scope: ['profile'], tokenFormat: 'jwt' });
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const introspect = (token: string, client: TestClient) => postForm(`${server.url}/introspect`, { token }, { basic: client.basic });
  const form = 'grant_type=client_credentials&scope=read';

  for (const path of ['/TOKEN', '/Token', '/token/', '/token//', '/%74oken', '/./token', '/token;x', '//token']) {
    it(`POST ${path} reaches no endpoint: 404, and no token is issued`, async () => {
      const before = await database.db.selectFrom('tokens').select((e) => e.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
      const res = await rawRequest(server.url, { method: 'POST', target: path, body: form, headers: {
        'content-type': 'application/x-www-form-urlencoded', authorization: basicHeader(...jwtClient.basic),
      } });
      assert.equal(res.status, 404, res.text);
      assert.deepEqual(JSON.parse(res.text), { error: 'invalid_request', error_description: 'no such endpoint' });
      const after = await database.db.selectFrom('tokens').select((e) => e.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
      assert.equal(after.n, before.n);
    });
  }

  for (const [method, path] of [['POST', '/INTROSPECT'], ['POST', '/introspect/'], ['POST', '/Revoke'], ['GET', '/JWKS'], ['GET', '/jwks/'], ['GET', '/Authorize'], ['GET', '/authorize/'], ['GET', '/.well-known/OPENID-configuration']] as const) {
    it(`${method} ${path} is not an endpoint (404)`, async () => {
      const res = await rawRequest(server.url, { method, target: path, body: method === 'POST' ? 'token=x' : undefined,
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicHeader(...jwtClient.basic) } });
      assert.equal(res.status, 404, res.text);
    });
  }

  it('the client-credentials JWT from /token is recorded: active, then revoked', async () => {
    const res = await postForm(`${server.url}/token`, form, { basic: jwtClient.basic });
    assert.equal(res.status, 200);
    assert.equal(res.json.access_token.split('.').length, 3);
    assert.equal((await introspect(res.json.access_token, jwtClient)).json.active, true);
    assert.equal((await postForm(`${server.url}/revoke`, { token: res.json.access_token }, { basic: jwtClient.basic })).status, 200);
    assert.deepEqual((await introspect(res.json.access_token, jwtClient)).json, { active: false });
  });

  it('JWTs of the password grant and of a refresh are recorded too', async () => {
    const user = await makeUser(database.db, 'lena');
    const first = await postForm(`${server.url}/token`, { grant_type: 'password', username: 'lena', password: user.password, scope: 'profile' }, { basic: userClient.basic });
    assert.equal(first.status, 200, first.text);
    const refreshed = await postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: first.json.refresh_token }, { basic: userClient.basic });
    assert.equal(refreshed.status, 200, refreshed.text);
    for (const token of [first.json.access_token, refreshed.json.access_token]) {
      assert.equal(token.split('.').length, 3);
      const seen = await introspect(token, userClient);
      assert.equal(seen.json.active, true);
      assert.equal(seen.json.username, 'lena');
    }
  });
});
