// Client credentials grant (RFC 6749 §4.4) with opaque and JWT access tokens (RFC 9068).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { makeClient, type TestClient } from '../support/fixtures.ts';

describe('client credentials grant', () => {
  let database: TestDatabase;
  let server: TestServer;
  let opaque: TestClient;
  let jwt: TestClient;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    opaque = await makeClient(database.db, { scope: ['read', 'write'] });
    jwt = await makeClient(database.db, { scope: ['read', 'write'], tokenFormat: 'jwt' });
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  it('issues an opaque bearer token with the requested scope (RFC 6749 §5.1)', async () => {
    const res = await postForm(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { basic: opaque.basic });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    assert.equal(res.json.token_type, 'Bearer');
    assert.equal(res.json.scope, 'read');
    assert.equal(res.json.expires_in, 3600);
    assert.equal(typeof res.json.access_token, 'string');
    assert.ok(res.json.access_token.length >= 43, 'opaque token carries at least 256 bits');
    assert.equal(res.json.access_token.split('.').length, 1, 'opaque, not a JWT');
    assert.equal(res.json.refresh_token, undefined, 'no refresh token for client credentials (§4.4.3)');
  });

  it('grants several scopes, and no scope when none is asked for', async () => {
    const both = await postForm(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read write' }, { basic: opaque.basic });
    assert.equal(both.status, 200);
    assert.deepEqual(both.json.scope.split(' ').sort(), ['read', 'write']);
    const none = await postForm(`${server.url}/token`, { grant_type: 'client_credentials' }, { basic: opaque.basic });
    assert.equal(none.status, 200);
    assert.equal(none.json.scope, undefined);
  });

  it('drops scopes the client may not have and says so in the response (§3.3)', async () => {
    const res = await postForm(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read admin' }, { basic: opaque.basic });
    assert.equal(res.status, 200);
    assert.equal(res.json.scope, 'read');
  });

  it('answers invalid_scope when no requested scope is allowed (§5.2)', async () => {
    const res = await postForm(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'admin' }, { basic: opaque.basic });
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'invalid_scope');
  });

  it('authenticates with client_secret_post when the client is registered for it', async () => {
    const post = await makeClient(database.db, { authMethod: 'client_secret_post' });
    const ok = await postForm(`${server.url}/token`, { grant_type: 'client_credentials', client_id: post.id, client_secret: post.secret });
    assert.equal(ok.status, 200, ok.text);
    // Like oidc-provider and Keycloak, the two secret methods are one family: either works.
    const viaBasic = await postForm(`${server.url}/token`, { grant_type: 'client_credentials' }, { basic: post.basic });
    assert.equal(viaBasic.status, 200);
    const wrong = await postForm(`${server.url}/token`, { grant_type: 'client_credentials', client_id: post.id, client_secret: `${post.secret}x` });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json.error, 'invalid_client');
  });

  it('refuses a client whose grant types do not include client_credentials (unauthorized_client)', async () => {
    const other = await makeClient(database.db, { grantTypes: ['refresh_token'] });
    const res = await postForm(`${server.url}/token`, { grant_type: 'client_credentials' }, { basic: other.basic });
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'unauthorized_client');
  });

  it('issues a JWT access token that verifies against /jwks (RFC 9068)', async () => {
    const res = await postForm(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read write' }, { basic: jwt.basic });
    assert.equal(res.status, 200, res.text);
    const token = res.json.access_token as string;
    assert.equal(decodeProtectedHeader(token).typ, 'at+jwt');
    const jwks = createRemoteJWKSet(new URL(`${server.url}/jwks`));
    const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer: server.config.issuer, audience: server.config.issuer, typ: 'at+jwt' });
    assert.equal(protectedHeader.alg, 'RS256');
    assert.equal(payload.client_id, jwt.id);
    assert.equal(payload.sub, jwt.id);
    assert.equal(payload.scope, 'read write');
    assert.equal(typeof payload.jti, 'string');
    assert.equal((payload.exp as number) - (payload.iat as number), 3600);
  });

  it('a JWT whose signature was altered does not verify against /jwks', async () => {
    const res = await postForm(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { basic: jwt.basic });
    const [h, p, s] = (res.json.access_token as string).split('.');
    const forged = `${h}.${p}.${s!.slice(0, -4)}AAAA`;
    const jwks = createRemoteJWKSet(new URL(`${server.url}/jwks`));
    await assert.rejects(jwtVerify(forged, jwks));
  });
});
