// /introspect with `Authorization: Bearer <token with the introspect scope>` (RFC 7662 §2.1,
// the WSO2 document's "OAuth2" security): the four ways of getting the gateway's token
// (client credentials, password grant, `keymgr token issue`, refresh), every RFC 6750 §3
// refusal with its status and challenge, per-gateway audience limits, and the cache hint.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm, type Reply } from '../support/http.ts';
import { issueToken, makeClient, makeScope, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { runKeymgr } from '../support/cli.ts';
import { revokeRole } from '../../src/store/users.ts';
import { findClientById, updateClient } from '../../src/store/clients.ts';
import { createScope, deleteScope } from '../../src/store/scopes.ts';
import { syncEveryInstance } from '../support/wait.ts';

const FAST = { memoryCost: 8192, timeCost: 1, parallelism: 1 };

describe('bearer-authenticated introspection', () => {
  let database: TestDatabase;
  let server: TestServer;
  /** Resource owner whose tokens are introspected. */
  let app: TestClient;
  /** A gateway client allowed the introspect scope. */
  let gateway: TestClient;
  /** A client not allowed it. */
  let plain: TestClient;
  /** Password-grant client allowed introspect (for user tokens). */
  let passwordApp: TestClient;
  let operator: TestUser;
  let bystander: TestUser;
  let env: Record<string, string>;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    await makeScope(database.db, 'read');
    app = await makeClient(database.db, { scope: ['read'] });
    gateway = await makeClient(database.db, { scope: ['introspect'] });
    plain = await makeClient(database.db, { scope: ['read'] });
    passwordApp = await makeClient(database.db, { grantTypes: ['password', 'refresh_token'], scope: ['read', 'introspect'] });
    // `introspector` is the role migration 0010 binds the introspect scope to.
    operator = await makeUser(database.db, 'gw-operator', { roles: ['introspector'], params: FAST });
    bystander = await makeUser(database.db, 'bystander', { params: FAST });
    env = { DATABASE_URL: database.url, KM_KEYS_DIR: server.keysDir, KM_LOG_LEVEL: 'silent' };
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const introspectWith = (bearer: string, token: string, extra: Record<string, string> = {}) =>
    postForm(`${server.url}/introspect`, { token, ...extra }, { headers: { authorization: `Bearer ${bearer}` } });
  const signIn = (user: TestUser, scope: string) => postForm(`${server.url}/token`,
    { grant_type: 'password', username: user.username, password: user.password, scope }, { basic: passwordApp.basic });
  /** RFC 6750 §3: the status, the JSON error and the challenge naming it. */
  const refused = (res: Reply, status: number, error: string, description: string, scope?: string) => {
    assert.equal(res.status, status, res.text);
    assert.deepEqual(res.json, { error, error_description: description });
    const challenge = `Bearer realm="${server.config.issuer}", error="${error}", error_description="${description}"${scope ? `, scope="${scope}"` : ''}`;
    assert.equal(res.headers.get('www-authenticate'), challenge);
    assert.equal(res.headers.get('cache-control'), 'no-store');
  };

  it('a client-credentials token with the introspect scope introspects any client\'s token', async () => {
    const bearer = await issueToken(server.url, gateway, 'introspect');
    const target = await issueToken(server.url, app, 'read');
    const res = await introspectWith(bearer, target);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.active, true);
    assert.equal(res.json.client_id, app.id);
    assert.equal(res.json.scope, 'read');
    assert.equal(res.headers.get('cache-control'), 'private, max-age=60');
    // The bearer itself is a token like any other.
    assert.equal((await introspectWith(bearer, bearer)).json.client_id, gateway.id);
    assert.deepEqual((await introspectWith(bearer, 'no-such-token')).json, { active: false });
    assert.equal((await introspectWith(bearer, 'no-such-token')).headers.get('cache-control'), 'no-store');
  });

  it('a client without introspect in its allow-list cannot get the scope (RFC 6749 invalid_scope)', async () => {
    const res = await postForm(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'introspect' }, { basic: plain.basic });
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json.error, 'invalid_scope');
  });

  it('refuses a token without the scope: 403 insufficient_scope naming it', async () => {
    const bearer = await issueToken(server.url, plain, 'read');
    const target = await issueToken(server.url, app, 'read');
    refused(await introspectWith(bearer, target), 403, 'insufficient_scope', 'the access token lacks the introspect scope', 'introspect');
  });

  it('refuses an unknown, expired, revoked or refresh token as the bearer: 401 invalid_token', async () => {
    const target = await issueToken(server.url, app, 'read');
    refused(await introspectWith('forged-token-value', target), 401, 'invalid_token', 'the access token is not active');

    const expired = await issueToken(server.url, gateway, 'introspect');
    await sql`update tokens set expires_at = now() - interval '1 second' where id_sha256 = ${createHash('sha256').update(expired).digest('hex')}`.execute(database.db);
    refused(await introspectWith(expired, target), 401, 'invalid_token', 'the access token is not active');

    const revoked = await issueToken(server.url, gateway, 'introspect');
    assert.equal((await postForm(`${server.url}/revoke`, { token: revoked }, { basic: gateway.basic })).status, 200);
    refused(await introspectWith(revoked, target), 401, 'invalid_token', 'the access token is not active');

    const signedIn = await signIn(operator, 'introspect');
    assert.equal(signedIn.status, 200, signedIn.text);
    refused(await introspectWith(signedIn.json.refresh_token, target), 401, 'invalid_token', 'the access token is not active');

    // The bearer's client disabled: its tokens are revoked with it.
    const doomed = await makeClient(database.db, { scope: ['introspect'] });
    const orphan = await issueToken(server.url, doomed, 'introspect');
    await database.db.updateTable('clients').set({ disabled: true }).where('client_id', '=', doomed.id).execute();
    refused(await introspectWith(orphan, target), 401, 'invalid_token', 'the access token is not active');
  });

  it('refuses a malformed header or two ways of authenticating at once: 400 invalid_request', async () => {
    const bearer = await issueToken(server.url, gateway, 'introspect');
    const target = await issueToken(server.url, app, 'read');
    refused(await postForm(`${server.url}/introspect`, { token: target }, { headers: { authorization: `Bearer ${bearer} extra` } }),
      400, 'invalid_request', 'malformed Authorization header (RFC 6750 section 2.1)');
    refused(await postForm(`${server.url}/introspect`, { token: target }, { headers: { authorization: 'Bearer' } }),
      400, 'invalid_request', 'malformed Authorization header (RFC 6750 section 2.1)');
    refused(await introspectWith(bearer, target, { client_id: gateway.id, client_secret: gateway.secret }),
      400, 'invalid_request', 'authenticate with a bearer token or client credentials, not both');
    // The token parameter is still required (RFC 7662 §2.1).
    const missing = await postForm(`${server.url}/introspect`, {}, { headers: { authorization: `Bearer ${bearer}` } });
    assert.equal(missing.status, 400);
    assert.deepEqual(missing.json, { error: 'invalid_request', error_description: "missing required parameter 'token'" });
  });

  it('a user token carries the scope only for users holding a role bound to it, and stops working when the role goes', async () => {
    const denied = await signIn(bystander, 'introspect');
    assert.equal(denied.status, 400, denied.text);
    assert.equal(denied.json.error, 'invalid_scope');

    const signedIn = await signIn(operator, 'introspect');
    assert.equal(signedIn.status, 200, signedIn.text);
    assert.equal(signedIn.json.scope, 'introspect');
    const target = await issueToken(server.url, app, 'read');
    assert.equal((await introspectWith(signedIn.json.access_token, target)).json.active, true);

    // The fourth way from the background document: renewed by refresh.
    const refreshed = await postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: signedIn.json.refresh_token }, { basic: passwordApp.basic });
    assert.equal(refreshed.status, 200, refreshed.text);
    assert.equal((await introspectWith(refreshed.json.access_token, target)).json.active, true);

    await revokeRole(database.db, operator.username, 'introspector');
    refused(await introspectWith(refreshed.json.access_token, target), 403, 'insufficient_scope',
      'the user no longer holds a role bound to the introspect scope', 'introspect');
  });

  it('a bearer counts only while its client is still allowed the introspect scope and the scope is registered: else 403 insufficient_scope', async () => {
    // Found by an outside review: the allow-list narrowed or the scope deleted, a gateway's
    // existing token (keymgr token issue: up to ten years) went on introspecting every token.
    const narrowed = await makeClient(database.db, { scope: ['introspect', 'read'] });
    const bearer = await issueToken(server.url, narrowed, 'introspect');
    const target = await issueToken(server.url, app, 'read');
    assert.equal((await introspectWith(bearer, target)).json.active, true);
    const noLongerGranted = "the introspect scope is no longer granted to the token's client";

    await updateClient(database.db, narrowed.id, { scope: ['read'] });
    await syncEveryInstance(database.url);
    refused(await introspectWith(bearer, target), 403, 'insufficient_scope', noLongerGranted, 'introspect');
    await updateClient(database.db, narrowed.id, { scope: ['introspect', 'read'] });
    await syncEveryInstance(database.url);
    assert.equal((await introspectWith(bearer, target)).json.active, true);

    // The scope deleted: no longer granted to anyone, and gone from every allow-list (0019).
    const allowed = (await sql<{ client_id: string; scope: string }>`select client_id, scope from clients where 'introspect' = any(string_to_array(scope, ' '))`.execute(database.db)).rows;
    assert.equal(await deleteScope(database.db, 'introspect'), true);
    await syncEveryInstance(database.url);
    try {
      refused(await introspectWith(bearer, target), 403, 'insufficient_scope', noLongerGranted, 'introspect');
      assert.equal((await findClientById(database.db, narrowed.id))!.scope, 'read');
    } finally {
      await createScope(database.db, 'introspect', '', ['introspector']);
      await syncEveryInstance(database.url);
    }
    // Registered again, it is a new scope: no client is allowed it until given it again.
    refused(await introspectWith(bearer, target), 403, 'insufficient_scope', noLongerGranted, 'introspect');
    for (const { client_id, scope } of allowed) await updateClient(database.db, client_id, { scope: scope.split(' ') });
    await syncEveryInstance(database.url);
    assert.equal((await introspectWith(bearer, target)).json.active, true);
  });

  it('keymgr token issue prints one long-lived token that works as the gateway\'s bearer', async () => {
    const before = Math.floor(Date.now() / 1000);
    const r = await runKeymgr(['token', 'issue', '--client', gateway.id, '--scope', 'introspect', '--ttl', '31536000'], env);
    assert.equal(r.code, 0, r.stderr);
    const direct = r.stdout.trim();
    assert.match(direct, /^[A-Za-z0-9_-]{43}$/);
    const target = await issueToken(server.url, app, 'read');
    assert.equal((await introspectWith(direct, target)).json.active, true);
    const self = (await introspectWith(direct, direct)).json;
    assert.equal(self.client_id, gateway.id);
    assert.equal(self.scope, 'introspect');
    assert.ok(self.exp >= before + 31536000 && self.exp <= before + 31536000 + 60, String(self.exp));
    // Stored by digest only.
    assert.ok(!(await database.dumpAllTables()).includes(direct));

    const json = await runKeymgr(['token', 'issue', '--client', gateway.id, '--scope', 'introspect', '--ttl', '600', '--json'], env);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(Object.keys(json.json).sort(), ['access_token', 'client_id', 'expires_at', 'expires_in', 'scope', 'token_type']);
    assert.equal(json.json.token_type, 'Bearer');
    assert.equal(json.json.expires_in, 600);

    const audited = await sql<{ action: string; resource_id: string | null }>`
      select action, resource_id from audit_events where action = 'keymgr token issue' order by id limit 1`.execute(database.db);
    assert.deepEqual(audited.rows, [{ action: 'keymgr token issue', resource_id: gateway.id }]);

    for (const [args, message] of [
      [['--client', 'nope', '--scope', 'introspect', '--ttl', '60'], 'no client nope'],
      [['--client', app.id, '--scope', 'introspect', '--ttl', '60'], `client ${app.id} is not allowed the scope(s) introspect (its allow-list: read)`],
      [['--client', gateway.id, '--scope', 'introspect', '--ttl', '0'], '--ttl must be a whole number of seconds from 1 to 315360000'],
      [['--client', gateway.id, '--scope', 'introspect', '--ttl', '1.5'], '--ttl must be a whole number of seconds'],
    ] as const) {
      const bad = await runKeymgr(['token', 'issue', ...args, '--json'], env);
      assert.equal(bad.code, 1, bad.stdout);
      assert.deepEqual(JSON.parse(bad.stderr), { error: message });
    }
  });

  it('a gateway limited to other audiences sees every token as inactive', async () => {
    const elsewhere = await makeClient(database.db, { introspectAny: true, introspectAudiences: ['https://other.example/api'], scope: [] });
    const here = await makeClient(database.db, { introspectAny: true, introspectAudiences: [server.config.issuer], scope: [] });
    const target = await issueToken(server.url, app, 'read');
    const blind = await postForm(`${server.url}/introspect`, { token: target }, { basic: elsewhere.basic });
    assert.deepEqual(blind.json, { active: false });
    const seeing = await postForm(`${server.url}/introspect`, { token: target }, { basic: here.basic });
    assert.equal(seeing.json.active, true);
    assert.equal(seeing.json.aud, server.config.issuer);
    // An empty list is no audience at all, never "any".
    const none = await makeClient(database.db, { introspectAny: true, introspectAudiences: [], scope: [] });
    const stored = await database.db.selectFrom('clients').select('introspect_audiences').where('client_id', '=', none.id).executeTakeFirstOrThrow();
    assert.deepEqual(stored.introspect_audiences, []);
    assert.deepEqual((await postForm(`${server.url}/introspect`, { token: target }, { basic: none.basic })).json, { active: false });
  });
});

