// Graceful stop (README "Database outages and stopping"): SIGTERM in the middle of a load.
// /readyz turns 503 first while requests are still accepted (shutdown_delay), then new
// connections are refused, the requests in flight finish — one held in the database for as
// long as the test likes outlives the listener — then the pool and the embedded PostgreSQL
// close and the log ends with "stopped". No request sent before SIGTERM is cut off. The same
// with two workers, where SIGTERM goes to the supervising process.
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { createDatabase, type Db } from '../../src/db/database.ts';
import { isEmbeddedPostgresRunning } from '../../src/db/embedded.ts';
import { tokenDigest } from '../../src/store/tokens.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { freePort, tempDir } from '../support/server.ts';
import { REPO_ROOT } from '../support/cli.ts';
import { postForm } from '../support/http.ts';
import { makeClient, makeUser, type TestClient } from '../support/fixtures.ts';
import { startTokenLoad, until, REQUEST_DEADLINE_MS } from '../support/token-load.ts';

/** Long enough for the test to see /readyz answer 503 while connections are still accepted. */
const SHUTDOWN_DELAY_SECONDS = 2;

interface Server {
  child: ChildProcess;
  url: string;
  /** Everything it wrote to stdout and stderr. */
  output(): string;
  exited: Promise<number | null>;
}

/** `node src/main.ts` in plain HTTP on free ports, with none of the caller's KM_* or DATABASE_URL. */
async function spawnServer(extra: Record<string, string>): Promise<Server> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !/^(KM_|DATABASE_URL$)/.test(k)) env[k] = v;
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, ['src/main.ts'], {
    cwd: REPO_ROOT,
    env: {
      ...env, KM_CONFIG: '/dev/null', KM_TLS: 'off', KM_HOST: '127.0.0.1', KM_PORT: String(port), KM_ISSUER: url,
      KM_MANAGEMENT_PORT: String(await freePort()), KM_KEYS_DIR: tempDir('km-keys-'), KM_LOG_LEVEL: 'info',
      KM_SHUTDOWN_DELAY: String(SHUTDOWN_DELAY_SECONDS),
      // The request held in the database below must not be cancelled by the request timeout.
      KM_DATABASE_REQUEST_TIMEOUT: '600',
      ...extra,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => { output += c.toString(); });
  child.stderr!.on('data', (c: Buffer) => { output += c.toString(); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await until('the server answering', async () => (await fetch(`${url}/readyz`).then((r) => r.status, () => 0)) === 200);
  return { child, url, output: () => output, exited };
}

/** What one GET /readyz saw: its status, or the code of the failure to connect. */
type Probe = { sentAt: number; seen: number | string };

async function probeReadiness(url: string): Promise<Probe> {
  const sentAt = performance.now();
  try {
    const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(REQUEST_DEADLINE_MS) });
    const body = await res.json() as { status: string };
    if (res.status === 503) assert.deepEqual(body, { status: 'stopping' });
    return { sentAt, seen: res.status };
  } catch (err) {
    return { sentAt, seen: ((err as Error).cause as { code?: string } | undefined)?.code ?? String(err) };
  }
}

interface Fixtures {
  clients: TestClient[];
  /** A client of the password and refresh_token grants, and a refresh token of it. */
  app: TestClient;
  refreshToken: string;
}

async function makeFixtures(db: Db, url: string): Promise<Fixtures> {
  const clients = [await makeClient(db, { scope: ['read'] }), await makeClient(db, { scope: ['read'], tokenFormat: 'jwt' })];
  const app = await makeClient(db, { grantTypes: ['password', 'refresh_token'], scope: ['read'] });
  const user = await makeUser(db, 'stopping-user');
  const signIn = await postForm(`${url}/token`, { grant_type: 'password', username: user.username, password: user.password, scope: 'read' }, { basic: app.basic });
  assert.equal(signIn.status, 200, signIn.text);
  return { clients, app, refreshToken: signIn.json.refresh_token as string };
}

