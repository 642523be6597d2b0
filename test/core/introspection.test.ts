// Token introspection (RFC 7662): fields, the {"active": false} cases and who may ask.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { issueToken, makeClient, makeUser, type TestClient } from '../support/fixtures.ts';
import { tokenDigest } from '../../src/store/tokens.ts';

describe('introspection', () => {
  let database: TestDatabase;
  let server: TestServer;
  let owner: TestClient;
  let jwtOwner: TestClient;
  let stranger: TestClient;
  let gateway: TestClient;
  const introspect = (token: string, by: TestClient, extra: Record<string, string> = {}) =>
    postForm(`${server.url}/introspect`, { token, ...extra }, { basic: by.basic });

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    owner = await makeClient(database.db, { scope: ['read', 'write'] });
    jwtOwner = await makeClient(database.db, { scope: ['read'], tokenFormat: 'jwt' });
    stranger = await makeClient(database.db);
    gateway = await makeClient(database.db, { introspectAny: true, scope: [] });
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  it('describes an active opaque token with the RFC 7662 §2.2 fields', async () => {
    const before = Math.floor(Date.now() / 1000);
    const token = await issueToken(server.url, owner, 'read write');
    const res = await introspect(token, owner);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    // README: a gateway may cache an active answer for introspection_cache_max_age (60 s by
    // default), less than the token's remaining hour.
    assert.equal(res.headers.get('cache-control'), 'private, max-age=60');
    const body = res.json;
    assert.equal(body.active, true);
    assert.deepEqual(body.scope.split(' ').sort(), ['read', 'write']);
    assert.equal(body.client_id, owner.id);
    assert.equal(body.token_type, 'Bearer');
    assert.equal(body.sub, owner.id);
    assert.equal(body.iss, server.config.issuer);
    assert.equal(body.aud, server.config.issuer);
    assert.ok(body.iat >= before - 1 && body.iat <= before + 60);
    assert.equal(body.nbf, body.iat);
    assert.equal(body.exp - body.iat, 3600);
    assert.equal(body.username, undefined, 'no user behind a client-credentials token');
  });

  it('describes an active JWT access token, including its jti, with values from the configuration', async () => {
    const before = Math.floor(Date.now() / 1000);
    const token = await issueToken(server.url, jwtOwner, 'read');
    const after = Math.ceil(Date.now() / 1000);
    const res = await introspect(token, jwtOwner);
    assert.equal(res.status, 200);
    const { iat, jti } = res.json;
    assert.ok(iat >= before && iat <= after, `iat ${iat} is when the token was issued (${before}…${after})`);
    assert.equal(typeof jti, 'string');
    // README: the issuer is iss; aud is the issuer too (no default_audience); exp is
    // access_token_ttl after iat; sub and client_id are the client.
    const { issuer, accessTokenTtl } = server.config;
    assert.deepEqual(res.json, {
      active: true, scope: 'read', client_id: jwtOwner.id, token_type: 'Bearer', sub: jwtOwner.id,
      iss: issuer, aud: issuer, iat, nbf: iat, exp: iat + accessTokenTtl, jti,
    });
    // And the token says the same of itself.
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
    assert.deepEqual({ jti: claims.jti, iat: claims.iat, exp: claims.exp, iss: claims.iss, aud: claims.aud }, { jti, iat, exp: iat + accessTokenTtl, iss: issuer, aud: issuer });
  });

  it('answers exactly {"active": false} for an unknown token', async () => {
    const res = await introspect('no-such-token', owner);
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, { active: false });
  });

  it('answers {"active": false} for an expired token', async () => {
    const token = await issueToken(server.url, owner);
    await database.db.updateTable('tokens').set({ expires_at: sql`now() - interval '1 second'` })
      .where('id_sha256', '=', tokenDigest(token)).execute();
    assert.deepEqual((await introspect(token, owner)).json, { active: false });
  });

  it('answers {"active": false} for a revoked token', async () => {
    const token = await issueToken(server.url, owner);
    assert.equal((await postForm(`${server.url}/revoke`, { token }, { basic: owner.basic })).status, 200);
    assert.deepEqual((await introspect(token, owner)).json, { active: false });
  });

  it('answers {"active": false} for a JWT that was altered or forged', async () => {
    const token = await issueToken(server.url, jwtOwner, 'read');
    const [h, p, s] = token.split('.');
    const payload = JSON.parse(Buffer.from(p!, 'base64url').toString());
    const widened = Buffer.from(JSON.stringify({ ...payload, scope: 'read admin' })).toString('base64url');
    assert.deepEqual((await introspect(`${h}.${widened}.${s}`, jwtOwner)).json, { active: false });
    assert.deepEqual((await introspect(`${h}.${p}.${s!.slice(0, -2)}xx`, jwtOwner)).json, { active: false });
  });

  it("does not show a client another client's token", async () => {
    const token = await issueToken(server.url, owner);
    assert.deepEqual((await introspect(token, stranger)).json, { active: false });
  });

  it('shows any token to a client flagged introspect_any (a gateway)', async () => {
    const token = await issueToken(server.url, owner);
    const res = await introspect(token, gateway);
    assert.equal(res.json.active, true);
    assert.equal(res.json.client_id, owner.id);
    const jwt = await issueToken(server.url, jwtOwner, 'read');
    assert.equal((await introspect(jwt, gateway)).json.active, true);
  });

  it('a refresh token is active only to its own client: a gateway (introspect_any) gets {"active": false} (RFC 6749 §1.5)', async () => {
    const app = await makeClient(database.db, { scope: ['read'], grantTypes: ['password', 'refresh_token'] });
    const user = await makeUser(database.db, 'refresh-intro', { params: { memoryCost: 8192, timeCost: 1, parallelism: 1 } });
    const signedIn = await postForm(`${server.url}/token`, { grant_type: 'password', username: user.username, password: user.password, scope: 'read' }, { basic: app.basic });
    assert.equal(signedIn.status, 200, signedIn.text);
    const own = await introspect(signedIn.json.refresh_token, app);
    assert.equal(own.json.active, true);
    assert.equal(own.json.token_type, 'refresh_token');
    for (const hint of [{}, { token_type_hint: 'refresh_token' }, { token_type_hint: 'access_token' }] as Record<string, string>[]) {
      const res = await introspect(signedIn.json.refresh_token, gateway, hint);
      assert.equal(res.status, 200);
      assert.deepEqual(res.json, { active: false });
      assert.equal(res.headers.get('cache-control'), 'no-store');
    }
    // The access token of the same sign-in is the gateway's to see.
    assert.equal((await introspect(signedIn.json.access_token, gateway)).json.active, true);
  });

  it('accepts token_type_hint, right or wrong (§2.1)', async () => {
    const token = await issueToken(server.url, owner);
    assert.equal((await introspect(token, owner, { token_type_hint: 'access_token' })).json.active, true);
    assert.equal((await introspect(token, owner, { token_type_hint: 'refresh_token' })).json.active, true);
  });

  it('accepts client_secret_post as well as Basic', async () => {
    const token = await issueToken(server.url, owner);
    const res = await postForm(`${server.url}/introspect`, { token, client_id: owner.id, client_secret: owner.secret });
    assert.equal(res.json.active, true);
  });

  it('requires client authentication: 401 invalid_client with a Basic challenge', async () => {
    const token = await issueToken(server.url, owner);
    const wrong = await postForm(`${server.url}/introspect`, { token }, { basic: [owner.id, 'wrong'] });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json.error, 'invalid_client');
    assert.match(wrong.headers.get('www-authenticate') ?? '', /^Basic realm="/);
    const unknown = await postForm(`${server.url}/introspect`, { token }, { basic: ['nobody', 'x'] });
    assert.equal(unknown.status, 401);
    assert.deepEqual(unknown.json, wrong.json, 'unknown client and wrong secret look the same');
    // RFC 6749 §5.2: "no client authentication included" is invalid_client too.
    const none = await postForm(`${server.url}/introspect`, { token });
    assert.equal(none.status, 401);
    assert.deepEqual(none.json, { error: 'invalid_client', error_description: 'no client authentication mechanism provided' });
    assert.match(none.headers.get('www-authenticate') ?? '', /^Basic realm="[^"]+", error="invalid_client"/);
    const malformed = await postForm(`${server.url}/introspect`, { token }, { headers: { authorization: 'Basic ###' } });
    assert.equal(malformed.status, 401);
    assert.equal(malformed.json.error, 'invalid_client');
  });

  it('Basic credentials with NUL, invalid UTF-8 or an empty secret → 401 invalid_client, never a 500', async () => {
    const token = await issueToken(server.url, owner);
    for (const credentials of [Buffer.from(`${owner.id}\0:${owner.secret}`), Buffer.from(`${owner.id}:${owner.secret}%00`),
      Buffer.from(`${owner.id}%ED%A0%80:${owner.secret}`), Buffer.concat([Buffer.from([0xff]), Buffer.from(`:${owner.secret}`)]), Buffer.from(`${owner.id}:`)]) {
      const res = await postForm(`${server.url}/introspect`, { token }, { headers: { authorization: `Basic ${credentials.toString('base64')}` } });
      assert.equal(res.status, 401, res.text);
      assert.equal(res.json.error, 'invalid_client');
      assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm=/);
    }
  });

  it('NUL or invalid UTF-8 in client_id or token in the body → 400 invalid_request, never a 500', async () => {
    for (const body of [`token=x&client_id=${owner.id}%00&client_secret=${owner.secret}`, `token=x%FF`, 'token=x&client_id=%00']) {
      const res = await postForm(`${server.url}/introspect`, body, body.includes('client_id') ? {} : { basic: owner.basic });
      assert.equal(res.status, 400, res.text);
      assert.equal(res.json.error, 'invalid_request');
    }
  });

  it('a public client cannot introspect with its client_id alone (RFC 7662 §2.1: an authorized caller)', async () => {
    const spa = await makeClient(database.db, { grantTypes: ['authorization_code'], scope: ['read'], redirectUris: ['https://spa.example/cb'], authMethod: 'none' });
    const token = await issueToken(server.url, owner);
    const res = await postForm(`${server.url}/introspect`, { token, client_id: spa.id });
    assert.equal(res.status, 401);
    assert.deepEqual(res.json, { error: 'invalid_client', error_description: 'client authentication failed' });
  });

  it('refuses a request without token, with a duplicate parameter, or not form-encoded', async () => {
    const missing = await postForm(`${server.url}/introspect`, {}, { basic: owner.basic });
    assert.equal(missing.status, 400);
    assert.equal(missing.json.error, 'invalid_request');
    const twice = await postForm(`${server.url}/introspect`, 'token=a&token=b', { basic: owner.basic });
    assert.equal(twice.status, 400);
    assert.equal(twice.json.error, 'invalid_request');
    const json = await postForm(`${server.url}/introspect`, '{"token":"a"}', { basic: owner.basic, headers: { 'content-type': 'application/json' } });
    assert.equal(json.status, 400);
    assert.equal(json.json.error, 'invalid_request');
  });
});
