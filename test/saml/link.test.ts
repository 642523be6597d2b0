// keymgr user link and idp add --allow-transient, run as an operator would (a child process,
// --json) against a real PostgreSQL, with a running server to show what a link does to the
// SAML2 bearer grant; and what `idp remove` does to the users federated from an IdP.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm, type Reply } from '../support/http.ts';
import { makeClient, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { runKeymgr, type KeymgrResult } from '../support/cli.ts';
import { SAML2_BEARER, TRANSIENT, assertionXml, encode, makeKeyPair, removeTempDirs, signWithSamlify, type KeyPair } from './support.ts';

const CORP = 'https://idp.corp.example/metadata';
const PARTNER = 'https://idp.partner.example/metadata';
const INVALID_GRANT = { error: 'invalid_grant', error_description: 'grant request is invalid' };

function ok(r: KeymgrResult): void {
  assert.equal(r.code, 0, `keymgr exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
}

/** A clean refusal: exit 1, nothing on stdout, one JSON error on stderr that says why. */
function refused(r: KeymgrResult, message: RegExp): void {
  assert.equal(r.code, 1, `expected exit 1, got ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  assert.equal(r.stdout, '');
  const parsed = JSON.parse(r.stderr) as { error: string };
  assert.deepEqual(Object.keys(parsed), ['error'], r.stderr);
  assert.match(parsed.error, message);
}

describe('keymgr user link, idp add --allow-transient (--json)', () => {
  let database: TestDatabase;
  let server: TestServer;
  let env: Record<string, string>;
  let corpKey: KeyPair;
  let partnerKey: KeyPair;
  let samlClient: TestClient;
  let passwordClient: TestClient;
  let alice: TestUser;
  let bob: TestUser;

  const keymgr = (args: string[]) => runKeymgr([...args, '--json'], env);
  const exchange = (issuer: string, key: KeyPair, nameId: string, nameIdFormat?: string) => postForm(`${server.url}/token`, {
    grant_type: SAML2_BEARER,
    assertion: encode(signWithSamlify(assertionXml({ issuer: server.config.issuer, tokenEndpoint: `${server.config.issuer}/token` }, { issuer, nameId, nameIdFormat }), key)),
  }, { basic: samlClient.basic });
  const subjectOf = async (res: Reply): Promise<string> => {
    assert.equal(res.status, 200, res.text);
    const seen = await postForm(`${server.url}/introspect`, { token: res.json.access_token }, { basic: samlClient.basic });
    assert.equal(seen.json.active, true, seen.text);
    return seen.json.sub as string;
  };
  const refusedGrant = (res: Reply) => {
    assert.equal(res.status, 400, res.text);
    assert.deepEqual(res.json, INVALID_GRANT);
  };

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    env = { DATABASE_URL: database.url, KM_KEYS_DIR: server.keysDir, KM_LOG_LEVEL: 'silent' };
    corpKey = makeKeyPair('corp');
    partnerKey = makeKeyPair('partner');
    samlClient = await makeClient(database.db, { grantTypes: [SAML2_BEARER], scope: ['read'] });
    passwordClient = await makeClient(database.db, { grantTypes: ['password'], scope: ['read'] });
    alice = await makeUser(database.db, 'alice');
    bob = await makeUser(database.db, 'bob');
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
    removeTempDirs();
  });

  it('idp add --allow-transient: shown by add, show and list; off by default', async () => {
    const corp = await keymgr(['idp', 'add', '--entity-id', CORP, '--cert', corpKey.certPath]);
    ok(corp);
    assert.equal(corp.json.allow_transient, false);
    const partner = await keymgr(['idp', 'add', '--entity-id', PARTNER, '--cert', partnerKey.certPath, '--jit', '--allow-transient']);
    ok(partner);
    assert.equal(partner.json.allow_transient, true);
    assert.equal((await keymgr(['idp', 'show', PARTNER])).json.allow_transient, true);
    assert.equal((await keymgr(['idp', 'show', CORP])).json.allow_transient, false);
    const list = await keymgr(['idp', 'list']);
    ok(list);
    assert.deepEqual(list.json.map((r: { entity_id: string; allow_transient: boolean }) => [r.entity_id, r.allow_transient]), [[CORP, false], [PARTNER, true]]);
    const human = await runKeymgr(['idp', 'list'], env);
    ok(human);
    assert.match(human.stdout, new RegExp(`${PARTNER.replace(/\./g, '\\.')}.*transient`));

    // The setting takes effect on the server.
    refusedGrant(await exchange(CORP, corpKey, 'tr-1', TRANSIENT));
    await subjectOf(await exchange(PARTNER, partnerKey, 'tr-1', TRANSIENT));
  });

  it('user link: the IdP\'s NameID then maps to that user, by exact NameID only; the user keeps their password', async () => {
    const nameId = 'a.smith@corp.example';
    refusedGrant(await exchange(CORP, corpKey, nameId));
    refusedGrant(await exchange(CORP, corpKey, 'alice'));

    const link = await keymgr(['user', 'link', '--idp', CORP, '--name-id', nameId, 'alice']);
    ok(link);
    assert.deepEqual(link.json, { username: 'alice', id: alice.id, federated_idp: CORP, federated_name_id: nameId });

    assert.equal(await subjectOf(await exchange(CORP, corpKey, nameId)), alice.id);
    refusedGrant(await exchange(CORP, corpKey, 'A.Smith@corp.example'));
    refusedGrant(await exchange(CORP, corpKey, 'alice'));
    // The same NameID from another IdP is another subject: PARTNER provisions its own user.
    const partnerUser = await subjectOf(await exchange(PARTNER, partnerKey, nameId));
    assert.notEqual(partnerUser, alice.id);

    const signIn = await postForm(`${server.url}/token`, { grant_type: 'password', username: 'alice', password: alice.password }, { basic: passwordClient.basic });
    assert.equal(signIn.status, 200, signIn.text);

    const list = await keymgr(['user', 'list']);
    ok(list);
    const byName = Object.fromEntries(list.json.map((u: { username: string }) => [u.username, u]));
    assert.equal(byName.alice.federated_idp, CORP);
    assert.equal(byName.alice.federated_name_id, nameId);
    assert.equal(byName.bob.federated_idp, null);
    assert.equal(byName.bob.federated_name_id, null);
  });

  it('user link refuses: unknown user, unknown IdP, a NameID already linked, a user already federated, a bad NameID', async () => {
    refused(await keymgr(['user', 'link', '--idp', CORP, '--name-id', 'n-1', 'nobody']), /no user "nobody"/);
    refused(await keymgr(['user', 'link', '--idp', 'https://nobody.example', '--name-id', 'n-1', 'bob']), /no identity provider "https:\/\/nobody\.example"/);
    refused(await keymgr(['user', 'link', '--idp', CORP, '--name-id', 'a.smith@corp.example', 'bob']), /already linked/);
    refused(await keymgr(['user', 'link', '--idp', CORP, '--name-id', 'a.smith@corp.example', 'alice']), /already/);
    refused(await keymgr(['user', 'link', '--idp', PARTNER, '--name-id', 'alice-at-partner', 'alice']), /already federated/);
    for (const bad of [' padded', 'x'.repeat(257), 'tab\there']) {
      refused(await keymgr(['user', 'link', '--idp', CORP, '--name-id', bad, 'bob']), /NameID/);
    }
    // Nothing changed: bob is still local, the NameID still maps to alice.
    const bobRow = await database.db.selectFrom('users').selectAll().where('id', '=', bob.id).executeTakeFirstOrThrow();
    assert.equal(bobRow.federated_idp, null);
    assert.equal(await subjectOf(await exchange(CORP, corpKey, 'a.smith@corp.example')), alice.id);
  });

  it('idp remove keeps its users and their links; adding the same entity id again gives them back', async () => {
    const jit = await subjectOf(await exchange(PARTNER, partnerKey, 'pat'));
    ok(await keymgr(['idp', 'remove', PARTNER]));
    refusedGrant(await exchange(PARTNER, partnerKey, 'pat'));
    const pat = await database.db.selectFrom('users').selectAll().where('id', '=', jit).executeTakeFirstOrThrow();
    assert.equal(pat.username, 'pat');
    assert.equal(pat.federated_idp, PARTNER);
    assert.equal(pat.federated_name_id, 'pat');
    ok(await keymgr(['idp', 'add', '--entity-id', PARTNER, '--cert', partnerKey.certPath]));
    assert.equal(await subjectOf(await exchange(PARTNER, partnerKey, 'pat')), jit);
  });
});