describe('introspection cache hints', () => {
  let database: TestDatabase;
  let short: TestServer;
  let off: TestServer;
  let client: TestClient;

  before(async () => {
    database = await createTestDatabase();
    short = await startTestServer(database.url, { accessTokenTtl: 20 });
    off = await startTestServer(database.url, { introspectionCacheMaxAge: 0 });
    client = await makeClient(database.db, { scope: ['read'] });
  });
  after(async () => {
    await short?.stop();
    await off?.stop();
    await database?.drop();
  });

  it('max-age is never past the token\'s expiry, and 0 turns caching off (no-store)', async () => {
    const token = await issueToken(short.url, client, 'read');
    const asked = Date.now();
    const res = await postForm(`${short.url}/introspect`, { token }, { basic: client.basic });
    const answered = Date.now();
    const maxAge = Number(/^private, max-age=(\d+)$/.exec(res.headers.get('cache-control') ?? '')?.[1]);
    // The token's remaining lifetime when answered (less than the default 60 s maximum).
    assert.ok(maxAge <= res.json.exp - Math.floor(asked / 1000) && maxAge >= res.json.exp - Math.ceil(answered / 1000) - 1, `${res.headers.get('cache-control')} exp=${res.json.exp}`);
    assert.ok(maxAge <= 20);
    const none = await postForm(`${off.url}/introspect`, { token }, { basic: client.basic });
    assert.equal(none.json.active, true);
    assert.equal(none.headers.get('cache-control'), 'no-store');
  });
});
