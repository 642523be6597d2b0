// Group commit of token rows (createTokenWriter): rows written together are all committed
// before any caller hears so; a row that cannot be stored fails only its own caller; a key
// written twice keeps the later write; a database that is unreachable fails every caller, and
// over HTTP a burst around a database cut hands out no token that was not stored.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { startTcpProxy, viaProxy, type TcpProxy } from '../support/tcp-proxy.ts';
import { postForm } from '../support/http.ts';
import { makeClient, type TestClient } from '../support/fixtures.ts';
import { createDatabase, type Db } from '../../src/db/database.ts';
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
