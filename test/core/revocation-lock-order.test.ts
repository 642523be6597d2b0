// Revoking every row of a client or a user, whichever way (keymgr and the management API through
// the store, an admin script through the triggers: disabling, deleting), locks the owner's Grant
// rows in digest order first — the order in which a batch of refresh token rotations locks
// them. A rotation holding the first grant and about to take the second is then waited for,
// instead of the two waiting for each other until PostgreSQL aborts one (deadlock_timeout).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { sql } from 'kysely';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { makeClient, makeUser } from '../support/fixtures.ts';
import { revokeTokensOfAccount, revokeTokensOfClient, tokenDigest } from '../../src/store/tokens.ts';

const newToken = () => randomBytes(32).toString('base64url');

describe('revocations lock grants in the order rotations do', () => {
  let database: TestDatabase;

  before(async () => {
    database = await createTestDatabase();
  });
  after(async () => {
    await database?.drop();
  });

  /**
   * Two live grants of one owner, the one with the greater digest written first (so that it
   * comes first in the table), each with a refresh token. Returns their digests, lower first.
   */
  async function twoGrants(owner: { clientId: string; accountId?: string }): Promise<[string, string]> {
    let a = newToken();
    let b = newToken();
    if (tokenDigest(a) > tokenDigest(b)) [a, b] = [b, a];
    const expires = new Date(Date.now() + 3_600_000);
    for (const grantId of [b, a]) {
      await database.db.insertInto('tokens').values([
        { id_sha256: tokenDigest(grantId), kind: 'Grant', client_id: owner.clientId, account_id: owner.accountId ?? null, expires_at: expires, payload: JSON.stringify({}) },
        { id_sha256: tokenDigest(newToken()), kind: 'RefreshToken', client_id: owner.clientId, account_id: owner.accountId ?? null, grant_id: grantId, expires_at: expires, payload: JSON.stringify({}) },
      ]).execute();
    }
    return [tokenDigest(a), tokenDigest(b)];
  }

  /**
   * Holds the lower grant share-locked as a rotation batch does, lets `revoke` start, waits
   * until it waits for that lock, then takes the higher grant as the batch would next. Returns
   * what the revocation resolved to and whether the second lock was granted.
   */
  async function raceWithRotation<T>([lower, higher]: [string, string], revoke: () => Promise<T>): Promise<{ revoked: T; secondLock: boolean }> {
    const rotation = new pg.Client({ connectionString: database.url });
    await rotation.connect();
    try {
      await rotation.query('begin');
      await rotation.query(`set local lock_timeout = '10s'`);
      await rotation.query(`select 1 from tokens where id_sha256 = $1 for share`, [lower]);
      const pid = (await rotation.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      const revoking = revoke();
      revoking.catch(() => {});
      const deadline = Date.now() + 10_000;
      for (;;) {
        const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity where ${pid}::int = any(pg_blocking_pids(pid))`.execute(database.db);
        if (rows[0]!.n > 0) break;
        if (Date.now() > deadline) throw new Error('the revocation never waited for the rotation');
        await new Promise((r) => setTimeout(r, 10));
      }
      const secondLock = await rotation.query(`select 1 from tokens where id_sha256 = $1 for share`, [higher]).then(() => true, () => false);
      await rotation.query(secondLock ? 'commit' : 'rollback');
      return { revoked: await revoking, secondLock };
    } finally {
      await rotation.end();
    }
  }

  const liveRows = async (column: 'client_id' | 'account_id', value: string) => Number((await database.db.selectFrom('tokens')
    .select((eb) => eb.fn.countAll().as('n')).where(column, '=', value).where('revoked_at', 'is', null).executeTakeFirstOrThrow()).n);

  it('revokeTokensOfClient (keymgr, management API): the rotation gets both grants, then the revocation revokes all four rows', async () => {
    const client = await makeClient(database.db);
    const grants = await twoGrants({ clientId: client.id });
    const { revoked, secondLock } = await raceWithRotation(grants, () => revokeTokensOfClient(database.db, client.id));
    assert.deepEqual({ revoked, secondLock }, { revoked: 2, secondLock: true });
    assert.equal(await liveRows('client_id', client.id), 0);
  });

  it('revokeTokensOfAccount: the same for a user', async () => {
    const client = await makeClient(database.db);
    const user = await makeUser(database.db, `u-${newToken().slice(0, 8)}`, { params: { memoryCost: 1024, timeCost: 1, parallelism: 1 } });
    const grants = await twoGrants({ clientId: client.id, accountId: user.id });
    const { revoked, secondLock } = await raceWithRotation(grants, () => revokeTokensOfAccount(database.db, user.id));
    assert.deepEqual({ revoked, secondLock }, { revoked: 2, secondLock: true });
    assert.equal(await liveRows('account_id', user.id), 0);
  });

  it('disabling a client with SQL (the trigger): the same', async () => {
    const client = await makeClient(database.db);
    const grants = await twoGrants({ clientId: client.id });
    const { secondLock } = await raceWithRotation(grants, () => database.db.updateTable('clients').set({ disabled: true }).where('client_id', '=', client.id).execute());
    assert.equal(secondLock, true);
    assert.equal(await liveRows('client_id', client.id), 0);
  });

  it('disabling a user with SQL (the trigger): the same', async () => {
    const client = await makeClient(database.db);
    const user = await makeUser(database.db, `u-${newToken().slice(0, 8)}`, { params: { memoryCost: 1024, timeCost: 1, parallelism: 1 } });
    const grants = await twoGrants({ clientId: client.id, accountId: user.id });
    const { secondLock } = await raceWithRotation(grants, () => database.db.updateTable('users').set({ disabled: true }).where('id', '=', user.id).execute());
    assert.equal(secondLock, true);
    assert.equal(await liveRows('account_id', user.id), 0);
  });

  it('deleting a client with SQL (its rows go through the foreign key): the same, and its rows are gone', async () => {
    const client = await makeClient(database.db);
    const grants = await twoGrants({ clientId: client.id });
    const { secondLock } = await raceWithRotation(grants, () => database.db.deleteFrom('clients').where('client_id', '=', client.id).execute());
    assert.equal(secondLock, true);
    assert.equal(Number((await database.db.selectFrom('tokens').select((eb) => eb.fn.countAll().as('n')).where('client_id', '=', client.id).executeTakeFirstOrThrow()).n), 0);
  });
});
