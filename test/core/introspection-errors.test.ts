// Introspection (RFC 7662) of what is no access token to anyone: an authorization code, a
// token of a client since disabled; and a body over the README's limit (413).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { assertRefusal, postForm, type PostOptions } from '../support/http.ts';
import { issueToken, makeClient, makeScope, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { Browser, runCodeFlow } from '../support/browserless.ts';
import { runKeymgr } from '../support/cli.ts';

const REDIRECT = 'https://app.example/cb';
/** max_body_bytes by default, as the README states it (56 KiB). */
const MAX_BODY_BYTES = 56 * 1024;

describe('introspection of what is not an active token', () => {
  let database: TestDatabase;
  let server: TestServer;
  let web: TestClient;
  let gateway: TestClient;
  let alice: TestUser;

  const introspect = (body: Record<string, string> | string, opts: PostOptions = { basic: gateway.basic }) => postForm(`${server.url}/introspect`, body, opts);
  const code = async () => (await runCodeFlow(new Browser(server.url), {
    clientId: web.id, redirectUri: REDIRECT, scope: 'read', username: alice.username, password: alice.password,
  })).searchParams.get('code')!;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    await makeScope(database.db, 'read');
    web = await makeClient(database.db, { grantTypes: ['authorization_code', 'refresh_token'], scope: ['read'], redirectUris: [REDIRECT] });
    gateway = await makeClient(database.db, { introspectAny: true, scope: [] });
    alice = await makeUser(database.db, 'alice', { params: { memoryCost: 8192, timeCost: 1, parallelism: 1 } });
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  it('an authorization code, unused, is no token: exactly {"active":false}, to its client and to a gateway', async () => {
    const unused = await code();
    assert.deepEqual((await introspect({ token: unused }, { basic: web.basic })).json, { active: false });
    assert.deepEqual((await introspect({ token: unused })).json, { active: false });
    assert.deepEqual((await introspect({ token: unused, token_type_hint: 'access_token' })).json, { active: false });
    // Introspecting it neither used it up nor revoked it: it still redeems.
    const redeemed = await postForm(`${server.url}/token`, { grant_type: 'authorization_code', code: unused, redirect_uri: REDIRECT }, { basic: web.basic });
    assert.equal(redeemed.status, 200, redeemed.text);
  });

  it("a disabled client's access, JWT and refresh tokens are {\"active\":false}, and the client itself is refused (401)", async () => {
    const app = await makeClient(database.db, { grantTypes: ['authorization_code', 'refresh_token'], scope: ['read'], redirectUris: [REDIRECT] });
    const jwtApp = await makeClient(database.db, { tokenFormat: 'jwt', scope: ['read'] });
    const flow = await runCodeFlow(new Browser(server.url), { clientId: app.id, redirectUri: REDIRECT, scope: 'read', username: alice.username, password: alice.password });
    const issued = await postForm(`${server.url}/token`, { grant_type: 'authorization_code', code: flow.searchParams.get('code')!, redirect_uri: REDIRECT }, { basic: app.basic });
    assert.equal(issued.status, 200, issued.text);
    const jwt = await issueToken(server.url, jwtApp);
    const tokens = [issued.json.access_token as string, jwt];
    const refreshToken = issued.json.refresh_token as string;
    for (const token of tokens) assert.equal((await introspect({ token })).json.active, true, 'active before');
    // A refresh token is active only to its own client (README "Who may ask").
    assert.equal((await introspect({ token: refreshToken }, { basic: app.basic })).json.active, true, 'active before');

    // As an operator does it; keymgr returns once every instance has seen the change.
    const env = { DATABASE_URL: database.url, KM_KEYS_DIR: server.keysDir };
    for (const client of [app, jwtApp]) {
      const res = await runKeymgr(['client', 'disable', client.id, '--json'], env);
      assert.deepEqual([res.code, res.json], [0, { client_id: client.id, disabled: true }], res.stderr);
    }
    for (const token of tokens) assert.deepEqual((await introspect({ token })).json, { active: false });
    const own = await introspect({ token: jwt }, { basic: jwtApp.basic });
    assertRefusal(own, 401, 'invalid_client', 'client authentication failed');
    assert.match(own.headers.get('www-authenticate') ?? '', /^Basic realm="[^"]+", error="invalid_client"/);
    // Enabled again, the client finds its refresh token dead: enabling brings no token back.
    assert.equal((await runKeymgr(['client', 'enable', app.id], env)).code, 0);
    assert.deepEqual((await introspect({ token: refreshToken }, { basic: app.basic })).json, { active: false });
    assert.deepEqual((await introspect({ token: tokens[0]! })).json, { active: false });
  });

  it(`a body over max_body_bytes (${MAX_BODY_BYTES}) → 413 invalid_request; one at the limit is answered`, async () => {
    const token = await issueToken(server.url, gateway, '');
    const prefix = `token=${token}&pad=`;
    const over = await introspect(`${prefix}${'a'.repeat(MAX_BODY_BYTES + 1 - prefix.length)}`);
    assertRefusal(over, 413, 'invalid_request', 'request body is too large');
    const atLimit = await introspect(`${prefix}${'a'.repeat(MAX_BODY_BYTES - prefix.length)}`);
    assert.equal(atLimit.status, 200, atLimit.text);
    assert.equal(atLimit.json.active, true);
  });
});
