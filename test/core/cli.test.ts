// keymgr with --json, against a real PostgreSQL and, where a command must take effect on a
// running server (secret rotation, revocation, deletion, key rotation), a real server on the
// same database.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { createLocalJWKSet, jwtVerify } from 'jose';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, tempDir, type TestServer } from '../support/server.ts';
import { getJson, postForm } from '../support/http.ts';
import { ensureScopes, issueToken, type TestClient } from '../support/fixtures.ts';
import { runKeymgr, type KeymgrResult } from '../support/cli.ts';
import { createClient } from '../../src/store/clients.ts';

const sha256hex = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

function decodeJwtHeader(token: string): Record<string, unknown> {
  const [header] = token.split('.');
  return JSON.parse(Buffer.from(header ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
}

function ok(r: KeymgrResult): void {
  assert.equal(r.code, 0, `keymgr exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
}

describe('keymgr CLI', () => {
  let database: TestDatabase;
  let server: TestServer;
  let env: Record<string, string>;
  const servers: TestServer[] = [];

  const keymgr = (...args: string[]) => runKeymgr(args, env);

  async function createClientWithCli(...extra: string[]): Promise<TestClient> {
    const r = await keymgr('client', 'create', '--name', 'cli client', '--scope', 'a b', ...extra, '--json');
    ok(r);
    return { id: r.json.client_id, secret: r.json.client_secret, basic: [r.json.client_id, r.json.client_secret] };
  }

  async function introspect(url: string, caller: TestClient, token: string) {
    return postForm(`${url}/introspect`, { token }, { basic: caller.basic });
  }

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    servers.push(server);
    env = { DATABASE_URL: database.url, KM_KEYS_DIR: server.keysDir, KM_LOG_LEVEL: 'silent' };
    await ensureScopes(database.db, ['a', 'b']);
  });

  after(async () => {
    for (const s of servers) await s.stop().catch(() => {});
    await database?.drop();
  });

  it('client ids never start with a dash, so that every id can be typed as an argument', async () => {
    // One random id in 64 would start with "-"; 400 of them make such an id all but certain.
    const ids = await Promise.all(Array.from({ length: 400 }, async () =>
      (await createClient(database.db, { name: 'many', grantTypes: ['client_credentials'], scope: ['a'] })).client.client_id));
    assert.deepEqual(ids.filter((id) => id.startsWith('-')), []);
    assert.ok(ids.every((id) => /^[A-Za-z0-9_-]{22}$/.test(id)), 'still 128 random bits, base64url');
    const dashFree = ids[0]!;
    ok(await keymgr('client', 'show', dashFree, '--json'));
    // Well over a pipe's buffer of output: all of it arrives before keymgr exits.
    const listed = await keymgr('client', 'list', '--json');
    ok(listed);
    assert.ok(listed.stdout.length > 128 * 1024, `${listed.stdout.length} bytes`);
    const listedIds = new Set((listed.json as { client_id: string }[]).map((c) => c.client_id));
    assert.ok(ids.every((id) => listedIds.has(id)), 'every client is listed');
  });

  describe('migrate', () => {
    // createTestDatabase migrates; this one starts empty so that migrate has work to do.
    let bareUrl: string;
    let bareName: string;

    before(async () => {
      bareName = `km_test_bare_${randomBytes(6).toString('hex')}`;
      const admin = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
      await admin.connect();
      await admin.query(`create database ${bareName}`);
      await admin.end();
      const u = new URL(process.env.TEST_DATABASE_URL as string);
      u.pathname = `/${bareName}`;
      bareUrl = u.href;
    });

    after(async () => {
      if (!bareName) return;
      const admin = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
      await admin.connect();
      await admin.query(`drop database if exists ${bareName} with (force)`);
      await admin.end();
    });

    it('applies the migrations once and reports them as JSON', async () => {
      const first = await runKeymgr(['migrate', '--json'], { ...env, DATABASE_URL: bareUrl });
      ok(first);
      assert.deepEqual(Object.keys(first.json), ['applied']);
      assert.ok(Array.isArray(first.json.applied));
      assert.ok(first.json.applied.includes('0001_core'), first.stdout);

      const again = await runKeymgr(['migrate', '--json'], { ...env, DATABASE_URL: bareUrl });
      ok(again);
      assert.deepEqual(again.json, { applied: [] });
    });

    it('reports an already migrated database as up to date', async () => {
      const r = await keymgr('migrate', '--json');
      ok(r);
      assert.deepEqual(r.json, { applied: [] });
    });
  });

  describe('client create', () => {
    it('prints exactly client_id and a 256-bit client_secret, and stores only its digest', async () => {
      const r = await keymgr('client', 'create', '--name', 'N', '--grant-types', 'client_credentials', '--scope', 'a b', '--json');
      ok(r);
      assert.deepEqual(Object.keys(r.json).sort(), ['client_id', 'client_secret']);
      assert.equal(typeof r.json.client_id, 'string');
      assert.match(r.json.client_secret, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(Buffer.from(r.json.client_secret, 'base64url').length, 32);

      const row = await database.db.selectFrom('clients').selectAll().where('client_id', '=', r.json.client_id).executeTakeFirstOrThrow();
      assert.equal(row.name, 'N');
      assert.deepEqual(row.grant_types, ['client_credentials']);
      assert.equal(row.scope, 'a b');
      assert.equal(row.token_endpoint_auth_method, 'client_secret_basic');
      assert.equal(row.access_token_format, 'opaque');
      assert.equal(row.introspect_any, false);
      assert.equal(row.secret_sha256, sha256hex(r.json.client_secret));
      assert.ok(!(await database.dumpAllTables()).includes(r.json.client_secret), 'the clear secret is stored somewhere');

      // The client works at once against the running server.
      const token = await issueToken(server.url, { id: r.json.client_id, secret: r.json.client_secret, basic: [r.json.client_id, r.json.client_secret] }, 'a b');
      assert.ok(token);
    });

    it('generates a different secret for every client', async () => {
      const a = await createClientWithCli();
      const b = await createClientWithCli();
      assert.notEqual(a.id, b.id);
      assert.notEqual(a.secret, b.secret);
    });

    it('--token-format jwt gives the client JWT access tokens', async () => {
      const client = await createClientWithCli('--token-format', 'jwt');
      const show = await keymgr('client', 'show', client.id, '--json');
      ok(show);
      assert.equal(show.json.access_token_format, 'jwt');
      const token = await issueToken(server.url, client, 'a');
      assert.equal(token.split('.').length, 3, 'a JWT has three parts');
    });

    it('--auth-method client_secret_post makes the client authenticate in the body', async () => {
      const client = await createClientWithCli('--auth-method', 'client_secret_post');
      const show = await keymgr('client', 'show', client.id, '--json');
      ok(show);
      assert.equal(show.json.token_endpoint_auth_method, 'client_secret_post');

      const post = await postForm(`${server.url}/token`, {
        grant_type: 'client_credentials', scope: 'a', client_id: client.id, client_secret: client.secret,
      });
      assert.equal(post.status, 200, post.text);
      assert.equal(typeof post.json.access_token, 'string');

      // The same method works at the endpoints the server serves itself.
      const seen = await postForm(`${server.url}/introspect`, { token: post.json.access_token, client_id: client.id, client_secret: client.secret });
      assert.equal(seen.status, 200, seen.text);
      assert.equal(seen.json.active, true);
      assert.equal(seen.json.client_id, client.id);
    });

    it('--introspect-any lets the client introspect tokens of other clients', async () => {
      const gateway = await createClientWithCli('--introspect-any');
      const show = await keymgr('client', 'show', gateway.id, '--json');
      ok(show);
      assert.equal(show.json.introspect_any, true);

      const other = await createClientWithCli();
      const plain = await createClientWithCli();
      const token = await issueToken(server.url, other, 'a');
      const seen = await introspect(server.url, gateway, token);
      assert.equal(seen.status, 200, seen.text);
      assert.equal(seen.json.active, true);
      assert.equal(seen.json.client_id, other.id);
      const notSeen = await introspect(server.url, plain, token);
      assert.equal(notSeen.status, 200, notSeen.text);
      assert.deepEqual(notSeen.json, { active: false });
    });

    it('--redirect-uri is repeatable with --grant-types authorization_code', async () => {
      const r = await keymgr('client', 'create', '--name', 'web app', '--grant-types', 'authorization_code,refresh_token',
        '--scope', 'a', '--redirect-uri', 'https://app.example/cb', '--redirect-uri', 'https://app.example/cb2', '--json');
      ok(r);
      const show = await keymgr('client', 'show', r.json.client_id, '--json');
      ok(show);
      assert.deepEqual(show.json.grant_types, ['authorization_code', 'refresh_token']);
      assert.deepEqual(show.json.redirect_uris, ['https://app.example/cb', 'https://app.example/cb2']);
    });

    it('--public, --native and --first-party make a PKCE client of the kind asked for', async () => {
      const r = await keymgr('client', 'create', '--name', 'desktop app', '--grant-types', 'authorization_code,refresh_token', '--scope', 'a',
        '--redirect-uri', 'http://127.0.0.1/callback', '--public', '--native', '--first-party', '--json');
      ok(r);
      assert.deepEqual(Object.keys(r.json), ['client_id'], 'a public client has no secret');
      const show = await keymgr('client', 'show', r.json.client_id, '--json');
      ok(show);
      assert.equal(show.json.token_endpoint_auth_method, 'none');
      assert.equal(show.json.application_type, 'native');
      assert.equal(show.json.first_party, true);
      const refused = await keymgr('client', 'create', '--name', 'x', '--grant-types', 'client_credentials', '--public', '--json');
      assert.notEqual(refused.code, 0);
      assert.match(JSON.parse(refused.stderr).error, /public client/);
    });

    it('refuses bad options with a non-zero exit, a clear message and no client written', async () => {
      const countBefore = await database.db.selectFrom('clients').select(sql<number>`count(*)::int`.as('n')).executeTakeFirstOrThrow();

      const unknownGrant = await keymgr('client', 'create', '--name', 'x', '--grant-types', 'client_credentials,magic', '--json');
      assert.notEqual(unknownGrant.code, 0);
      assert.equal(unknownGrant.stdout, '');
      const unknownGrantError = JSON.parse(unknownGrant.stderr);
      assert.deepEqual(Object.keys(unknownGrantError), ['error']);
      assert.match(unknownGrantError.error, /unknown grant type "magic"/);

      const badFormat = await keymgr('client', 'create', '--name', 'x', '--token-format', 'paseto', '--json');
      assert.notEqual(badFormat.code, 0);
      assert.equal(badFormat.stdout, '');
      assert.match(badFormat.stderr, /--token-format must be one of opaque, jwt/);

      const badMethod = await keymgr('client', 'create', '--name', 'x', '--auth-method', 'private_key_jwt');
      assert.notEqual(badMethod.code, 0);
      assert.match(badMethod.stderr, /--auth-method must be one of/);

      const codeWithoutRedirect = await keymgr('client', 'create', '--name', 'x', '--grant-types', 'authorization_code');
      assert.notEqual(codeWithoutRedirect.code, 0);
      assert.match(codeWithoutRedirect.stderr, /redirect URI/);

      const badRedirect = await keymgr('client', 'create', '--name', 'x', '--grant-types', 'authorization_code', '--redirect-uri', 'not a uri');
      assert.notEqual(badRedirect.code, 0);
      assert.match(badRedirect.stderr, /not an absolute URI/);

      const noName = await keymgr('client', 'create', '--json');
      assert.notEqual(noName.code, 0);
      assert.match(noName.stderr, /--name/);

      const countAfter = await database.db.selectFrom('clients').select(sql<number>`count(*)::int`.as('n')).executeTakeFirstOrThrow();
      assert.equal(countAfter.n, countBefore.n);
    });
  });

  describe('client list and show', () => {
    it('lists the client and never any secret or digest', async () => {
      const client = await createClientWithCli('--token-format', 'jwt');
      const r = await keymgr('client', 'list', '--json');
      ok(r);
      assert.ok(Array.isArray(r.json));
      const listed = r.json.find((c: { client_id: string }) => c.client_id === client.id);
      assert.ok(listed, 'the new client is listed');
      assert.equal(listed.name, 'cli client');
      assert.equal(listed.scope, 'a b');
      assert.equal(listed.access_token_format, 'jwt');

      const rows = await database.db.selectFrom('clients').select(['secret_sha256']).execute();
      for (const { secret_sha256 } of rows) if (secret_sha256) assert.ok(!r.stdout.includes(secret_sha256), 'a secret digest is listed');
      assert.ok(!r.stdout.includes(client.secret), 'a secret is listed');
      for (const c of r.json as Record<string, unknown>[]) {
        assert.ok(!('client_secret' in c) && !('secret_sha256' in c), `secret field in ${JSON.stringify(c)}`);
      }
    });

    it('shows one client without its secret', async () => {
      const client = await createClientWithCli();
      const r = await keymgr('client', 'show', client.id, '--json');
      ok(r);
      assert.equal(r.json.client_id, client.id);
      assert.equal(r.json.name, 'cli client');
      assert.deepEqual(r.json.grant_types, ['client_credentials']);
      assert.equal(r.json.scope, 'a b');
      assert.equal(r.json.token_endpoint_auth_method, 'client_secret_basic');
      assert.ok(!r.stdout.includes(client.secret));
      assert.ok(!r.stdout.includes(sha256hex(client.secret)));
    });

    it('exits non-zero for an unknown client', async () => {
      const r = await keymgr('client', 'show', 'no-such-client', '--json');
      assert.notEqual(r.code, 0);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /no client no-such-client/);
    });
  });

  describe('client rotate-secret', () => {
    it('replaces the secret on the running server without a restart', async () => {
      const client = await createClientWithCli();
      await issueToken(server.url, client, 'a'); // the server has seen the client with its old secret

      const r = await keymgr('client', 'rotate-secret', client.id, '--json');
      ok(r);
      assert.deepEqual(Object.keys(r.json).sort(), ['client_id', 'client_secret']);
      assert.equal(r.json.client_id, client.id);
      assert.match(r.json.client_secret, /^[A-Za-z0-9_-]{43}$/);
      assert.notEqual(r.json.client_secret, client.secret);

      const old = await postForm(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'a' }, { basic: client.basic });
      assert.equal(old.status, 401, old.text);
      assert.equal(old.json.error, 'invalid_client');
      assert.match(old.headers.get('www-authenticate') ?? '', /^Basic /);

      const fresh: TestClient = { id: client.id, secret: r.json.client_secret, basic: [client.id, r.json.client_secret] };
      const token = await issueToken(server.url, fresh, 'a');
      const seen = await introspect(server.url, fresh, token);
      assert.equal(seen.json.active, true);

      // /introspect authenticates with the new secret only, too.
      const oldAtIntrospect = await introspect(server.url, client, token);
      assert.equal(oldAtIntrospect.status, 401, oldAtIntrospect.text);
      assert.equal(oldAtIntrospect.json.error, 'invalid_client');
    });

    it('exits non-zero for an unknown client', async () => {
      const r = await keymgr('client', 'rotate-secret', 'no-such-client', '--json');
      assert.notEqual(r.code, 0);
      assert.equal(r.stdout, '');
    });
  });

  describe('token revoke', () => {
    it('makes a token issued by the running server inactive', async () => {
      const client = await createClientWithCli();
      const token = await issueToken(server.url, client, 'a');
      const live = await introspect(server.url, client, token);
      assert.equal(live.json.active, true);

      const r = await keymgr('token', 'revoke', '--json', '--', token);
      ok(r);
      assert.equal(r.json.revoked, true);
      assert.equal(r.json.client_id, client.id);
      assert.ok(!r.stdout.includes(token), 'the token value is echoed');

      const dead = await introspect(server.url, client, token);
      assert.equal(dead.status, 200, dead.text);
      assert.deepEqual(dead.json, { active: false });
    });

    it('revokes a JWT access token too', async () => {
      const client = await createClientWithCli('--token-format', 'jwt');
      const token = await issueToken(server.url, client, 'a');
      assert.equal((await introspect(server.url, client, token)).json.active, true);
      ok(await keymgr('token', 'revoke', '--json', '--', token));
      assert.deepEqual((await introspect(server.url, client, token)).json, { active: false });
    });

    it('exits non-zero for a token it never issued', async () => {
      const r = await keymgr('token', 'revoke', '--json', '--', randomBytes(32).toString('base64url'));
      assert.notEqual(r.code, 0);
      assert.equal(r.stdout, '');
      assert.ok(JSON.parse(r.stderr).error);
    });
  });

  describe('client delete', () => {
    it('removes the client: its credentials then fail at /token and its tokens go with it', async () => {
      const client = await createClientWithCli();
      const token = await issueToken(server.url, client, 'a');
      const gateway = await createClientWithCli('--introspect-any');

      const r = await keymgr('client', 'delete', client.id, '--json');
      ok(r);
      assert.deepEqual(r.json, { client_id: client.id, deleted: true });

      const res = await postForm(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'a' }, { basic: client.basic });
      assert.equal(res.status, 401, res.text);
      assert.equal(res.json.error, 'invalid_client');
      assert.deepEqual((await introspect(server.url, gateway, token)).json, { active: false });

      const show = await keymgr('client', 'show', client.id, '--json');
      assert.notEqual(show.code, 0);
      const again = await keymgr('client', 'delete', client.id, '--json');
      assert.notEqual(again.code, 0);
    });
  });

  describe('keys rotate', () => {
    it('adds a signing key, keeps the old one published, and the restarted server signs with the new one', async () => {
      const keysDir = tempDir('km-keys-rotate-');
      const first = await startTestServer(database.url, { keysDir });
      servers.push(first);
      const jwksBefore = await getJson(`${first.url}/jwks`);
      assert.equal(jwksBefore.status, 200);
      assert.equal(jwksBefore.json.keys.length, 1);
      const oldKid = jwksBefore.json.keys[0].kid as string;

      const r = await runKeymgr(['keys', 'rotate', '--json'], { ...env, KM_KEYS_DIR: keysDir });
      ok(r);
      const newKid = r.json.kid as string;
      assert.equal(typeof newKid, 'string');
      assert.notEqual(newKid, oldKid);
      const published = r.json.published as { kid: string; retire_at: string | null }[];
      const newEntry = published.find((k) => k.kid === newKid);
      const oldEntry = published.find((k) => k.kid === oldKid);
      assert.ok(newEntry && oldEntry, JSON.stringify(published));
      assert.equal(newEntry.retire_at, null);
      assert.equal(typeof oldEntry.retire_at, 'string');
      // Kept at least as long as the access tokens it signed live (default 3600 s).
      assert.ok(Date.parse(oldEntry.retire_at as string) >= Date.now() + 3600 * 1000 - 60_000, oldEntry.retire_at ?? '');
      assert.ok(!r.stdout.includes('"d"'), 'private key material printed');

      await first.stop();
      const restarted = await startTestServer(database.url, { keysDir });
      servers.push(restarted);

      const jwks = await getJson(`${restarted.url}/jwks`);
      assert.equal(jwks.status, 200);
      const kids = (jwks.json.keys as { kid: string }[]).map((k) => k.kid).sort();
      assert.deepEqual(kids, [newKid, oldKid].sort());

      const client = await createClientWithCli('--token-format', 'jwt');
      const token = await issueToken(restarted.url, client, 'a');
      assert.equal(decodeJwtHeader(token).kid, newKid);
      const { payload } = await jwtVerify(token, createLocalJWKSet(jwks.json), { issuer: restarted.config.issuer });
      assert.equal(payload.client_id, client.id);
    });
  });

  describe('purge', () => {
    it('deletes expired token rows and keeps live ones', async () => {
      const client = await createClientWithCli();
      const expired = await issueToken(server.url, client, 'a');
      const live = await issueToken(server.url, client, 'a');
      await sql`update tokens set expires_at = now() - interval '1 hour' where id_sha256 = ${sha256hex(expired)}`.execute(database.db);
      const { n: expiredRows } = await database.db.selectFrom('tokens')
        .select(sql<number>`count(*)::int`.as('n'))
        .where('expires_at', '<', sql<Date>`now()`)
        .executeTakeFirstOrThrow();
      assert.ok(expiredRows >= 1);

      // An audit event past the default retention (365 days, README) and one inside it; a
      // revocation event of a token that has expired since and one of a live token.
      await sql`insert into audit_events (occurred_at, actor_type, actor, action, outcome) values
        (now() - interval '366 days', 'system', 'keymanager', 'test.old', 'success'), (now() - interval '364 days', 'system', 'keymanager', 'test.recent', 'success')`.execute(database.db);
      const revokedLater = await issueToken(server.url, client, 'a');
      const revokedNow = await issueToken(server.url, client, 'a');
      await sql`update tokens set revoked_at = now() where id_sha256 in (${sha256hex(revokedLater)}, ${sha256hex(revokedNow)})`.execute(database.db);
      await sql`update revocation_events set expires_at = now() - interval '1 second' where token_sha256 = ${sha256hex(revokedLater)}`.execute(database.db);

      const r = await keymgr('purge', '--json');
      ok(r);
      assert.deepEqual(Object.keys(r.json).sort(), ['audit_events_deleted', 'deleted', 'login_failures_deleted', 'revocation_events_deleted', 'saml_assertion_ids_deleted']);
      assert.equal(r.json.deleted, expiredRows);
      assert.equal(r.json.audit_events_deleted, 1);
      assert.equal(r.json.revocation_events_deleted, 1);
      const audit = await sql<{ action: string }>`select action from audit_events where action like 'test.%'`.execute(database.db);
      assert.deepEqual(audit.rows.map((e) => e.action), ['test.recent']);
      const feed = await sql<{ token_sha256: string }>`select token_sha256 from revocation_events
        where token_sha256 in (${sha256hex(revokedLater)}, ${sha256hex(revokedNow)})`.execute(database.db);
      assert.deepEqual(feed.rows.map((e) => e.token_sha256), [sha256hex(revokedNow)]);

      const remaining = await database.db.selectFrom('tokens').select('id_sha256')
        .where('id_sha256', 'in', [sha256hex(expired), sha256hex(live)]).execute();
      assert.deepEqual(remaining.map((row) => row.id_sha256), [sha256hex(live)]);
      assert.equal((await introspect(server.url, client, live)).json.active, true);

      const again = await keymgr('purge', '--json');
      ok(again);
      assert.deepEqual(again.json, { deleted: 0, login_failures_deleted: 0, saml_assertion_ids_deleted: 0, revocation_events_deleted: 0, audit_events_deleted: 0 });
    });

    it('deletes more expired rows than one batch holds, without waiting for a row a request has locked', async () => {
      // 12,345 expired rows (a dozen batches of 1,000) of a client of their own, all with the same
      // expiry, as the rows of one group commit have (each batch must start at the row after the
      // last one deleted, not at the next expiry), one of them held locked by an open
      // transaction, as a request rotating that token would hold it.
      const client = await createClientWithCli();
      await sql`insert into tokens (id_sha256, kind, client_id, payload, expires_at)
        select encode(sha256(('purge-batch-' || i)::bytea), 'hex'), 'ClientCredentials', ${client.id}, '{}'::jsonb, now() - interval '1 minute'
        from generate_series(1, 12345) as i`.execute(database.db);
      const lockedDigest = sha256hex('purge-batch-7');
      const holder = new pg.Client({ connectionString: database.url });
      await holder.connect();
      try {
        await holder.query('begin');
        await holder.query('select 1 from tokens where id_sha256 = $1 for update', [lockedDigest]);
        // Without SKIP LOCKED the purge would wait for this transaction and never return.
        const r = await keymgr('purge', '--json');
        ok(r);
        assert.equal(r.json.deleted, 12344);
        await holder.query('commit');
      } finally {
        await holder.end();
      }
      const left = await sql<{ id_sha256: string }>`select id_sha256 from tokens where client_id = ${client.id}`.execute(database.db);
      assert.deepEqual(left.rows.map((row) => row.id_sha256), [lockedDigest]);
      const next = await keymgr('purge', '--json');
      ok(next);
      assert.equal(next.json.deleted, 1);
    });

    it('deletes a row expiring at the earliest instant the column takes (4713 BC; -infinity is refused, 0017) along with the other expired rows', async () => {
      const client = await createClientWithCli();
      const insert = (name: string, expiresAt: string | null) => sql`insert into tokens (id_sha256, kind, client_id, payload, expires_at)
        values (${sha256hex(name)}, 'ClientCredentials', ${client.id}, '{}'::jsonb, ${expiresAt}::timestamptz)`.execute(database.db);
      await insert('purge-4713-bc', '4713-01-01 00:00:00+00 BC');
      await insert('purge-an-hour-ago', new Date(Date.now() - 3_600_000).toISOString());
      await insert('purge-no-expiry', null);
      await insert('purge-tomorrow', new Date(Date.now() + 86_400_000).toISOString());
      const r = await keymgr('purge', '--json');
      ok(r);
      assert.equal(r.json.deleted, 2);
      const left = await sql<{ id_sha256: string }>`select id_sha256 from tokens where client_id = ${client.id} order by id_sha256`.execute(database.db);
      assert.deepEqual(left.rows.map((row) => row.id_sha256), [sha256hex('purge-no-expiry'), sha256hex('purge-tomorrow')].sort());
    });

    it('deletes 40,003 rows expired in the year 1000, 40,001 of them at one instant, and ends', async () => {
      // Before 1685 a double cannot hold every microsecond since the epoch: a window of expiry
      // one microsecond wide must still be one, and a row a microsecond after another its own.
      const client = await createClientWithCli();
      await sql`insert into tokens (id_sha256, kind, client_id, payload, expires_at)
        select encode(sha256(('purge-year-1000-' || i)::bytea), 'hex'), 'ClientCredentials', ${client.id}, '{}'::jsonb,
               '1000-01-01 00:00:00+00'::timestamptz + greatest(i - 40001, 0) * interval '1 microsecond'
        from generate_series(1, 40003) as i`.execute(database.db);
      const r = await keymgr('purge', '--json');
      ok(r);
      assert.equal(r.json.deleted, 40003);
      const left = await sql<{ n: number }>`select count(*)::int as n from tokens where client_id = ${client.id}`.execute(database.db);
      assert.equal(left.rows[0]!.n, 0);
    });
  });
});
