// A request still running when shutdown_timeout ends is cut off (README "Database outages and
// stopping"), and what it had not committed is rolled back: a refresh held in the database
// (its refresh token's row locked by the test) leaves its refresh token unused, so the client,
// told nothing, can refresh with it at another instance; it is not taken for reuse. Only the
// work of requests cut off is ended: background work, and what a finished request left
// running, goes on.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { makeClient, makeUser } from '../support/fixtures.ts';
import { waitFor } from '../support/wait.ts';
import { tokenDigest } from '../../src/store/tokens.ts';
import { sql } from 'kysely';
import { abandonWorkInFlight, createDatabase } from '../../src/db/database.ts';
import { workOwners } from '../../src/db/work-owner.ts';

const FAST = { memoryCost: 8192, timeCost: 1, parallelism: 1 };

describe('a request cut off at shutdown_timeout', () => {
  let database: TestDatabase;
  let next: TestServer | undefined;
  /** Should a test fail before it stops its server: the database cannot be dropped while it runs. */
  let stopServer: (() => Promise<void>) | undefined;

  before(async () => {
    database = await createTestDatabase();
  });
  after(async () => {
    await stopServer?.().catch(() => {});
    await next?.stop();
    await database?.drop();
  });

  for (const clientGoesAway of [false, true]) it(`leaves nothing half done: the refresh held in the database is rolled back, and its refresh token still works elsewhere${
    clientGoesAway ? ' — also when its client had gone away before the stop (a proxy\'s timeout)' : ''}`, async () => {
    // Statements are not cancelled by the database request timeout while the test holds them.
    const server = await startTestServer(database.url, { shutdownTimeout: 1, databaseRequestTimeout: 600 });
    const app = await makeClient(database.db, { grantTypes: ['password', 'refresh_token'], scope: ['read'] });
    const user = await makeUser(database.db, `cut-at-stop-${clientGoesAway}`, { params: FAST });
    const signIn = await postForm(`${server.url}/token`, { grant_type: 'password', username: user.username, password: user.password, scope: 'read' }, { basic: app.basic });
    assert.equal(signIn.status, 200, signIn.text);
    const refreshToken = signIn.json.refresh_token as string;
    const tokensBefore = await database.db.selectFrom('tokens').select(['id_sha256', 'consumed_at', 'revoked_at']).orderBy('id_sha256').execute();

    const lock = new pg.Client({ connectionString: database.url });
    await lock.connect();
    let stopping: Promise<void> | undefined;
    stopServer = () => stopping ?? server.stop();
    try {
      await lock.query('begin');
      await lock.query('select 1 from tokens where id_sha256 = $1 for update', [tokenDigest(refreshToken)]);
      const away = new AbortController();
      const held = postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: refreshToken }, { basic: app.basic, signal: away.signal })
        .then((res) => `answered ${res.status}`, () => 'cut off');
      // Not asked on `lock`: inside a transaction pg_stat_activity stays as it was first read.
      await waitFor('the refresh to wait for the row lock', async () => (await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity
        where wait_event_type = 'Lock' and datname = current_database()`.execute(database.db)).rows[0]!.n === 1);

      if (clientGoesAway) {
        away.abort();
        assert.equal(await held, 'cut off');
      }
      const mark = server.logMark();
      stopping = server.stop();
      assert.equal(await held, 'cut off');
      // Only once the stop has dealt with it does the test let the statement go on.
      const cut = await waitFor('the stop to report the request it cut off', async () =>
        server.logsSince(mark).find((l) => String(l.msg).startsWith('requests still running after shutdown_timeout')));
      assert.equal(cut.database_connections_ended, 1);
      assert.deepEqual(cut.requests, [{ method: 'POST', path: '/token', seconds: (cut.requests as { seconds: number }[])[0]!.seconds }]);
      await waitFor('the refresh to stop waiting for the lock', async () => (await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity
        where wait_event_type = 'Lock' and datname = current_database()`.execute(database.db)).rows[0]!.n === 0);
    } finally {
      await lock.query('commit').catch(() => {});
      await lock.end();
    }
    await stopping;

    // Nothing was written: no token consumed, none added.
    const tokensAfter = await database.db.selectFrom('tokens').select(['id_sha256', 'consumed_at', 'revoked_at']).orderBy('id_sha256').execute();
    assert.deepEqual(tokensAfter, tokensBefore);
    // The client retries at another instance with the refresh token it has.
    next = await startTestServer(database.url, { issuer: server.config.issuer, defaultAudience: server.config.defaultAudience });
    const retried = await postForm(`${next.url}/token`, { grant_type: 'refresh_token', refresh_token: refreshToken }, { basic: app.basic });
    assert.equal(retried.status, 200, retried.text);
    assert.equal(typeof retried.json.refresh_token, 'string');
    await next.stop();
    next = undefined;
  });

  it('ends only the connections at work for an abandoned owner; other work on the pool goes on', async () => {
    const db = createDatabase({ url: database.url, poolSize: 4, applicationName: 'keymanager-test' });
    const lock = new pg.Client({ connectionString: database.url });
    await lock.connect();
    try {
      await sql`create table held (n int)`.execute(db);
      await lock.query('begin');
      await lock.query('lock table held in access exclusive mode');
      const abandoned = { abandoned: false };
      const cutOff = workOwners.run(abandoned, () => sql`insert into held values (1)`.execute(db)).then(() => 'committed', (err: Error) => err.message);
      const finished = workOwners.run({ abandoned: false }, () => sql`insert into held values (2)`.execute(db)).then(() => 'committed', (err: Error) => err.message);
      const background = sql`insert into held values (3)`.execute(db).then(() => 'committed', (err: Error) => err.message);
      await waitFor('the three to wait for the lock', async () => (await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity
        where wait_event_type = 'Lock' and query like 'insert into held %'`.execute(database.db)).rows[0]!.n === 3);
      abandoned.abandoned = true;
      assert.equal(await abandonWorkInFlight(db), 1);
      assert.match(await cutOff, /terminating connection due to administrator command/);
      // Nothing starts for it again.
      await assert.rejects(workOwners.run(abandoned, () => sql`select 1`.execute(db)), /the server is stopping/);
      await lock.query('commit');
      assert.deepEqual([await finished, await background], ['committed', 'committed']);
      assert.deepEqual((await sql<{ n: number }>`select n from held order by n`.execute(db)).rows.map((r) => r.n), [2, 3]);
    } finally {
      await lock.query('rollback').catch(() => {});
      await lock.end();
      await db.destroy();
    }
  });
});
