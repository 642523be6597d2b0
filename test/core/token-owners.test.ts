// RFC 7662 §2.2: a token of a deleted or disabled user, or of a disabled client, is not
// active — from the next request on, on every instance, when the change came from keymgr; when
// an admin script wrote SQL, as soon as its notice arrives (README "Caches, and when a change
// counts everywhere"; the SQL case here introspects nothing before the change, so no instance
// holds those tokens and the next request reads the database). Re-enabling brings nothing back.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { runKeymgr } from '../support/cli.ts';
import { issueToken, makeClient, makeScope, makeUser, type TestClient } from '../support/fixtures.ts';
import { tokenDigest } from '../../src/store/tokens.ts';
import { createClientDirectory } from '../../src/oauth/client-directory.ts';
import { createRefreshTokenReader, createTokenWriter } from '../../src/store/tokens.ts';
import { createAdapterClass } from '../../src/oauth/adapter.ts';
import { createTokenRows } from '../../src/oauth/token-rows.ts';
import pg from 'pg';

describe('tokens do not outlive their user or client', () => {
  let database: TestDatabase;
  let one: TestServer;
  let two: TestServer;
  let app: TestClient;
  let gateway: TestClient;
  let env: Record<string, string>;

  before(async () => {
    database = await createTestDatabase();
    one = await startTestServer(database.url);
    two = await startTestServer(database.url);
    await makeScope(database.db, 'profile');
    app = await makeClient(database.db, { grantTypes: ['password', 'refresh_token'], scope: ['profile'] });
    gateway = await makeClient(database.db, { introspectAny: true });
    env = { DATABASE_URL: database.url, KM_KEYS_DIR: one.keysDir };
  });
  after(async () => {
    await one?.stop();
    await two?.stop();
    await database?.drop();
  });

  // A refresh token is active only to its own client (README "Who may ask"): app's are asked
  // about by app, every access token by the gateway.
  const refreshTokens = new Set<string>();
  const issuedToApp = (json: { access_token: string; refresh_token: string }) => {
    refreshTokens.add(json.refresh_token);
    return json;
  };
  const introspect = (server: TestServer, token: string) =>
    postForm(`${server.url}/introspect`, { token }, { basic: refreshTokens.has(token) ? app.basic : gateway.basic });
  const signIn = async (username: string, password: string) => {
    const res = await postForm(`${one.url}/token`, { grant_type: 'password', username, password, scope: 'profile' }, { basic: app.basic });
    assert.equal(res.status, 200, res.text);
    return issuedToApp(res.json);
  };
  const assertActive = async (tokens: string[]) => {
    for (const t of tokens) for (const s of [one, two]) assert.equal((await introspect(s, t)).json.active, true);
  };
  const assertInactive = async (tokens: string[]) => {
    for (const t of tokens) for (const s of [one, two]) assert.deepEqual((await introspect(s, t)).json, { active: false });
  };
  const refreshRefused = async (refreshToken: string) => {
    const res = await postForm(`${two.url}/token`, { grant_type: 'refresh_token', refresh_token: refreshToken }, { basic: app.basic });
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'invalid_grant');
  };

  it('keymgr user delete: access and refresh tokens inactive on both instances', async () => {
    const frank = await makeUser(database.db, 'frank');
    const t = await signIn('frank', frank.password);
    await assertActive([t.access_token, t.refresh_token]);
    const res = await runKeymgr(['user', 'delete', 'frank', '--json'], env);
    assert.equal(res.code, 0, res.stderr);
    await assertInactive([t.access_token, t.refresh_token]);
    await refreshRefused(t.refresh_token);
  });

  it('keymgr user disable: inactive, and still inactive after enable', async () => {
    const gail = await makeUser(database.db, 'gail');
    const t = await signIn('gail', gail.password);
    await assertActive([t.access_token, t.refresh_token]);
    assert.equal((await runKeymgr(['user', 'disable', 'gail'], env)).code, 0);
    await assertInactive([t.access_token, t.refresh_token]);
    assert.equal((await runKeymgr(['user', 'enable', 'gail'], env)).code, 0);
    await assertInactive([t.access_token, t.refresh_token]);
    await refreshRefused(t.refresh_token);
    const again = await signIn('gail', gail.password);
    await assertActive([again.access_token]);
  });

  it('an admin script disabling or deleting a user in SQL has the same effect', async () => {
    const hugo = await makeUser(database.db, 'hugo');
    const ivy = await makeUser(database.db, 'ivy');
    const h = await signIn('hugo', hugo.password);
    const i = await signIn('ivy', ivy.password);
    await sql`update users set disabled = true where username = 'hugo'`.execute(database.db);
    await sql`delete from users where username = 'ivy'`.execute(database.db);
    await assertInactive([h.access_token, h.refresh_token, i.access_token, i.refresh_token]);
  });

  it('keymgr client disable: the client\'s tokens are inactive; enable does not bring them back', async () => {
    const machine = await makeClient(database.db);
    const token = await issueToken(one.url, machine);
    await assertActive([token]);
    const res = await runKeymgr(['client', 'disable', machine.id, '--json'], env);
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(res.json, { client_id: machine.id, disabled: true });
    await assertInactive([token]);
    assert.equal((await runKeymgr(['client', 'enable', machine.id], env)).code, 0);
    await assertInactive([token]);
    const fresh = await issueToken(two.url, machine);
    await assertActive([fresh]);
  });

  // A request that checked its user or client a moment before the change writes its token a
  // moment after it: the triggers never see that row. Simulated exactly: the rows are made
  // unrevoked again and dated after the disable, as such a request would have written them.
  const asIfWrittenDuringTheChange = (tokens: string[]) => sql`
    update tokens set revoked_at = null, issued_at = clock_timestamp()
    where id_sha256 in (${sql.join(tokens.map(tokenDigest))})`.execute(database.db);

  it('a token written just after its user was disabled is inactive, and stays so after enable', async () => {
    const jane = await makeUser(database.db, 'jane');
    const t = await signIn('jane', jane.password);
    assert.equal((await runKeymgr(['user', 'disable', 'jane'], env)).code, 0);
    await asIfWrittenDuringTheChange([t.access_token, t.refresh_token]);
    await assertInactive([t.access_token, t.refresh_token]);
    assert.equal((await runKeymgr(['user', 'enable', 'jane'], env)).code, 0);
    await assertInactive([t.access_token, t.refresh_token]);
    await refreshRefused(t.refresh_token);
  });

  it('a token written just after its client was disabled is inactive, and stays so after enable', async () => {
    const machine = await makeClient(database.db);
    const token = await issueToken(one.url, machine);
    assert.equal((await runKeymgr(['client', 'disable', machine.id], env)).code, 0);
    await asIfWrittenDuringTheChange([token]);
    await assertInactive([token]);
    assert.equal((await runKeymgr(['client', 'enable', machine.id], env)).code, 0);
    await assertInactive([token]);
  });

  it('a request that arrived before a disable and wrote its tokens after the re-enable gets inactive tokens', async () => {
    const lars = await makeUser(database.db, 'lars');
    // Hold the request after its password check: issuing the tokens reads user_roles.
    const blocker = new pg.Client({ connectionString: database.url });
    await blocker.connect();
    try {
      await blocker.query('begin');
      await blocker.query('lock table user_roles in access exclusive mode');
      const pending = postForm(`${one.url}/token`, { grant_type: 'password', username: 'lars', password: lars.password, scope: 'profile' }, { basic: app.basic });
      const deadline = Date.now() + 30_000;
      while (Number((await sql<{ n: string }>`select count(*) as n from pg_locks l join pg_class c on c.oid = l.relation
                     where c.relname = 'user_roles' and not l.granted`.execute(database.db)).rows[0]!.n) === 0) {
        assert.ok(Date.now() < deadline, 'the token request reached user_roles');
        await new Promise((r) => setTimeout(r, 20));
      }
      await sql`update users set disabled = true where username = 'lars'`.execute(database.db);
      await sql`update users set disabled = false where username = 'lars'`.execute(database.db);
      await blocker.query('commit');
      const res = await pending;
      assert.equal(res.status, 200, res.text);
      issuedToApp(res.json);
      await assertInactive([res.json.access_token, res.json.refresh_token]);
      await refreshRefused(res.json.refresh_token);
    } finally {
      await blocker.end();
    }
    const fresh = await signIn('lars', lars.password);
    await assertActive([fresh.access_token, fresh.refresh_token]);
  });

  it('a token of a client deleted while its request was served: 401 invalid_client, not a 500', async () => {
    const Adapter = createAdapterClass(database.db, createClientDirectory(database.db, undefined), createTokenRows(database.db, createTokenWriter(database.db), createRefreshTokenReader(database.db)), async () => true);
    await assert.rejects(
      new Adapter('ClientCredentials').upsert('t'.repeat(43), { kind: 'ClientCredentials', clientId: 'deleted-meanwhile', iat: 1, exp: 2 }, 60),
      (err: { error?: string; statusCode?: number }) => err.error === 'invalid_client' && err.statusCode === 401,
    );
  });

  it('under load: no token issued around a disable is active afterwards', async () => {
    const kim = await makeUser(database.db, 'kim');
    const issued: string[] = [];
    let stop = false;
    const loop = async (server: TestServer) => {
      while (!stop) {
        const res = await postForm(`${server.url}/token`, { grant_type: 'password', username: 'kim', password: kim.password, scope: 'profile' }, { basic: app.basic });
        if (res.status === 200) issued.push(res.json.access_token, issuedToApp(res.json).refresh_token);
      }
    };
    const loops = [one, two, one, two].map(loop);
    while (issued.length < 8) await new Promise((r) => setTimeout(r, 10));
    await sql`update users set disabled = true where username = 'kim'`.execute(database.db);
    await new Promise((r) => setTimeout(r, 200));
    stop = true;
    await Promise.all(loops);
    for (const token of issued) assert.deepEqual((await introspect(one, token)).json, { active: false });
  });

  it('keymgr client disable of an unknown client exits 1', async () => {
    const res = await runKeymgr(['client', 'disable', 'no-such-client'], env);
    assert.equal(res.code, 1);
    assert.equal(res.stderr.trim(), 'keymgr: no client no-such-client');
  });
});
