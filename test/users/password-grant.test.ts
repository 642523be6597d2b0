// Resource owner password credentials grant (RFC 6749 §4.3) with role-bound scopes.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm, type Reply } from '../support/http.ts';
import { makeClient, makeScope, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { counterMoves } from '../support/prometheus.ts';

const VERIFICATIONS = { name: 'km_password_verifications_total' };
const LOGINS = ['success', 'failure', 'locked'].map((result) => ({ name: 'km_logins_total', labels: { result } }));

describe('password grant', () => {
  let database: TestDatabase;
  let server: TestServer;
  let withRefresh: TestClient;
  let withoutRefresh: TestClient;
  let admin: TestUser;
  let viewer: TestUser;

  const signIn = (client: TestClient, params: Record<string, string>) =>
    postForm(`${server.url}/token`, { grant_type: 'password', ...params }, { basic: client.basic });

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    await makeScope(database.db, 'orders:read');
    await makeScope(database.db, 'orders:write', ['order-admin']);
    await makeScope(database.db, 'reports', ['auditor', 'order-admin']);
    const scope = ['orders:read', 'orders:write', 'reports'];
    withRefresh = await makeClient(database.db, { grantTypes: ['password', 'refresh_token'], scope });
    withoutRefresh = await makeClient(database.db, { grantTypes: ['password'], scope });
    admin = await makeUser(database.db, 'Alice', { roles: ['order-admin'] });
    viewer = await makeUser(database.db, 'bob', { roles: ['auditor'] });
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  it('issues an access token and a refresh token; introspection shows the user', async () => {
    const res = await signIn(withRefresh, { username: admin.username, password: admin.password, scope: 'orders:read' });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    assert.equal(res.json.token_type, 'Bearer');
    assert.equal(res.json.scope, 'orders:read');
    assert.equal(typeof res.json.refresh_token, 'string');
    const seen = await postForm(`${server.url}/introspect`, { token: res.json.access_token }, { basic: withRefresh.basic });
    assert.equal(seen.json.active, true);
    assert.equal(seen.json.sub, admin.id);
    assert.equal(seen.json.username, 'Alice');
    assert.equal(seen.json.client_id, withRefresh.id);
  });

  it('introspecting the refresh token shows the user as the access token\'s introspection does, before and after rotation', async () => {
    const res = await signIn(withRefresh, { username: admin.username, password: admin.password, scope: 'orders:read' });
    assert.equal(res.status, 200, res.text);
    const rt = await postForm(`${server.url}/introspect`, { token: res.json.refresh_token }, { basic: withRefresh.basic });
    assert.equal(rt.status, 200, rt.text);
    assert.equal(rt.json.active, true);
    assert.equal(rt.json.token_type, 'refresh_token');
    assert.equal(rt.json.username, 'Alice');
    assert.equal(rt.json.sub, admin.id);
    assert.equal(rt.json.client_id, withRefresh.id);
    assert.equal(rt.json.scope, 'orders:read');
    const refreshed = await postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: res.json.refresh_token }, { basic: withRefresh.basic });
    assert.equal(refreshed.status, 200, refreshed.text);
    const next = await postForm(`${server.url}/introspect`, { token: refreshed.json.refresh_token }, { basic: withRefresh.basic });
    assert.equal(next.json.username, 'Alice');
    assert.equal(next.json.sub, admin.id);
  });

  it('matches the username regardless of case', async () => {
    const res = await signIn(withRefresh, { username: 'ALICE', password: admin.password });
    assert.equal(res.status, 200, res.text);
  });

  it('issues no refresh token to a client without the refresh_token grant', async () => {
    const res = await signIn(withoutRefresh, { username: admin.username, password: admin.password, scope: 'orders:read' });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.refresh_token, undefined);
  });

  it('the refresh token works, rotates, and keeps the user', async () => {
    const first = await signIn(withRefresh, { username: viewer.username, password: viewer.password, scope: 'orders:read reports' });
    const refreshed = await postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: first.json.refresh_token }, { basic: withRefresh.basic });
    assert.equal(refreshed.status, 200, refreshed.text);
    assert.notEqual(refreshed.json.refresh_token, first.json.refresh_token, 'rotated');
    assert.deepEqual(refreshed.json.scope.split(' ').sort(), ['orders:read', 'reports']);
    const seen = await postForm(`${server.url}/introspect`, { token: refreshed.json.access_token }, { basic: withRefresh.basic });
    assert.equal(seen.json.username, 'bob');
    assert.equal(seen.json.sub, viewer.id);
  });

  it('grants role-bound scopes by role: two users, same request, different scopes', async () => {
    const request = { scope: 'orders:read orders:write reports' };
    const a = await signIn(withRefresh, { username: admin.username, password: admin.password, ...request });
    const b = await signIn(withRefresh, { username: viewer.username, password: viewer.password, ...request });
    assert.deepEqual(a.json.scope.split(' ').sort(), ['orders:read', 'orders:write', 'reports']);
    assert.deepEqual(b.json.scope.split(' ').sort(), ['orders:read', 'reports']);
  });

  it('answers invalid_scope when none of the requested scopes can be granted', async () => {
    const bound = await signIn(withRefresh, { username: viewer.username, password: viewer.password, scope: 'orders:write' });
    assertError(bound, 400, 'invalid_scope');
    const unregistered = await signIn(withRefresh, { username: admin.username, password: admin.password, scope: 'nope' });
    assertError(unregistered, 400, 'invalid_scope');
  });

  it('drops an unregistered scope among granted ones', async () => {
    const res = await signIn(withRefresh, { username: admin.username, password: admin.password, scope: 'orders:read nope' });
    assert.equal(res.status, 200);
    assert.equal(res.json.scope, 'orders:read');
  });

  /** README "Errors": the one status and error, and every refusal carries a description. */
  function assertError(res: Reply, status: number, error: string) {
    assert.equal(res.status, status, res.text);
    assert.equal(res.json.error, error, res.text);
    assert.equal(typeof res.json.error_description, 'string', res.text);
    assert.equal(res.json.access_token, undefined);
  }

  describe('bad input', () => {
    it('missing username or password → invalid_request', async () => {
      assertError(await signIn(withRefresh, { password: 'x' }), 400, 'invalid_request');
      assertError(await signIn(withRefresh, { username: admin.username }), 400, 'invalid_request');
      assertError(await signIn(withRefresh, { username: '', password: 'x' }), 400, 'invalid_request');
    });

    it('unknown user and wrong password get the very same answer, after the same argon2 work (one verification each)', async () => {
      let unknown!: Reply;
      let wrong!: Reply;
      const [unknownWork] = await counterMoves(server.managementUrl, [VERIFICATIONS], async () => {
        unknown = await signIn(withRefresh, { username: 'mallory', password: 'whatever-password' });
      });
      const [wrongWork] = await counterMoves(server.managementUrl, [VERIFICATIONS], async () => {
        wrong = await signIn(withRefresh, { username: viewer.username, password: 'not-the-password' });
      });
      assert.deepEqual([unknownWork, wrongWork], [1, 1]);
      assertError(unknown, 400, 'invalid_grant');
      assertError(wrong, 400, 'invalid_grant');
      assert.equal(unknown.text, wrong.text);
      const names = (h: Headers) => {
        const out: string[] = [];
        h.forEach((_value, name) => out.push(name));
        return out.sort();
      };
      assert.deepEqual(names(unknown.headers), names(wrong.headers));
    });

    it('a disabled user gets the same invalid_grant', async () => {
      const carol = await makeUser(database.db, 'carol');
      await database.db.updateTable('users').set({ disabled: true }).where('id', '=', carol.id).execute();
      let res!: Reply;
      const [work] = await counterMoves(server.managementUrl, [VERIFICATIONS], async () => {
        res = await signIn(withRefresh, { username: 'carol', password: carol.password });
      });
      assertError(res, 400, 'invalid_grant');
      assert.equal(work, 1);
      const unknown = await signIn(withRefresh, { username: 'mallory', password: 'whatever-password' });
      assert.equal(res.text, unknown.text);
    });

    it('a client without the password grant → unauthorized_client', async () => {
      const cc = await makeClient(database.db, { grantTypes: ['client_credentials'], scope: ['orders:read'] });
      assertError(await signIn(cc, { username: admin.username, password: admin.password }), 400, 'unauthorized_client');
    });

    it('a public client cannot use the password grant', async () => {
      const { createClient } = await import('../../src/store/clients.ts');
      await assert.rejects(createClient(database.db, { name: 'pub', grantTypes: ['password'], scope: [], authMethod: 'none' }), /public client/);
      // A row edited by hand cannot become one either: the schema refuses it (0013).
      const pub = await makeClient(database.db, { grantTypes: ['refresh_token'], scope: ['orders:read'] });
      await assert.rejects(database.db.updateTable('clients')
        .set({ token_endpoint_auth_method: 'none', secret_sha256: null, grant_types: ['password'] })
        .where('client_id', '=', pub.id).execute(), { code: '23514', constraint: 'clients_public_client_grants' });
      const res = await postForm(`${server.url}/token`, { grant_type: 'password', client_id: pub.id, username: admin.username, password: admin.password });
      assertError(res, 401, 'invalid_client');
      assert.equal(res.json.access_token, undefined);
    });

    it('a wrong client secret → 401 invalid_client, before any password check: no argon2 work, no sign-in counted', async () => {
      const username = 'secret-check-first';
      let res!: Reply;
      const moved = await counterMoves(server.managementUrl, [VERIFICATIONS, ...LOGINS], async () => {
        res = await postForm(`${server.url}/token`, { grant_type: 'password', username, password: 'any password at all' }, { basic: [withRefresh.id, 'wrong'] });
      });
      assertError(res, 401, 'invalid_client');
      assert.deepEqual(moved, [0, 0, 0, 0]);
      // Nor did the attempt take a place in the lockout window.
      const rows = await database.db.selectFrom('login_failures').select('id').where('username_lower', '=', username).execute();
      assert.deepEqual(rows, []);
    });

    for (const [name, value] of [
      ['10 kB', 'a'.repeat(10 * 1024)],
      ['a NUL byte', 'ali\0ce'],
    ] as const) {
      it(`a username or password of ${name} is refused cleanly`, async () => {
        assertError(await signIn(withRefresh, { username: value, password: admin.password }), 400, 'invalid_request');
        assertError(await signIn(withRefresh, { username: admin.username, password: value }), 400, 'invalid_request');
      });
    }

    it('invalid UTF-8 in the username or password is refused cleanly', async () => {
      const body = `grant_type=password&username=%C3%28&password=${encodeURIComponent(admin.password)}`;
      assertError(await postForm(`${server.url}/token`, body, { basic: withRefresh.basic }), 400, 'invalid_request');
      const body2 = `grant_type=password&username=${admin.username}&password=%FF%FE`;
      assertError(await postForm(`${server.url}/token`, body2, { basic: withRefresh.basic }), 400, 'invalid_request');
    });
  });

  it('a database connection lost during the sign-in → 503 temporarily_unavailable, not a 500', async () => {
    // The session that records the attempt ends itself, as when PostgreSQL restarts or an
    // operator terminates it: the statement fails with SQLSTATE 57P01 (admin_shutdown).
    await sql`create function km_test_end_session() returns trigger language plpgsql as $$
                begin perform pg_terminate_backend(pg_backend_pid()); return new; end $$`.execute(database.db);
    await sql`create trigger km_test_end_session before insert on login_failures
                for each row execute function km_test_end_session()`.execute(database.db);
    try {
      const res = await signIn(withRefresh, { username: viewer.username, password: viewer.password, scope: 'reports' });
      assert.equal(res.status, 503, res.text);
      assert.deepEqual(res.json, { error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable' });
    } finally {
      await sql`drop trigger km_test_end_session on login_failures`.execute(database.db);
      await sql`drop function km_test_end_session()`.execute(database.db);
    }
    // And the next sign-in, on a new connection, works.
    const again = await signIn(withRefresh, { username: viewer.username, password: viewer.password, scope: 'reports' });
    assert.equal(again.status, 200, again.text);
  });
});
