// Proof with a stock gateway: Apache httpd with Debian's mod_auth_openidc (bookworm 2.4.12.3)
// as an OAuth 2.0 resource server (AuthType oauth20) that introspects every presented token
// at keymanager's /introspect, authorising itself with a long-lived "direct" gateway token
// made by `keymgr token issue --scope introspect`. Its introspection cache is off
// (OIDCOAuthTokenIntrospectionInterval -1), so that a revoked token is refused at once.
//
// What 2.4.12.3 needs for that (src/proto.c, src/oauth.c of that version):
// - `OIDCOAuthIntrospectionEndpointAuth bearer_access_token` sends the value of
//   `OIDCOAuthIntrospectionClientAuthBearerToken` as `Authorization: Bearer`; when that
//   directive is given an empty value ("") the module sends the token being introspected
//   instead, and when it is not given at all no call is made (every request is refused).
// - It authenticates to the endpoint only when OIDCOAuthClientID AND OIDCOAuthClientSecret
//   are set: without an id it sends no credentials at all, without a secret it falls back to
//   "none". Neither value is sent with bearer_access_token.
// - The introspection endpoint must be https: the module refuses an http URL at start-up. It
//   trusts keymanager's certificate through OIDCCABundlePath.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { freePort, startTestServer, type TestServer } from '../support/server.ts';
import { basicHeader } from '../support/http.ts';
import type { TestClient } from '../support/fixtures.ts';
import { runKeymgr, type KeymgrResult } from '../support/cli.ts';
import { post } from '../mtls/support.ts';
import { BACKEND_BODY, callGateway, quoted, startApache, type ApacheSite, type GatewayReply, type RunningApache } from './support/apache.ts';

const API = '/api';
const REALM = 'keymanager-gateway';

