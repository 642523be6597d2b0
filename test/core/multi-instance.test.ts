// Two instances on one database (and one keys directory): what one issues, the other
// introspects and revokes, and the first sees the revocation at once.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, tempDir, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { ensureScopes, issueToken, makeClient, type TestClient } from '../support/fixtures.ts';
import { sql } from 'kysely';
import { waitFor } from '../support/wait.ts';
import { readMigrations } from '../../src/db/migrator.ts';

describe('two instances sharing one database', () => {
  let database: TestDatabase;
  let a: TestServer;
  let b: TestServer;
  let client: TestClient;
  let jwtClient: TestClient;

  before(async () => {
    database = await createTestDatabase();
    const keysDir = tempDir('km-shared-keys-');
    a = await startTestServer(database.url, { keysDir });
    b = await startTestServer(database.url, { keysDir });
    client = await makeClient(database.db);
    jwtClient = await makeClient(database.db, { tokenFormat: 'jwt' });
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await database?.drop();
  });

  for (const kind of ['opaque', 'jwt'] as const) {
    it(`a ${kind} token from A is introspected and revoked at B, and A sees the revocation`, async () => {
      const c = kind === 'jwt' ? jwtClient : client;
      const token = await issueToken(a.url, c);
      const atB = await postForm(`${b.url}/introspect`, { token }, { basic: c.basic });
      assert.equal(atB.json.active, true);
      assert.equal(atB.json.client_id, c.id);
      assert.equal((await postForm(`${b.url}/revoke`, { token }, { basic: c.basic })).status, 200);
      assert.deepEqual((await postForm(`${a.url}/introspect`, { token }, { basic: c.basic })).json, { active: false });
      assert.deepEqual((await postForm(`${b.url}/introspect`, { token }, { basic: c.basic })).json, { active: false });
    });
  }

  it('a scope registry change made with plain SQL reaches both instances (LISTEN/NOTIFY)', async () => {
    await ensureScopes(database.db, ['read', 'extra']);
    const c = await makeClient(database.db, { scope: ['read', 'extra'] });
    const granted = async (server: TestServer) =>
      (await postForm(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read extra' }, { basic: c.basic })).json.scope;
    // Both instances have the registry cached now.
    assert.equal(await granted(a), 'read extra');
    assert.equal(await granted(b), 'read extra');
    await sql`delete from scopes where name = 'extra'`.execute(database.db);
    // The notice travels asynchronously: wait until each instance has dropped it (README: a
    // change made with plain SQL counts as soon as its notice arrives).
    for (const server of [a, b]) {
      await waitFor(`${server.url} still grants the deleted scope`, async () => (await granted(server)) === 'read');
    }
  });

  it('both instances publish the same signing key', async () => {
    const [ja, jb] = await Promise.all([fetch(`${a.url}/jwks`).then((r) => r.json()), fetch(`${b.url}/jwks`).then((r) => r.json())]);
    assert.deepEqual(ja, jb);
  });
});

describe('two instances starting together on a fresh database', () => {
  let database: TestDatabase;
  const servers: TestServer[] = [];

  before(async () => {
    database = await createTestDatabase({ migrated: false });
  });
  after(async () => {
    for (const s of servers) await s.stop();
    await database?.drop();
  });

  it('both come up; the migrations run once, under the advisory lock, by one of them', async () => {
    const keysDir = tempDir('km-shared-keys-');
    const started = await Promise.allSettled([startTestServer(database.url, { keysDir }), startTestServer(database.url, { keysDir })]);
    for (const r of started) if (r.status === 'fulfilled') servers.push(r.value);
    assert.deepEqual(started.map((r) => r.status === 'rejected' ? String(r.reason) : 'started'), ['started', 'started']);
    // The files of db/migrations, each applied once.
    const files = readMigrations().map((m) => `${m.version}_${m.name}`);
    const rows = await database.db.selectFrom('schema_migrations').select(['version', 'name']).orderBy('version').execute();
    assert.deepEqual(rows.map((r) => `${r.version}_${r.name}`), files);
    // One instance applied them all, the other found them applied.
    const applied = servers.map((s) => s.logsSince(0).filter((e) => e.msg === 'migration applied').map((e) => e.migration as string));
    assert.deepEqual(applied.map((list) => list.length).sort((x, y) => x - y), [0, files.length]);
    assert.deepEqual(applied.flat(), files);
    // And both serve.
    const client = await makeClient(database.db);
    for (const s of servers) await issueToken(s.url, client);
  });
});
