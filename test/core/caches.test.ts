// The caches (client rows, introspected tokens) never lie across instances: a change made
// through /revoke, the management API or keymgr answers only once every instance has dropped
// what it cached, so the very next request anywhere sees it; a change made with plain SQL is
// seen as soon as its notice arrives; and while an instance's notification connection is
// down, it does not use its caches at all.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, tempDir, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { issueToken, makeClient, makeUser, type TestClient } from '../support/fixtures.ts';
import { runKeymgr } from '../support/cli.ts';
import { tokenDigest } from '../../src/store/tokens.ts';
import { waitFor } from '../support/wait.ts';

describe('caches across instances', () => {
  let database: TestDatabase;
  let a: TestServer;
  let b: TestServer;
  let owner: TestClient;
  let gateway: TestClient;
  let env: Record<string, string>;

  before(async () => {
    database = await createTestDatabase();
    const keysDir = tempDir('km-shared-keys-');
    a = await startTestServer(database.url, { keysDir });
    b = await startTestServer(database.url, { keysDir });
    owner = await makeClient(database.db, { scope: ['read'] });
    gateway = await makeClient(database.db, { introspectAny: true, scope: [] });
    env = { DATABASE_URL: database.url, KM_KEYS_DIR: keysDir, KM_LOG_LEVEL: 'silent' };
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await database?.drop();
  });

  const active = async (server: TestServer, token: string, by: TestClient = gateway) => {
    const res = await postForm(`${server.url}/introspect`, { token }, { basic: by.basic });
    assert.equal(res.status, 200, res.text);
    return res.json.active === true;
  };
  /** Both instances listening (a server just started connects its listener in the background). */
  const listening = async () => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity
        where application_name = 'keymanager-listener' and datname = current_database()`.execute(database.db);
      if (rows[0]!.n >= 2) return;
      assert.ok(Date.now() < deadline, 'the listeners did not connect');
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  /** A password-grant client and a user (a cheap hash), and a sign-in at A that returns the tokens. */
  const passwordApp = async (username: string) => {
    const app = await makeClient(database.db, { grantTypes: ['password', 'refresh_token'], scope: ['read'] });
    const user = await makeUser(database.db, username, { params: { memoryCost: 1024, timeCost: 1, parallelism: 1 } });
    const signInAtA = async () => {
      const login = await postForm(`${a.url}/token`, { grant_type: 'password', username: user.username, password: user.password, scope: 'read' }, { basic: app.basic });
      assert.equal(login.status, 200, login.text);
      return login.json as { access_token: string; refresh_token: string };
    };
    return { app, signInAtA };
  };

  it('a token revoked at A is inactive at B on the very next request, though B had it cached (100 rounds)', async () => {
    await listening();
    for (let i = 0; i < 100; i++) {
      const token = await issueToken(a.url, owner, 'read');
      // B reads it twice: the second answer comes from its cache.
      assert.equal(await active(b, token), true);
      assert.equal(await active(b, token), true);
      assert.equal((await postForm(`${a.url}/revoke`, { token }, { basic: owner.basic })).status, 200);
      assert.equal(await active(b, token), false, `round ${i}: B still reported the revoked token active`);
      assert.equal(await active(a, token), false);
    }
  });

  it('a scope an admin script registers is granted at once, though the instance had cached the registry without it', async () => {
    await listening();
    // keymgr answers once every instance has handled its change: nothing of it is in flight.
    const made = await runKeymgr(['client', 'create', '--name', 'reports app', '--scope', 'read', '--json'], env);
    assert.equal(made.code, 0, made.stderr);
    const app = JSON.parse(made.stdout) as { client_id: string; client_secret: string };
    // A caches the registry, without the scope (the discovery document lists every scope).
    const listed = await fetch(`${a.url}/.well-known/openid-configuration`).then((r) => r.json()) as { scopes_supported: string[] };
    assert.equal(listed.scopes_supported.includes('reports'), false);
    // Triggers off for this session: the change's notice is never sent, which stands for one
    // still on its way when the next request arrives (the window every SQL writer has).
    const admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
    try {
      await admin.query('set session_replication_role = replica');
      await admin.query("insert into scopes (name, description) values ('reports', 'Read reports')");
      await admin.query("update clients set scope = 'read reports' where client_id = $1", [app.client_id]);
    } finally {
      await admin.end();
    }
    const res = await postForm(`${a.url}/token`, { grant_type: 'client_credentials', scope: 'reports' }, { basic: [app.client_id, app.client_secret] });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.scope, 'reports');
  });

  it('a grant the engine revokes on refresh-token reuse: its access token is inactive at B on the very next request (50 rounds)', async () => {
    await listening();
    const { app, signInAtA } = await passwordApp('reuse-cache');
    for (let i = 0; i < 50; i++) {
      const { access_token, refresh_token } = await signInAtA();
      assert.equal(await active(b, access_token), true);
      assert.equal(await active(b, access_token), true); // from B's cache
      const rotated = await postForm(`${a.url}/token`, { grant_type: 'refresh_token', refresh_token }, { basic: app.basic });
      assert.equal(rotated.status, 200, rotated.text);
      assert.equal(await active(a, rotated.json.access_token as string), true);
      assert.equal(await active(a, rotated.json.access_token as string), true); // from A's cache
      // The spent token again: a reuse, which revokes the whole grant (RFC 9700 §4.14.2).
      const reuse = await postForm(`${a.url}/token`, { grant_type: 'refresh_token', refresh_token }, { basic: app.basic });
      assert.equal(reuse.status, 400);
      assert.equal(await active(b, access_token), false, `round ${i}: B still reported an access token of the revoked grant active`);
      assert.equal(await active(a, rotated.json.access_token as string), false, `round ${i}: A still reported the rotated access token active`);
    }
  });

  it('keymgr client rotate-secret: the old secret stops on every instance before the command returns', async () => {
    await listening();
    const c = await makeClient(database.db, { scope: ['read'] });
    const tokens = new Map<TestServer, string>();
    for (const server of [a, b]) {
      tokens.set(server, await issueToken(server.url, c, 'read'));
      assert.equal(await active(server, tokens.get(server)!, c), true); // the client is cached here
    }
    const r = await runKeymgr(['client', 'rotate-secret', c.id, '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    for (const server of [a, b]) {
      const token = tokens.get(server)!;
      // README "Errors": a wrong secret is 401 invalid_client, at /token, /introspect and /revoke alike.
      for (const [path, form] of [['/token', { grant_type: 'client_credentials', scope: 'read' }], ['/introspect', { token }], ['/revoke', { token }]] as const) {
        const old = await postForm(`${server.url}${path}`, form, { basic: c.basic });
        assert.equal(old.status, 401, `${server.url}${path}: ${old.text}`);
        assert.deepEqual(old.json, { error: 'invalid_client', error_description: 'client authentication failed' });
      }
      const renewed = await postForm(`${server.url}/introspect`, { token }, { basic: [c.id, r.json.client_secret] });
      assert.equal(renewed.json.active, true, 'the refusals revoked nothing');
      assert.equal((await postForm(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { basic: [c.id, r.json.client_secret] })).status, 200);
    }
  });

  it('a refresh token revoked at A: its grant is dead at B on the very next request, though B had it cached (10 rounds)', async () => {
    await listening();
    const { app, signInAtA } = await passwordApp('revoke-refresh');
    for (let i = 0; i < 10; i++) {
      const { access_token, refresh_token } = await signInAtA();
      // A refresh token is active only to its own client (README "Who may ask").
      for (const [token, by] of [[access_token, gateway], [refresh_token, app]] as const) {
        assert.equal(await active(b, token, by), true);
        assert.equal(await active(b, token, by), true); // from B's cache
      }
      const revoked = await postForm(`${a.url}/revoke`, { token: refresh_token, token_type_hint: 'refresh_token' }, { basic: app.basic });
      assert.equal(revoked.status, 200, revoked.text);
      assert.equal(revoked.text, '');
      assert.equal(await active(b, access_token), false, `round ${i}: B still reported the grant's access token active`);
      assert.equal(await active(b, refresh_token, app), false, `round ${i}: B still reported the revoked refresh token active`);
      const refreshed = await postForm(`${b.url}/token`, { grant_type: 'refresh_token', refresh_token }, { basic: app.basic });
      assert.equal(refreshed.status, 400, refreshed.text);
      assert.deepEqual(refreshed.json, { error: 'invalid_grant', error_description: 'grant request is invalid' });
    }
  });

  it('a revocation made with plain SQL reaches B\'s cache as soon as its notice arrives', async () => {
    const token = await issueToken(a.url, owner, 'read');
    assert.equal(await active(b, token), true);
    await sql`update tokens set revoked_at = now() where id_sha256 = ${tokenDigest(token)}`.execute(database.db);
    const deadline = Date.now() + 10_000;
    while (await active(b, token)) {
      assert.ok(Date.now() < deadline, 'B kept reporting the revoked token active');
      await new Promise((r) => setTimeout(r, 10));
    }
  });

  it('while its listener is cut off, an instance answers from the database, not from its caches', async () => {
    await listening();
    const tokens = [await issueToken(a.url, owner, 'read'), await issueToken(a.url, owner, 'read')];
    for (const t of tokens) assert.equal(await active(b, t), true); // cached at B
    // Cut every listener connection; the revocation's notice then reaches nobody.
    const marks = [a, b].map((server) => server.logMark());
    const admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
    try {
      await admin.query("select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'keymanager-listener' and datname = current_database()");
      // pg_terminate_backend only signals the backend: an instance is cut off once the end of its
      // connection has reached it (it logs so), not when the call returns. Until then a listener
      // not yet gone would still receive the notice, and the request could overtake it.
      for (const [i, server] of [a, b].entries()) {
        await waitFor(`${server.url} to see its listener connection cut`,
          async () => server.logsSince(marks[i]!).some((entry) => entry.msg === 'change listener disconnected'));
      }
      await admin.query('update tokens set revoked_at = now() where id_sha256 = any($1)', [tokens.map(tokenDigest)]);
    } finally {
      await admin.end();
    }
    for (const t of tokens) {
      assert.equal(await active(b, t), false);
      assert.equal(await active(a, t), false);
    }
    // And when the listener is back, the cache starts afresh.
    await listening();
    const fresh = await issueToken(a.url, owner, 'read');
    assert.equal(await active(b, fresh), true);
    assert.equal(await active(b, fresh), true);
  });

  it('an access token ended with plain SQL otherwise than by revocation (expired, truncated) is dropped from B\'s cache', async () => {
    const gone = async (token: string) => {
      const deadline = Date.now() + 10_000;
      while (await active(b, token)) {
        assert.ok(Date.now() < deadline, 'B kept reporting the token active');
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    const expired = await issueToken(a.url, owner, 'read');
    assert.equal(await active(b, expired), true);
    await sql`update tokens set expires_at = now() - interval '1 second' where id_sha256 = ${tokenDigest(expired)}`.execute(database.db);
    await gone(expired);
  });

  it('a user disabled by a transaction that was open while their token was issued: B drops the token when it commits', async () => {
    const app = await makeClient(database.db, { grantTypes: ['password'], scope: ['read'] });
    // The server's own hash parameters: a rehash on sign-in would wait on the admin's row lock.
    const user = await makeUser(database.db, 'slow-disable');
    const admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
    try {
      await admin.query('begin');
      await admin.query('update users set disabled = true where id = $1', [user.id]);
      const signIn = await postForm(`${a.url}/token`, { grant_type: 'password', username: user.username, password: user.password, scope: 'read' }, { basic: app.basic });
      assert.equal(signIn.status, 200, signIn.text);
      assert.equal(await active(b, signIn.json.access_token), true);
      await admin.query('commit');
      const deadline = Date.now() + 10_000;
      while (await active(b, signIn.json.access_token)) {
        assert.ok(Date.now() < deadline, 'B kept reporting the disabled user\'s token active');
        await new Promise((r) => setTimeout(r, 10));
      }
    } finally {
      await admin.end();
    }
  });

  it('a stray session named like a listener (a crashed instance\'s, say) is not waited for', async () => {
    const stray = new pg.Client({ connectionString: database.url, application_name: 'keymanager-listener' });
    await stray.connect();
    try {
      await new Promise((r) => setTimeout(r, 1600)); // idle for longer than a live listener ever is
      const before = a.logs.length;
      const token = await issueToken(a.url, owner, 'read');
      assert.equal((await postForm(`${a.url}/revoke`, { token }, { basic: owner.basic })).status, 200);
      assert.equal(await active(b, token), false);
      assert.ok(!a.logs.slice(before).some((l) => l.includes('not every instance confirmed')), 'the stray session was waited for');
    } finally {
      await stray.end();
    }
  });
});

describe('a database session ending under a running request', () => {
  let database: TestDatabase;
  let server: TestServer;
  let owner: TestClient;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    owner = await makeClient(database.db, { scope: ['read'] });
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  it('does not end the process: sessions terminated during a load answer 503 at worst, and the server goes on', async () => {
    let stop = false;
    const statuses = new Set<number>();
    const loops = Array.from({ length: 8 }, async () => {
      while (!stop) {
        const r = await postForm(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { basic: owner.basic }).catch(() => ({ status: 0 }));
        statuses.add(r.status);
      }
    });
    const admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
    try {
      for (let i = 0; i < 10; i++) {
        await admin.query("select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'keymanager' and datname = current_database()");
        await new Promise((r) => setTimeout(r, 30));
      }
    } finally {
      stop = true;
      await Promise.all(loops);
      await admin.end();
    }
    assert.deepEqual([...statuses].filter((s) => s !== 200 && s !== 503), [],
      `unexpected statuses ${[...statuses]}: ${server.logs.filter((l) => /"level":50/.test(l)).slice(0, 2).join('\n')}`);
    const health = await fetch(`${server.url}/healthz`);
    assert.equal(health.status, 200);
    assert.equal((await postForm(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { basic: owner.basic })).status, 200);
  });
});
