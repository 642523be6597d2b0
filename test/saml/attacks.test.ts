// SAML2 bearer grant: every attack and bad input of issue 5 has its own test. Each is refused
// with invalid_grant (invalid_request for a malformed parameter), never a 500, and leaves
// nothing behind — no token, no user, no replay-cache row — but a log line.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm, type Reply } from '../support/http.ts';
import { makeClient, makeUser, type TestClient } from '../support/fixtures.ts';
import { runKeymgr } from '../support/cli.ts';
import { addIdp, purgeExpiredAssertionIds } from '../../src/store/idps.ts';
import { linkUser } from '../../src/store/users.ts';
import {
  HMAC_SHA256, SAML2_BEARER, assertionXml, encode, makeKeyPair, newId, removeTempDirs, responseXml, signWithSamlify,
  signWithXmlCrypto, signWithXmlsec, type AssertionFields, type Endpoint, type KeyPair,
} from './support.ts';

const IDP = 'https://idp.example.com/saml';
const OTHER_IDP = 'https://other-idp.example.com/saml';
const DISABLED_IDP = 'https://disabled-idp.example.com/saml';
const RESTRICTED_IDP = 'https://restricted-idp.example.com/saml';

// The reasons the log gives (README: `saml.rejected`).
const NOT_SIGNED = 'the assertion is not signed';
const NOT_VERIFIED = 'the signature does not verify with any registered certificate of this identity provider';
const NOT_ROOT = 'the signature does not cover the root element';
const TWO_ASSERTIONS = 'expected exactly one Assertion in the Response, found 2';
const MARKUP = 'DTD, comment or processing instruction in the assertion';
const NO_AUDIENCE = 'no AudienceRestriction names this server';
const EXPIRED = 'the assertion has expired';
const TOO_LONG = 'the assertion is valid for longer than this server accepts';
const REPLAY = 'the assertion was used before (replay)';
const NOT_BASE64URL = 'assertion must be base64url without line breaks';

