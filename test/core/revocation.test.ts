// Token revocation (RFC 7009).
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { basicHeader, postForm } from '../support/http.ts';
import { issueToken, makeClient, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { Browser, pkcePair, runCodeFlow } from '../support/browserless.ts';

const REDIRECT = 'https://spa.example/cb';

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

  it('no client authentication at all → 401 invalid_client with a Basic challenge (RFC 6749 §5.2)', async () => {
    const token = await issueToken(server.url, owner);
    const res = await postForm(`${server.url}/revoke`, { token });
    assert.equal(res.status, 401);
    assert.deepEqual(res.json, { error: 'invalid_client', error_description: 'no client authentication mechanism provided' });
    assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm="[^"]+", error="invalid_client"/);
    assert.equal((await introspect(token, owner)).json.active, true);
  });

  it('Basic credentials with NUL, invalid UTF-8 or an empty secret → 401 invalid_client, never a 500', async () => {
    const token = await issueToken(server.url, owner);
    for (const credentials of [Buffer.from(`${owner.id}\0:${owner.secret}`), Buffer.from(`${owner.id}%00:${owner.secret}`),
      Buffer.from(`${owner.id}%FF:${owner.secret}`), Buffer.concat([Buffer.from(`${owner.id}:`), Buffer.from([0xc3, 0x28])]), Buffer.from(`${owner.id}:`)]) {
      const res = await postForm(`${server.url}/revoke`, { token }, { headers: { authorization: `Basic ${credentials.toString('base64')}` } });
      assert.equal(res.status, 401, res.text);
      assert.equal(res.json.error, 'invalid_client');
      assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm=/);
    }
    assert.equal((await introspect(token, owner)).json.active, true);
  });

  it('a confidential client must authenticate: its client_id alone is 401 invalid_client', async () => {
    const token = await issueToken(server.url, owner);
    const res = await postForm(`${server.url}/revoke`, { token, client_id: owner.id });
    assert.equal(res.status, 401);
    assert.equal(res.json.error, 'invalid_client');
    assert.equal((await introspect(token, owner)).json.active, true);
  });

  describe('a public client (RFC 7009 §2.1: client_id only)', () => {
    let spa: TestClient;
    let otherSpa: TestClient;
    let alice: TestUser;
    let gateway: TestClient;
    let tokens: { access_token: string; refresh_token: string };

    const signInWith = async (client: TestClient) => {
      const { verifier, challenge } = pkcePair();
      const back = await runCodeFlow(new Browser(server.url), {
        clientId: client.id, redirectUri: REDIRECT, scope: 'read', username: alice.username, password: alice.password, challenge,
      });
      const res = await postForm(`${server.url}/token`, {
        grant_type: 'authorization_code', code: back.searchParams.get('code')!, redirect_uri: REDIRECT, client_id: client.id, code_verifier: verifier,
      });
      assert.equal(res.status, 200, res.text);
      return res.json as { access_token: string; refresh_token: string };
    };

    before(async () => {
      const spec = { grantTypes: ['authorization_code', 'refresh_token'], scope: ['read'], redirectUris: [REDIRECT], authMethod: 'none' as const };
      spa = await makeClient(database.db, spec);
      otherSpa = await makeClient(database.db, spec);
      alice = await makeUser(database.db, 'alice');
      gateway = await makeClient(database.db, { introspectAny: true, scope: [] });
    });
    beforeEach(async () => {
      tokens = await signInWith(spa);
    });

    it('revokes its own access token with its client_id alone', async () => {
      const res = await postForm(`${server.url}/revoke`, { token: tokens.access_token, client_id: spa.id });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.text, '');
      assert.deepEqual((await introspect(tokens.access_token, gateway)).json, { active: false });
    });

    it('revokes its own refresh token, and the grant with it', async () => {
      const res = await postForm(`${server.url}/revoke`, { token: tokens.refresh_token, client_id: spa.id, token_type_hint: 'refresh_token' });
      assert.equal(res.status, 200, res.text);
      const refresh = await postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: spa.id });
      assert.equal(refresh.status, 400);
      assert.equal(refresh.json.error, 'invalid_grant');
    });

    it("cannot revoke another client's token, confidential or public", async () => {
      const confidential = await issueToken(server.url, owner);
      const res = await postForm(`${server.url}/revoke`, { token: confidential, client_id: spa.id });
      assert.equal(res.status, 400);
      assert.equal(res.json.error, 'invalid_grant');
      assert.equal((await introspect(confidential, owner)).json.active, true);
      const other = await postForm(`${server.url}/revoke`, { token: tokens.access_token, client_id: otherSpa.id });
      assert.equal(other.status, 400);
      assert.equal(other.json.error, 'invalid_grant');
      assert.equal((await introspect(tokens.access_token, gateway)).json.active, true);
    });

    it('an unknown or disabled client_id, a secret, or an empty Basic secret → 401 invalid_client', async () => {
      const unknown = await postForm(`${server.url}/revoke`, { token: tokens.access_token, client_id: 'no-such-client' });
      assert.equal(unknown.status, 401);
      assert.equal(unknown.json.error, 'invalid_client');
      const withSecret = await postForm(`${server.url}/revoke`, { token: tokens.access_token, client_id: spa.id, client_secret: 'anything' });
      assert.equal(withSecret.status, 401);
      assert.equal(withSecret.json.error, 'invalid_client');
      const emptyBasic = await postForm(`${server.url}/revoke`, { token: tokens.access_token }, { headers: { authorization: basicHeader(spa.id, '') } });
      assert.equal(emptyBasic.status, 401);
      assert.equal(emptyBasic.json.error, 'invalid_client');
      const disabled = await makeClient(database.db, { grantTypes: ['authorization_code'], scope: ['read'], redirectUris: [REDIRECT], authMethod: 'none' });
      await database.db.updateTable('clients').set({ disabled: true }).where('client_id', '=', disabled.id).execute();
      const off = await postForm(`${server.url}/revoke`, { token: 'x', client_id: disabled.id });
      assert.equal(off.status, 401);
      assert.equal((await introspect(tokens.access_token, gateway)).json.active, true, 'still active after the refusals');
    });
  });
});
