// A code redeemed twice at the same moment is a code used twice (RFC 6749 §4.1.2: deny, and
// revoke what it gave), on one instance or two: the README's "presented a second time" holds
// when the second copy arrives before the first has finished. Open transactions hold the rows
// in place so that each race is set the same way every run.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm, type Reply } from '../support/http.ts';
import { makeClient, makeScope, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { Browser, runCodeFlow } from '../support/browserless.ts';
import { tokenDigest } from '../../src/store/tokens.ts';

const REDIRECT = 'https://app.example/cb';
const INVALID_GRANT = { error: 'invalid_grant', error_description: 'grant request is invalid' };

describe('authorization codes redeemed at the same moment', () => {
  let database: TestDatabase;
  let one: TestServer;
  let two: TestServer;
  let web: TestClient;
  let alice: TestUser;
  let holders: pg.Client[] = [];

  before(async () => {
    database = await createTestDatabase();
    one = await startTestServer(database.url);
    // One deployment: the same issuer and keys.
    two = await startTestServer(database.url, { issuer: one.url, keysDir: one.keysDir });
    await makeScope(database.db, 'orders:read');
    web = await makeClient(database.db, { grantTypes: ['authorization_code', 'refresh_token'], scope: ['orders:read'], redirectUris: [REDIRECT] });
    alice = await makeUser(database.db, 'alice', { params: { memoryCost: 8192, timeCost: 1, parallelism: 1 } });
  });
  after(async () => {
    for (const holder of holders) await holder.end().catch(() => undefined);
    await one?.stop();
    await two?.stop();
    await database?.drop();
  });

  /** A connection of the test's own, in an open transaction. */
  const transaction = async () => {
    const holder = new pg.Client({ connectionString: database.url });
    await holder.connect();
    holders.push(holder);
    await holder.query('begin');
    return holder;
  };

  /** Waits until `n` sessions wait on a lock and, when given, one of them runs a statement matching `statement`. */
  const lockWaiters = async (watcher: pg.Client, n: number, statement?: RegExp) => {
    for (;;) {
      await watcher.query('select pg_stat_clear_snapshot()'); // else fixed at its first read in a transaction
      const { rows } = await watcher.query<{ query: string }>(`select query from pg_stat_activity
        where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()`);
      if (rows.length >= n && (!statement || rows.some((r) => statement.test(r.query)))) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  const codeAndGrant = async () => {
    const code = (await runCodeFlow(new Browser(one.url), { clientId: web.id, redirectUri: REDIRECT, scope: 'orders:read', username: alice.username, password: alice.password })).searchParams.get('code')!;
    const { grant_id } = await database.db.selectFrom('tokens').select('grant_id').where('id_sha256', '=', tokenDigest(code)).executeTakeFirstOrThrow();
    return { code, grantId: grant_id! };
  };

  const redeem = (server: TestServer, code: string) =>
    postForm(`${server.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT }, { basic: web.basic });

  /** The grant's own row and the tokens issued under it (not the code) that are not revoked. */
  const liveRowsOf = async (grantId: string) => (await database.db.selectFrom('tokens').select('kind')
    .where((eb) => eb.or([eb('grant_id', '=', grantId), eb('id_sha256', '=', tokenDigest(grantId))]))
    .where('revoked_at', 'is', null).where('kind', '!=', 'AuthorizationCode').execute()).map((r) => r.kind);

  it('two instances: one gets tokens, the other is refused as a reuse, and those tokens are revoked before it answers', async () => {
    const { code, grantId } = await codeAndGrant();
    const codeLock = await transaction();
    await codeLock.query('select 1 from tokens where id_sha256 = $1 for update', [tokenDigest(code)]);
    // The grant row held in share mode: the winner may write under it, the revocation must wait.
    const grantLock = await transaction();
    await grantLock.query(`select 1 from tokens where id_sha256 = $1 and kind = 'Grant' for share`, [tokenDigest(grantId)]);
    const marks = [one.logMark(), two.logMark()];
    const settled: (Reply | undefined)[] = [undefined, undefined];
    const pending = [one, two].map((s, i) => redeem(s, code).then((r) => (settled[i] = r)));
    // Both read the code unused and wait to consume it.
    await lockWaiters(codeLock, 2);
    await codeLock.query('rollback');

    const winner = await Promise.race(pending);
    assert.equal(winner.status, 200, winner.text);
    assert.equal(typeof winner.json.refresh_token, 'string');
    // The other lost the consume and is revoking the grant: it waits for the share lock.
    await lockWaiters(grantLock, 1, /^update "tokens" set "revoked_at"/);
    assert.equal(settled.filter((r) => r !== undefined).length, 1, 'the loser has not answered yet');
    assert.deepEqual((await liveRowsOf(grantId)).sort(), ['AccessToken', 'Grant', 'RefreshToken']);
    await grantLock.query('rollback');

    const loser = (await Promise.all(pending)).find((r) => r !== winner)!;
    assert.equal(loser.status, 400, loser.text);
    assert.deepEqual(loser.json, INVALID_GRANT);
    // By the time it answered, everything the code gave was revoked, for every instance.
    assert.deepEqual(await liveRowsOf(grantId), []);
    for (const server of [one, two]) {
      for (const token of [winner.json.access_token, winner.json.refresh_token]) {
        const res = await postForm(`${server.url}/introspect`, { token }, { basic: web.basic });
        assert.deepEqual(res.json, { active: false });
      }
    }
    const refreshed = await postForm(`${two.url}/token`, { grant_type: 'refresh_token', refresh_token: winner.json.refresh_token }, { basic: web.basic });
    assert.equal(refreshed.status, 400);
    assert.deepEqual(refreshed.json, INVALID_GRANT);
    // Logged as reuse once, by the instance that lost.
    const reuse = [...one.logsSince(marks[0]!), ...two.logsSince(marks[1]!)].filter((e) => e.security === 'token_reuse');
    assert.equal(reuse.length, 1, JSON.stringify(reuse));
    assert.equal(reuse[0]!.detail, 'authorization code already consumed');
  });

  it('a grant revoked between the code\'s consumption and the writing of its tokens: refused, and no token is left live', async () => {
    const { code, grantId } = await codeAndGrant();
    const codeLock = await transaction();
    await codeLock.query('select 1 from tokens where id_sha256 = $1 for update', [tokenDigest(code)]);
    const pending = redeem(one, code);
    await lockWaiters(codeLock, 1);
    // What the other redemption's revocation does first (the Grant row), committed while this
    // one has read the code and not yet consumed it.
    await database.db.updateTable('tokens').set({ revoked_at: new Date() }).where('id_sha256', '=', tokenDigest(grantId)).where('kind', '=', 'Grant').execute();
    await codeLock.query('rollback');
    const res = await pending;
    assert.equal(res.status, 400, res.text);
    assert.deepEqual(res.json, INVALID_GRANT);
    assert.deepEqual(await liveRowsOf(grantId), []);
  });
});
