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
