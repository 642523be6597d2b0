// Group commit of token rows (createTokenWriter): rows written together are all committed
// before any caller hears so; a row that cannot be stored fails only its own caller; a key
// written twice keeps the later write; a database that is unreachable fails every caller, and
// over HTTP a burst around a database cut hands out no token that was not stored. Refresh
// token rotations are group-committed too: each wins or loses on its own, exactly one of the
// rotations of one token wins, and a revoked grant makes its rotation write nothing.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { startTcpProxy, viaProxy, type TcpProxy } from '../support/tcp-proxy.ts';
import { postForm } from '../support/http.ts';
import { makeClient, type TestClient } from '../support/fixtures.ts';
import { createDatabase, type Db } from '../../src/db/database.ts';
import { sql } from 'kysely';
import { createTokenWriter, tokenDigest, type StoredModel } from '../../src/store/tokens.ts';

const model = (clientId: string, extra: Record<string, unknown> = {}): StoredModel => ({
  kind: 'ClientCredentials', clientId, scope: 'read', expiresAt: new Date(Date.now() + 3_600_000), payload: { kind: 'ClientCredentials', clientId, ...extra },
});
const newToken = () => randomBytes(32).toString('base64url');

describe('token writer (group commit)', () => {
  let database: TestDatabase;
  let proxy: TcpProxy;
  let proxied: Db;
  let server: TestServer;
  let client: TestClient;

  before(async () => {
    database = await createTestDatabase();
    const target = new URL(database.url);
    proxy = await startTcpProxy(target.hostname, Number(target.port));
    proxied = createDatabase({ url: viaProxy(database.url, proxy), poolSize: 4, applicationName: 'keymanager-test' });
    client = await makeClient(database.db, { scope: ['read'] });
    server = await startTestServer(viaProxy(database.url, proxy));
  });
  after(async () => {
    await server?.stop();
    await proxied?.destroy();
    await proxy?.close();
    await database?.drop();
  });

  const stored = async (tokens: string[]) => (await database.db.selectFrom('tokens').select('id_sha256')
    .where('id_sha256', 'in', tokens.map(tokenDigest)).execute()).length;

  it('commits every row of a burst before its caller hears so', async () => {
    const writer = createTokenWriter(database.db);
    const tokens = Array.from({ length: 200 }, newToken);
    await Promise.all(tokens.map((t) => writer.upsert(t, model(client.id))));
    assert.equal(await stored(tokens), 200);
  });

  it('a row that cannot be stored (its client is gone) fails only its own caller', async () => {
    const writer = createTokenWriter(database.db);
    const good = Array.from({ length: 9 }, newToken);
    const bad = newToken();
    const results = await Promise.allSettled([
      ...good.slice(0, 5).map((t) => writer.upsert(t, model(client.id))),
      writer.upsert(bad, model('no-such-client')),
      ...good.slice(5).map((t) => writer.upsert(t, model(client.id))),
    ]);
    assert.deepEqual(results.map((r) => r.status), [...Array(5).fill('fulfilled'), 'rejected', ...Array(4).fill('fulfilled')]);
    assert.equal(((results[5] as PromiseRejectedResult).reason as { code?: string }).code, '23503');
    assert.equal(await stored(good), 9);
    assert.equal(await stored([bad]), 0);
  });

  it('the same key written twice at once keeps the later write', async () => {
    const writer = createTokenWriter(database.db);
    const token = newToken();
    await Promise.all([writer.upsert(token, model(client.id, { n: 1 })), writer.upsert(token, model(client.id, { n: 2 }))]);
    const row = await database.db.selectFrom('tokens').select('payload').where('id_sha256', '=', tokenDigest(token)).executeTakeFirstOrThrow();
    assert.equal((row.payload as { n: number }).n, 2);
  });

  it('with the database unreachable every caller of a burst fails, and none of the rows exists', async () => {
    const writer = createTokenWriter(proxied);
    await proxy.cut();
    const tokens = Array.from({ length: 20 }, newToken);
    try {
      const results = await Promise.allSettled(tokens.map((t) => writer.upsert(t, model(client.id))));
      assert.deepEqual(results.map((r) => r.status), Array(20).fill('rejected'));
    } finally {
      await proxy.restore();
    }
    assert.equal(await stored(tokens), 0);
  });

  /** A grant and a live refresh token under it, written as the engine writes them. */
  const refreshChain = async (db: Db = database.db) => {
    const writer = createTokenWriter(db);
    const grantId = newToken();
    const refreshToken = newToken();
    const expiresAt = new Date(Date.now() + 3_600_000);
    await writer.upsert(grantId, { kind: 'Grant', clientId: client.id, expiresAt, payload: { kind: 'Grant', clientId: client.id } });
    await writer.upsert(refreshToken, { kind: 'RefreshToken', clientId: client.id, grantId, scope: 'read', expiresAt, payload: { kind: 'RefreshToken', n: 0 } });
    return { grantId, refreshToken };
  };
  /** The rows a rotation writes: the successor and the access token issued with it. */
  const successors = (grantId: string, clientId = client.id) => {
    const expiresAt = new Date(Date.now() + 3_600_000);
    return [
      { id: newToken(), model: { kind: 'RefreshToken', clientId, grantId, scope: 'read', expiresAt, payload: { kind: 'RefreshToken', n: 1 } } },
      { id: newToken(), model: { kind: 'AccessToken', clientId, grantId, scope: 'read', expiresAt, payload: { kind: 'AccessToken' } } },
    ] satisfies { id: string; model: StoredModel }[];
  };
  const consumed = async (token: string) => (await database.db.selectFrom('tokens').select('consumed_at')
    .where('id_sha256', '=', tokenDigest(token)).executeTakeFirstOrThrow()).consumed_at !== null;

  it('rotations at once: each consumes its token and writes its rows, in one statement for those that waited', async () => {
    // One connection, so that the statement prepared for a batch can be seen on it afterwards.
    const single = createDatabase({ url: database.url, poolSize: 1, applicationName: 'keymanager-test' });
    try {
      const chains = await Promise.all(Array.from({ length: 20 }, () => refreshChain()));
      const writer = createTokenWriter(single);
      const rows = chains.map((c) => successors(c.grantId));
      const won = await Promise.all(chains.map((c, i) => writer.rotate(c.refreshToken, c.grantId, rows[i]!)));
      assert.deepEqual(won, Array(20).fill(true));
      for (const c of chains) assert.equal(await consumed(c.refreshToken), true);
      assert.equal(await stored(rows.flat().map((r) => r.id)), 40);
      const prepared = await sql<{ name: string }>`select name from pg_prepared_statements where name = 'km_rotate_refresh_tokens'`.execute(single);
      assert.equal(prepared.rows.length, 1, 'the rotations that waited did not go as one statement');
    } finally {
      await single.destroy();
    }
  });

  it('of five rotations of one token at once exactly one wins, and only its rows are written', async () => {
    const writer = createTokenWriter(database.db);
    const { grantId, refreshToken } = await refreshChain();
    const rows = Array.from({ length: 5 }, () => successors(grantId));
    const won = await Promise.all(rows.map((r) => writer.rotate(refreshToken, grantId, r)));
    assert.equal(won.filter(Boolean).length, 1);
    const winner = won.indexOf(true);
    assert.equal(await stored(rows[winner]!.map((r) => r.id)), 2);
    assert.equal(await stored(rows.filter((_, i) => i !== winner).flat().map((r) => r.id)), 0);
  });

  it('a rotation under a revoked grant writes nothing and leaves the others of its burst alone', async () => {
    const writer = createTokenWriter(database.db);
    const chains = await Promise.all(Array.from({ length: 6 }, () => refreshChain()));
    const revoked = chains[3]!;
    await sql`update tokens set revoked_at = now() where id_sha256 = ${tokenDigest(revoked.grantId)}`.execute(database.db);
    const rows = chains.map((c) => successors(c.grantId));
    const won = await Promise.all(chains.map((c, i) => writer.rotate(c.refreshToken, c.grantId, rows[i]!)));
    assert.deepEqual(won, [true, true, true, false, true, true]);
    assert.equal(await consumed(revoked.refreshToken), false);
    assert.equal(await stored(rows[3]!.map((r) => r.id)), 0);
    assert.equal(await stored(rows.filter((_, i) => i !== 3).flat().map((r) => r.id)), 10);
  });

  it('a rotation whose rows cannot be stored fails only its own caller, and its token stays unused', async () => {
    const writer = createTokenWriter(database.db);
    const chains = await Promise.all(Array.from({ length: 6 }, () => refreshChain()));
    const rows = chains.map((c, i) => successors(c.grantId, i === 2 ? 'no-such-client' : client.id));
    const results = await Promise.allSettled(chains.map((c, i) => writer.rotate(c.refreshToken, c.grantId, rows[i]!)));
    assert.deepEqual(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as { code?: string }).code)), [true, true, '23503', true, true, true]);
    assert.equal(await consumed(chains[2]!.refreshToken), false);
    assert.equal(await stored(rows.filter((_, i) => i !== 2).flat().map((r) => r.id)), 10);
  });

  it('with the database unreachable every rotation of a burst fails, and every token stays unused', async () => {
    const chains = await Promise.all(Array.from({ length: 10 }, () => refreshChain()));
    const writer = createTokenWriter(proxied);
    const rows = chains.map((c) => successors(c.grantId));
    await proxy.cut();
    try {
      const results = await Promise.allSettled(chains.map((c, i) => writer.rotate(c.refreshToken, c.grantId, rows[i]!)));
      assert.deepEqual(results.map((r) => r.status), Array(10).fill('rejected'));
    } finally {
      await proxy.restore();
    }
    for (const c of chains) assert.equal(await consumed(c.refreshToken), false);
    assert.equal(await stored(rows.flat().map((r) => r.id)), 0);
  });

  it('over HTTP: under load across a database cut, every 200 was stored and every failure is a 503', async () => {
    const issue = () => postForm(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { basic: client.basic });
    const issued: string[] = [];
    const failed: { status: number; error: string }[] = [];
    let stop = false;
    // Ten connections at once; the cut comes once 50 tokens were issued, the end once 50 failed.
    const loops = Array.from({ length: 10 }, async () => {
      while (!stop) {
        const r = await issue();
        if (r.status === 200) issued.push(r.json.access_token);
        else failed.push({ status: r.status, error: r.json?.error });
      }
    });
    const waitFor = async (what: string, condition: () => boolean) => {
      const deadline = Date.now() + 30_000;
      while (!condition()) {
        assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    try {
      await waitFor('50 tokens', () => issued.length >= 50);
      await proxy.cut();
      await waitFor('50 refusals', () => failed.length >= 50);
    } finally {
      stop = true;
      await Promise.all(loops);
      await proxy.restore();
    }
    assert.deepEqual([...new Set(failed.map((f) => `${f.status} ${f.error}`))], ['503 temporarily_unavailable'],
      server.logs.filter((l) => /"level":50/.test(l)).slice(0, 3).join('\n'));
    assert.equal(await stored(issued), issued.length, 'a token was handed out that was not stored');
  });
});
