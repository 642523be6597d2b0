// Dates an admin script may write (db/README.md, 0017). Where the server reads a date back in
// JavaScript, pg hands 'infinity' and '-infinity' over as numbers and an instant after
// 275760-09-13 (PostgreSQL goes up to the year 294276) as an invalid Date. The schema refuses
// them in those columns, so the listings, /introspect and refresh go on answering as before;
// the earliest and latest instants a JavaScript Date holds are accepted and read back as
// written. Upgrading, 0017 stops on such a row, db/README.md's query finds it, and mended, the
// migration applies over everything the server itself wrote.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { expectReply, managementClient, startManagementApi } from '../support/management.ts';
import { conformanceChecker } from '../support/openapi.ts';
import { issueToken, makeClient, makeScope, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { postForm } from '../support/http.ts';
import { fencedBlocks } from '../support/readme.ts';
import { createPki, issue } from '../mtls/support.ts';
import { addCertificate, parseCertificatePem } from '../../src/store/certificates.ts';
import { addIdp } from '../../src/store/idps.ts';
import { migrate, readMigrations } from '../../src/db/migrator.ts';

const FAST = { memoryCost: 8192, timeCost: 1, parallelism: 1 };
const CHECK_VIOLATION = '23514';
const sha256 = (value: string) => createHash('sha256').update(value, 'utf8').digest('hex');

/** What pg cannot hand over as a valid Date: ±infinity, the first microsecond past JavaScript's last instant, PostgreSQL's last. */
const OUT_OF_RANGE = ['infinity', '-infinity', '275760-09-13 00:00:00.000001+00', '294276-12-31 23:59:59.999999+00'];

/** The columns 0017 holds to the range, by table, with the table's primary key. */
const HELD: { table: string; key: string; columns: string[] }[] = [
  { table: 'clients', key: 'client_id', columns: ['secret_created_at', 'created_at', 'updated_at'] },
  { table: 'users', key: 'id', columns: ['created_at', 'updated_at'] },
  { table: 'saml_identity_providers', key: 'entity_id', columns: ['created_at', 'updated_at'] },
  { table: 'client_certificates', key: 'id', columns: ['not_before', 'not_after', 'created_at'] },
  { table: 'audit_events', key: 'id', columns: ['occurred_at'] },
  { table: 'tokens', key: 'id_sha256', columns: ['issued_at', 'expires_at', 'consumed_at'] },
  { table: 'revocation_events', key: 'id', columns: ['expires_at'] },
];

describe('dates the server reads back are in range (0017)', () => {
  let database: TestDatabase;
  let server: TestServer;
  /** Another instance on the same database (plain HTTP): /token and /introspect. */
  let other: TestServer;
  let call: ReturnType<typeof managementClient>;
  let conformance: ReturnType<typeof conformanceChecker>;
  let admin: string;
  let client: TestClient;
  let user: TestUser;
  let psql: pg.Client;

  before(async () => {
    ({ database, server, call, conformance, admin } = await startManagementApi());
    other = await startTestServer(database.url);
    await makeScope(database.db, 'read');
    client = await makeClient(database.db, { grantTypes: ['client_credentials', 'password', 'refresh_token'], scope: ['read'] });
    user = await makeUser(database.db, 'dana', { params: FAST });
    const pki = createPki();
    await addCertificate(database.db, client.id, 'primary', parseCertificatePem(issue(pki, 'dated', { subject: '/CN=dated', issuer: 'self' }).cert));
    await addIdp(database.db, { entityId: 'https://idp.example.com', certificates: [issue(pki, 'idp', { subject: '/CN=idp', issuer: 'self' }).cert] });
    // A token revoked while live: a row of revocation_events.
    const revoked = await issueToken(other.url, client);
    assert.equal((await postForm(`${other.url}/revoke`, { token: revoked }, { basic: client.basic })).status, 200);
    psql = new pg.Client({ connectionString: database.url });
    await psql.connect();
  });
  after(async () => {
    await psql?.end();
    await other?.stop();
    await server?.stop();
    await database?.drop();
  });

  const expect = expectReply(() => ({ call, conformance, admin }));

  /** Runs an admin script's statement; the constraint that refused it, or 'accepted'. */
  const attempt = (statement: string, values: unknown[] = []) => psql.query(statement, values).then(
    () => 'accepted',
    (err: pg.DatabaseError) => (err.code === CHECK_VIOLATION ? err.constraint : `${err.code}: ${err.message}`),
  );

  const introspect = (token: string) => postForm(`${other.url}/introspect`, { token }, { basic: client.basic });
  /**
   * RFC 7662's answer for an active client-credentials token, from its row: exp from expires_at,
   * iat from the payload (issued_at when there is none), nbf likewise, aud from the payload.
   */
  const activeAnswerOf = async (token: string) => {
    const { rows: [row] } = await psql.query(`SELECT floor(extract(epoch FROM expires_at))::bigint::int AS exp,
        coalesce((payload->>'iat')::bigint, floor(extract(epoch FROM issued_at))::bigint)::int AS iat, payload->'aud' AS aud
      FROM tokens WHERE id_sha256 = $1`, [sha256(token)]);
    return {
      active: true, scope: 'read', client_id: client.id, token_type: 'Bearer', exp: row.exp, iat: row.iat, nbf: row.iat,
      sub: client.id, ...(row.aud === null ? {} : { aud: row.aud }), iss: other.config.issuer,
    };
  };

  it('every column 0017 holds refuses ±infinity and every instant after 275760-09-13 00:00:00 UTC', async () => {
    const outcomes: string[] = [];
    const expected: string[] = [];
    for (const { table, columns } of HELD) {
      for (const column of columns) {
        for (const value of OUT_OF_RANGE) {
          // Rolled back whatever happens: nothing of it is left for the other tests.
          await psql.query('BEGIN');
          const outcome = await attempt(`UPDATE ${table} SET ${column} = $1`, [value]);
          await psql.query('ROLLBACK');
          outcomes.push(`${table}.${column} = ${value}: ${outcome}`);
          // ±infinity in a certificate's own dates meets 0016's constraint first (checked in name order).
          const finiteFirst = table === 'client_certificates' && column !== 'created_at' && value.endsWith('infinity');
          expected.push(`${table}.${column} = ${value}: ${finiteFirst ? 'client_certificates_dates_finite' : `${table}_dates_in_range`}`);
        }
      }
    }
    assert.deepEqual(outcomes, expected);
  });

  it('the management listings go on answering, every row as it was', async () => {
    const listings: [string, string, string, (item: Record<string, unknown>) => boolean][] = [
      ['/management/clients?limit=100', 'clients', `created_at = $1 WHERE client_id = '${client.id}'`, (i) => i.client_id === client.id],
      ['/management/clients?limit=100', 'clients', `secret_created_at = $1 WHERE client_id = '${client.id}'`, (i) => i.client_id === client.id],
      ['/management/users?limit=100', 'users', `updated_at = $1 WHERE id = '${user.id}'`, (i) => i.id === user.id],
      ['/management/idps?limit=100', 'saml_identity_providers', `created_at = $1 WHERE entity_id = 'https://idp.example.com'`, (i) => i.entity_id === 'https://idp.example.com'],
      ['/management/certificates?limit=100', 'client_certificates', `created_at = $1 WHERE client_id = '${client.id}'`, (i) => i.client_id === client.id],
      ['/management/audit-events?limit=100', 'audit_events', 'occurred_at = $1 WHERE id = (SELECT min(id) FROM audit_events)', (i) => i.id === '1'],
    ];
    const outcomes: string[] = [];
    for (const [path, table, set, which] of listings) {
      const before = (await expect(200, 'GET', path)).json.items.find(which);
      assert.ok(before, `${path} lists the row`);
      for (const value of OUT_OF_RANGE) {
        outcomes.push(`${table} ${set.split(' ')[0]} = ${value}: ${await attempt(`UPDATE ${table} SET ${set}`, [value])}`);
        const after = await expect(200, 'GET', path);
        assert.deepEqual(after.json.items.find(which), before, `${path} after ${table} ${set} = ${value}`);
      }
    }
    assert.deepEqual(outcomes, listings.flatMap(([, table, set]) => OUT_OF_RANGE.map((v) => `${table} ${set.split(' ')[0]} = ${v}: ${table}_dates_in_range`)));
  });

  it('/introspect answers for a token whose expiry or issue time an admin script tried to move out of range', async () => {
    const token = await issueToken(other.url, client);
    // A row written by an admin script carries no iat: introspection takes issued_at instead.
    const handMade = 'a token an admin script provisioned';
    await psql.query(`INSERT INTO tokens (id_sha256, kind, client_id, scope, payload, issued_at, expires_at)
      VALUES ($1, 'ClientCredentials', $2, 'read', '{}', now(), now() + interval '1 hour')`, [sha256(handMade), client.id]);
    const expectedOwn = await activeAnswerOf(token);
    const expectedHandMade = await activeAnswerOf(handMade);
    const outcomes: string[] = [];
    for (const value of OUT_OF_RANGE) {
      outcomes.push(`expires_at = ${value}: ${await attempt('UPDATE tokens SET expires_at = $1 WHERE id_sha256 = $2', [value, sha256(token)])}`);
      const own = await introspect(token);
      assert.equal(own.status, 200, own.text);
      assert.deepEqual(own.json, expectedOwn);
      outcomes.push(`issued_at = ${value}: ${await attempt('UPDATE tokens SET issued_at = $1 WHERE id_sha256 = $2', [value, sha256(handMade)])}`);
      const provisioned = await introspect(handMade);
      assert.equal(provisioned.status, 200, provisioned.text);
      assert.deepEqual(provisioned.json, expectedHandMade);
    }
    assert.deepEqual(outcomes, OUT_OF_RANGE.flatMap((v) => [`expires_at = ${v}: tokens_dates_in_range`, `issued_at = ${v}: tokens_dates_in_range`]));
  });

  it('a refresh token an admin script tried to mark used at an instant out of range still refreshes', async () => {
    const signIn = await postForm(`${other.url}/token`, { grant_type: 'password', username: user.username, password: user.password, scope: 'read' }, { basic: client.basic });
    assert.equal(signIn.status, 200, signIn.text);
    let refreshToken = signIn.json.refresh_token as string;
    const outcomes: string[] = [];
    for (const value of OUT_OF_RANGE) {
      outcomes.push(`consumed_at = ${value}: ${await attempt('UPDATE tokens SET consumed_at = $1 WHERE id_sha256 = $2', [value, sha256(refreshToken)])}`);
      const refreshed = await postForm(`${other.url}/token`, { grant_type: 'refresh_token', refresh_token: refreshToken }, { basic: client.basic });
      assert.equal(refreshed.status, 200, refreshed.text);
      assert.equal(refreshed.json.scope, 'read');
      refreshToken = refreshed.json.refresh_token;
    }
    assert.deepEqual(outcomes, OUT_OF_RANGE.map((v) => `consumed_at = ${v}: tokens_dates_in_range`));
  });

  it('the earliest instant PostgreSQL holds and the last one a JavaScript Date holds are accepted and read back as written', async () => {
    const earliest = await makeClient(database.db, { scope: ['read'] });
    assert.equal(await attempt(`UPDATE clients SET created_at = '4713-01-01 00:00:00+00 BC' WHERE client_id = $1`, [earliest.id]), 'accepted');
    assert.equal((await expect(200, 'GET', `/management/clients/${earliest.id}`)).json.created_at, '-004712-01-01T00:00:00.000Z');
    const latest = await makeUser(database.db, 'latest', { params: FAST });
    assert.equal(await attempt(`UPDATE users SET updated_at = '275760-09-13 00:00:00+00' WHERE id = $1`, [latest.id]), 'accepted');
    assert.equal((await expect(200, 'GET', '/management/users/latest')).json.updated_at, '+275760-09-13T00:00:00.000Z');
    // A token that lasts until then: active, exp 8,640,000,000,000 s (JavaScript's 8.64e15 ms).
    const token = await issueToken(other.url, client);
    assert.equal(await attempt(`UPDATE tokens SET expires_at = '275760-09-13 00:00:00+00' WHERE id_sha256 = $1`, [sha256(token)]), 'accepted');
    const seen = await introspect(token);
    assert.equal(seen.status, 200, seen.text);
    assert.equal(seen.json.active, true);
    assert.equal(seen.json.exp, 8_640_000_000_000);
  });

  it('upgrading: 0017 stops on a row out of range, naming its constraint; db/README.md\'s query finds each; mended, it applies over the rows the server wrote', async () => {
    // The database as before 0017, holding what the server wrote in the tests above (clients,
    // users, an identity provider, a certificate, the audit trail, tokens issued, refreshed,
    // revoked, and their revocation events)…
    const constraints = HELD.map(({ table }) => `ALTER TABLE ${table} DROP CONSTRAINT ${table}_dates_in_range`);
    for (const statement of [...constraints, 'DROP FUNCTION km_date_in_range(timestamptz)', "DELETE FROM schema_migrations WHERE version = '0017'"]) {
      await psql.query(statement);
    }
    // …and one date out of range in each table, as an admin script could have written before.
    const token = await issueToken(other.url, client);
    const { rows: [event] } = await psql.query('SELECT id::text FROM revocation_events ORDER BY id LIMIT 1');
    const { rows: [certificate] } = await psql.query('SELECT id::text FROM client_certificates WHERE client_id = $1', [client.id]);
    const broken: [string, string, string, string][] = [
      ['clients', client.id, 'updated_at', 'infinity'],
      ['users', user.id, 'created_at', '-infinity'],
      ['saml_identity_providers', 'https://idp.example.com', 'updated_at', '294276-01-01 00:00:00+00'],
      ['client_certificates', certificate.id, 'not_after', '275760-09-13 00:00:00.000001+00'],
      ['audit_events', '1', 'occurred_at', 'infinity'],
      ['tokens', sha256(token), 'expires_at', 'infinity'],
      ['revocation_events', event.id, 'expires_at', 'infinity'],
    ];
    const keyOf = (table: string) => HELD.find((h) => h.table === table)!.key;
    for (const [table, key, column, value] of broken) {
      await psql.query(`UPDATE ${table} SET ${column} = $1 WHERE ${keyOf(table)}::text = $2`, [value, key]);
    }

    await assert.rejects(migrate(database.db), (err: pg.DatabaseError) => {
      assert.equal(err.code, CHECK_VIOLATION, err.message);
      assert.equal(err.message, 'check constraint "clients_dates_in_range" of relation "clients" is violated by some row');
      return true;
    });
    const query = fencedBlocks('db/README.md').find((b) => b.lang === 'sql' && b.heading.startsWith('Dates in range'));
    assert.ok(query, 'db/README.md has the query under "Dates in range"');
    const found = (await psql.query(query.text)).rows.map((r) => [r.table_name, r.row_key, r.column_name]);
    assert.deepEqual(
      found.sort(),
      broken.map(([table, key, column]) => [table, key, column]).sort(),
    );
    for (const [table, key, column] of broken) {
      await psql.query(`UPDATE ${table} SET ${column} = now() WHERE ${keyOf(table)}::text = $1`, [key]);
    }
    const applied = await migrate(database.db);
    assert.deepEqual(applied.map((m) => `${m.version}_${m.name}`), ['0017_dates_in_range']);
    const { rows } = await psql.query("SELECT checksum FROM schema_migrations WHERE version = '0017'");
    assert.deepEqual(rows, [{ checksum: readMigrations().find((m) => m.version === '0017')!.checksum }]);
    assert.equal(await attempt('UPDATE tokens SET expires_at = $1 WHERE id_sha256 = $2', ['infinity', sha256(token)]), 'tokens_dates_in_range');
  });
});
