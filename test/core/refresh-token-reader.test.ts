// Refresh token lookups batched (createRefreshTokenReader): lookups asked for while one is in
// flight go together in the next statement; each caller gets its own token with its grant, user
// and roles, or nothing when its token is not live — whatever else is in the batch; a change
// committed before a lookup is asked for is seen by it; without the database every caller fails.
// The batch statements keep their generic plan rather than being planned on every execution.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTcpProxy, viaProxy, type TcpProxy } from '../support/tcp-proxy.ts';
import { makeClient, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { sql } from 'kysely';
import { createDatabase, type Db } from '../../src/db/database.ts';
import { createRefreshTokenReader, createTokenWriter, tokenDigest } from '../../src/store/tokens.ts';

const newToken = () => randomBytes(32).toString('base64url');

describe('refresh token reader (batched lookups)', () => {
  let database: TestDatabase;
  let proxy: TcpProxy;
  let client: TestClient;
  let alice: TestUser;

  before(async () => {
    database = await createTestDatabase();
    const target = new URL(database.url);
    proxy = await startTcpProxy(target.hostname, Number(target.port));
    client = await makeClient(database.db, { scope: ['read'] });
    alice = await makeUser(database.db, `alice-${newToken().slice(0, 8)}`, { roles: ['auditor', 'admin'], params: { memoryCost: 1024, timeCost: 1, parallelism: 1 } });
  });
  after(async () => {
    await proxy?.close();
    await database?.drop();
  });

  /** A grant and a live refresh token under it for alice, numbered n in its payload. */
  const chain = async (n: number) => {
    const writer = createTokenWriter(database.db);
    const grantId = newToken();
    const refreshToken = newToken();
    const expiresAt = new Date(Date.now() + 3_600_000);
    const owner = { clientId: client.id, accountId: alice.id };
    await writer.upsert(grantId, { kind: 'Grant', ...owner, expiresAt, payload: { kind: 'Grant', n } });
    await writer.upsert(refreshToken, { kind: 'RefreshToken', ...owner, grantId, scope: 'read', expiresAt, payload: { kind: 'RefreshToken', n } });
    return { grantId, refreshToken };
  };

  /** A Db whose statements are counted. */
  const counted = () => {
    const counter = { statements: 0, db: undefined as unknown as Db };
    counter.db = createDatabase({ url: database.url, poolSize: 4, applicationName: 'keymanager-test', onQuery: () => { counter.statements++; } });
    return counter;
  };

  it('twenty lookups at once: the first alone, the nineteen that waited in one statement, each with its own token and context', async () => {
    const chains = await Promise.all(Array.from({ length: 20 }, (_, n) => chain(n)));
    const counter = counted();
    try {
      const read = createRefreshTokenReader(counter.db);
      const found = await Promise.all(chains.map((c) => read(c.refreshToken)));
      assert.equal(counter.statements, 2);
      found.forEach((context, n) => {
        assert.ok(context, `token ${n} not found`);
        assert.equal(context.token.id_sha256, tokenDigest(chains[n]!.refreshToken));
        assert.equal((context.token.payload as { n: number }).n, n);
        assert.equal((context.grant?.payload as { n: number } | undefined)?.n, n);
        assert.deepEqual(context.user, { id: alice.id, username: alice.username, disabled: false });
        assert.deepEqual(context.roles, ['admin', 'auditor']);
      });
    } finally {
      await counter.db.destroy();
    }
  });

  it('in one batch, a revoked, an expired, an unknown and a repeated token: nothing for the first three, the same for the repeat, the others found', async () => {
    const chains = await Promise.all(Array.from({ length: 4 }, (_, n) => chain(100 + n)));
    const [live, revoked, expired, again] = chains as [typeof chains[0], typeof chains[0], typeof chains[0], typeof chains[0]];
    await database.db.updateTable('tokens').set({ revoked_at: new Date() }).where('id_sha256', '=', tokenDigest(revoked.refreshToken)).execute();
    await database.db.updateTable('tokens').set({ expires_at: new Date(Date.now() - 1000) }).where('id_sha256', '=', tokenDigest(expired.refreshToken)).execute();
    const read = createRefreshTokenReader(database.db);
    // The first goes alone; the rest wait and share the next statement (or two, for the repeat).
    const found = await Promise.all([
      read(live.refreshToken), read(revoked.refreshToken), read(expired.refreshToken), read(newToken()),
      read(again.refreshToken), read(again.refreshToken), read(live.refreshToken),
    ]);
    assert.deepEqual(found.map((c) => (c?.token.payload as { n: number } | undefined)?.n), [100, undefined, undefined, undefined, 103, 103, 100]);
  });

  it('sees a consumption committed before it was asked for, while another lookup was in flight', async () => {
    const [first, second] = await Promise.all([chain(200), chain(201)]);
    const read = createRefreshTokenReader(database.db);
    const inFlight = read(first!.refreshToken);
    await database.db.updateTable('tokens').set({ consumed_at: new Date() }).where('id_sha256', '=', tokenDigest(second!.refreshToken)).execute();
    const [, afterConsume] = await Promise.all([inFlight, read(second!.refreshToken)]);
    assert.ok(afterConsume?.token.consumed_at instanceof Date, 'the lookup asked for after the consumption did not see it');
  });

  it('the lookup and the rotation statements are planned five times on a connection, not on every execution', async () => {
    // PREPARE's documentation: the first five executions use plans for the values given; after
    // that a generic plan that costs no more is kept. A plan made for an array's length would
    // always cost less, and the statement would be planned anew every time.
    const chains = await Promise.all(Array.from({ length: 25 }, (_, n) => chain(400 + n)));
    const single = createDatabase({ url: database.url, poolSize: 1, applicationName: 'keymanager-test' });
    try {
      const read = createRefreshTokenReader(single);
      const writer = createTokenWriter(single);
      const expiresAt = new Date(Date.now() + 3_600_000);
      // Five bursts of five: each is two executions (the first alone, the four that waited together).
      for (let burst = 0; burst < 5; burst++) {
        const five = chains.slice(burst * 5, burst * 5 + 5);
        assert.equal((await Promise.all(five.map((c) => read(c.refreshToken)))).filter(Boolean).length, 5);
        const won = await Promise.all(five.map((c) => writer.rotate(c.refreshToken, c.grantId, ['RefreshToken', 'AccessToken'].map((kind) => ({
          id: newToken(), model: { kind, clientId: client.id, accountId: alice.id, grantId: c.grantId, expiresAt, payload: { kind } },
        })))));
        assert.deepEqual(won, Array(5).fill(true));
      }
      const { rows: plans } = await sql<{ name: string; custom_plans: string; generic_plans: string }>`
        select name, custom_plans, generic_plans from pg_prepared_statements order by name`.execute(single);
      assert.deepEqual(plans.map((p) => ({ ...p })), [
        { name: 'km_find_refresh_tokens_with_context', custom_plans: '5', generic_plans: '5' },
        { name: 'km_rotate_refresh_tokens', custom_plans: '5', generic_plans: '5' },
      ]);
    } finally {
      await single.destroy();
    }
  });

  it('with the database unreachable every lookup of a burst fails', async () => {
    const chains = await Promise.all(Array.from({ length: 10 }, (_, n) => chain(300 + n)));
    const proxied = createDatabase({ url: viaProxy(database.url, proxy), poolSize: 4, applicationName: 'keymanager-test', requestTimeoutMs: 2000 });
    try {
      const read = createRefreshTokenReader(proxied);
      await proxy.cut();
      const results = await Promise.allSettled(chains.map((c) => read(c.refreshToken)));
      assert.deepEqual(results.map((r) => r.status), Array(10).fill('rejected'));
    } finally {
      await proxy.restore();
      await proxied.destroy();
    }
  });
});
