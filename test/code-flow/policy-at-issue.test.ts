// The scope policy (registered scope, client allow-list, the user's roles) is applied again
// whenever a code or a token is issued for a user — not only when consent was given. Taking a
// role or a scope away reaches a browser that is already signed in, with or without
// prompt=none; a user disabled during their session is sent back to the sign-in page.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { runKeymgr } from '../support/cli.ts';
import { makeClient, makeScope, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { Browser, runCodeFlow } from '../support/browserless.ts';
import { syncEveryInstance } from '../support/wait.ts';
import { updateClient } from '../../src/store/clients.ts';
import { findConsent, rememberConsent } from '../../src/store/consents.ts';
import { migrate, readMigrations } from '../../src/db/migrator.ts';

const REDIRECT = 'https://app.example/cb';

describe('scope policy at issue time, for a signed-in browser', () => {
  let database: TestDatabase;
  let server: TestServer;
  let web: TestClient;
  let env: Record<string, string>;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    await makeScope(database.db, 'read');
    await makeScope(database.db, 'reports');
    await makeScope(database.db, 'admin:all', ['admin']);
    web = await makeClient(database.db, { grantTypes: ['authorization_code', 'refresh_token'], scope: ['read', 'reports', 'admin:all'], redirectUris: [REDIRECT] });
    env = { DATABASE_URL: database.url, KM_KEYS_DIR: server.keysDir };
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const redeem = async (code: string) => {
    const res = await postForm(`${server.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT }, { basic: web.basic });
    assert.equal(res.status, 200, res.text);
    return res.json as { access_token: string; refresh_token: string; scope: string };
  };
  const scopesOf = (scope: string | undefined) => (scope ?? '').split(' ').filter(Boolean).sort();

  /** A new authorization request in a browser that is signed in and has consented: no pages. */
  const silentCode = async (browser: Browser, scope: string, extra: Record<string, string> = {}) => {
    const params = new URLSearchParams({ response_type: 'code', client_id: web.id, redirect_uri: REDIRECT, scope, state: 's2', ...extra });
    const step = await browser.follow(await browser.get(`/authorize?${params}`));
    assert.ok(step.location?.startsWith(REDIRECT), `a redirect to the client without any page, got ${step.status} ${step.html?.slice(0, 200)}`);
    const code = new URL(step.location!).searchParams.get('code');
    assert.ok(code, `a code in ${step.location}`);
    return code;
  };

  const signedIn = async (user: TestUser, scope: string) => {
    const browser = new Browser(server.url);
    const back = await runCodeFlow(browser, { clientId: web.id, redirectUri: REDIRECT, scope, username: user.username, password: user.password });
    const tokens = await redeem(back.searchParams.get('code')!);
    assert.deepEqual(scopesOf(tokens.scope), scopesOf(scope), 'first consent grants everything asked');
    return { browser, tokens };
  };

  for (const promptNone of [false, true]) {
    it(`keymgr role revoke: the next code of the same session has no admin:all${promptNone ? ' (prompt=none)' : ''}`, async () => {
      const user = await makeUser(database.db, promptNone ? 'alice2' : 'alice', { roles: ['admin'] });
      const { browser } = await signedIn(user, 'read admin:all');
      const revoked = await runKeymgr(['role', 'revoke', user.username, 'admin'], env);
      assert.equal(revoked.code, 0, revoked.stderr);
      const code = await silentCode(browser, 'read admin:all', promptNone ? { prompt: 'none' } : {});
      const tokens = await redeem(code);
      assert.deepEqual(scopesOf(tokens.scope), ['read']);
      const seen = await postForm(`${server.url}/introspect`, { token: tokens.access_token }, { basic: web.basic });
      assert.equal(seen.json.scope, 'read');
    });
  }

  it('a code issued before the role was taken away gives a token without the scope', async () => {
    const user = await makeUser(database.db, 'carl', { roles: ['admin'] });
    const { browser } = await signedIn(user, 'read admin:all');
    const code = await silentCode(browser, 'read admin:all');
    await sql`delete from user_roles where user_id = ${user.id}::uuid`.execute(database.db);
    assert.deepEqual(scopesOf((await redeem(code)).scope), ['read']);
  });

  it('keymgr scope delete: the next code of the same session does not carry the scope', async () => {
    const user = await makeUser(database.db, 'dana');
    const { browser } = await signedIn(user, 'read reports');
    const deleted = await runKeymgr(['scope', 'delete', 'reports'], env);
    assert.equal(deleted.code, 0, deleted.stderr);
    const tokens = await redeem(await silentCode(browser, 'read reports'));
    assert.deepEqual(scopesOf(tokens.scope), ['read']);
  });

  it('a scope deleted and registered again under its name is a new scope: no client allowed it, no consent or grant holds it', async () => {
    // Found by an outside review: the name stayed in allow-lists, consents and grants, and all
    // of it counted again once the name was registered again (perhaps meaning something else).
    await makeScope(database.db, 'files');
    const app = await makeClient(database.db, { grantTypes: ['authorization_code', 'refresh_token'], scope: ['read', 'files'], redirectUris: [REDIRECT] });
    const service = await makeClient(database.db, { scope: ['files'] });
    const user = await makeUser(database.db, 'fay');
    const browser = new Browser(server.url);
    const back = await runCodeFlow(browser, { clientId: app.id, redirectUri: REDIRECT, scope: 'read files', username: user.username, password: user.password });
    const first = await postForm(`${server.url}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, redirect_uri: REDIRECT }, { basic: app.basic });
    assert.equal(first.status, 200, first.text);
    assert.deepEqual(scopesOf(first.json.scope), ['files', 'read']);

    assert.equal((await runKeymgr(['scope', 'delete', 'files'], env)).code, 0);
    const allowLists = await sql<{ client_id: string; scope: string }>`select client_id, scope from clients where client_id in (${app.id}, ${service.id}) order by client_id`.execute(database.db);
    assert.deepEqual(allowLists.rows, [{ client_id: app.id, scope: 'read' }, { client_id: service.id, scope: '' }].sort((x, y) => (x.client_id < y.client_id ? -1 : 1)));
    const consent = await sql<{ scopes: string[] }>`select scopes from consents where user_id = ${user.id}::uuid and client_id = ${app.id}`.execute(database.db);
    assert.deepEqual(consent.rows[0]!.scopes, ['read']);

    assert.equal((await runKeymgr(['scope', 'create', 'files'], env)).code, 0);
    // Not allowed again: the client that had it gets invalid_scope.
    const cc = await postForm(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'files' }, { basic: service.basic });
    assert.equal(cc.status, 400, cc.text);
    assert.equal(cc.json.error, 'invalid_scope');
    // Allowed again to the app: the old refresh token's grant does not hold it, and the signed-in
    // user is asked again.
    await updateClient(database.db, app.id, { scope: ['read', 'files'] });
    await syncEveryInstance(database.url);
    const refreshed = await postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: first.json.refresh_token }, { basic: app.basic });
    assert.equal(refreshed.status, 200, refreshed.text);
    assert.deepEqual(scopesOf(refreshed.json.scope), ['read']);
    const params = new URLSearchParams({ response_type: 'code', client_id: app.id, redirect_uri: REDIRECT, scope: 'read files', state: 's4' });
    const page = await browser.follow(await browser.get(`/authorize?${params}`));
    assert.equal(page.status, 200, page.location);
    assert.match(page.html ?? '', /name="decision"/, 'the consent page');
  });

  it('a user disabled during the session is sent to the sign-in page, never a 500', async () => {
    const user = await makeUser(database.db, 'ella');
    const { browser } = await signedIn(user, 'read');
    assert.equal((await runKeymgr(['user', 'disable', 'ella'], env)).code, 0);
    const params = new URLSearchParams({ response_type: 'code', client_id: web.id, redirect_uri: REDIRECT, scope: 'read', state: 's3' });
    const page = await browser.follow(await browser.get(`/authorize?${params}`));
    assert.equal(page.status, 200);
    assert.match(page.html ?? '', /name="password"/, 'the sign-in page');
    // Even if the session row outlived the user (restored from a backup, say), the engine
    // does not carry on with a session whose user no longer resolves.
    await sql`update tokens set revoked_at = null where kind = 'Session' and account_id = ${user.id}`.execute(database.db);
    const again = await browser.follow(await browser.get(`/authorize?${params}`));
    assert.equal(again.status, 200);
    assert.match(again.html ?? '', /name="password"/);
    const none = await browser.get(`/authorize?${params}&prompt=none`);
    const back = new URL((await browser.follow(none)).location!);
    assert.equal(back.searchParams.get('error'), 'login_required');
  });
});

