// Token revocation (RFC 7009).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { issueToken, makeClient, type TestClient } from '../support/fixtures.ts';

describe('revocation', () => {
  let database: TestDatabase;
  let server: TestServer;
  let owner: TestClient;
  let jwtOwner: TestClient;
  let other: TestClient;
  const revoke = (token: string, by: TestClient, extra: Record<string, string> = {}) =>
    postForm(`${server.url}/revoke`, { token, ...extra }, { basic: by.basic });
  const introspect = (token: string, by: TestClient) => postForm(`${server.url}/introspect`, { token }, { basic: by.basic });

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    owner = await makeClient(database.db);
    jwtOwner = await makeClient(database.db, { tokenFormat: 'jwt' });
    other = await makeClient(database.db);
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  it('revokes an opaque access token: 200, then inactive (§2.2)', async () => {
    const token = await issueToken(server.url, owner);
    assert.equal((await introspect(token, owner)).json.active, true);
    const res = await revoke(token, owner, { token_type_hint: 'access_token' });
    assert.equal(res.status, 200);
    assert.equal(res.text, '');
    assert.deepEqual((await introspect(token, owner)).json, { active: false });
  });

  it('revokes a JWT access token', async () => {
    const token = await issueToken(server.url, jwtOwner);
    assert.equal((await revoke(token, jwtOwner)).status, 200);
    assert.deepEqual((await introspect(token, jwtOwner)).json, { active: false });
  });

  it('answers 200 for an unknown or already revoked token (§2.2)', async () => {
    assert.equal((await revoke('never-issued', owner)).status, 200);
    const token = await issueToken(server.url, owner);
    assert.equal((await revoke(token, owner)).status, 200);
    assert.equal((await revoke(token, owner)).status, 200);
  });

  it("refuses to revoke another client's token and leaves it active (§2.1)", async () => {
    const token = await issueToken(server.url, owner);
    const res = await revoke(token, other);
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'invalid_grant');
    assert.equal((await introspect(token, owner)).json.active, true);
  });

  it('requires client authentication and a token', async () => {
    const token = await issueToken(server.url, owner);
    const wrong = await postForm(`${server.url}/revoke`, { token }, { basic: [owner.id, 'nope'] });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json.error, 'invalid_client');
    assert.ok(wrong.headers.get('www-authenticate'));
    assert.equal((await introspect(token, owner)).json.active, true);
    const missing = await postForm(`${server.url}/revoke`, {}, { basic: owner.basic });
    assert.equal(missing.status, 400);
    assert.equal(missing.json.error, 'invalid_request');
  });
});
