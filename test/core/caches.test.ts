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
import { issueToken, makeClient, type TestClient } from '../support/fixtures.ts';
import { runKeymgr } from '../support/cli.ts';
import { tokenDigest } from '../../src/store/tokens.ts';

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

  it('keymgr client rotate-secret: the old secret stops at B before the command returns', async () => {
    const c = await makeClient(database.db, { scope: ['read'] });
    const token = await issueToken(b.url, c, 'read');
    assert.equal(await active(b, token, c), true); // B has the client cached
    const r = await runKeymgr(['client', 'rotate-secret', c.id, '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    const old = await postForm(`${b.url}/introspect`, { token }, { basic: c.basic });
    assert.equal(old.status, 401);
    assert.equal(old.json.error, 'invalid_client');
    const renewed = await postForm(`${b.url}/introspect`, { token }, { basic: [c.id, r.json.client_secret] });
    assert.equal(renewed.json.active, true);
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
    const admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
    try {
      await admin.query("select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'keymanager-listener' and datname = current_database()");
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
});