describe('upgrading: 0019 forgets the scopes earlier deletions left behind', () => {
  it('unregistered names leave allow-lists, consents (not openid or offline_access) and grants; registered ones stay, in order', async () => {
    const database = await createTestDatabase({ migrated: false });
    try {
      await migrate(database.db, readMigrations().filter((m) => m.version < '0019'));
      for (const name of ['read', 'gone', 'write']) await makeScope(database.db, name);
      const app = await makeClient(database.db, { grantTypes: ['authorization_code', 'refresh_token'], scope: ['write', 'gone', 'read'], redirectUris: [REDIRECT] });
      const user = await makeUser(database.db, 'gil');
      await rememberConsent(database.db, user.id, app.id, ['openid', 'offline_access', 'gone', 'read', 'write']);
      const grant = { accountId: user.id, clientId: app.id, kind: 'Grant', openid: { scope: 'openid offline_access' }, resources: { 'https://api.example': 'write gone read', 'https://other.example': 'gone' } };
      await sql`insert into tokens (id_sha256, kind, client_id, account_id, payload, expires_at)
        values (${'a'.repeat(64)}, 'Grant', ${app.id}, ${user.id}, ${JSON.stringify(grant)}::jsonb, now() + interval '1 day')`.execute(database.db);
      // As `keymgr scope delete` did before 0019: the scope row alone.
      await sql`delete from scopes where name = 'gone'`.execute(database.db);

      const applied = await migrate(database.db, readMigrations().filter((m) => m.version <= '0019'));
      assert.deepEqual(applied.map((m) => m.version), ['0019']);
      assert.equal((await sql<{ scope: string }>`select scope from clients where client_id = ${app.id}`.execute(database.db)).rows[0]!.scope, 'write read');
      assert.deepEqual(await findConsent(database.db, user.id, app.id), ['openid', 'offline_access', 'read', 'write']);
      const { rows: [stored] } = await sql<{ payload: typeof grant }>`select payload from tokens where id_sha256 = ${'a'.repeat(64)}`.execute(database.db);
      assert.deepEqual(stored!.payload, { ...grant, resources: { 'https://api.example': 'write read', 'https://other.example': '' } });
    } finally {
      await database.drop();
    }
  });
});
