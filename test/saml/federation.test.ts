// Issue 10 item 4: a user belongs to the identity provider that vouches for them. An assertion
// maps only to a user federated from that same IdP (by JIT provisioning or `keymgr user link`),
// by exact NameID; never to a local password user or another IdP's user by name. Transient
// NameIDs are refused unless the IdP allows them; SHA-1 is refused anywhere in the signature;
// nothing unsigned reaches a query before the signature is checked.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm, type Reply } from '../support/http.ts';
import { makeClient, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { addIdp } from '../../src/store/idps.ts';
import {
  PERSISTENT, SAML2_BEARER, SHA1, SHA384, SHA512, TRANSIENT, assertionXml, encode, makeEcKeyPair, makeKeyPair, removeTempDirs,
  signWithSamlify, signWithXmlCrypto, signWithXmlsec, type AssertionFields, type Endpoint, type KeyPair,
} from './support.ts';

const IDP1 = 'https://idp-one.example.com/saml';
const IDP2 = 'https://idp-two.example.com/saml';
const STRICT = 'https://idp-strict.example.com/saml';
const TRANSIENT_OK = 'https://idp-transient.example.com/saml';
const EC_IDP = 'https://idp-ec.example.com/saml';
const RSA_SHA1 = 'http://www.w3.org/2000/09/xmldsig#rsa-sha1';
const ECDSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256';
const ECDSA_SHA384 = 'http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384';

/** The wire shape of every refused assertion: the reason is in the log only. */
const INVALID_GRANT = { error: 'invalid_grant', error_description: 'grant request is invalid' };

describe('SAML2 bearer grant: federated users', () => {
  let database: TestDatabase;
  let server: TestServer;
  let endpoint: Endpoint;
  let key1: KeyPair;
  let key2: KeyPair;
  let strictKey: KeyPair;
  let transientKey: KeyPair;
  let ecKeys: KeyPair[];
  let client: TestClient;
  let alice: TestUser;

  const assertion = (issuer: string, key: KeyPair, f: Partial<AssertionFields> & { nameId: string }) =>
    signWithSamlify(assertionXml(endpoint, { issuer, ...f }), key);
  const exchange = (xml: string) => postForm(`${server.url}/token`, { grant_type: SAML2_BEARER, assertion: encode(xml) }, { basic: client.basic });
  const subjectOf = async (res: Reply) => {
    assert.equal(res.status, 200, res.text);
    const seen = await postForm(`${server.url}/introspect`, { token: res.json.access_token }, { basic: client.basic });
    assert.equal(seen.json.active, true, seen.text);
    return { sub: seen.json.sub as string, username: seen.json.username as string };
  };

  async function counts() {
    const n = async (table: 'tokens' | 'users' | 'saml_assertion_ids' | 'user_roles') =>
      Number((await database.db.selectFrom(table).select(sql<string>`count(*)`.as('n')).executeTakeFirstOrThrow()).n);
    return { tokens: await n('tokens'), users: await n('users'), assertionIds: await n('saml_assertion_ids'), userRoles: await n('user_roles') };
  }

  /** Refused with exactly 400 invalid_grant, no user or token made; returns the log lines it wrote. */
  async function refused(xml: string, reason?: RegExp): Promise<string> {
    const before = await counts();
    const logLines = server.logs.length;
    const res = await exchange(xml);
    assert.equal(res.status, 400, res.text);
    assert.deepEqual(res.json, INVALID_GRANT);
    const after = await counts();
    assert.equal(after.tokens, before.tokens, 'no token stored');
    assert.equal(after.users, before.users, 'no user created');
    assert.equal(after.userRoles, before.userRoles, 'no role granted');
    const lines = server.logs.slice(logLines).join('\n');
    assert.match(lines, /saml\.rejected/, 'a log line says why');
    if (reason) assert.match(lines, reason);
    return lines;
  }

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    endpoint = { issuer: server.config.issuer, tokenEndpoint: `${server.config.issuer}/token` };
    [key1, key2, strictKey, transientKey] = ['one', 'two', 'strict', 'transient'].map((cn) => makeKeyPair(cn)) as [KeyPair, KeyPair, KeyPair, KeyPair];
    client = await makeClient(database.db, { grantTypes: [SAML2_BEARER], scope: ['read'] });
    alice = await makeUser(database.db, 'alice', { roles: ['admin', 'staff'] });
    // JIT on for both: the strongest temptation to take over a user by name.
    await addIdp(database.db, { entityId: IDP1, certificates: [key1.cert], jit: true, defaultRoles: ['staff'] });
    await addIdp(database.db, { entityId: IDP2, certificates: [key2.cert], jit: true, defaultRoles: ['staff'] });
    await addIdp(database.db, { entityId: STRICT, certificates: [strictKey.cert] });
    await addIdp(database.db, { entityId: TRANSIENT_OK, certificates: [transientKey.cert], jit: true, allowTransient: true });
    ecKeys = [makeEcKeyPair('ec-256', 'P-256'), makeEcKeyPair('ec-384', 'P-384')];
    await addIdp(database.db, { entityId: EC_IDP, certificates: ecKeys.map((k) => k.cert), jit: true });
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
    removeTempDirs();
  });

  it('a second IdP asserting the NameID of the first IdP\'s user gets invalid_grant', async () => {
    const carol = await subjectOf(await exchange(assertion(IDP1, key1, { nameId: 'carol' })));
    assert.equal(carol.username, 'carol');
    for (const nameId of ['carol', 'CAROL']) {
      await refused(assertion(IDP2, key2, { nameId }));
      await refused(assertion(STRICT, strictKey, { nameId }));
    }
    // The first IdP still gets its own user.
    assert.equal((await subjectOf(await exchange(assertion(IDP1, key1, { nameId: 'carol' })))).sub, carol.sub);
  });

  it('no IdP signs in as a local password user: NameID=ALICE and alice are refused, alice is not taken over', async () => {
    for (const nameId of ['ALICE', 'alice', 'Alice']) {
      const lines = await refused(assertion(IDP2, key2, { nameId }));
      assert.doesNotMatch(lines, new RegExp(`"user_id":"${alice.id}"`), 'nothing issued for alice');
      await refused(assertion(STRICT, strictKey, { nameId }));
      await refused(assertion(IDP1, key1, { nameId }));
    }
    const row = await database.db.selectFrom('users').selectAll().where('id', '=', alice.id).executeTakeFirstOrThrow();
    assert.equal(row.username, 'alice');
    assert.equal((row as Record<string, unknown>).federated_idp ?? null, null, 'alice is still a local user');
  });

  it('JIT never takes over a username of another source: the log tells the operator to link', async () => {
    const lines = await refused(assertion(IDP1, key1, { nameId: 'alice' }));
    assert.match(lines, /keymgr user link/);
    assert.match(lines, /https:\/\/idp-one\.example\.com\/saml/);
  });

  it('JIT refuses a NameID that would make a look-alike username (invisible characters, unnormalised text, compatibility forms)', async () => {
    // The last two: fullwidth alice, and a Kelvin sign for the K of Karl.
    for (const nameId of ['alice\u200b', '\u202eecila', 'cafe\u0301', '\uFF41\uFF4C\uFF49\uFF43\uFF45', '\u212Aarl']) {
      const lines = await refused(assertion(IDP1, key1, { nameId }));
      assert.match(lines, /cannot provision user/);
    }
  });

  it('NameIDs match exactly: a case-different NameID is not the same subject', async () => {
    const dora = await subjectOf(await exchange(assertion(IDP1, key1, { nameId: 'dora' })));
    for (const nameId of ['DORA', 'Dora']) await refused(assertion(IDP1, key1, { nameId }));
    assert.equal((await subjectOf(await exchange(assertion(IDP1, key1, { nameId: 'dora' })))).sub, dora.sub);
  });

  it('a transient NameID is refused unless the IdP allows transient NameIDs', async () => {
    await refused(assertion(IDP1, key1, { nameId: 'tr-4f2a', nameIdFormat: TRANSIENT }), /transient/);
    await refused(assertion(STRICT, strictKey, { nameId: 'tr-4f2a', nameIdFormat: TRANSIENT }), /transient/);
    // A persistent NameID of the same IdP is fine.
    assert.equal((await subjectOf(await exchange(assertion(IDP1, key1, { nameId: 'erin', nameIdFormat: PERSISTENT })))).username, 'erin');
    // The IdP configured to allow them.
    const allowed = await subjectOf(await exchange(assertion(TRANSIENT_OK, transientKey, { nameId: 'tr-9c1b', nameIdFormat: TRANSIENT })));
    assert.equal(allowed.username, 'tr-9c1b');
  });

  it('concurrent first sign-ins of one NameID provision one user, and every request gets that user', async () => {
    const replies = await Promise.all(Array.from({ length: 8 }, () => exchange(assertion(IDP1, key1, { nameId: 'hana' }))));
    const subs = new Set((await Promise.all(replies.map(subjectOf))).map((s) => s.sub));
    assert.equal(subs.size, 1, 'one subject');
    const rows = await database.db.selectFrom('users').select(['id', 'federated_idp', 'federated_name_id']).where('username', '=', 'hana').execute();
    assert.deepEqual(rows, [{ id: [...subs][0], federated_idp: IDP1, federated_name_id: 'hana' }]);
  });

  it('a disabled federated user is refused', async () => {
    const ivan = (await subjectOf(await exchange(assertion(IDP1, key1, { nameId: 'ivan' })))).sub;
    await database.db.updateTable('users').set({ disabled: true }).where('id', '=', ivan).execute();
    await refused(assertion(IDP1, key1, { nameId: 'ivan' }), /disabled/);
  });

  describe('signature and digest algorithms', () => {
    it('SHA-1 DigestMethod under an RSA-SHA256 SignatureMethod is refused (xml-crypto and xmlsec1 signers)', async () => {
      const xml = signWithXmlCrypto(assertionXml(endpoint, { issuer: IDP1, nameId: 'frank' }), key1.key, { digestAlgorithm: SHA1 });
      assert.match(xml, /<ds:DigestMethod Algorithm="http:\/\/www\.w3\.org\/2000\/09\/xmldsig#sha1"\/>/);
      assert.match(xml, /rsa-sha256/);
      await refused(xml, /sha1/);
      await refused(signWithXmlsec(endpoint, { issuer: IDP1, nameId: 'frank' }, key1, SHA1), /sha1/);
    });

    it('SHA-256, SHA-384 and SHA-512 digests are accepted (xmlsec1)', async () => {
      for (const digest of [SHA384, SHA512]) {
        assert.equal((await subjectOf(await exchange(signWithXmlsec(endpoint, { issuer: IDP1, nameId: 'gina' }, key1, digest)))).username, 'gina');
      }
      assert.equal((await subjectOf(await exchange(signWithXmlsec(endpoint, { issuer: IDP1, nameId: 'gina' }, key1)))).username, 'gina');
    });

    it('RSA-SHA1 SignatureMethod is refused', async () => {
      await refused(signWithXmlsec(endpoint, { issuer: IDP1, nameId: 'frank' }, key1, undefined, RSA_SHA1), /rsa-sha1/);
    });

    it('ECDSA with SHA-256 and SHA-384 (P-256, P-384) is accepted; with a SHA-1 digest it is refused (xmlsec1)', async () => {
      const [p256, p384] = ecKeys as [KeyPair, KeyPair];
      assert.equal((await subjectOf(await exchange(signWithXmlsec(endpoint, { issuer: EC_IDP, nameId: 'june' }, p256, undefined, ECDSA_SHA256)))).username, 'june');
      assert.equal((await subjectOf(await exchange(signWithXmlsec(endpoint, { issuer: EC_IDP, nameId: 'june' }, p384, SHA384, ECDSA_SHA384)))).username, 'june');
      await refused(signWithXmlsec(endpoint, { issuer: EC_IDP, nameId: 'june' }, p256, SHA1, ECDSA_SHA256), /sha1/);
      // An EC key the IdP did not register.
      await refused(signWithXmlsec(endpoint, { issuer: EC_IDP, nameId: 'june' }, makeEcKeyPair('other-ec'), undefined, ECDSA_SHA256), /does not verify/);
    });
  });

  describe('nothing unsigned reaches a query before the signature is checked', () => {
    it('NUL in the unsigned Issuer: invalid_grant, not a 5xx', async () => {
      // Raw NUL, and NUL written as a character reference; unsigned, and a signed assertion
      // whose Issuer was changed after signing.
      await refused(assertionXml(endpoint, { issuer: `${IDP1}\u0000`, nameId: 'carol' }));
      await refused(assertionXml(endpoint, { issuer: IDP1, nameId: 'carol' }).replace(IDP1, `${IDP1}&#0;`));
      const genuine = assertion(IDP1, key1, { nameId: 'carol' });
      await refused(genuine.replace(`>${IDP1}<`, `>${IDP1}\u0000<`));
      await refused(genuine.replace(`>${IDP1}<`, `>\u0000${IDP1}<`));
      await refused(genuine.replace(`>${IDP1}<`, `>${IDP1}&#0;<`));
    });

    it('other characters XML does not allow, in the Issuer or a signed NameID: invalid_grant', async () => {
      for (const bad of ['&#1;', '&#xD800;', '&#xFFFE;', '\u0001']) {
        await refused(assertionXml(endpoint, { issuer: IDP1, nameId: 'carol' }).replace(IDP1, `${IDP1}${bad}`));
      }
      // Signed by the registered IdP: a NUL or control in the NameID never reaches a query either.
      for (const bad of ['&#0;', 'x&#0;y', '&#1;']) {
        await refused(assertion(IDP1, key1, { nameId: 'x', nameIdXml: bad }));
      }
    });

    it('an unregistered Issuer with a valid-looking signature is refused', async () => {
      await refused(signWithSamlify(assertionXml(endpoint, { issuer: 'https://unknown.example.com', nameId: 'carol' }), key1));
    });
  });
});
