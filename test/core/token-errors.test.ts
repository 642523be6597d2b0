// Refusals at /token that no other file covers (RFC 6749 §4.1.3, §5.2; RFC 8707 §2): the
// authorization code grant without its parameters or its client's secret, a grant the client
// was not registered for, and a `resource` other than this server on every grant. Each answer
// is the RFC's error with the README's body: {"error", "error_description"} and nothing else.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { assertRefusal, postForm, type PostOptions } from '../support/http.ts';
import { makeClient, makeScope, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { Browser, runCodeFlow } from '../support/browserless.ts';
import { addIdp } from '../../src/store/idps.ts';
import { linkUser } from '../../src/store/users.ts';
import { SAML2_BEARER, assertionXml, encode, makeKeyPair, removeTempDirs, signWithSamlify, type KeyPair } from '../saml/support.ts';

const REDIRECT = 'https://app.example/cb';
const IDP = 'https://idp.example.com/metadata';
const ELSEWHERE = 'https://elsewhere.example/api';
const FAST_HASH = { memoryCost: 8192, timeCost: 1, parallelism: 1 };

describe('refusals at the token endpoint', () => {
  let database: TestDatabase;
  let server: TestServer;
  let web: TestClient;
  let codeOnly: TestClient;
  let machine: TestClient;
  let passwordApp: TestClient;
  let samlApp: TestClient;
  let gateway: TestClient;
  let alice: TestUser;
  let idpKey: KeyPair;

  const token = (params: Record<string, string>, opts: PostOptions) => postForm(`${server.url}/token`, params, opts);
  const introspect = (value: string) => postForm(`${server.url}/introspect`, { token: value }, { basic: gateway.basic });
  /** A fresh code for `client`, issued for a request that named the redirect URI. */
  const codeFor = async (client: TestClient) => {
    const back = await runCodeFlow(new Browser(server.url), { clientId: client.id, redirectUri: REDIRECT, scope: 'read', username: alice.username, password: alice.password });
    return back.searchParams.get('code')!;
  };
  const assertion = () => encode(signWithSamlify(assertionXml({ issuer: server.config.issuer, tokenEndpoint: `${server.config.issuer}/token` }, { issuer: IDP, nameId: 'alice' }), idpKey));

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    await makeScope(database.db, 'read');
    web = await makeClient(database.db, { grantTypes: ['authorization_code', 'refresh_token'], scope: ['read'], redirectUris: [REDIRECT] });
    codeOnly = await makeClient(database.db, { grantTypes: ['authorization_code'], scope: ['read'], redirectUris: [REDIRECT] });
    machine = await makeClient(database.db, { grantTypes: ['client_credentials'], scope: ['read'] });
    passwordApp = await makeClient(database.db, { grantTypes: ['password', 'refresh_token'], scope: ['read'] });
    samlApp = await makeClient(database.db, { grantTypes: [SAML2_BEARER], scope: ['read'] });
    gateway = await makeClient(database.db, { introspectAny: true, scope: [] });
    alice = await makeUser(database.db, 'alice', { params: FAST_HASH });
    idpKey = makeKeyPair('token-errors-idp');
    await addIdp(database.db, { entityId: IDP, certificates: [idpKey.cert] });
    await linkUser(database.db, 'alice', { idp: IDP, nameId: 'alice' });
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
    removeTempDirs();
  });

  describe('authorization code grant (RFC 6749 §4.1.3)', () => {
    it("without code → 400 invalid_request naming 'code'", async () => {
      const res = await token({ grant_type: 'authorization_code', redirect_uri: REDIRECT }, { basic: web.basic });
      assertRefusal(res, 400, 'invalid_request', "missing required parameter 'code'");
    });

    it("without the redirect_uri the authorization request named → 400 invalid_request naming 'redirect_uri'", async () => {
      const code = await codeFor(web);
      const res = await token({ grant_type: 'authorization_code', code }, { basic: web.basic });
      assertRefusal(res, 400, 'invalid_request', "missing required parameter 'redirect_uri'");
    });

    it('a confidential client redeeming with its client_id alone, no secret → 401 invalid_client', async () => {
      const code = await codeFor(web);
      const res = await token({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, client_id: web.id }, {});
      assertRefusal(res, 401, 'invalid_client', 'client authentication failed');
    });

    it('a client without the authorization_code grant → 400 unauthorized_client', async () => {
      const code = await codeFor(web);
      const res = await token({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT }, { basic: machine.basic });
      assertRefusal(res, 400, 'unauthorized_client');
      // The code was not burnt by the stranger's attempt: its own client still redeems it.
      assert.equal((await token({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT }, { basic: web.basic })).status, 200);
    });
  });

  it('refresh_token grant by a client without it → 400 unauthorized_client', async () => {
    const res = await token({ grant_type: 'refresh_token', refresh_token: 'whatever' }, { basic: codeOnly.basic });
    assertRefusal(res, 400, 'unauthorized_client');
    assertRefusal(await token({ grant_type: 'refresh_token', refresh_token: 'whatever' }, { basic: machine.basic }), 400, 'unauthorized_client');
  });

  describe('a resource other than this server → 400 invalid_target on every grant (RFC 8707 §2)', () => {
    const INVALID_TARGET = 'resource indicator is missing, or unknown';

    it('client_credentials', async () => {
      const res = await token({ grant_type: 'client_credentials', scope: 'read', resource: ELSEWHERE }, { basic: machine.basic });
      assertRefusal(res, 400, 'invalid_target', INVALID_TARGET);
    });

    it('password', async () => {
      const res = await token({ grant_type: 'password', username: alice.username, password: alice.password, scope: 'read', resource: ELSEWHERE }, { basic: passwordApp.basic });
      assertRefusal(res, 400, 'invalid_target', INVALID_TARGET);
    });

    it('authorization_code', async () => {
      const res = await token({ grant_type: 'authorization_code', code: await codeFor(web), redirect_uri: REDIRECT, resource: ELSEWHERE }, { basic: web.basic });
      assertRefusal(res, 400, 'invalid_target', INVALID_TARGET);
    });

    it('refresh_token', async () => {
      const issued = await token({ grant_type: 'authorization_code', code: await codeFor(web), redirect_uri: REDIRECT }, { basic: web.basic });
      assert.equal(issued.status, 200, issued.text);
      const res = await token({ grant_type: 'refresh_token', refresh_token: issued.json.refresh_token, resource: ELSEWHERE }, { basic: web.basic });
      assertRefusal(res, 400, 'invalid_target', INVALID_TARGET);
    });

    it('saml2-bearer', async () => {
      const res = await token({ grant_type: SAML2_BEARER, assertion: assertion(), scope: 'read', resource: ELSEWHERE }, { basic: samlApp.basic });
      assertRefusal(res, 400, 'invalid_target', INVALID_TARGET);
    });

    it('a resource naming this server is accepted on the user grants, and is the audience', async () => {
      const issuer = server.config.issuer;
      const password = await token({ grant_type: 'password', username: alice.username, password: alice.password, scope: 'read', resource: issuer }, { basic: passwordApp.basic });
      assert.equal(password.status, 200, password.text);
      const saml = await token({ grant_type: SAML2_BEARER, assertion: assertion(), scope: 'read', resource: issuer }, { basic: samlApp.basic });
      assert.equal(saml.status, 200, saml.text);
      for (const issued of [password, saml]) {
        const seen = await introspect(issued.json.access_token);
        assert.equal(seen.json.active, true, seen.text);
        assert.equal(seen.json.aud, issuer);
      }
    });
  });
});
