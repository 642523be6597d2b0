// SAML 2.0 bearer assertion grant (RFC 7522): assertions signed by two independent signers —
// samlify acting as an IdP, and Debian's xmlsec1 — exchanged for tokens over HTTP.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm, type Reply } from '../support/http.ts';
import { makeClient, makeScope, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { addIdp } from '../../src/store/idps.ts';
import { findUserByUsername, linkUser, rolesOfUser } from '../../src/store/users.ts';
import {
  SAML2_BEARER, assertionXml, encode, makeKeyPair, removeTempDirs, responseXml, signWithSamlify, signWithXmlsec,
  type AssertionFields, type Endpoint, type KeyPair,
} from './support.ts';

const IDP_SAMLIFY = 'https://idp-samlify.example.com/metadata';
const IDP_XMLSEC = 'https://idp-xmlsec.example.com/saml';
const IDP_ROLLOVER = 'https://idp-rollover.example.com';

describe('SAML2 bearer grant: accepted assertions', () => {
  let database: TestDatabase;
  let server: TestServer;
  let endpoint: Endpoint;
  let samlifyKey: KeyPair;
  let xmlsecKey: KeyPair;
  let oldKey: KeyPair;
  let newKey: KeyPair;
  let withRefresh: TestClient;
  let withoutRefresh: TestClient;
  let alice: TestUser;
  let bob: TestUser;
  let xena: TestUser;

  const exchange = (client: TestClient, xml: string, extra: Record<string, string> = {}) =>
    postForm(`${server.url}/token`, { grant_type: SAML2_BEARER, assertion: encode(xml), ...extra }, { basic: client.basic });
  const introspect = (token: string, client: TestClient) =>
    postForm(`${server.url}/introspect`, { token }, { basic: client.basic });
  const samlifyAssertion = (f: Partial<AssertionFields> & { nameId: string }) =>
    signWithSamlify(assertionXml(endpoint, { issuer: IDP_SAMLIFY, ...f }), samlifyKey);

  function ok(res: Reply): void {
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.token_type, 'Bearer', res.text);
    assert.equal(typeof res.json.access_token, 'string', res.text);
  }

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    endpoint = { issuer: server.config.issuer, tokenEndpoint: `${server.config.issuer}/token` };
    samlifyKey = makeKeyPair('samlify-idp');
    xmlsecKey = makeKeyPair('xmlsec-idp');
    oldKey = makeKeyPair('old');
    newKey = makeKeyPair('new');
    await makeScope(database.db, 'orders:read');
    await makeScope(database.db, 'orders:write', ['order-admin']);
    await makeScope(database.db, 'reports', ['auditor', 'order-admin']);
    const scope = ['orders:read', 'orders:write', 'reports'];
    withRefresh = await makeClient(database.db, { grantTypes: [SAML2_BEARER, 'refresh_token'], scope });
    withoutRefresh = await makeClient(database.db, { grantTypes: [SAML2_BEARER], scope });
    alice = await makeUser(database.db, 'alice', { roles: ['order-admin'] });
    bob = await makeUser(database.db, 'bob', { roles: ['auditor'] });
    await addIdp(database.db, { entityId: IDP_SAMLIFY, certificates: [samlifyKey.cert] });
    await addIdp(database.db, { entityId: IDP_XMLSEC, certificates: [xmlsecKey.cert], jit: true, defaultRoles: ['auditor'] });
    await addIdp(database.db, { entityId: IDP_ROLLOVER, certificates: [oldKey.cert, newKey.cert] });
    // A user belongs to one IdP: alice and bob to the samlify IdP, xena to the xmlsec1 one,
    // rolf to the one rolling its certificates over.
    xena = await makeUser(database.db, 'xena', { roles: ['auditor'] });
    await makeUser(database.db, 'rolf');
    await linkUser(database.db, 'alice', { idp: IDP_SAMLIFY, nameId: 'alice' });
    await linkUser(database.db, 'bob', { idp: IDP_SAMLIFY, nameId: 'bob' });
    await linkUser(database.db, 'xena', { idp: IDP_XMLSEC, nameId: 'xena@xmlsec.example' });
    await linkUser(database.db, 'rolf', { idp: IDP_ROLLOVER, nameId: 'rolf' });
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
    removeTempDirs();
  });

  it('samlify-signed Assertion: token for the mapped user, with a refresh token', async () => {
    const res = await exchange(withRefresh, samlifyAssertion({ nameId: 'alice' }), { scope: 'orders:read' });
    ok(res);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    assert.equal(res.json.scope, 'orders:read');
    assert.equal(typeof res.json.refresh_token, 'string');
    const seen = await introspect(res.json.access_token, withRefresh);
    assert.equal(seen.json.active, true, seen.text);
    assert.equal(seen.json.sub, alice.id);
    assert.equal(seen.json.username, 'alice');
    assert.equal(seen.json.client_id, withRefresh.id);
  });

  it('samlify-signed samlp:Response (signature on the Response) is accepted', async () => {
    const xml = signWithSamlify(responseXml(endpoint, IDP_SAMLIFY, assertionXml(endpoint, { issuer: IDP_SAMLIFY, nameId: 'bob' })), samlifyKey);
    const res = await exchange(withRefresh, xml, { scope: 'reports' });
    ok(res);
    const seen = await introspect(res.json.access_token, withRefresh);
    assert.equal(seen.json.sub, bob.id);
    assert.equal(seen.json.username, 'bob');
  });

  it('xmlsec1-signed Assertion: token for the mapped user', async () => {
    const xml = signWithXmlsec(endpoint, { issuer: IDP_XMLSEC, nameId: 'xena@xmlsec.example' }, xmlsecKey);
    assert.match(xml, /<ds:SignatureValue>[A-Za-z0-9+/=\s]{100,}<\/ds:SignatureValue>/, 'xmlsec1 filled the template');
    const res = await exchange(withRefresh, xml, { scope: 'orders:read reports' });
    ok(res);
    assert.deepEqual(res.json.scope.split(' ').sort(), ['orders:read', 'reports']);
    const seen = await introspect(res.json.access_token, withRefresh);
    assert.equal(seen.json.sub, xena.id);
    assert.equal(seen.json.username, 'xena');
  });

  it('the refresh token works and keeps the user', async () => {
    const first = await exchange(withRefresh, samlifyAssertion({ nameId: 'alice' }), { scope: 'orders:read orders:write' });
    ok(first);
    const refreshed = await postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: first.json.refresh_token }, { basic: withRefresh.basic });
    assert.equal(refreshed.status, 200, refreshed.text);
    assert.deepEqual(refreshed.json.scope.split(' ').sort(), ['orders:read', 'orders:write']);
    const seen = await introspect(refreshed.json.access_token, withRefresh);
    assert.equal(seen.json.sub, alice.id);
    assert.equal(seen.json.username, 'alice');
  });

  it('no refresh token for a client without the refresh_token grant', async () => {
    const res = await exchange(withoutRefresh, samlifyAssertion({ nameId: 'alice' }), { scope: 'orders:read' });
    ok(res);
    assert.equal(res.json.refresh_token, undefined);
  });

  it('role-bound scope policy: same request, different scopes by the mapped user\'s roles', async () => {
    const scope = { scope: 'orders:read orders:write reports' };
    const a = await exchange(withRefresh, samlifyAssertion({ nameId: 'alice' }), scope);
    const b = await exchange(withRefresh, samlifyAssertion({ nameId: 'bob' }), scope);
    ok(a);
    ok(b);
    assert.deepEqual(a.json.scope.split(' ').sort(), ['orders:read', 'orders:write', 'reports']);
    assert.deepEqual(b.json.scope.split(' ').sort(), ['orders:read', 'reports']);
    const onlyBound = await exchange(withRefresh, samlifyAssertion({ nameId: 'bob' }), { scope: 'orders:write' });
    assert.equal(onlyBound.status, 400, onlyBound.text);
    assert.equal(onlyBound.json.error, 'invalid_scope');
  });

  it('JIT: an unknown NameID becomes a user with the IdP\'s default roles', async () => {
    assert.equal(await findUserByUsername(database.db, 'dave@example.com'), undefined);
    const res = await exchange(withRefresh, signWithXmlsec(endpoint, { issuer: IDP_XMLSEC, nameId: 'dave@example.com' }, xmlsecKey), { scope: 'orders:read orders:write reports' });
    ok(res);
    assert.deepEqual(res.json.scope.split(' ').sort(), ['orders:read', 'reports'], 'auditor scopes only');
    const dave = await findUserByUsername(database.db, 'dave@example.com');
    assert.ok(dave, 'user created');
    assert.equal(dave.federated_idp, IDP_XMLSEC, 'federated from the IdP that provisioned it');
    assert.equal(dave.federated_name_id, 'dave@example.com');
    assert.deepEqual(await rolesOfUser(database.db, dave.id), ['auditor']);
    const seen = await introspect(res.json.access_token, withRefresh);
    assert.equal(seen.json.sub, dave.id);
    assert.equal(seen.json.username, 'dave@example.com');
    // A second assertion for the same subject reuses the user.
    const again = await exchange(withRefresh, signWithXmlsec(endpoint, { issuer: IDP_XMLSEC, nameId: 'dave@example.com' }, xmlsecKey));
    ok(again);
    assert.equal((await introspect(again.json.access_token, withRefresh)).json.sub, dave.id);
    const n = await database.db.selectFrom('users').select((eb) => eb.fn.countAll<string>().as('n')).where('username', '=', 'dave@example.com').executeTakeFirstOrThrow();
    assert.equal(Number(n.n), 1);
  });

  it('without JIT, an unknown NameID is refused and no user is created', async () => {
    const res = await exchange(withRefresh, samlifyAssertion({ nameId: 'eve' }));
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json.error, 'invalid_grant');
    assert.equal(await findUserByUsername(database.db, 'eve'), undefined);
  });

  it('the issuer identifier is accepted as Audience as well as the token endpoint', async () => {
    ok(await exchange(withRefresh, samlifyAssertion({ nameId: 'alice', audience: server.config.issuer })));
  });

  it('certificate rollover: either registered certificate verifies', async () => {
    for (const key of [oldKey, newKey]) {
      ok(await exchange(withRefresh, signWithSamlify(assertionXml(endpoint, { issuer: IDP_ROLLOVER, nameId: 'rolf' }), key)));
      ok(await exchange(withRefresh, signWithXmlsec(endpoint, { issuer: IDP_ROLLOVER, nameId: 'rolf' }, key)));
    }
  });

  it('within clock skew: NotBefore slightly in the future is accepted', async () => {
    ok(await exchange(withRefresh, samlifyAssertion({ nameId: 'alice', notBefore: 10, issueInstant: 5 })));
  });
});
