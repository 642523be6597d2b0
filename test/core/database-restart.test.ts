// Nothing is lost when PostgreSQL goes away under load and comes back (README "Database
// outages and stopping"): two instances issue tokens at full speed throughout; every request
// meanwhile is answered 503 temporarily_unavailable (none hangs, none is a 200 that was not
// committed); /readyz says 503 while the database is away and 200 after; the instances
// recover on their own, and every request sent once the database is back is answered 200 —
// no pooled connection fails one more request; every token handed out with 200 is stored and
// introspects active on both instances.
//
// Twice: PostgreSQL stopped and started again (a cluster of this test's own), and PostgreSQL
// gone without a word — a crashed host or a cut network, which closes nothing — through a
// relay that goes silent, then back having restarted.
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { ensureEmbeddedPostgres, isEmbeddedPostgresRunning, type EmbeddedPostgresHandle } from '../../src/db/embedded.ts';
import { createDatabase, type Db } from '../../src/db/database.ts';
import { migrate } from '../../src/db/migrator.ts';
import { tokenDigest } from '../../src/store/tokens.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { freePort, startTestServer, tempDir, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { makeClient, type TestClient } from '../support/fixtures.ts';
import { startTcpProxy, viaProxy, type TcpProxy } from '../support/tcp-proxy.ts';
import { readyz, startTokenLoad, until, type Outcome, type TokenLoad } from '../support/token-load.ts';

