// The schema refuses a client the server cannot serve (db/README.md, migration 0013): each
// invalid INSERT or UPDATE of `clients` is refused by PostgreSQL itself, with the SQLSTATE and
// the constraint db/README.md names. And the README's own INSERT example, run as written
// (its psql variable given as a parameter), makes a client that gets a token with its secret.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { makeClient } from '../support/fixtures.ts';
import { walkthroughBlocks } from '../support/readme.ts';

const CHECK_VIOLATION = '23514';
const FOREIGN_KEY_VIOLATION = '23503';
const DIGEST = createHash('sha256').update('a secret', 'utf8').digest('hex');

type Row = Record<string, unknown>;

/** A client every rule accepts: each case changes one thing. */
const VALID: Row = {
  client_id: 'sql-client',
  name: 'SQL client',
  secret_sha256: DIGEST,
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: ['client_credentials'],
  redirect_uris: [],
  scope: 'read',
};

const INVALID: [string, Row, string, string][] = [
  ['a secret digest in upper case', { secret_sha256: DIGEST.toUpperCase() }, CHECK_VIOLATION, 'clients_secret_sha256_check'],
  ['a secret digest one digit short', { secret_sha256: DIGEST.slice(1) }, CHECK_VIOLATION, 'clients_secret_sha256_check'],
  ['the secret itself instead of its digest', { secret_sha256: randomBytes(32).toString('base64url') }, CHECK_VIOLATION, 'clients_secret_sha256_check'],
  ['client_secret_basic without a digest', { secret_sha256: null }, CHECK_VIOLATION, 'clients_check'],
  ['an unknown auth method', { token_endpoint_auth_method: 'private_key_jwt' }, CHECK_VIOLATION, 'clients_token_endpoint_auth_method_check'],
  ['an unknown token format', { access_token_format: 'JWT' }, CHECK_VIOLATION, 'clients_access_token_format_check'],
  ['an unknown application type', { application_type: 'desktop' }, CHECK_VIOLATION, 'clients_application_type_check'],
  ['no grant type', { grant_types: [] }, CHECK_VIOLATION, 'clients_grant_types_known'],
  ['an unknown grant type', { grant_types: ['client_credentials', 'implicit'] }, CHECK_VIOLATION, 'clients_grant_types_known'],
  ['a grant type spelt in capitals', { grant_types: ['CLIENT_CREDENTIALS'] }, CHECK_VIOLATION, 'clients_grant_types_known'],
  ['a NULL grant type', { grant_types: ['client_credentials', null] }, CHECK_VIOLATION, 'clients_grant_types_known'],
  ['a two-dimensional grant_types', { grant_types: [['client_credentials']] }, CHECK_VIOLATION, 'clients_grant_types_known'],
  ['a public client with client_credentials', { token_endpoint_auth_method: 'none', secret_sha256: null }, CHECK_VIOLATION, 'clients_public_client_grants'],
  ['a public client with password', { token_endpoint_auth_method: 'none', secret_sha256: null, grant_types: ['password'] }, CHECK_VIOLATION, 'clients_public_client_grants'],
  ['authorization_code without a redirect URI', { grant_types: ['authorization_code'] }, CHECK_VIOLATION, 'clients_authorization_code_needs_redirect_uri'],
  ['a web application redirecting to javascript:', { grant_types: ['authorization_code'], redirect_uris: ['javascript:alert(1)'] }, CHECK_VIOLATION, 'clients_redirect_uris_servable'],
  ['a web application redirecting to ftp:', { grant_types: ['authorization_code'], redirect_uris: ['ftp://files.example/cb'] }, CHECK_VIOLATION, 'clients_redirect_uris_servable'],
  ['a redirect URI with a user name and password', { grant_types: ['authorization_code'], redirect_uris: ['https://u:p@app.example/cb'] }, CHECK_VIOLATION, 'clients_redirect_uris_servable'],
  ['a native application on http off the loopback', { grant_types: ['authorization_code'], redirect_uris: ['http://app.example/cb'], application_type: 'native' }, CHECK_VIOLATION, 'clients_redirect_uris_servable'],
  ['a native application on https at the loopback', { grant_types: ['authorization_code'], redirect_uris: ['https://127.0.0.1/cb'], application_type: 'native' }, CHECK_VIOLATION, 'clients_redirect_uris_servable'],
  ['a native application redirecting to data:', { grant_types: ['authorization_code'], redirect_uris: ['data:text/html,hi'], application_type: 'native' }, CHECK_VIOLATION, 'clients_redirect_uris_servable'],
  ['a redirect URI with a fragment', { grant_types: ['authorization_code'], redirect_uris: ['https://app.example/cb#x'] }, CHECK_VIOLATION, 'clients_redirect_uris_format'],
  ['a relative redirect URI', { grant_types: ['authorization_code'], redirect_uris: ['/callback'] }, CHECK_VIOLATION, 'clients_redirect_uris_format'],
  ['a redirect URI with a space', { grant_types: ['authorization_code'], redirect_uris: ['https://app.example/a b'] }, CHECK_VIOLATION, 'clients_redirect_uris_format'],
  ['an empty redirect URI', { grant_types: ['authorization_code'], redirect_uris: [''] }, CHECK_VIOLATION, 'clients_redirect_uris_format'],
  ['scopes separated by two spaces', { scope: 'read  write' }, CHECK_VIOLATION, 'clients_scope_format'],
  ['a scope list with a leading space', { scope: ' read' }, CHECK_VIOLATION, 'clients_scope_format'],
  ['a scope that is not registered', { scope: 'read not-registered' }, FOREIGN_KEY_VIOLATION, 'clients_scope_registered'],
  ['tls_client_auth with neither DN nor SAN', { token_endpoint_auth_method: 'tls_client_auth', secret_sha256: null }, CHECK_VIOLATION, 'clients_tls_client_auth_subject'],
  ['tls_client_auth with both', { token_endpoint_auth_method: 'tls_client_auth', secret_sha256: null, tls_client_auth_subject_dn: 'CN=gw', tls_client_auth_san_dns: 'gw.example.com' }, CHECK_VIOLATION, 'clients_tls_client_auth_subject'],
  ['a subject DN on a secret client', { tls_client_auth_subject_dn: 'CN=gw' }, CHECK_VIOLATION, 'clients_tls_client_auth_subject'],
  ['a subject DN with a line break', { token_endpoint_auth_method: 'tls_client_auth', secret_sha256: null, tls_client_auth_subject_dn: 'CN=gw\nO=x' }, CHECK_VIOLATION, 'clients_tls_client_auth_subject_dn_format'],
  ['a DNS SAN with a space', { token_endpoint_auth_method: 'tls_client_auth', secret_sha256: null, tls_client_auth_san_dns: 'gw example.com' }, CHECK_VIOLATION, 'clients_tls_client_auth_san_dns_format'],
  ['an empty introspection audience', { introspect_audiences: [''] }, CHECK_VIOLATION, 'clients_introspect_audiences_format'],
  ['51 introspection audiences', { introspect_audiences: Array.from({ length: 51 }, (_, i) => `aud-${i}`) }, CHECK_VIOLATION, 'clients_introspect_audiences_format'],
  ['an empty client_id', { client_id: '' }, CHECK_VIOLATION, 'clients_client_id_format'],
  ['a client_id outside ASCII', { client_id: 'clíent' }, CHECK_VIOLATION, 'clients_client_id_format'],
  ['a blank name', { name: '  ' }, CHECK_VIOLATION, 'clients_name_not_blank'],
];