/**
 * Sends SIGTERM to `server` while it issues tokens at full speed and while a refresh is held
 * in the database (its refresh token's row locked by the test), and checks what every
 * request saw. Returns the tokens issued with 200.
 */
async function sigtermUnderLoad(t: TestContext, server: Server, databaseUrl: string, fixtures: Fixtures): Promise<string[]> {
  const lock = new pg.Client({ connectionString: databaseUrl });
  await lock.connect();
  await lock.query('begin');
  await lock.query('select 1 from tokens where id_sha256 = $1 for update', [tokenDigest(fixtures.refreshToken)]);
  const heldSentAt = performance.now();
  const held = postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: fixtures.refreshToken }, { basic: fixtures.app.basic });
  // pg_stat_clear_snapshot: inside a transaction pg_stat_activity otherwise stays as first read.
  await until('the refresh to wait for the row lock', async () => (await lock.query('select pg_stat_clear_snapshot()'), await lock.query(
    "select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()")).rows[0].n >= 1);

  const load = startTokenLoad([{ name: 'server', url: server.url }], fixtures.clients, 8);
  // A probe every few milliseconds, each on its own: with workers, a connection that reaches
  // the supervisor just as the last worker closes its listener is neither served nor closed
  // until the supervisor exits (node:cluster), and must not hold the others up.
  const probes: Probe[] = [];
  let probing = true;
  const prober = (async () => {
    const sent: Promise<void>[] = [];
    while (probing) {
      sent.push(probeReadiness(server.url).then((p) => { probes.push(p); }));
      await new Promise((r) => setTimeout(r, 15));
    }
    await Promise.all(sent);
  })();
  let sigtermAt = 0;
  try {
    await until('tokens issued', () => load.count('server', (o) => o.status === 200) >= 50);
    sigtermAt = performance.now();
    server.child.kill('SIGTERM');
    await until('the listener to refuse connections', () => probes.some((p) => p.sentAt > sigtermAt && p.seen === 'ECONNREFUSED'));
    // The held refresh keeps it running, listener closed: new connections are refused.
    assert.equal(server.child.exitCode, null, 'the server exited with a request in flight');
    const fresh = await probeReadiness(server.url);
    assert.equal(fresh.seen, 'ECONNREFUSED');
  } finally {
    probing = false;
    await lock.query('commit').catch(() => {});
    await lock.end();
    await prober;
    await load.stop();
  }
  const refreshed = await held.catch((err: unknown) => {
    throw new Error(`the request held in the database was cut off (${String((err as Error).cause ?? err)}): ${server.output().slice(-6000)}`);
  });
  assert.equal(refreshed.status, 200, refreshed.text);
  assert.equal(typeof refreshed.json.access_token, 'string');
  assert.equal(typeof refreshed.json.refresh_token, 'string');
  assert.equal(await server.exited, 0, server.output().slice(-3000));

  // Every request sent before SIGTERM got its whole answer: a token.
  const before = load.outcomes.filter((o) => o.sentAt < sigtermAt);
  assert.deepEqual(before.filter((o) => o.status !== 200 || !o.token).map((o) => `${o.status} ${o.error ?? o.body}`), [],
    'requests sent before SIGTERM were cut off or refused');
  const inFlight = before.filter((o) => o.doneAt > sigtermAt).length + 1; // and the held refresh
  assert.ok(heldSentAt < sigtermAt);
  // Those sent after it: answered in full while still accepted, not accepted once the listener closed.
  const after = load.outcomes.filter((o) => o.sentAt >= sigtermAt);
  for (const o of after) assert.ok(o.status === 200 ? o.token : o.status === 0, `${o.status} ${o.body}`);

  // /readyz: 200 until SIGTERM, then 503 while still accepting, then refused — never 200
  // again. A connection caught by the listener closing (queued to be accepted, or idle as it
  // was sent on) is reset rather than refused.
  const seen = probes.filter((p) => p.sentAt > sigtermAt).sort((x, y) => x.sentAt - y.sentAt).map((p) => p.seen);
  const caught = new Set(['ECONNREFUSED', 'ECONNRESET', 'UND_ERR_SOCKET']);
  const firstOther = seen.findIndex((s) => s !== 200);
  assert.equal(seen[firstOther], 503, `after SIGTERM /readyz saw ${seen.join(', ')}`);
  const firstRefusal = seen.indexOf('ECONNREFUSED');
  assert.ok(firstRefusal > firstOther && seen.slice(firstOther, firstRefusal).includes(503));
  assert.ok(seen.slice(firstOther).every((s) => s === 503 || caught.has(String(s))), `after SIGTERM /readyz saw ${seen.join(', ')}`);
  assert.equal(seen.at(-1), 'ECONNREFUSED');

  // The log: stopping, …, and "stopped" last.
  const messages = server.output().trim().split('\n').map((l) => {
    try {
      return (JSON.parse(l) as { msg?: string }).msg ?? l;
    } catch {
      return l;
    }
  });
  assert.equal(messages.at(-1), 'stopped', server.output().slice(-3000));
  assert.ok(messages.some((m) => /^stopping/.test(m)));
  t.diagnostic(`${before.length} requests sent before SIGTERM (${inFlight} in flight), ${after.filter((o) => o.status === 200).length} answered after it, `
    + `${after.filter((o) => o.status === 0).length} not accepted (the listener closed); /readyz 503 ${seen.filter((s) => s === 503).length} times before the listener closed`);
  return [...load.outcomes.filter((o) => o.status === 200).map((o) => o.token!), refreshed.json.access_token as string];
}

