// RFC 9701: with `Accept: application/token-introspection+jwt`, /introspect answers with a JWT
// signed by the server's key (verifiable with /jwks): typ token-introspection+jwt, iss, aud =
// the caller's client_id, iat, and the RFC 7662 object in token_introspection; no top-level sub
// or exp. JSON stays the default; errors stay JSON; the metadata names the algorithm.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { getJson, postForm } from '../support/http.ts';
import { issueToken, makeClient, type TestClient } from '../support/fixtures.ts';
import { rotateSigningKeys } from '../../src/keys/signing-keys.ts';
import { changeSigningKeys } from '../../src/store/signing-key-changes.ts';

const JWT_TYPE = 'application/token-introspection+jwt';

describe('JWT introspection responses (RFC 9701)', () => {
  let database: TestDatabase;
  let server: TestServer;
  let app: TestClient;
  let gateway: TestClient;
  let bearerClient: TestClient;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    app = await makeClient(database.db, { scope: ['read'] });
    gateway = await makeClient(database.db, { introspectAny: true, scope: [] });
    bearerClient = await makeClient(database.db, { scope: ['introspect'] });
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const jwks = async () => (await getJson(`${server.url}/jwks`)).json as JSONWebKeySet;
  const ask = (token: string, headers: Record<string, string>, by: TestClient | null = gateway) =>
    postForm(`${server.url}/introspect`, { token }, { ...(by ? { basic: by.basic } : {}), headers });

  it('signs the RFC 7662 answer for the caller; it verifies with /jwks and matches the JSON answer', async () => {
    const token = await issueToken(server.url, app, 'read');
    const plain = await ask(token, { accept: 'application/json' });
    const before = Math.floor(Date.now() / 1000);
    const res = await ask(token, { accept: JWT_TYPE });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.headers.get('content-type'), JWT_TYPE);
    assert.equal(res.headers.get('cache-control'), 'private, max-age=60');
    assert.match(res.headers.get('vary') ?? '', /Accept/);
    // RFC 7515 §7.1 compact form: three base64url parts, no padding; the header has only these members.
    assert.match(res.text, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    const header = decodeProtectedHeader(res.text);
    assert.deepEqual(Object.keys(header).sort(), ['alg', 'kid', 'typ']);
    assert.equal(header.typ, 'token-introspection+jwt');
    assert.equal(header.alg, 'RS256');
    const { payload } = await jwtVerify(res.text, createLocalJWKSet(await jwks()), {
      issuer: server.config.issuer, audience: gateway.id, typ: 'token-introspection+jwt', algorithms: ['RS256'],
    });
    assert.deepEqual(Object.keys(payload).sort(), ['aud', 'iat', 'iss', 'token_introspection']);
    assert.ok(payload.iat! >= before && payload.iat! <= before + 60);
    assert.deepEqual(payload.token_introspection, plain.json);
  });

  it('an inactive token is token_introspection {"active": false}, not cached', async () => {
    const res = await ask('no-such-token', { accept: JWT_TYPE });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const { payload } = await jwtVerify(res.text, createLocalJWKSet(await jwks()), { audience: gateway.id });
    assert.deepEqual(payload.token_introspection, { active: false });
  });

  it('follows Accept: q-values choose, and no Accept (or */*) is JSON', async () => {
    const token = await issueToken(server.url, app, 'read');
    for (const [accept, expected] of [
      [`application/json;q=0.5, ${JWT_TYPE}`, JWT_TYPE],
      [`${JWT_TYPE};q=0.5, application/json`, 'application/json; charset=utf-8'],
      ['*/*', 'application/json; charset=utf-8'],
    ] as const) {
      assert.equal((await ask(token, { accept })).headers.get('content-type'), expected, accept);
    }
    const none = await postForm(`${server.url}/introspect`, { token }, { basic: gateway.basic });
    assert.equal(none.headers.get('content-type'), 'application/json; charset=utf-8');
  });

  it('a client_id with quotes and backslashes (any visible ASCII may be one) is the audience, verbatim: it cannot reach the header', async () => {
    const odd = await makeClient(database.db, { introspectAny: true, scope: [] });
    const id = 'gw "}.{"alg":"none","kid":"x\\';
    await database.db.updateTable('clients').set({ client_id: id }).where('client_id', '=', odd.id).execute();
    const token = await issueToken(server.url, app, 'read');
    const res = await ask(token, { accept: JWT_TYPE }, { ...odd, id, basic: [id, odd.secret] });
    assert.equal(res.status, 200, res.text);
    const { payload, protectedHeader } = await jwtVerify(res.text, createLocalJWKSet(await jwks()), { audience: id, typ: 'token-introspection+jwt', algorithms: ['RS256'] });
    assert.deepEqual(Object.keys(protectedHeader).sort(), ['alg', 'kid', 'typ']);
    assert.equal(payload.aud, id);
  });

  it('a bearer caller is the audience: the client its token was issued to', async () => {
    const bearer = await issueToken(server.url, bearerClient, 'introspect');
    const token = await issueToken(server.url, app, 'read');
    const res = await ask(token, { accept: JWT_TYPE, authorization: `Bearer ${bearer}` }, null);
    assert.equal(res.status, 200, res.text);
    const { payload } = await jwtVerify(res.text, createLocalJWKSet(await jwks()), { audience: bearerClient.id });
    assert.equal((payload.token_introspection as { client_id: string }).client_id, app.id);
  });

  it('is for gateways only: a client asking about its own token gets 406, JSON', async () => {
    const token = await issueToken(server.url, app, 'read');
    const res = await ask(token, { accept: JWT_TYPE }, app);
    assert.equal(res.status, 406, res.text);
    assert.deepEqual(res.json, { error: 'invalid_request', error_description: 'JWT introspection responses are for gateways: a client with introspect_any, or a bearer token with the introspect scope' });
    assert.equal((await ask(token, { accept: 'application/json' }, app)).json.active, true);
  });

  it('refusals stay JSON errors', async () => {
    const res = await postForm(`${server.url}/introspect`, { token: 'x' }, { basic: [gateway.id, 'wrong'], headers: { accept: JWT_TYPE } });
    assert.equal(res.status, 401);
    assert.deepEqual(res.json, { error: 'invalid_client', error_description: 'client authentication failed' });
  });

  it('the metadata advertises the algorithm, and after a key rotation the answer is signed with the new key', async () => {
    const meta = (await getJson(`${server.url}/.well-known/oauth-authorization-server`)).json;
    assert.deepEqual(meta.introspection_signing_alg_values_supported, ['RS256']);
    // As keymgr rotates: under the lock, announced to the running instances.
    const rotated = await changeSigningKeys(database.db, () => rotateSigningKeys(server.keysDir, 3630));
    const token = await issueToken(server.url, app, 'read');
    const deadline = Date.now() + 15_000;
    for (;;) {
      const res = await ask(token, { accept: JWT_TYPE });
      if (decodeProtectedHeader(res.text).kid === rotated.kid) {
        await jwtVerify(res.text, createLocalJWKSet(await jwks()), { audience: gateway.id });
        break;
      }
      assert.ok(Date.now() < deadline, 'never signed with the new key');
      await new Promise((r) => setTimeout(r, 200));
    }
  });
});