describe('the clients table refuses a client the server cannot serve', () => {
  let database: TestDatabase;
  let server: TestServer;
  let sql: pg.Client;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    await sql.query("INSERT INTO scopes (name) VALUES ('read'), ('write')");
  });
  after(async () => {
    await sql?.end();
    await server?.stop();
    await database?.drop();
  });

  function insert(row: Row) {
    const columns = Object.keys(row);
    return sql.query(`INSERT INTO clients (${columns.join(', ')}) VALUES (${columns.map((_, i) => `$${i + 1}`).join(', ')})`, Object.values(row));
  }

  async function assertRefused(what: string, run: () => Promise<unknown>, code: string, constraint: string): Promise<void> {
    await assert.rejects(run, (err: pg.DatabaseError) => {
      assert.equal(err.code, code, `${what}: ${err.message}`);
      assert.equal(err.constraint, constraint, `${what}: ${err.message}`);
      return true;
    }, what);
  }

  it('the valid row, and each grant type and auth method of db/README.md, are accepted', async () => {
    await insert(VALID);
    await insert({ ...VALID, client_id: 'every-grant', grant_types: ['client_credentials', 'authorization_code', 'refresh_token', 'password', 'urn:ietf:params:oauth:grant-type:saml2-bearer'], redirect_uris: ['http://127.0.0.1:8080/callback'] });
    await insert({ ...VALID, client_id: 'post', token_endpoint_auth_method: 'client_secret_post', access_token_format: 'jwt' });
    await insert({ ...VALID, client_id: 'public', token_endpoint_auth_method: 'none', secret_sha256: null, grant_types: ['authorization_code', 'refresh_token'], redirect_uris: ['com.example.app:/cb'], application_type: 'native' });
    await insert({ ...VALID, client_id: 'mtls-dn', token_endpoint_auth_method: 'tls_client_auth', secret_sha256: null, tls_client_auth_subject_dn: 'CN=gw,O=Example' });
    await insert({ ...VALID, client_id: 'mtls-san', token_endpoint_auth_method: 'tls_client_auth', secret_sha256: null, tls_client_auth_san_dns: 'gw.example.com' });
    await insert({ ...VALID, client_id: 'self-signed', token_endpoint_auth_method: 'self_signed_tls_client_auth', secret_sha256: null, scope: '' });
    await insert({ ...VALID, client_id: 'gateway', introspect_any: true, introspect_audiences: ['https://api.example.com'] });
    const { rows } = await sql.query('SELECT count(*)::int AS n FROM clients');
    assert.equal(rows[0].n, 8);
  });

  for (const [what, change, code, constraint] of INVALID) {
    it(`INSERT refused: ${what} (${constraint})`, async () => {
      await assertRefused(what, () => insert({ ...VALID, client_id: 'refused', ...change }), code, constraint);
    });
  }

  it('an UPDATE is held to the same rules', async () => {
    await insert({ ...VALID, client_id: 'to-update' });
    const update = (set: string, ...values: unknown[]) => () => sql.query(`UPDATE clients SET ${set} WHERE client_id = 'to-update'`, values);
    await assertRefused('unknown grant type', update('grant_types = $1', ['client_credentials', 'implicit']), CHECK_VIOLATION, 'clients_grant_types_known');
    await assertRefused('secret removed', update('secret_sha256 = NULL'), CHECK_VIOLATION, 'clients_check');
    await assertRefused('unregistered scope', update("scope = 'read admin'"), FOREIGN_KEY_VIOLATION, 'clients_scope_registered');
    await assertRefused('made public while it has client_credentials', update("token_endpoint_auth_method = 'none', secret_sha256 = NULL"), CHECK_VIOLATION, 'clients_public_client_grants');
  });

  it('a scope deleted with plain SQL leaves every allow-list (0019); other changes go on', async () => {
    await sql.query("INSERT INTO scopes (name) VALUES ('temporary'), ('temporary2')");
    await insert({ ...VALID, client_id: 'stale-scope', scope: 'temporary read temporary2' });
    await sql.query("DELETE FROM scopes WHERE name = 'temporary'");
    await sql.query("UPDATE clients SET disabled = true, name = 'renamed' WHERE client_id = 'stale-scope'");
    const { rows } = await sql.query("SELECT scope FROM clients WHERE client_id = 'stale-scope'");
    assert.equal(rows[0].scope, 'read temporary2');
  });

  it('clients written by the server\'s own registration pass every rule', async () => {
    await makeClient(database.db, { grantTypes: ['authorization_code', 'refresh_token', 'password'], redirectUris: ['https://app.example/cb'], scope: ['read', 'write'], tokenFormat: 'jwt' });
    await makeClient(database.db, { authMethod: 'none', grantTypes: ['authorization_code'], redirectUris: ['http://127.0.0.1/cb'], applicationType: 'native', scope: [] });
    await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSubjectDn: 'O=Example,CN=gateway', introspectAny: true, introspectAudiences: ['a', 'b'] });
    await makeClient(database.db, { authMethod: 'self_signed_tls_client_auth', grantTypes: ['client_credentials', 'urn:ietf:params:oauth:grant-type:saml2-bearer'] });
  });

  it('db/README.md\'s INSERT example makes a client that gets a token with its secret', async () => {
    const [block] = walkthroughBlocks('db/README.md', 'sql-client');
    assert.ok(block, 'db/README.md has the sql-client example');
    const script = /<<'SQL'\n([\s\S]*?)\nSQL\n/.exec(block.text)?.[1];
    assert.ok(script, 'the example feeds psql a here-document');
    // The example's one psql variable, :'secret', given as a bind parameter instead.
    const statements = script.split(/;\s*\n/).map((s) => s.trim()).filter(Boolean);
    const secret = randomBytes(32).toString('base64url');
    for (const statement of statements) {
      await sql.query(statement.replaceAll(":'secret'", '$1::text'), statement.includes(":'secret'") ? [secret] : []);
    }
    const { rows } = await sql.query("SELECT secret_sha256, grant_types, scope FROM clients WHERE client_id = 'billing-batch'");
    assert.deepEqual(rows[0], {
      secret_sha256: createHash('sha256').update(secret, 'utf8').digest('hex'),
      grant_types: ['client_credentials'],
      scope: 'reports:read',
    });
    const res = await postForm(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'reports:read' }, { basic: ['billing-batch', secret] });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.scope, 'reports:read');
    assert.equal(res.json.token_type, 'Bearer');
    const wrong = await postForm(`${server.url}/token`, { grant_type: 'client_credentials' }, { basic: ['billing-batch', `${secret}x`] });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json.error, 'invalid_client');
  });
});