describe('SIGTERM under load (one process)', () => {
  let database: TestDatabase;
  let server: Server;
  let fixtures: Fixtures;

  before(async () => {
    database = await createTestDatabase();
    server = await spawnServer({ DATABASE_URL: database.url, KM_DATA_DIR: tempDir('km-data-') });
    fixtures = await makeFixtures(database.db, server.url);
  });
  after(async () => {
    if (server?.child.exitCode === null) server.child.kill('SIGKILL');
    await database?.drop();
  });

  it('readyz 503 first, then new connections refused, requests in flight finish, and the log ends with "stopped"', async (t) => {
    const issued = await sigtermUnderLoad(t, server, database.url, fixtures);
    const stored = await database.db.selectFrom('tokens').select((e) => e.fn.countAll<string>().as('n'))
      .where('id_sha256', 'in', issued.map(tokenDigest)).executeTakeFirstOrThrow();
    assert.equal(Number(stored.n), issued.length, 'a token was handed out that is not stored');
  });
});

describe('SIGTERM to the supervisor of two workers, on the embedded PostgreSQL', () => {
  const dataDir = tempDir('km-data-');
  let server: Server;
  let url: string;
  let fixtures: Fixtures;

  before(async () => {
    server = await spawnServer({ KM_WORKERS: '2', KM_DATA_DIR: dataDir, KM_EMBEDDED_POSTGRES_PORT: String(await freePort()) });
    // The server's own role and database, as the server made them.
    const credentials = JSON.parse(readFileSync(join(dataDir, 'embedded-postgres.json'), 'utf8')) as { user: string; password: string; database: string };
    const port = readFileSync(join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[3];
    url = `postgres://${credentials.user}:${encodeURIComponent(credentials.password)}@127.0.0.1:${port}/${credentials.database}`;
    const db = createDatabase({ url, poolSize: 2, applicationName: 'keymanager-test' });
    try {
      fixtures = await makeFixtures(db, server.url);
    } finally {
      // No session of the test may keep the cluster from stopping.
      await db.destroy();
    }
  });
  after(() => {
    if (server?.child.exitCode === null) server.child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('every worker drains the same way, then the embedded PostgreSQL stops and the supervisor says "stopped"', async (t) => {
    await sigtermUnderLoad(t, server, url, fixtures);
    assert.equal(isEmbeddedPostgresRunning(dataDir), false, 'the embedded PostgreSQL is still running');
  });
});
