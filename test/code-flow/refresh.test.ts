// Refresh tokens (RFC 6749 §6, RFC 9700 §4.14): rotation on every use, reuse detection that
// revokes the grant, the concurrent-refresh race, no widening, lifetimes, revocation.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { makeClient, makeScope, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { tokenDigest } from '../../src/store/tokens.ts';
import { waitFor } from '../support/wait.ts';

describe('refresh tokens', () => {
  let database: TestDatabase;
  let server: TestServer;
  let client: TestClient;
  let other: TestClient;
  let user: TestUser;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url, { refreshTokenTtl: 7200, refreshTokenIdleTtl: 600, accessTokenTtl: 900 });
    await makeScope(database.db, 'a');
    await makeScope(database.db, 'b');
    client = await makeClient(database.db, { grantTypes: ['password', 'refresh_token'], scope: ['a', 'b'] });
    other = await makeClient(database.db, { grantTypes: ['password', 'refresh_token'], scope: ['a', 'b'] });
    user = await makeUser(database.db, 'rita');
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const signIn = async (scope = 'a b') => {
    const res = await postForm(`${server.url}/token`, { grant_type: 'password', username: user.username, password: user.password, scope }, { basic: client.basic });
    assert.equal(res.status, 200, res.text);
    return res.json as { access_token: string; refresh_token: string; scope: string };
  };
  const refresh = (token: string, by: TestClient = client, extra: Record<string, string> = {}) =>
    postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: token, ...extra }, { basic: by.basic });
  const active = async (token: string) => (await postForm(`${server.url}/introspect`, { token }, { basic: client.basic })).json.active === true;

  it('rotates on every use: a new refresh token each time, the used one no longer active', async () => {
    const first = await signIn();
    const second = await refresh(first.refresh_token);
    assert.equal(second.status, 200, second.text);
    assert.notEqual(second.json.refresh_token, first.refresh_token);
    assert.equal(second.json.expires_in, 900);
    assert.equal(await active(first.refresh_token), false);
    assert.equal(await active(second.json.refresh_token), true);
    const third = await refresh(second.json.refresh_token);
    assert.equal(third.status, 200);
  });

  it('reuse of a rotated refresh token revokes the whole grant and is logged', async () => {
    const first = await signIn();
    const second = (await refresh(first.refresh_token)).json;
    const mark = server.logMark();
    const reuse = await refresh(first.refresh_token);
    assert.equal(reuse.status, 400);
    assert.deepEqual(reuse.json, { error: 'invalid_grant', error_description: 'grant request is invalid' });
    // Logged by this very request, not by an earlier one.
    assert.equal(server.logsSince(mark).filter((e) => e.security === 'token_reuse').length, 1);
    for (const token of [first.access_token, second.access_token, second.refresh_token]) {
      assert.equal(await active(token), false, 'every token of the grant is revoked');
    }
    assert.equal((await refresh(second.refresh_token)).json.error, 'invalid_grant');
  });

  it('two simultaneous refreshes with one token: one success, one failure', async () => {
    for (let round = 0; round < 5; round++) {
      const { refresh_token } = await signIn();
      const results = await Promise.all([refresh(refresh_token), refresh(refresh_token)]);
      const ok = results.filter((r) => r.status === 200);
      assert.equal(ok.length, 1, `round ${round}: ${results.map((r) => r.status).join(', ')}`);
      assert.equal(results.find((r) => r.status !== 200)!.json.error, 'invalid_grant');
      const rows = await database.db.selectFrom('tokens').select('id_sha256')
        .where('kind', '=', 'RefreshToken').where('consumed_at', 'is', null).where('revoked_at', 'is', null)
        .where('grant_id', '=', (await database.db.selectFrom('tokens').select('grant_id').where('id_sha256', '=', tokenDigest(refresh_token)).executeTakeFirstOrThrow()).grant_id)
        .execute();
      assert.ok(rows.length <= 1, 'never two live refresh tokens for one grant');
    }
  });

  it('two instances refreshing one token at the same moment: one wins, the other revokes nothing', async () => {
    // Both requests read the token before either consumes it: an open transaction holds the
    // row locked, so each reads it (reads do not wait) and then waits to consume it.
    // One deployment: the same issuer (so the same audience) and the same keys.
    const second = await startTestServer(database.url, { refreshTokenTtl: 7200, refreshTokenIdleTtl: 600, accessTokenTtl: 900, issuer: server.url, keysDir: server.keysDir });
    const holder = new pg.Client({ connectionString: database.url });
    await holder.connect();
    try {
      const { access_token: original, refresh_token } = await signIn();
      const mark = server.logMark();
      await holder.query('begin');
      await holder.query('select 1 from tokens where id_sha256 = $1 for update', [tokenDigest(refresh_token)]);
      const pending = [server, second].map((s) => postForm(`${s.url}/token`, { grant_type: 'refresh_token', refresh_token }, { basic: client.basic }));
      // Both wait on the lock: the race is set, deterministically.
      for (let waiting = 0; waiting < 2;) {
        await holder.query('select pg_stat_clear_snapshot()'); // else fixed at its first read in this transaction
        const { rows } = await holder.query<{ n: number }>(`select count(*)::int as n from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()`);
        waiting = rows[0]!.n;
        if (waiting < 2) await new Promise((r) => setTimeout(r, 20));
      }
      await holder.query('commit');
      const results = await Promise.all(pending);
      const won = results.filter((r) => r.status === 200);
      const lost = results.filter((r) => r.status !== 200);
      assert.equal(won.length, 1, results.map((r) => r.text).join('\n'));
      assert.equal(lost[0]!.status, 400);
      assert.deepEqual(lost[0]!.json, { error: 'invalid_grant', error_description: 'grant request is invalid' });
      // The loser revoked nothing: the winner's tokens and the grant's earlier access token work,
      // on both instances, and the winner's refresh token is the grant's one live refresh token.
      const winner = won[0]!.json as { access_token: string; refresh_token: string };
      for (const s of [server, second]) {
        for (const token of [winner.access_token, winner.refresh_token, original]) {
          const introspected = await postForm(`${s.url}/introspect`, { token }, { basic: client.basic });
          assert.equal(introspected.json.active, true);
        }
      }
      const grantId = (await database.db.selectFrom('tokens').select('grant_id').where('id_sha256', '=', tokenDigest(refresh_token)).executeTakeFirstOrThrow()).grant_id!;
      const liveRefresh = await database.db.selectFrom('tokens').select('id_sha256').where('grant_id', '=', grantId).where('kind', '=', 'RefreshToken')
        .where('consumed_at', 'is', null).where('revoked_at', 'is', null).execute();
      assert.deepEqual(liveRefresh, [{ id_sha256: tokenDigest(winner.refresh_token) }]);
      const next = await postForm(`${second.url}/token`, { grant_type: 'refresh_token', refresh_token: winner.refresh_token }, { basic: client.basic });
      assert.equal(next.status, 200, next.text);
      // Nor was the race taken for a reuse (which would have revoked the grant).
      const written = [...server.logsSince(mark), ...second.logsSince(0)];
      assert.equal(written.some((e) => e.security === 'token_reuse'), false);
    } finally {
      await holder.end();
      await second.stop();
    }
  });

  it('a refresh that read its token before a /revoke committed writes nothing live after it', async () => {
    // The order an attacker looping refreshes with a stolen token gets most of the time: the
    // revocation starts, the refresh reads the token (still live: the revocation has not
    // committed), then the revocation commits. A transaction holding the token's row locked
    // lets the test set that order: /revoke waits on it, the refresh reads and then waits too.
    const holder = new pg.Client({ connectionString: database.url });
    await holder.connect();
    try {
      const { access_token, refresh_token } = await signIn();
      const grantId = (await database.db.selectFrom('tokens').select('grant_id').where('id_sha256', '=', tokenDigest(refresh_token)).executeTakeFirstOrThrow()).grant_id!;
      await holder.query('begin');
      await holder.query('select 1 from tokens where id_sha256 = $1 for update', [tokenDigest(refresh_token)]);
      const waiting = async (n: number) => {
        for (;;) {
          await holder.query('select pg_stat_clear_snapshot()');
          const { rows } = await holder.query<{ n: number }>(`select count(*)::int as n from pg_stat_activity
            where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()`);
          if (rows[0]!.n >= n) return;
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      const revoked = postForm(`${server.url}/revoke`, { token: refresh_token, token_type_hint: 'refresh_token' }, { basic: client.basic });
      await waiting(1);
      const refreshed = refresh(refresh_token);
      await waiting(2);
      await holder.query('commit');
      assert.equal((await revoked).status, 200);
      const answer = await refreshed;
      assert.equal(answer.status, 400, answer.text);
      assert.deepEqual(answer.json, { error: 'invalid_grant', error_description: 'grant request is invalid' });
      const live = await database.db.selectFrom('tokens').select('kind')
        .where((eb) => eb.or([eb('grant_id', '=', grantId), eb('id_sha256', '=', tokenDigest(grantId))]))
        .where('revoked_at', 'is', null).execute();
      assert.deepEqual(live, []);
      assert.equal(await active(access_token), false);
    } finally {
      await holder.end();
    }
  });

  it('tokens whose account_id an admin script set to something that is no user id are inactive, not a 500', async () => {
    const { access_token, refresh_token } = await signIn();
    await database.db.updateTable('tokens').set({ account_id: 'not-a-uuid' })
      .where('id_sha256', 'in', [tokenDigest(access_token), tokenDigest(refresh_token)]).execute();
    const introspected = await postForm(`${server.url}/introspect`, { token: access_token }, { basic: client.basic });
    assert.equal(introspected.status, 200);
    assert.deepEqual(introspected.json, { active: false });
    const refused = await refresh(refresh_token);
    assert.equal(refused.status, 400);
    assert.deepEqual(refused.json, { error: 'invalid_grant', error_description: 'grant request is invalid' });
    const revoked = await postForm(`${server.url}/revoke`, { token: access_token }, { basic: client.basic });
    assert.equal(revoked.status, 200);
  });

  it('a refresh refused after the token was read (invalid_target) leaves the presented token usable', async () => {
    // An instance with another issuer serves another audience: the refresh token's resource is
    // refused there only once the token has been read, checked and (by the engine) consumed.
    const elsewhere = await startTestServer(database.url, { refreshTokenTtl: 7200, refreshTokenIdleTtl: 600, accessTokenTtl: 900 });
    try {
      const { refresh_token } = await signIn();
      const refused = await postForm(`${elsewhere.url}/token`, { grant_type: 'refresh_token', refresh_token }, { basic: client.basic });
      assert.equal(refused.status, 400);
      assert.deepEqual(refused.json, { error: 'invalid_target', error_description: 'resource indicator is missing, or unknown' });
      const next = await refresh(refresh_token);
      assert.equal(next.status, 200, next.text);
    } finally {
      await elsewhere.stop();
    }
  });

  it('cannot widen the scope, may narrow it', async () => {
    const narrow = await signIn('a');
    const widen = await refresh(narrow.refresh_token, client, { scope: 'a b' });
    assert.equal(widen.status, 400);
    assert.equal(widen.json.error, 'invalid_scope');
    const both = await signIn('a b');
    const narrowed = await refresh(both.refresh_token, client, { scope: 'a' });
    assert.equal(narrowed.status, 200, narrowed.text);
    assert.equal(narrowed.json.scope, 'a');
  });

  it('re-applies the role-bound scope policy: a role taken away drops its scope on refresh', async () => {
    await makeScope(database.db, 'c', ['c-role']);
    // The client's allow-list widened with plain SQL, as an admin script would: the server has
    // this client cached, and drops it once the change notice arrives (README "Caches, and when
    // a change counts everywhere"), not by the next request, so the first sign-in granted the
    // new scope is waited for (until then the cached allow-list grants only 'a').
    await database.db.updateTable('clients').set({ scope: 'a b c' }).where('client_id', '=', client.id).execute();
    const holder = await makeUser(database.db, 'ron', { roles: ['c-role'] });
    const first = await waitFor('a sign-in granted the scope added to the client', async () => {
      const res = await postForm(`${server.url}/token`, { grant_type: 'password', username: 'ron', password: holder.password, scope: 'a c' }, { basic: client.basic });
      assert.equal(res.status, 200, res.text);
      return res.json.scope === 'a c' ? res : undefined;
    });
    assert.equal(first.json.scope, 'a c');
    await database.db.deleteFrom('user_roles').where('user_id', '=', holder.id).execute();
    // Asking only for the scope the user lost is refused, as at sign-in, and spends nothing.
    const onlyLost = await refresh(first.json.refresh_token, client, { scope: 'c' });
    assert.equal(onlyLost.status, 400);
    assert.deepEqual(onlyLost.json, { error: 'invalid_scope', error_description: 'requested scope is not allowed', scope: 'c' });
    const next = await refresh(first.json.refresh_token);
    assert.equal(next.status, 200, next.text);
    assert.equal(next.json.scope, 'a');
  });

  it("refuses another client's refresh token", async () => {
    const { refresh_token } = await signIn();
    const res = await refresh(refresh_token, other);
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'invalid_grant');
    assert.equal(await active(refresh_token), true, 'the owner can still use it');
  });

  it('revoking a refresh token revokes the access tokens of its grant (RFC 7009 §2.1)', async () => {
    const tokens = await signIn();
    const res = await postForm(`${server.url}/revoke`, { token: tokens.refresh_token, token_type_hint: 'refresh_token' }, { basic: client.basic });
    assert.equal(res.status, 200);
    assert.equal(await active(tokens.access_token), false);
    assert.equal((await refresh(tokens.refresh_token)).json.error, 'invalid_grant');
  });

  it('honours the idle lifetime: each refresh token lives refresh_token_idle_ttl', async () => {
    const { refresh_token } = await signIn();
    const row = await database.db.selectFrom('tokens').select(['issued_at', 'expires_at']).where('id_sha256', '=', tokenDigest(refresh_token)).executeTakeFirstOrThrow();
    const seconds = (row.expires_at!.getTime() - row.issued_at.getTime()) / 1000;
    assert.ok(Math.abs(seconds - 600) < 3, `refresh token lives ${seconds}s`);
  });

  /** Moves everything about the token's row `seconds` into the past, as if it had been issued (and left unused) that long ago. */
  const age = (token: string, seconds: number) => sql`update tokens set
      issued_at = issued_at - make_interval(secs => ${seconds}), expires_at = expires_at - make_interval(secs => ${seconds}),
      payload = payload || jsonb_build_object('iat', (payload->>'iat')::int - ${seconds}, 'exp', (payload->>'exp')::int - ${seconds},
        'iiat', coalesce((payload->>'iiat')::int, (payload->>'iat')::int) - ${seconds})
      where id_sha256 = ${tokenDigest(token)}`.execute(database.db);

  it('a refresh token left unused for longer than refresh_token_idle_ttl (600 s) is refused; within it, it works', async () => {
    // Well within the absolute lifetime (7200 s) both times: only the idle limit can refuse.
    const within = await signIn();
    await age(within.refresh_token, 590);
    const used = await refresh(within.refresh_token);
    assert.equal(used.status, 200, used.text);
    const idle = await signIn();
    await age(idle.refresh_token, 610);
    const refused = await refresh(idle.refresh_token);
    assert.equal(refused.status, 400, refused.text);
    assert.deepEqual(refused.json, { error: 'invalid_grant', error_description: 'grant request is invalid' });
    assert.equal(await active(idle.refresh_token), false);
  });

  it('honours the absolute lifetime across rotations', async () => {
    const { refresh_token } = await signIn();
    // The grant began almost two hours ago: what is left of the absolute lifetime is short.
    await sql`update tokens set payload = jsonb_set(jsonb_set(payload, '{iiat}', to_jsonb(extract(epoch from now())::int - 7000)), '{iat}', to_jsonb(extract(epoch from now())::int - 7000))
      where id_sha256 = ${tokenDigest(refresh_token)}`.execute(database.db);
    const next = await refresh(refresh_token);
    assert.equal(next.status, 200, next.text);
    const row = await database.db.selectFrom('tokens').select(['issued_at', 'expires_at']).where('id_sha256', '=', tokenDigest(next.json.refresh_token)).executeTakeFirstOrThrow();
    const seconds = (row.expires_at!.getTime() - row.issued_at.getTime()) / 1000;
    assert.ok(seconds <= 205 && seconds >= 190, `rotated token lives ${seconds}s, not a fresh idle period`);
  });

  it('an expired refresh token is refused', async () => {
    const { refresh_token } = await signIn();
    await sql`update tokens set expires_at = now() - interval '1 second', payload = jsonb_set(payload, '{exp}', to_jsonb(extract(epoch from now())::int - 1))
      where id_sha256 = ${tokenDigest(refresh_token)}`.execute(database.db);
    assert.equal((await refresh(refresh_token)).json.error, 'invalid_grant');
  });

  it('an unknown refresh token or a missing parameter is refused', async () => {
    assert.equal((await refresh('never-issued')).json.error, 'invalid_grant');
    const missing = await postForm(`${server.url}/token`, { grant_type: 'refresh_token' }, { basic: client.basic });
    assert.equal(missing.status, 400);
    assert.equal(missing.json.error, 'invalid_request');
  });
});
