// /management/tokens/revoke, /management/clients/:clientId/revoke-tokens,
// /management/users/:username/revoke-tokens and /management/grants/:grantId/revoke: real tokens
// issued by a second instance on the same database are inactive there at once after each
// revocation; every response is checked against the served OpenAPI document.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { expectReply, managementClient, startManagementApi } from '../support/management.ts';
import { conformanceChecker } from '../support/openapi.ts';
import { issueToken, makeClient, makeScope, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { basicHeader, postForm } from '../support/http.ts';
import { post as tlsPost } from '../mtls/support.ts';
import { tokenDigest } from '../../src/store/tokens.ts';

const FAST = { memoryCost: 8192, timeCost: 1, parallelism: 1 };

describe('management API: tokens', () => {
  let database: TestDatabase;
  let server: TestServer;
  /** Another instance on the same database (plain HTTP): issues the tokens and introspects them. */
  let other: TestServer;
  let call: ReturnType<typeof managementClient>;
  let conformance: ReturnType<typeof conformanceChecker>;
  let admin: string;
  let auditor: string;
  let client: TestClient;
  let second: TestClient;
  let user: TestUser;

  before(async () => {
    ({ database, server, call, conformance, admin, auditor } = await startManagementApi({}));
    other = await startTestServer(database.url);
    await makeScope(database.db, 'read');
    client = await makeClient(database.db, { grantTypes: ['client_credentials', 'password', 'refresh_token'], scope: ['read'] });
    second = await makeClient(database.db, { grantTypes: ['client_credentials', 'password', 'refresh_token'], scope: ['read'] });
    user = await makeUser(database.db, 'tess', { params: FAST });
  });
  after(async () => {
    await other?.stop();
    await server?.stop();
    await database?.drop();
  });

  const expect = expectReply(() => ({ call, conformance, admin }));

  const signIn = async (by: TestClient = client) => {
    const res = await postForm(`${other.url}/token`, { grant_type: 'password', username: user.username, password: user.password, scope: 'read' }, { basic: by.basic });
    assert.equal(res.status, 200, res.text);
    return res.json as { access_token: string; refresh_token: string };
  };
  /** Whether the token is active at /introspect of the other instance. */
  const active = async (token: string, by: TestClient = client) => {
    const res = await postForm(`${other.url}/introspect`, { token }, { basic: by.basic });
    assert.equal(res.status, 200, res.text);
    return res.json.active === true;
  };
  /** The same question asked of the management instance itself, over its HTTPS public listener. */
  const activeHere = async (token: string, by: TestClient = client) => {
    const ca = readFileSync(join(server.keysDir, 'tls', 'server.crt'), 'utf8');
    const res = await tlsPost(`${server.url}/introspect`, { token }, { ca, headers: { authorization: basicHeader(...by.basic) } });
    assert.equal(res.status, 200, res.text);
    return (res.json as { active: boolean }).active === true;
  };

  it('revokes one token by value from the body: {revoked, kind, client_id}; inactive at once on every instance', async () => {
    const token = await issueToken(other.url, client);
    assert.equal(await active(token), true);
    assert.equal(await activeHere(token), true);
    const res = await expect(200, 'POST', '/management/tokens/revoke', { body: { token } });
    assert.deepEqual(res.json, { revoked: true, kind: 'ClientCredentials', client_id: client.id });
    assert.equal(await active(token), false);
    assert.equal(await activeHere(token), false);
  });

  it('revoking a refresh token by value takes its grant with it', async () => {
    const { access_token, refresh_token } = await signIn();
    const res = await expect(200, 'POST', '/management/tokens/revoke', { body: { token: refresh_token } });
    assert.deepEqual(res.json, { revoked: true, kind: 'RefreshToken', client_id: client.id });
    assert.equal(await active(refresh_token), false);
    assert.equal(await active(access_token), false);
  });

  it('an unknown token is 404; a missing or malformed body is 400', async () => {
    await expect(404, 'POST', '/management/tokens/revoke', { body: { token: 'no-such-token' } });
    await expect(400, 'POST', '/management/tokens/revoke', { body: {} });
    await expect(400, 'POST', '/management/tokens/revoke', { body: { token: '' } });
    await expect(400, 'POST', '/management/tokens/revoke', { body: { token: 'x', extra: 1 } });
    // A value in the query is not looked at: the body is required.
    const inUrl = await call('POST', '/management/tokens/revoke?token=abc', { authorization: admin });
    assert.equal(inUrl.status, 415);
    conformance.check('POST', '/management/tokens/revoke', 415, inUrl.json);
  });

  it('revokes every token of a client, and only of that client', async () => {
    const cc = [await issueToken(other.url, client), await issueToken(other.url, client)];
    const user1 = await signIn();
    const kept = await issueToken(other.url, second);
    const res = await expect(200, 'POST', `/management/clients/${client.id}/revoke-tokens`);
    assert.ok(res.json.revoked >= 4, `revoked ${res.json.revoked}`);
    for (const token of [...cc, user1.access_token, user1.refresh_token]) assert.equal(await active(token), false);
    assert.equal(await active(kept, second), true);
    // A refresh of a revoked grant is refused too.
    const refreshed = await postForm(`${other.url}/token`, { grant_type: 'refresh_token', refresh_token: user1.refresh_token }, { basic: client.basic });
    assert.equal(refreshed.status, 400);
    // Nothing left: a second call revokes nothing; new tokens work again.
    assert.deepEqual((await expect(200, 'POST', `/management/clients/${client.id}/revoke-tokens`)).json, { revoked: 0 });
    assert.equal(await active(await issueToken(other.url, client)), true);
    await expect(404, 'POST', '/management/clients/no-such-client/revoke-tokens');
    await expect(404, 'POST', '/management/clients/a%00b/revoke-tokens');
  });

  it('revokes every token of a user, across clients, and nothing else', async () => {
    const a = await signIn(client);
    const b = await signIn(second);
    const machine = await issueToken(other.url, client);
    const res = await expect(200, 'POST', `/management/users/${user.username}/revoke-tokens`);
    assert.deepEqual(res.json, { revoked: 4 });
    assert.equal(await active(a.access_token), false);
    assert.equal(await active(a.refresh_token), false);
    assert.equal(await active(b.access_token, second), false);
    assert.equal(await active(b.refresh_token, second), false);
    assert.equal(await active(machine), true);
    // The username is found as sign-in finds it (case folded).
    assert.deepEqual((await expect(200, 'POST', `/management/users/${user.username.toUpperCase()}/revoke-tokens`)).json, { revoked: 0 });
    assert.equal(await active((await signIn()).access_token), true, 'the user can sign in again');
    await expect(404, 'POST', '/management/users/nobody/revoke-tokens');
    await expect(404, 'POST', '/management/users/a%00b/revoke-tokens');
  });

  it('revokes a grant: its tokens, not the user\'s others', async () => {
    const first = await signIn();
    const kept = await signIn();
    const row = await database.db.selectFrom('tokens').select('grant_id').where('id_sha256', '=', tokenDigest(first.access_token)).executeTakeFirstOrThrow();
    assert.ok(row.grant_id);
    const res = await expect(200, 'POST', `/management/grants/${encodeURIComponent(row.grant_id)}/revoke`);
    assert.ok(res.json.revoked >= 2, `revoked ${res.json.revoked}`);
    assert.equal(await active(first.access_token), false);
    assert.equal(await active(first.refresh_token), false);
    assert.equal(await active(kept.access_token), true);
    assert.equal(await active(kept.refresh_token), true);
    assert.deepEqual((await expect(200, 'POST', `/management/grants/${encodeURIComponent(row.grant_id)}/revoke`)).json, { revoked: 0 });
    await expect(404, 'POST', '/management/grants/no-such-grant/revoke');
    await expect(404, 'POST', '/management/grants/a%00b/revoke');
  });

  it('an auditor may not revoke (403) and nothing is revoked', async () => {
    const token = await issueToken(other.url, client);
    const refused = await expect(403, 'POST', '/management/tokens/revoke', { authorization: auditor, body: { token } });
    assert.deepEqual(refused.json, { error: 'forbidden', error_description: 'the auditor role may only read' });
    await expect(403, 'POST', `/management/clients/${client.id}/revoke-tokens`, { authorization: auditor });
    await expect(403, 'POST', `/management/users/${user.username}/revoke-tokens`, { authorization: auditor });
    await expect(403, 'POST', '/management/grants/any/revoke', { authorization: auditor });
    assert.equal(await active(token), true);
    await expect(401, 'POST', '/management/tokens/revoke', { authorization: 'Bearer nope', body: { token } });
  });

  it('every documented operation of these paths was exercised above', () => {
    const mine = [
      'post /management/tokens/revoke', 'post /management/clients/{clientId}/revoke-tokens',
      'post /management/users/{username}/revoke-tokens', 'post /management/grants/{grantId}/revoke',
    ];
    const documented = (call: string) => mine.includes(call) || call.includes(' /management/tokens') || call.includes(' /management/grants');
    assert.deepEqual(conformance.unexercised().filter(documented), []);
  });
});
