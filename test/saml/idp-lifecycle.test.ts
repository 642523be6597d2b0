// Tokens follow their identity provider (migration 0020, README "Federated users"): disabling
// or removing an IdP revokes what its assertions got — access tokens, and refresh tokens so
// that none refreshes — on every path (here the store functions the CLI and API call), while a
// linked local user's tokens from their password stay. Enabling it again, or registering it
// again with another certificate, brings nothing back. Tokens written while the IdP was being
// disabled are caught too.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { sql } from 'kysely';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm, type Reply } from '../support/http.ts';
import { makeClient, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { syncEveryInstance, waitFor } from '../support/wait.ts';
import { addIdp, removeIdp, setIdpEnabled } from '../../src/store/idps.ts';
import { linkUser } from '../../src/store/users.ts';
import { SAML2_BEARER, assertionXml, encode, makeKeyPair, newId, removeTempDirs, signWithSamlify, type Endpoint, type KeyPair } from './support.ts';

const IDP = 'https://idp-lifecycle.example.com/saml';
const FAST = { memoryCost: 8192, timeCost: 1, parallelism: 1 };

describe('tokens follow their identity provider', () => {
  let database: TestDatabase;
  let server: TestServer;
  let endpoint: Endpoint;
  let key: KeyPair;
  let client: TestClient;
  let linda: TestUser;

  const exchange = (nameId: string, id = newId(), signer = key) => postForm(`${server.url}/token`,
    { grant_type: SAML2_BEARER, assertion: encode(signWithSamlify(assertionXml(endpoint, { id, issuer: IDP, nameId }), signer)) }, { basic: client.basic });
  const signIn = () => postForm(`${server.url}/token`, { grant_type: 'password', username: linda.username, password: linda.password, scope: 'read' }, { basic: client.basic });
  const active = async (token: string) => (await postForm(`${server.url}/introspect`, { token }, { basic: client.basic })).json.active as boolean;
  const refresh = (token: string) => postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: token }, { basic: client.basic });
  const issued = (res: Reply) => {
    assert.equal(res.status, 200, res.text);
    return { access: res.json.access_token as string, refresh: res.json.refresh_token as string };
  };
  const assertRefused = (res: Reply) => {
    assert.equal(res.status, 400, res.text);
    assert.deepEqual(res.json, { error: 'invalid_grant', error_description: 'grant request is invalid' });
  };

  /** The kinds of the jit-user's rows not revoked. */
  const liveRowsOfJitUser = async () => (await sql<{ kind: string }>`select t.kind from tokens t join users u on t.account_id = u.id::text
    where u.federated_idp = ${IDP} and u.username = 'jit-user' and t.revoked_at is null`.execute(database.db)).rows;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    endpoint = { issuer: server.config.issuer, tokenEndpoint: `${server.config.issuer}/token` };
    key = makeKeyPair('lifecycle-idp');
    client = await makeClient(database.db, { grantTypes: [SAML2_BEARER, 'password', 'refresh_token'], scope: ['read'] });
    await addIdp(database.db, { entityId: IDP, certificates: [key.cert], jit: true });
    // A local user who also signs in through the IdP: her password stays hers.
    linda = await makeUser(database.db, 'linda', { params: FAST });
    await linkUser(database.db, 'linda', { idp: IDP, nameId: 'linda@idp' });
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
    removeTempDirs();
  });

  it('disabling the IdP revokes the tokens its assertions got, not the linked user\'s password tokens; enabling it again brings nothing back', async () => {
    const jit = issued(await exchange('jit-user'));
    const refreshed = issued(await refresh(jit.refresh)); // a refresh keeps the grant the IdP's
    const lindaSaml = issued(await exchange('linda@idp'));
    const lindaPassword = issued(await signIn());

    assert.equal(await setIdpEnabled(database.db, IDP, false), true);
    await syncEveryInstance(database.url);
    for (const token of [jit.access, refreshed.access, lindaSaml.access]) assert.equal(await active(token), false);
    assertRefused(await refresh(refreshed.refresh));
    assertRefused(await refresh(lindaSaml.refresh));
    assert.equal(await active(lindaPassword.access), true);
    const stillHers = issued(await refresh(lindaPassword.refresh));

    assert.equal(await setIdpEnabled(database.db, IDP, true), true);
    await syncEveryInstance(database.url);
    assert.equal(await active(refreshed.access), false);
    assertRefused(await refresh(lindaSaml.refresh));
    assert.equal(await active(stillHers.access), true);
    // New assertions work again.
    issued(await exchange('jit-user'));
  });

  it('removing the IdP and registering it again with another certificate: what the old one got stays revoked', async () => {
    const before = issued(await exchange('jit-user'));
    assert.equal(await removeIdp(database.db, IDP), true);
    const replacement = makeKeyPair('lifecycle-idp-2');
    await addIdp(database.db, { entityId: IDP, certificates: [replacement.cert], jit: true });
    key = replacement;
    await syncEveryInstance(database.url);
    assert.equal(await active(before.access), false);
    assertRefused(await refresh(before.refresh));
    issued(await exchange('jit-user'));
  });

  it('tokens written while the IdP was being disabled are revoked too, and the request refused', async () => {
    const id = newId();
    // The test holds the assertion's place in the replay cache (uncommitted): the request waits
    // there, after its IdP was checked, while the IdP is disabled; then it goes on.
    const holder = new pg.Client({ connectionString: database.url });
    await holder.connect();
    let pending: Promise<Reply> | undefined;
    const mark = server.logMark();
    try {
      await holder.query('begin');
      await holder.query("insert into saml_assertion_ids (idp_entity_id, assertion_id, expires_at) values ($1, $2, now() + interval '1 hour')", [IDP, id]);
      pending = exchange('jit-user', id);
      // pg_stat_clear_snapshot: inside a transaction pg_stat_activity otherwise stays as first read.
      await waitFor('the request to wait for the replay cache', async () => (await holder.query('select pg_stat_clear_snapshot()'), await holder.query(
        "select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()")).rows[0].n === 1);
      assert.equal(await setIdpEnabled(database.db, IDP, false), true);
    } finally {
      await holder.query('rollback').catch(() => {});
      await holder.end();
    }
    assertRefused(await pending!);
    assert.deepEqual(server.logsSince(mark).filter((l) => l.event === 'saml.rejected').map((l) => l.reason),
      ['the identity provider was disabled, removed or replaced while the tokens were issued']);
    assert.deepEqual(await liveRowsOfJitUser(), []);
    await setIdpEnabled(database.db, IDP, true);
  });

  it('a disable in a transaction not yet committed while the tokens are written: the request waits for it, then revokes them', async () => {
    const admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
    let pending: Promise<Reply> | undefined;
    try {
      await admin.query('begin');
      await admin.query('update saml_identity_providers set enabled = false where entity_id = $1', [IDP]);
      pending = exchange('jit-user');
      await waitFor('the request to wait for the IdP row', async () => (await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity
        where wait_event_type = 'Lock' and query like '%saml_identity_providers%'`.execute(database.db)).rows[0]!.n === 1);
      await admin.query('commit');
    } finally {
      await admin.query('rollback').catch(() => {});
      await admin.end();
    }
    assertRefused(await pending!);
    assert.deepEqual(await liveRowsOfJitUser(), []);
    await setIdpEnabled(database.db, IDP, true);
  });

  it('removed and added again with another certificate while an assertion of the old key is in flight: its tokens are revoked', async () => {
    const id = newId();
    const holder = new pg.Client({ connectionString: database.url });
    await holder.connect();
    let pending: Promise<Reply> | undefined;
    const oldKey = key;
    try {
      await holder.query('begin');
      await holder.query("insert into saml_assertion_ids (idp_entity_id, assertion_id, expires_at) values ($1, $2, now() + interval '1 hour')", [IDP, id]);
      pending = exchange('jit-user', id, oldKey);
      await waitFor('the request to wait for the replay cache', async () => (await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity
        where wait_event_type = 'Lock' and query like '%saml_assertion_ids%'`.execute(database.db)).rows[0]!.n === 1);
      assert.equal(await removeIdp(database.db, IDP), true);
      key = makeKeyPair('lifecycle-idp-3');
      await addIdp(database.db, { entityId: IDP, certificates: [key.cert], jit: true });
    } finally {
      await holder.query('rollback').catch(() => {});
      await holder.end();
    }
    assertRefused(await pending!);
    assert.deepEqual(await liveRowsOfJitUser(), []);
    issued(await exchange('jit-user'));
  });
});