function ok(r: KeymgrResult): KeymgrResult {
  assert.equal(r.code, 0, `keymgr exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

interface GatewayCredentials {
  clientId: string;
  /** The direct token, or '' for "authorise with the token being introspected". */
  bearerToken: string;
}

/** A gateway that introspects at keymanager with a bearer token (the README's configuration). */
function openidcSite(server: TestServer, serverCertificate: string, { clientId, bearerToken }: GatewayCredentials): ApacheSite {
  return {
    modules: ['mod_auth_openidc.so'],
    logLevel: 'warn auth_openidc:debug',
    files: { 'keymanager.crt': serverCertificate },
    serverConfig: (confDir) => [
      `OIDCOAuthIntrospectionEndpoint ${quoted(`${server.url}/introspect`)}`,
      `OIDCCABundlePath ${quoted(join(confDir, 'keymanager.crt'))}`,
      `OIDCOAuthClientID ${quoted(clientId)}`,
      'OIDCOAuthClientSecret not-sent-with-bearer_access_token',
      'OIDCOAuthIntrospectionEndpointAuth bearer_access_token',
      `OIDCOAuthIntrospectionClientAuthBearerToken ${quoted(bearerToken)}`,
      // Introspect on every request: no cached answer outlives a revocation.
      'OIDCOAuthTokenIntrospectionInterval -1',
      'OIDCCacheType shm',
    ],
    locations: [{ path: API, directives: ['AuthType oauth20', `AuthName ${REALM}`, 'Require valid-user'] }],
  };
}

describe('Apache httpd with mod_auth_openidc 2.4.12.3 in front of keymanager (bearer-authenticated introspection)', () => {
  let database: TestDatabase;
  let server: TestServer;
  let serverCertificate: string;
  let env: Record<string, string>;
  let gateway: RunningApache;
  let unscopedGateway: RunningApache;
  let selfIntrospectingGateway: RunningApache;
  let app: TestClient;
  const apaches: RunningApache[] = [];

  const keymgr = async (...args: string[]) => ok(await runKeymgr(args, env));

  async function createClientWithCli(...args: string[]): Promise<TestClient> {
    const { json } = await keymgr('client', 'create', ...args, '--json');
    return { id: json.client_id, secret: json.client_secret, basic: [json.client_id, json.client_secret] };
  }

  async function issueToken(client: TestClient, scope: string): Promise<string> {
    const res = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope },
      { ca: serverCertificate, headers: { authorization: basicHeader(...client.basic) } });
    assert.equal(res.status, 200, res.text);
    return res.json.access_token as string;
  }

  async function start(credentials: GatewayCredentials): Promise<RunningApache> {
    const apache = await startApache(openidcSite(server, serverCertificate, credentials));
    apaches.push(apache);
    return apache;
  }

  const callBackend = (apache: RunningApache, token?: string) => callGateway(apache, API, token);

  function assertPassed(reply: GatewayReply, clientId: string): void {
    assert.equal(reply.status, 200, reply.explain);
    assert.equal(reply.body, BACKEND_BODY);
    // The module takes the caller from the introspection answer's sub: the client itself.
    assert.equal(reply.remoteUser, clientId, reply.explain);
  }

  function assertRefused(reply: GatewayReply, error: 'invalid_token' | 'invalid_request'): void {
    assert.equal(reply.status, 401, reply.explain);
    assert.notEqual(reply.body, BACKEND_BODY);
    assert.match(reply.challenge ?? '', new RegExp(`^Bearer realm="${REALM}", error="${error}"`), reply.explain);
  }

  before(async () => {
    database = await createTestDatabase();
    const port = await freePort();
    server = await startTestServer(database.url, { tls: true, port, issuer: `https://127.0.0.1:${port}` });
    serverCertificate = readFileSync(join(server.keysDir, 'tls', 'server.crt'), 'utf8');
    env = { DATABASE_URL: database.url, KM_KEYS_DIR: server.keysDir, KM_LOG_LEVEL: 'silent' };
    await keymgr('scope', 'create', 'orders:read');

    // The gateway's own client and its direct token, made as the README tells an operator to.
    const gw = await createClientWithCli('--name', 'apache gateway', '--scope', 'introspect');
    const gatewayToken = (await keymgr('token', 'issue', '--client', gw.id, '--scope', 'introspect', '--ttl', '3600')).stdout.trim();
    assert.match(gatewayToken, /^[A-Za-z0-9_-]{43}$/);
    // A gateway whose direct token lacks the introspect scope.
    const weak = await createClientWithCli('--name', 'apache gateway without introspect', '--scope', 'orders:read');
    const weakToken = (await keymgr('token', 'issue', '--client', weak.id, '--scope', 'orders:read', '--ttl', '3600')).stdout.trim();

    [gateway, unscopedGateway, selfIntrospectingGateway] = await Promise.all([
      start({ clientId: gw.id, bearerToken: gatewayToken }),
      start({ clientId: weak.id, bearerToken: weakToken }),
      start({ clientId: gw.id, bearerToken: '' }),
    ]);

    app = await createClientWithCli('--name', 'an application', '--scope', 'orders:read');
  });

  after(async () => {
    for (const a of apaches) await a.stop().catch(() => {});
    await server?.stop();
    await database?.drop();
  });

  it('lets a valid access token through to the backend', async () => {
    const token = await issueToken(app, 'orders:read');
    assertPassed(await callBackend(gateway, token), app.id);
    // Every request is introspected again: the same token passes a second time too.
    assertPassed(await callBackend(gateway, token), app.id);
  });

  it('refuses a request without a token', async () => {
    const reply = await callBackend(gateway);
    assertRefused(reply, 'invalid_request');
  });

  it('refuses a forged token', async () => {
    // The form of keymanager's tokens (256 bits, base64url), but never issued.
    assertRefused(await callBackend(gateway, 'pE9I9MlunXq8L7dP_0oMTMSSfGoIWcmY17wGSNKbyl4'), 'invalid_token');
    // A real token with one character changed.
    const token = await issueToken(app, 'orders:read');
    const altered = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
    assertRefused(await callBackend(gateway, altered), 'invalid_token');
  });

  it('refuses a token at once after it is revoked', async () => {
    const token = await issueToken(app, 'orders:read');
    assertPassed(await callBackend(gateway, token), app.id);
    const revoked = await post(`${server.url}/revoke`, { token }, { ca: serverCertificate, headers: { authorization: basicHeader(...app.basic) } });
    assert.equal(revoked.status, 200, revoked.text);
    assertRefused(await callBackend(gateway, token), 'invalid_token');
  });

  it('refuses a token revoked with keymgr token revoke', async () => {
    const token = await issueToken(app, 'orders:read');
    assertPassed(await callBackend(gateway, token), app.id);
    // '--': a token may begin with '-' (README, keymgr token revoke).
    await keymgr('token', 'revoke', '--', token);
    assertRefused(await callBackend(gateway, token), 'invalid_token');
  });

  it('lets nothing through when the gateway token lacks the introspect scope', async () => {
    const token = await issueToken(app, 'orders:read');
    assertPassed(await callBackend(gateway, token), app.id);
    const reply = await callBackend(unscopedGateway, token);
    assertRefused(reply, 'invalid_token');
    // keymanager refused the gateway itself (RFC 6750 insufficient_scope), not the token.
    assert.match(unscopedGateway.errorLog(), /HTTP response code=403/);
    assert.match(unscopedGateway.errorLog(), /"error":"insufficient_scope"/);
  });

  it('with an empty OIDCOAuthIntrospectionClientAuthBearerToken, a token must carry introspect to introspect itself', async () => {
    // The module then authorises each introspection with the token being introspected: an
    // application's token lacks the introspect scope, so keymanager answers 403 and nothing passes.
    const token = await issueToken(app, 'orders:read');
    assertRefused(await callBackend(selfIntrospectingGateway, token), 'invalid_token');
    assert.match(selfIntrospectingGateway.errorLog(), /"error":"insufficient_scope"/);
  });
});