/** startTestServer's pool size. */
const POOL_SIZE = 4;
/** Requests in flight per instance: more than its pool holds. */
const LOOPS = 6;
/** How many requests must have been answered, once the database is back, per instance. */
const AFTER_RECOVERY = 2 * POOL_SIZE;
const UNAVAILABLE = { error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable' };

interface Clients {
  opaque: TestClient;
  jwt: TestClient;
  gateway: TestClient;
}

async function makeClients(db: Db): Promise<Clients> {
  return {
    opaque: await makeClient(db, { scope: ['read'] }),
    jwt: await makeClient(db, { scope: ['read'], tokenFormat: 'jwt' }),
    gateway: await makeClient(db, { scope: [], introspectAny: true }),
  };
}

/** The requests of each instance sent after `at`, once it answered them. */
function sentAfter(load: TokenLoad, instance: string, at: number): Outcome[] {
  return load.outcomes.filter((o) => o.instance === instance && o.sentAt > at);
}

/**
 * Takes the database away from two instances under load, then gives it back; returns when
 * every instance has answered AFTER_RECOVERY requests sent after it was back.
 */
async function outageUnderLoad(t: TestContext, servers: TestServer[], clients: Clients, outage: {
  away(): Promise<void>;
  /** Also waits for what must be seen before the database returns. */
  meanwhile?(): Promise<void>;
  back(): Promise<void>;
}): Promise<{ load: TokenLoad; awayAt: number; backAt: number }> {
  const names = servers.map((_, i) => String.fromCharCode(65 + i));
  const load = startTokenLoad(servers.map((s, i) => ({ name: names[i]!, url: s.url })), [clients.opaque, clients.jwt], LOOPS);
  let awayAt = 0;
  let backAt = 0;
  try {
    await until('tokens from every instance', () => names.every((n) => load.count(n, (o) => o.status === 200) >= 50));
    awayAt = performance.now();
    await outage.away();
    await until('503s from every instance', () => names.every((n) => load.count(n, (o) => o.sentAt > awayAt && o.status === 503) >= 10));
    for (const s of servers) await until(`/readyz 503 at ${s.url}`, async () => (await readyz(s.url)) === 503);
    await outage.meanwhile?.();
    await outage.back();
    backAt = performance.now();
    await until('answers to requests sent after the database was back', () => names.every((n) => sentAfter(load, n, backAt).length >= AFTER_RECOVERY));
    for (const s of servers) await until(`/readyz 200 at ${s.url}`, async () => (await readyz(s.url)) === 200);
  } finally {
    await load.stop();
  }
  for (const n of names) {
    const firstAnswer = sentAfter(load, n, backAt).filter((o) => o.status === 200).reduce((min, o) => Math.min(min, o.doneAt), Infinity);
    const during = load.outcomes.filter((o) => o.instance === n && o.sentAt > awayAt && o.sentAt < backAt);
    t.diagnostic(`instance ${n}: ${load.count(n, (o) => o.status === 200)} tokens issued, ${load.count(n, (o) => o.status === 503)} answered 503 `
      + `(${during.length} requests while the database was away), first token ${(firstAnswer - backAt).toFixed(0)} ms after it was back`);
  }
  return { load, awayAt, backAt };
}

/** What every outage must leave behind, checked against the database and both instances. */
async function assertNothingLost(load: TokenLoad, backAt: number, servers: TestServer[], db: Db, gateway: TestClient): Promise<void> {
  const cutOff = load.outcomes.filter((o) => o.status === 0);
  assert.deepEqual(cutOff.map((o) => `${o.instance}: ${o.error}`), [], 'requests got no complete answer (hung past the deadline, or cut off)');
  const refused = load.outcomes.filter((o) => o.status !== 200);
  assert.ok(refused.length > 0, 'no request was refused: the database was never away');
  for (const o of refused) {
    assert.equal(o.status, 503, `${o.instance}: ${o.body}`);
    assert.deepEqual(JSON.parse(o.body), UNAVAILABLE);
  }
  for (const instance of new Set(load.outcomes.map((o) => o.instance))) {
    const after = sentAfter(load, instance, backAt);
    assert.ok(after.length >= AFTER_RECOVERY);
    assert.deepEqual(after.filter((o) => o.status !== 200).map((o) => o.body), [],
      `instance ${instance}: requests sent once the database was back failed`);
  }
  const tokens = load.outcomes.filter((o) => o.status === 200).map((o) => o.token!);
  assert.equal(new Set(tokens).size, tokens.length);
  const stored = await db.selectFrom('tokens').select((e) => e.fn.countAll<string>().as('n'))
    .where('id_sha256', 'in', tokens.map(tokenDigest)).executeTakeFirstOrThrow();
  assert.equal(Number(stored.n), tokens.length, 'a token was handed out that is not stored');
  // Every token at every instance, a few at a time.
  const checks = tokens.flatMap((token) => servers.map((s) => ({ token, url: s.url })));
  const inactive: string[] = [];
  await Promise.all(Array.from({ length: 8 }, async () => {
    for (let check = checks.pop(); check; check = checks.pop()) {
      const res = await postForm(`${check.url}/introspect`, { token: check.token }, { basic: gateway.basic });
      if (res.status !== 200 || res.json.active !== true) inactive.push(`${check.url}: ${res.status} ${res.text}`);
    }
  }));
  assert.deepEqual(inactive, [], 'tokens handed out with 200 do not introspect active');
}

describe('PostgreSQL stopped and started again under load', () => {
  const dataDir = tempDir('km-restart-pg-');
  let port: number;
  let cluster: EmbeddedPostgresHandle;
  let db: Db;
  let servers: TestServer[] = [];
  let clients: Clients;

  before(async () => {
    port = await freePort();
    cluster = await ensureEmbeddedPostgres({ dataDir, port });
    db = createDatabase({ url: cluster.url, poolSize: 2, applicationName: 'keymanager-test' });
    await migrate(db);
    clients = await makeClients(db);
    const keysDir = tempDir('km-shared-keys-');
    servers = [
      await startTestServer(cluster.url, { keysDir, databaseRequestTimeout: 2 }),
      await startTestServer(cluster.url, { keysDir, databaseRequestTimeout: 2 }),
    ];
  });
  after(async () => {
    for (const s of servers) await s.stop();
    await db?.destroy();
    await cluster?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('two instances at full speed: 503 while it is down, all 200 once it is up, every token issued stored and active on both', async (t) => {
    const { load, backAt } = await outageUnderLoad(t, servers, clients, {
      async away() {
        // A fast shutdown, as `pg_ctl stop` does: sessions are ended, new connections refused.
        const postmaster = Number(readFileSync(join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
        process.kill(postmaster, 'SIGINT');
        await until('PostgreSQL to stop', () => !isEmbeddedPostgresRunning(dataDir));
      },
      async back() {
        // Resolves once PostgreSQL accepts connections.
        cluster = await ensureEmbeddedPostgres({ dataDir, port });
      },
    });
    await assertNothingLost(load, backAt, servers, db, clients.gateway);
  });
});

describe('PostgreSQL gone without a word (a crashed host, a cut network), then back', () => {
  let database: TestDatabase;
  let proxy: TcpProxy;
  let servers: TestServer[] = [];
  let clients: Clients;
  /** Log lines of each instance from `since` on that say its change listener lost its connection. */
  const listenerLost = (s: TestServer, since: number) => s.logs.slice(since).some((l) => l.includes('"msg":"change listener disconnected"'));
  const listenersConnected = async () => {
    const { rows } = await queryOnce<{ n: number }>(database.url,
      "select count(*)::int as n from pg_stat_activity where application_name = 'keymanager-listener' and datname = current_database()");
    return (rows[0]?.n ?? 0) >= servers.length;
  };

  before(async () => {
    database = await createTestDatabase();
    const target = new URL(database.url);
    proxy = await startTcpProxy(target.hostname, Number(target.port));
    clients = await makeClients(database.db);
    const keysDir = tempDir('km-shared-keys-');
    servers = [
      await startTestServer(viaProxy(database.url, proxy), { keysDir, databaseRequestTimeout: 1 }),
      await startTestServer(viaProxy(database.url, proxy), { keysDir, databaseRequestTimeout: 1 }),
    ];
  });
  after(async () => {
    for (const s of servers) await s.stop();
    await proxy?.close();
    await database?.drop();
  });

  it('instances idle while it was away: their first requests afterwards all succeed (no pooled connection fails once)', async () => {
    await until('both change listeners connected', listenersConnected);
    // Every pooled connection open and idle.
    for (const s of servers) {
      const warm = await Promise.all(Array.from({ length: AFTER_RECOVERY }, () => issue(s.url, clients.opaque)));
      assert.deepEqual(warm.map((r) => r.status), Array(AFTER_RECOVERY).fill(200));
    }
    const marks = servers.map((s) => s.logs.length);
    proxy.silence();
    await until('both change listeners to notice', () => servers.every((s, i) => listenerLost(s, marks[i]!)));
    await proxy.restore();
    for (const s of servers) {
      const first = await Promise.all(Array.from({ length: AFTER_RECOVERY }, () => issue(s.url, clients.opaque)));
      assert.deepEqual(first.map((r) => r.status === 200 ? 200 : r.text), Array(AFTER_RECOVERY).fill(200));
    }
  });

  it('two instances at full speed: every request answered (503, never hanging) while it is silent, all 200 once it is back, nothing lost', async (t) => {
    await until('both change listeners connected', listenersConnected);
    const marks = servers.map((s) => s.logs.length);
    const { load, backAt } = await outageUnderLoad(t, servers, clients, {
      away: async () => proxy.silence(),
      meanwhile: () => until('both change listeners to notice', () => servers.every((s, i) => listenerLost(s, marks[i]!))),
      back: () => proxy.restore(),
    });
    await assertNothingLost(load, backAt, servers, database.db, clients.gateway);
  });
});

const issue = (url: string, client: TestClient) => postForm(`${url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { basic: client.basic });

async function queryOnce<R>(url: string, text: string): Promise<{ rows: R[] }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return { rows: (await client.query(text)).rows as R[] };
  } finally {
    await client.end();
  }
}