describe('SAML2 bearer grant: attacks and bad input', () => {
  let database: TestDatabase;
  let server: TestServer;
  let endpoint: Endpoint;
  let idpKey: KeyPair;
  let otherKey: KeyPair;
  let attacker: KeyPair;
  let client: TestClient;
  let otherClient: TestClient;

  const signed = (f: Partial<AssertionFields> = {}, key = idpKey) =>
    signWithSamlify(assertionXml(endpoint, { issuer: IDP, nameId: 'bob', ...f }), key);
  const post = (params: Record<string, string>, by = client) =>
    postForm(`${server.url}/token`, { grant_type: SAML2_BEARER, ...params }, { basic: by.basic });
  const exchange = (xml: string, by = client) => post({ assertion: encode(xml) }, by);

  async function counts() {
    const n = async (table: 'tokens' | 'users' | 'saml_assertion_ids' | 'user_roles') =>
      Number((await database.db.selectFrom(table).select(sql<string>`count(*)`.as('n')).executeTakeFirstOrThrow()).n);
    return { tokens: await n('tokens'), users: await n('users'), assertionIds: await n('saml_assertion_ids'), userRoles: await n('user_roles') };
  }

  /**
   * Sends the request and checks the refusal and that nothing but a log line was left. An
   * invalid_grant says only "grant request is invalid" to the client; `reason` is what the one
   * `saml.rejected` line logged by this request says (README: the reason in the log only).
   * Other refusals carry `reason` as their error_description.
   */
  async function refused(send: () => Promise<Reply>, reason: string | RegExp, error = 'invalid_grant', status = 400): Promise<Reply> {
    const before = await counts();
    const mark = server.logMark();
    const res = await send();
    assert.equal(res.status, status, res.text);
    assert.equal(res.json?.error, error, res.text);
    assert.equal(res.json.access_token, undefined);
    assert.equal(res.json.refresh_token, undefined);
    assert.doesNotMatch(res.text, /\n\s+at /, 'no stack trace');
    assert.deepEqual(await counts(), before, 'nothing stored');
    const rejections = server.logsSince(mark).filter((e) => e.event === 'saml.rejected');
    const told = error === 'invalid_grant' ? rejections.map((e) => e.reason) : [res.json.error_description];
    assert.equal(told.length, 1, `one reason: ${JSON.stringify(told)}`);
    if (typeof reason === 'string') assert.equal(told[0], reason);
    else assert.match(String(told[0]), reason);
    if (error === 'invalid_grant') assert.equal(res.json.error_description, 'grant request is invalid');
    else assert.deepEqual(rejections, [], 'saml.rejected is for invalid_grant only');
    return res;
  }

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    endpoint = { issuer: server.config.issuer, tokenEndpoint: `${server.config.issuer}/token` };
    idpKey = makeKeyPair('idp');
    otherKey = makeKeyPair('other-idp');
    attacker = makeKeyPair('attacker');
    client = await makeClient(database.db, { grantTypes: [SAML2_BEARER, 'refresh_token'], scope: ['read'] });
    otherClient = await makeClient(database.db, { grantTypes: [SAML2_BEARER], scope: ['read'] });
    await makeUser(database.db, 'alice', { roles: ['admin'] });
    await makeUser(database.db, 'bob');
    // JIT on: a refusal must not create a user even where one would be provisioned.
    await addIdp(database.db, { entityId: IDP, certificates: [idpKey.cert], jit: true, defaultRoles: ['admin'] });
    await addIdp(database.db, { entityId: OTHER_IDP, certificates: [otherKey.cert] });
    await addIdp(database.db, { entityId: DISABLED_IDP, certificates: [idpKey.cert] });
    await addIdp(database.db, { entityId: RESTRICTED_IDP, certificates: [idpKey.cert], allowedClients: [otherClient.id] });
    // The NameIDs the accepted assertions carry: bob belongs to IDP, rita to RESTRICTED_IDP.
    await linkUser(database.db, 'bob', { idp: IDP, nameId: 'bob' });
    await makeUser(database.db, 'rita');
    await linkUser(database.db, 'rita', { idp: RESTRICTED_IDP, nameId: 'bob' });
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
    removeTempDirs();
  });

  it('control: a well-formed assertion from the registered IdP is accepted', async () => {
    const res = await exchange(signed());
    assert.equal(res.status, 200, res.text);
  });

  describe('signatures', () => {
    it('unsigned assertion', async () => {
      await refused(() => exchange(assertionXml(endpoint, { issuer: IDP, nameId: 'alice' })), NOT_SIGNED);
    });

    it('signed by an unregistered key', async () => {
      await refused(() => exchange(signWithXmlCrypto(assertionXml(endpoint, { issuer: IDP, nameId: 'alice' }), attacker.key)), NOT_VERIFIED);
    });

    it('signed by an unregistered key whose certificate is embedded in KeyInfo', async () => {
      const xml = signWithXmlCrypto(assertionXml(endpoint, { issuer: IDP, nameId: 'alice' }), attacker.key, { keyInfoCert: attacker.certBody });
      assert.match(xml, /<ds:X509Certificate>/);
      await refused(() => exchange(xml), NOT_VERIFIED);
      // The same with samlify as the attacker's IdP, and xmlsec1 (both embed the certificate).
      await refused(() => exchange(signWithSamlify(assertionXml(endpoint, { issuer: IDP, nameId: 'alice' }), attacker)), NOT_VERIFIED);
      await refused(() => exchange(signWithXmlsec(endpoint, { issuer: IDP, nameId: 'alice' }, attacker)), NOT_VERIFIED);
    });

    it('a validly signed assertion altered after signing', async () => {
      await refused(() => exchange(signed({ nameId: 'bob' }).replace('>bob<', '>alice<')), NOT_VERIFIED);
    });

    it('HMAC-SHA256 signature keyed with the registered certificate text', async () => {
      for (const key of [idpKey.cert, idpKey.certBody]) {
        const xml = signWithXmlCrypto(assertionXml(endpoint, { issuer: IDP, nameId: 'alice' }), Buffer.from(key), { signatureAlgorithm: HMAC_SHA256 });
        assert.match(xml, /hmac-sha256/);
        await refused(() => exchange(xml), 'signature algorithm http://www.w3.org/2001/04/xmldsig-more#hmac-sha256 is not accepted');
      }
    });

    it('two Reference elements', async () => {
      const xml = signWithXmlCrypto(assertionXml(endpoint, { issuer: IDP, nameId: 'alice' }), idpKey.key, {
        references: ['/*', "/*/*[local-name(.)='Subject']"],
      });
      assert.equal(xml.match(/<ds:Reference /g)?.length, 2);
      await refused(() => exchange(xml), 'expected exactly one Reference, found 2');
    });

    it('two Signatures (a second, valid one on the Response around a signed assertion)', async () => {
      const inner = signed({ nameId: 'alice' });
      const xml = signWithSamlify(responseXml(endpoint, IDP, inner), idpKey);
      await refused(() => exchange(xml), 'more than one Signature');
    });
  });

  describe('signature wrapping (XSW)', () => {
    const signatureOf = (xml: string) => /<ds:Signature[\s\S]*<\/ds:Signature>/.exec(xml)![0];

    it('a forged assertion wrapping a validly signed one', async () => {
      const genuine = signed({ nameId: 'bob' });
      const forged = assertionXml(endpoint, { issuer: IDP, nameId: 'alice' }).replace(/<\/saml:Assertion>$/, `${genuine}</saml:Assertion>`);
      await refused(() => exchange(forged), NOT_ROOT);
    });

    it('a forged root with the signed ID, the genuine assertion moved into ds:Object', async () => {
      const id = newId();
      const genuine = signed({ id, nameId: 'bob' });
      const signature = signatureOf(genuine);
      const genuineUnsigned = genuine.replace(signature, '');
      const wrapped = signature.replace('</ds:Signature>', `<ds:Object>${genuineUnsigned}</ds:Object></ds:Signature>`);
      const forged = assertionXml(endpoint, { id, issuer: IDP, nameId: 'alice', afterIssuer: wrapped });
      await refused(() => exchange(forged), NOT_VERIFIED);
    });

    it('a forged root with its own ID, the genuine assertion in an Extensions element', async () => {
      const id = newId();
      const genuine = signed({ id, nameId: 'bob' });
      const signature = signatureOf(genuine);
      const genuineUnsigned = genuine.replace(signature, '');
      // The signature (still pointing at #id) sits in the forged root, the genuine element elsewhere.
      const forged = assertionXml(endpoint, { issuer: IDP, nameId: 'alice', afterIssuer: signature })
        .replace(/<\/saml:Assertion>$/, `<samlp:Extensions xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">${genuineUnsigned}</samlp:Extensions></saml:Assertion>`);
      await refused(() => exchange(forged), NOT_ROOT);
      // The same inside a Response: forged assertion, genuine one in the Response's Extensions.
      const forgedAssertion = assertionXml(endpoint, { issuer: IDP, nameId: 'alice' });
      const response = responseXml(endpoint, IDP, `${forgedAssertion}`)
        .replace('<samlp:Status>', `<samlp:Extensions>${genuine}</samlp:Extensions><samlp:Status>`);
      await refused(() => exchange(response), NOT_ROOT);
    });

    it('a forged assertion beside the signed one in a Response', async () => {
      const genuine = signed({ nameId: 'bob' });
      const forged = assertionXml(endpoint, { issuer: IDP, nameId: 'alice' });
      await refused(() => exchange(responseXml(endpoint, IDP, forged + genuine)), TWO_ASSERTIONS);
      await refused(() => exchange(responseXml(endpoint, IDP, genuine + forged)), TWO_ASSERTIONS);
      // A signed Response with a forged assertion added beside the signed one.
      const signedResponse = signWithSamlify(responseXml(endpoint, IDP, assertionXml(endpoint, { issuer: IDP, nameId: 'bob' })), idpKey);
      await refused(() => exchange(signedResponse.replace('</samlp:Response>', `${forged}</samlp:Response>`)), TWO_ASSERTIONS);
    });

    it('the signature on the root refers to a different ID (the genuine assertion inside)', async () => {
      const id = newId();
      const genuine = signed({ id, nameId: 'bob' });
      const signature = signatureOf(genuine);
      const genuineUnsigned = genuine.replace(signature, '');
      const forged = assertionXml(endpoint, { issuer: IDP, nameId: 'alice', afterIssuer: signature })
        .replace('</saml:Subject>', `</saml:Subject>${genuineUnsigned}`);
      assert.match(forged, new RegExp(`URI="#${id}"`));
      await refused(() => exchange(forged), NOT_ROOT);
    });
  });

  describe('comments, processing instructions, DTDs', () => {
    it('a comment inside NameID (signed NameID is "alice.evil.example")', async () => {
      const genuine = signed({ nameId: 'alice.evil.example' });
      const tampered = genuine.replace('>alice.evil.example<', '>alice<!---->.evil.example<');
      assert.notEqual(tampered, genuine);
      await refused(() => exchange(tampered), MARKUP);
    });

    it('a comment inside DigestValue', async () => {
      const genuine = signed({ nameId: 'bob' });
      const tampered = genuine.replace(/<ds:DigestValue>([A-Za-z0-9+/]{8})/, '<ds:DigestValue>$1<!-- x -->');
      assert.notEqual(tampered, genuine);
      await refused(() => exchange(tampered), MARKUP);
    });

    it('a processing instruction inside NameID', async () => {
      const genuine = signed({ nameId: 'alice.evil.example' });
      await refused(() => exchange(genuine.replace('>alice.evil.example<', '>alice<?x y?>.evil.example<')), MARKUP);
    });

    it('a processing instruction inside DigestValue', async () => {
      const genuine = signed({ nameId: 'bob' });
      await refused(() => exchange(genuine.replace(/<ds:DigestValue>([A-Za-z0-9+/]{8})/, '<ds:DigestValue>$1<?x y?>')), MARKUP);
    });

    it('malformed XML', async () => {
      await refused(() => exchange(signed().slice(0, -20)), /^malformed XML: /);
      await refused(() => exchange('not xml at all'), 'malformed XML: missing root element');
      await refused(() => exchange('<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"><saml:Issuer>x</saml:Assertion>'), /^malformed XML: Opening and ending tag mismatch/);
    });

    it('a DTD with entity expansion (billion laughs)', async () => {
      const lol = ['<!ENTITY lol0 "lol">', ...Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i};`.repeat(10)}">`)].join('');
      const xml = `<?xml version="1.0"?><!DOCTYPE saml:Assertion [${lol}]>` + signed({ nameId: 'bob' }).replace('>bob<', '>&lol9;<');
      await refused(() => exchange(xml), MARKUP);
    });

    it('an external entity', async () => {
      const dtd = '<?xml version="1.0"?><!DOCTYPE saml:Assertion [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>';
      const xml = dtd + assertionXml(endpoint, { issuer: IDP, nameId: 'bob', nameIdXml: '&xxe;' });
      const res = await refused(() => exchange(xml), MARKUP);
      assert.doesNotMatch(res.text, /root:/);
      // A validly signed assertion with the DTD added and the entity in NameID: still refused.
      await refused(() => exchange(dtd + signed({ nameId: 'bob' }).replace('>bob<', '>&xxe;<')), MARKUP);
      // Parameter entity pulling an external DTD.
      await refused(() => exchange('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % ext SYSTEM "http://127.0.0.1:1/x.dtd"> %ext;]>' + signed()), MARKUP);
    });
  });

  describe('profile rules (RFC 7522 §3)', () => {
    it('wrong audience', async () => {
      await refused(() => exchange(signed({ audience: 'https://some-other-server.example.com/token' })), NO_AUDIENCE);
      await refused(() => exchange(signed({ audience: `${endpoint.issuer}/tokenx` })), NO_AUDIENCE);
    });

    it('wrong recipient', async () => {
      await refused(() => exchange(signed({ recipient: 'https://some-other-server.example.com/token' })), 'Recipient https://some-other-server.example.com/token is not the token endpoint');
      await refused(() => exchange(signed({ recipient: endpoint.issuer })), `Recipient ${endpoint.issuer} is not the token endpoint`);
    });

    it('expired', async () => {
      await refused(() => exchange(signed({ issueInstant: -300, notBefore: -300, notOnOrAfter: -60, confirmationNotOnOrAfter: -60 })), EXPIRED);
      // SubjectConfirmationData expired although Conditions has not.
      await refused(() => exchange(signed({ issueInstant: -300, notBefore: -300, notOnOrAfter: 200, confirmationNotOnOrAfter: -60 })), EXPIRED);
    });

    it('not yet valid', async () => {
      await refused(() => exchange(signed({ notBefore: 120, notOnOrAfter: 300 })), 'the assertion is not yet valid (NotBefore)');
    });

    it('validity window longer than the configured maximum', async () => {
      await refused(() => exchange(signed({ notBefore: -10, notOnOrAfter: 3600, confirmationNotOnOrAfter: 3600 })), TOO_LONG);
      // Without NotBefore, counted from IssueInstant.
      await refused(() => exchange(signed({ notBefore: null, issueInstant: -500, notOnOrAfter: 200, confirmationNotOnOrAfter: 200 })), TOO_LONG);
    });

    it('replayed: the same assertion twice', async () => {
      const xml = signWithXmlsec(endpoint, { issuer: IDP, nameId: 'bob' }, idpKey);
      const first = await exchange(xml);
      assert.equal(first.status, 200, first.text);
      await refused(() => exchange(xml), REPLAY);
      // Also through another client, and re-encoded with padding.
      await refused(() => exchange(xml, otherClient), REPLAY);
      // Base64url with '=' padding (allowed when the length is a multiple of 4); a newline after
      // the root element, outside what is signed, makes sure there is padding to add.
      const paddable = Buffer.byteLength(xml) % 3 === 0 ? `${xml}\n` : xml;
      const padded = Buffer.from(paddable, 'utf8').toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
      assert.match(padded, /[^=]=$|==$/);
      assert.equal(padded.length % 4, 0);
      await refused(() => post({ assertion: padded }), REPLAY);
    });

    it('unknown IdP', async () => {
      await refused(() => exchange(signed({ issuer: 'https://unknown-idp.example.com' })), 'the Issuer "https://unknown-idp.example.com" is not a registered identity provider');
    });

    it('disabled IdP (keymgr idp disable)', async () => {
      const xml = signWithSamlify(assertionXml(endpoint, { issuer: DISABLED_IDP, nameId: 'bob' }), idpKey);
      const r = await runKeymgr(['idp', 'disable', DISABLED_IDP, '--json'], { DATABASE_URL: database.url, KM_KEYS_DIR: server.keysDir, KM_LOG_LEVEL: 'silent' });
      assert.equal(r.code, 0, r.stderr);
      await refused(() => exchange(xml), 'the identity provider is disabled');
    });

    it('client not in the IdP\'s allowed clients', async () => {
      const xml = signWithSamlify(assertionXml(endpoint, { issuer: RESTRICTED_IDP, nameId: 'bob' }), idpKey);
      await refused(() => exchange(xml, client), 'this client may not use this identity provider');
      const allowed = await exchange(signWithSamlify(assertionXml(endpoint, { issuer: RESTRICTED_IDP, nameId: 'bob' }), idpKey), otherClient);
      assert.equal(allowed.status, 200, allowed.text);
    });

    it('issuer mismatch: Issuer of another registered IdP, signed with the first IdP\'s key', async () => {
      await refused(() => exchange(signed({ issuer: OTHER_IDP, nameId: 'alice' }, idpKey)), NOT_VERIFIED);
      // And the Response's Issuer differing from the Assertion's.
      await refused(() => exchange(signWithSamlify(responseXml(endpoint, OTHER_IDP, assertionXml(endpoint, { issuer: IDP, nameId: 'alice' })), otherKey)), NOT_VERIFIED);
    });
  });

  describe('profile rules the signer must also keep (from an outside review)', () => {
    const iso = (secondsFromNow: number) => new Date(Date.now() + secondsFromNow * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
    const signedWith = (edit: (xml: string) => string, f: Partial<AssertionFields> = {}) =>
      signWithSamlify(edit(assertionXml(endpoint, { issuer: IDP, nameId: 'bob', ...f })), idpKey);
    const inResponse = (edit: (xml: string) => string) =>
      signWithSamlify(edit(responseXml(endpoint, IDP, assertionXml(endpoint, { issuer: IDP, nameId: 'bob' }))), idpKey);

    it('a NameID with white space around it is not the NameID without: " bob" does not act for bob', async () => {
      // bob is linked to the IdP under "bob", and the IdP provisions users (JIT).
      for (const nameId of [' bob', 'bob ', 'bob\u00a0', '\u3000bob', 'bob\u2028', 'bob\ufeff', 'bob\n', '\tbob']) {
        await refused(() => exchange(signed({ nameId })), 'NameID must not contain control characters or surrounding spaces');
      }
    });

    it('every AudienceRestriction must name this server, not just one of them', async () => {
      const another = '<saml:AudienceRestriction><saml:Audience>https://another-sp.example.com</saml:Audience></saml:AudienceRestriction>';
      await refused(() => exchange(signedWith((x) => x.replace('</saml:Conditions>', `${another}</saml:Conditions>`))), 'an AudienceRestriction does not name this server (each must)');
      await refused(() => exchange(signedWith((x) => x.replace('<saml:Conditions', `<saml:Conditions`).replace(/(<saml:Conditions[^>]*>)/, `$1${another}`))), 'an AudienceRestriction does not name this server (each must)');
      // Several Audiences in one restriction: any one of them will do (SAML core §2.5.1.4).
      const res = await exchange(signedWith((x) => x.replace('</saml:Audience>', '</saml:Audience><saml:Audience>https://another-sp.example.com</saml:Audience>')));
      assert.equal(res.status, 200, res.text);
    });

    it('an assertion of another SAML version', async () => {
      await refused(() => exchange(signedWith((x) => x.replace('Version="2.0"', 'Version="1.1"'))), 'the assertion is not of SAML 2.0 (Version)');
    });

    it('Conditions whose NotBefore is not before NotOnOrAfter (each within the clock skew of now)', async () => {
      await refused(() => exchange(signed({ notBefore: 20, notOnOrAfter: 10 })), 'Conditions NotBefore is not before NotOnOrAfter');
      await refused(() => exchange(signed({ notBefore: 10, notOnOrAfter: 10 })), 'Conditions NotBefore is not before NotOnOrAfter');
    });

    it('a SubjectConfirmationData NotBefore in the future', async () => {
      await refused(() => exchange(signedWith((x) => x.replace('<saml:SubjectConfirmationData ', `<saml:SubjectConfirmationData NotBefore="${iso(300)}" `))),
        'the assertion is not yet valid (SubjectConfirmationData NotBefore)');
      const res = await exchange(signedWith((x) => x.replace('<saml:SubjectConfirmationData ', `<saml:SubjectConfirmationData NotBefore="${iso(-10)}" `)));
      assert.equal(res.status, 200, res.text);
    });

    it('a Response that is not a success, was sent elsewhere, or comes from another issuer than its assertion', async () => {
      await refused(() => exchange(inResponse((x) => x.replace('status:Success', 'status:Responder'))), 'the Response reports urn:oasis:names:tc:SAML:2.0:status:Responder, not success');
      await refused(() => exchange(inResponse((x) => x.replace(/<samlp:Status>.*?<\/samlp:Status>/, ''))), 'expected exactly one Status in the Response, found 0');
      await refused(() => exchange(inResponse((x) => x.replace(/Destination="[^"]*"/, 'Destination="https://another-sp.example.com/acs"'))),
        'the Response\'s Destination https://another-sp.example.com/acs is not the token endpoint');
      await refused(() => exchange(inResponse((x) => x.replace(`<saml:Issuer>${IDP}</saml:Issuer><samlp:Status>`, `<saml:Issuer>${OTHER_IDP}</saml:Issuer><samlp:Status>`))),
        'the Response\'s Issuer differs from the assertion\'s');
      await refused(() => exchange(inResponse((x) => x.replace('<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="', '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" Version="1.1" ID="').replace(/(<samlp:Response[^>]*?) Version="2.0"/, '$1'))),
        'the Response is not of SAML 2.0 (Version)');
      // Without a Destination, or with ours: accepted.
      assert.equal((await exchange(inResponse((x) => x.replace(/ Destination="[^"]*"/, '')))).status, 200);
      assert.equal((await exchange(inResponse((x) => x))).status, 200);
    });

    it('a used assertion ID is kept an hour past its expiry: an instance whose clock runs behind still finds it used', async () => {
      const ids = { recent: newId(), old: newId() };
      await sql`insert into saml_assertion_ids (idp_entity_id, assertion_id, expires_at) values
        (${IDP}, ${ids.recent}, now() - interval '50 minutes'), (${IDP}, ${ids.old}, now() - interval '70 minutes')`.execute(database.db);
      await purgeExpiredAssertionIds(database.db);
      const left = await database.db.selectFrom('saml_assertion_ids').select('assertion_id').where('assertion_id', 'in', [ids.recent, ids.old]).execute();
      assert.deepEqual(left.map((r) => r.assertion_id), [ids.recent]);
    });
  });

  describe('the assertion parameter (RFC 7522 §2.1)', () => {
    /** A signed assertion whose XML is exactly `bytes` long (an attribute pads it). */
    function signedOfSize(bytes: number): string {
      const id = newId();
      const make = (pad: number) => signWithXmlCrypto(assertionXml(endpoint, { id, issuer: IDP, nameId: 'bob' }).replace('</saml:Assertion>',
        `<saml:AttributeStatement><saml:Attribute Name="pad"><saml:AttributeValue>${'A'.repeat(pad)}</saml:AttributeValue></saml:Attribute></saml:AttributeStatement></saml:Assertion>`), idpKey.key);
      // (From a one-character pad: an empty element would be written shorter.)
      const xml = make(bytes - Buffer.byteLength(make(1)) + 1);
      assert.equal(Buffer.byteLength(xml), bytes);
      return xml;
    }

    it('a 1 MB assertion: the body limit answers first, 413 with the documented body', async () => {
      const before = await counts();
      const res = await exchange(signedOfSize(1024 * 1024));
      assert.equal(res.status, 413, res.text.slice(0, 300));
      assert.deepEqual(res.json, { error: 'invalid_request', error_description: 'request body is too large' });
      assert.deepEqual(await counts(), before);
    });

    it('the assertion limit, 48 KiB of base64url, in a body under the body limit: at the limit accepted, one byte over refused', async () => {
      const tokenRequest = (assertion: string) => `grant_type=${encodeURIComponent(SAML2_BEARER)}&assertion=${assertion}`;
      // 48 KiB of base64url is 36 KiB of XML, exactly.
      const atLimit = encode(signedOfSize(36 * 1024));
      assert.equal(atLimit.length, 48 * 1024);
      const accepted = await postForm(`${server.url}/token`, tokenRequest(atLimit), { basic: client.basic });
      assert.equal(accepted.status, 200, accepted.text);
      const over = encode(signedOfSize(36 * 1024 + 1));
      assert.ok(over.length > 48 * 1024);
      assert.ok(tokenRequest(over).length < server.config.maxBodyBytes, 'the body is under the body limit');
      await refused(() => postForm(`${server.url}/token`, tokenRequest(over), { basic: client.basic }), 'assertion is too large', 'invalid_request');
    });

    it('base64 with line breaks', async () => {
      const b64 = encode(signed());
      for (const sep of ['\n', '\r\n']) {
        const broken = b64.match(/.{1,76}/g)!.join(sep);
        await refused(() => post({ assertion: broken }), NOT_BASE64URL, 'invalid_request');
      }
    });

    it('base64 with bad padding', async () => {
      const b64 = encode(signed());
      const bad = b64.length % 4 === 0 ? `${b64}=` : `${b64}${'='.repeat(5 - (b64.length % 4))}`;
      await refused(() => post({ assertion: bad }), NOT_BASE64URL, 'invalid_request');
      await refused(() => post({ assertion: `${b64}===` }), NOT_BASE64URL, 'invalid_request');
      await refused(() => post({ assertion: `=${b64}` }), NOT_BASE64URL, 'invalid_request');
    });

    it('standard base64 (+ and /) instead of base64url', async () => {
      let xml = signed();
      for (let i = 0; !/[+/]/.test(Buffer.from(xml).toString('base64')) && i < 20; i++) xml = signed();
      const standard = Buffer.from(xml).toString('base64');
      assert.match(standard, /[+/]/);
      await refused(() => post({ assertion: standard }), NOT_BASE64URL, 'invalid_request');
    });

    it('missing or empty assertion parameter', async () => {
      await refused(() => post({}), "missing required parameter 'assertion'", 'invalid_request');
      await refused(() => post({ assertion: '' }), "missing required parameter 'assertion'", 'invalid_request');
    });

    it('two assertion parameters', async () => {
      const a = encode(signed());
      await refused(() => postForm(`${server.url}/token`, `grant_type=${encodeURIComponent(SAML2_BEARER)}&assertion=${a}&assertion=${a}`, { basic: client.basic }), "'assertion' parameter must not be provided twice", 'invalid_request');
    });
  });

  describe('clients', () => {
    it('a client without the grant → unauthorized_client', async () => {
      const plain = await makeClient(database.db, { grantTypes: ['client_credentials'], scope: ['read'] });
      await refused(() => exchange(signed(), plain), 'requested grant type is not allowed for this client', 'unauthorized_client');
    });

    it('a public client is refused', async () => {
      const pub = await makeClient(database.db, { grantTypes: [SAML2_BEARER], scope: ['read'], authMethod: 'none' });
      const res = await refused(() => postForm(`${server.url}/token`, { grant_type: SAML2_BEARER, assertion: encode(signed()), client_id: pub.id }), 'the SAML bearer grant requires client authentication', 'unauthorized_client');
      assert.ok(res);
    });

    it('wrong client secret → invalid_client', async () => {
      await refused(() => postForm(`${server.url}/token`, { grant_type: SAML2_BEARER, assertion: encode(signed()) }, { basic: [client.id, 'wrong'] }), 'client authentication failed', 'invalid_client', 401);
    });
  });
});
