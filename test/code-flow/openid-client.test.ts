// The authorization code flow with PKCE and refresh-token rotation as an independent,
// certified client library sees it: openid-client v6 discovers the server, builds the
// authorization request, checks the response (state, RFC 9207 iss) and talks to /token and
// /introspect. The login and consent pages are driven over plain HTTP (test/support/browserless.ts).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as client from 'openid-client';
import { createScope } from '../../src/store/scopes.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { makeClient, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { Browser, formAction, formToken } from '../support/browserless.ts';

const WEB_REDIRECT = 'https://orders.example.com/callback';
const NATIVE_REDIRECT = 'http://127.0.0.1/callback';

describe('code flow with openid-client', () => {
  let database: TestDatabase;
  let server: TestServer;
  let confidential: TestClient;
  let publicClient: TestClient;
  let gateway: TestClient;
  let dana: TestUser;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    await createScope(database.db, 'orders:read', 'See your orders');
    await createScope(database.db, 'orders:write', 'Place orders for you');
    const scope = ['orders:read', 'orders:write'];
    confidential = await makeClient(database.db, {
      name: 'Orders web app', grantTypes: ['authorization_code', 'refresh_token'], scope, redirectUris: [WEB_REDIRECT],
    });
    publicClient = await makeClient(database.db, {
      name: 'Orders desktop app', grantTypes: ['authorization_code', 'refresh_token'], scope, redirectUris: [NATIVE_REDIRECT],
      authMethod: 'none', applicationType: 'native',
    });
    // A resource server that may introspect every token (the public client cannot authenticate).
    gateway = await makeClient(database.db, { name: 'gateway', grantTypes: ['client_credentials'], scope, introspectAny: true });
    dana = await makeUser(database.db, 'dana');
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const discover = (clientId: string, auth: client.ClientAuth) =>
    client.discovery(new URL(server.url), clientId, undefined, auth, { execute: [client.allowInsecureRequests] });

  /** Follows the authorization URL through login and consent; returns where the client is sent. */
  async function authorize(authorizationUrl: URL, user: TestUser): Promise<URL> {
    const browser = new Browser(server.url);
    let step = await browser.follow(await browser.get(authorizationUrl.href));
    if (step.html?.includes('name="password"')) {
      step = await browser.follow(await browser.post(formAction(step.html), { csrf: formToken(step.html), username: user.username, password: user.password }));
    }
    if (step.html?.includes('name="decision"')) {
      step = await browser.follow(await browser.post(formAction(step.html), { csrf: formToken(step.html), decision: 'approve' }));
    }
    assert.ok(step.location, `expected a redirect to the client, got ${step.status}: ${step.html?.slice(0, 300)}`);
    return new URL(step.location);
  }

  async function introspect(token: string) {
    const res = await postForm(`${server.url}/introspect`, { token }, { basic: gateway.basic });
    assert.equal(res.status, 200, res.text);
    return res.json;
  }

  it('discovers the server: code flow, S256 only, RFC 9207 iss', async () => {
    const config = await discover(confidential.id, client.ClientSecretBasic(confidential.secret));
    const meta = config.serverMetadata();
    assert.equal(meta.issuer, server.url);
    assert.ok(meta.supportsPKCE(), 'PKCE S256 advertised');
    assert.deepEqual(meta.code_challenge_methods_supported, ['S256']);
    assert.deepEqual(meta.response_types_supported, ['code']);
    assert.ok(meta.grant_types_supported?.includes('authorization_code'));
    assert.ok(meta.grant_types_supported?.includes('refresh_token'));
    assert.equal(meta.authorization_response_iss_parameter_supported, true);
  });

  it('confidential client: code flow with PKCE, then a refresh that rotates the refresh token', async () => {
    const config = await discover(confidential.id, client.ClientSecretBasic(confidential.secret));
    const pkceCodeVerifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const authorizationUrl = client.buildAuthorizationUrl(config, {
      redirect_uri: WEB_REDIRECT,
      scope: 'orders:read orders:write',
      code_challenge: await client.calculatePKCECodeChallenge(pkceCodeVerifier),
      code_challenge_method: 'S256',
      state,
    });
    const callbackUrl = await authorize(authorizationUrl, dana);
    assert.equal(`${callbackUrl.origin}${callbackUrl.pathname}`, WEB_REDIRECT);

    const tokens = await client.authorizationCodeGrant(config, callbackUrl, { pkceCodeVerifier, expectedState: state });
    assert.equal(tokens.token_type.toLowerCase(), 'bearer');
    assert.equal(typeof tokens.access_token, 'string');
    assert.ok(tokens.refresh_token, 'a refresh token');
    assert.ok((tokens.expiresIn() ?? 0) > 0);
    assert.deepEqual(tokens.scope?.split(' ').sort(), ['orders:read', 'orders:write']);
    const first = await client.tokenIntrospection(config, tokens.access_token);
    assert.equal(first.active, true);
    assert.equal(first.sub, dana.id);
    assert.equal(first.client_id, confidential.id);

    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
    assert.ok(refreshed.refresh_token, 'a new refresh token');
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'the refresh token rotated');
    assert.notEqual(refreshed.access_token, tokens.access_token);
    assert.deepEqual(refreshed.scope?.split(' ').sort(), ['orders:read', 'orders:write'], 'the scope is kept');
    const seen = await client.tokenIntrospection(config, refreshed.access_token);
    assert.equal(seen.active, true);
    assert.equal(seen.sub, dana.id);
    assert.equal(seen.client_id, confidential.id);
    assert.equal((await introspect(refreshed.access_token)).active, true, 'also for a resource server');
    assert.equal((await client.tokenIntrospection(config, tokens.refresh_token)).active, false, 'the used refresh token is spent');
    assert.equal((await client.tokenIntrospection(config, refreshed.refresh_token)).active, true);

    // The spent refresh token presented again: refused, and the grant is revoked (RFC 9700 §4.14.2).
    await assert.rejects(
      client.refreshTokenGrant(config, tokens.refresh_token),
      (err) => err instanceof client.ResponseBodyError && err.error === 'invalid_grant',
    );
    assert.equal((await introspect(refreshed.refresh_token)).active, false, 'the newest refresh token is revoked with the grant');
    assert.equal((await introspect(refreshed.access_token)).active, false, 'and so is the newest access token');
    await assert.rejects(
      client.refreshTokenGrant(config, refreshed.refresh_token),
      (err) => err instanceof client.ResponseBodyError && err.error === 'invalid_grant',
    );
  });

  it('confidential client: a replayed code is refused and the tokens issued from it are revoked', async () => {
    const config = await discover(confidential.id, client.ClientSecretBasic(confidential.secret));
    const pkceCodeVerifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const authorizationUrl = client.buildAuthorizationUrl(config, {
      redirect_uri: WEB_REDIRECT,
      scope: 'orders:read',
      code_challenge: await client.calculatePKCECodeChallenge(pkceCodeVerifier),
      code_challenge_method: 'S256',
      state,
    });
    const callbackUrl = await authorize(authorizationUrl, dana);
    const tokens = await client.authorizationCodeGrant(config, callbackUrl, { pkceCodeVerifier, expectedState: state });
    assert.equal((await introspect(tokens.access_token)).active, true);
    await assert.rejects(
      client.authorizationCodeGrant(config, callbackUrl, { pkceCodeVerifier, expectedState: state }),
      (err) => err instanceof client.ResponseBodyError && err.error === 'invalid_grant',
    );
    assert.equal((await introspect(tokens.access_token)).active, false, 'the access token from the replayed code is revoked');
    assert.equal((await introspect(tokens.refresh_token!)).active, false, 'and the refresh token');
  });

  it('public client (token_endpoint_auth_method none): code flow with PKCE and a rotating refresh', async () => {
    const config = await discover(publicClient.id, client.None());
    const pkceCodeVerifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const authorizationUrl = client.buildAuthorizationUrl(config, {
      redirect_uri: NATIVE_REDIRECT,
      scope: 'orders:read',
      code_challenge: await client.calculatePKCECodeChallenge(pkceCodeVerifier),
      code_challenge_method: 'S256',
      state,
    });
    const callbackUrl = await authorize(authorizationUrl, dana);
    assert.equal(`${callbackUrl.origin}${callbackUrl.pathname}`, NATIVE_REDIRECT);

    const tokens = await client.authorizationCodeGrant(config, callbackUrl, { pkceCodeVerifier, expectedState: state });
    assert.equal(tokens.scope, 'orders:read');
    assert.ok(tokens.refresh_token, 'a refresh token');
    const seen = await introspect(tokens.access_token);
    assert.equal(seen.active, true);
    assert.equal(seen.sub, dana.id);
    assert.equal(seen.client_id, publicClient.id);

    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
    assert.ok(refreshed.refresh_token);
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'the refresh token rotated');
    assert.equal(refreshed.scope, 'orders:read');
    assert.equal((await introspect(refreshed.access_token)).active, true);
    assert.equal((await introspect(tokens.refresh_token)).active, false);
  });

  it('public client without PKCE: the server answers invalid_request and the library reports it', async () => {
    const config = await discover(publicClient.id, client.None());
    const state = client.randomState();
    const authorizationUrl = client.buildAuthorizationUrl(config, { redirect_uri: NATIVE_REDIRECT, scope: 'orders:read', state });
    const callbackUrl = await authorize(authorizationUrl, dana);
    assert.equal(callbackUrl.searchParams.get('error'), 'invalid_request');
    assert.equal(callbackUrl.searchParams.get('code'), null);
    await assert.rejects(
      client.authorizationCodeGrant(config, callbackUrl, { expectedState: state }),
      (err) => err instanceof client.AuthorizationResponseError && err.error === 'invalid_request',
    );
  });

  it('public client: a wrong code_verifier is refused with invalid_grant', async () => {
    const config = await discover(publicClient.id, client.None());
    const pkceCodeVerifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const authorizationUrl = client.buildAuthorizationUrl(config, {
      redirect_uri: NATIVE_REDIRECT,
      scope: 'orders:read',
      code_challenge: await client.calculatePKCECodeChallenge(pkceCodeVerifier),
      code_challenge_method: 'S256',
      state,
    });
    const callbackUrl = await authorize(authorizationUrl, dana);
    await assert.rejects(
      client.authorizationCodeGrant(config, callbackUrl, { pkceCodeVerifier: client.randomPKCECodeVerifier(), expectedState: state }),
      (err) => err instanceof client.ResponseBodyError && err.error === 'invalid_grant',
    );
  });
});
