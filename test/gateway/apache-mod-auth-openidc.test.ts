// Proof with a stock gateway: Apache httpd with Debian's mod_auth_openidc (bookworm 2.4.12.3)
// as an OAuth 2.0 resource server (AuthType oauth20) that introspects every presented token
// at keymanager's /introspect, authorising itself with a long-lived "direct" gateway token
// made by `keymgr token issue --scope introspect` (OIDCOAuthIntrospectionEndpointAuth
// bearer_access_token + OIDCOAuthIntrospectionClientAuthBearerToken). Its introspection cache
// is off (OIDCOAuthTokenIntrospectionInterval -1), so that a revoked token is refused at once.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, startTestServer, type TestServer } from '../support/server.ts';
import { basicHeader } from '../support/http.ts';
import { type TestClient } from '../support/fixtures.ts';
import { post } from '../mtls/support.ts';
import { runKeymgr, type KeymgrResult } from '../support/cli.ts';
import { BACKEND_BODY, BACKEND_PATH, quoted, startApache, type RunningApache } from './support/apache.ts';

function ok(r: KeymgrResult): KeymgrResult {
  assert.equal(r.code, 0, `keymgr exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

/** The mod_auth_openidc configuration of a gateway that introspects with the given bearer token. */
function openidcSite(server: TestServer, serverCertificate: string, gatewayToken: string) {
  return {
    modules: ['mod_auth_openidc.so'],
    logLevel: 'warn auth_openidc:debug',
    // mod_auth_openidc accepts only an https introspection endpoint; it trusts keymanager's certificate.
    files: { 'keymanager.crt': serverCertificate },
    serverConfig: (confDir: string) => [
      `OIDCOAuthIntrospectionEndpoint ${quoted(`${server.url}/introspect`)}`,
      `OIDCCABundlePath ${quoted(join(confDir, 'keymanager.crt'))}`,
      'OIDCOAuthIntrospectionEndpointAuth bearer_access_token',
      `OIDCOAuthIntrospectionClientAuthBearerToken ${gatewayToken}`,
      // Introspect on every request: no cached answer outlives a revocation.
      'OIDCOAuthTokenIntrospectionInterval -1',
      'OIDCCacheType shm',
    ],
    protectedConfig: ['AuthType oauth20', 'Require valid-user'],
  };
}

describe('Apache httpd with mod_auth_openidc in front of keymanager (bearer-authenticated introspection)', () => {
  let database: TestDatabase;
  let server: TestServer;
  let env: Record<string, string>;
  let gateway: RunningApache;
  let unscopedGateway: RunningApache;
  let app: TestClient;
  let serverCertificate: string;
  const apaches: RunningApache[] = [];

  async function issueToken(client: TestClient, scope: string): Promise<string> {
    const res = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope },
      { ca: serverCertificate, headers: { authorization: basicHeader(...client.basic) } });
    assert.equal(res.status, 200, res.text);
    return res.json.access_token as string;
  }

  const keymgr = async (...args: string[]) => ok(await runKeymgr(args, env));
  const callBackend = (apache: RunningApache, headers: Record<string, string> = {}) => fetch(`${apache.url}${BACKEND_PATH}`, { headers });
  const withToken = (token: string) => ({ authorization: `Bearer ${token}` });
  /** The failure message: what the module logged. */
  const log = (apache: RunningApache) => `--- Apache error log ---\n${apache.errorLog()}`;

  async function createClientWithCli(...args: string[]): Promise<TestClient> {
    const { json } = await keymgr('client', 'create', ...args, '--json');
    return { id: json.client_id, secret: json.client_secret, basic: [json.client_id, json.client_secret] };
  }

  before(async () => {
    database = await createTestDatabase();
    const port = await freePort();
    server = await startTestServer(database.url, { tls: true, port, issuer: `https://127.0.0.1:${port}` });
    serverCertificate = readFileSync(join(server.keysDir, 'tls', 'server.crt'), 'utf8');
    env = { DATABASE_URL: database.url, KM_KEYS_DIR: server.keysDir, KM_LOG_LEVEL: 'silent' };
    await keymgr('scope', 'create', 'orders:read');

    // The gateway's own client and its direct token, as an operator would make them.
    const gw = await createClientWithCli('--name', 'apache gateway', '--scope', 'introspect');
    const gatewayToken = (await keymgr('token', 'issue', '--client', gw.id, '--scope', 'introspect', '--ttl', '3600')).stdout.trim();
    assert.match(gatewayToken, /^[A-Za-z0-9_-]{43}$/);
    gateway = await startApache(openidcSite(server, serverCertificate, gatewayToken));
    apaches.push(gateway);

    // A second gateway whose token lacks the introspect scope.
    const weak = await createClientWithCli('--name', 'apache gateway without introspect', '--scope', 'orders:read');
    const weakToken = (await keymgr('token', 'issue', '--client', weak.id, '--scope', 'orders:read', '--ttl', '3600')).stdout.trim();
    unscopedGateway = await startApache(openidcSite(server, serverCertificate, weakToken));
    apaches.push(unscopedGateway);

    app = await createClientWithCli('--name', 'an application', '--scope', 'orders:read');
  });

  after(async () => {
    for (const a of apaches) await a.stop().catch(() => {});
    await server?.stop();
    await database?.drop();
  });

  it('lets a valid access token through to the backend', async () => {
    const token = await issueToken(app, 'orders:read');
    const res = await callBackend(gateway, withToken(token));
    const body = await res.text();
    assert.equal(res.status, 200, `${body}\n${log(gateway)}`);
    assert.equal(body, BACKEND_BODY);
    // The module takes the caller from the introspection answer's sub: the client itself.
    assert.equal(res.headers.get('x-remote-user'), app.id);
  });

  it('refuses a request without a token', async () => {
    const res = await callBackend(gateway);
    const body = await res.text();
    assert.equal(res.status, 401, `${body}\n${log(gateway)}`);
    assert.notEqual(body, BACKEND_BODY);
    console.log(res.headers.get('www-authenticate'));
  });

  it('refuses a forged token', async () => {
    const res = await callBackend(gateway, withToken('Zm9yZ2VkLXRva2VuLXRoYXQta2V5bWFuYWdlci1uZXZlci1pc3N1ZWQ'));
    const body = await res.text();
    assert.equal(res.status, 401, `${body}\n${log(gateway)}`);
    console.log(res.headers.get('www-authenticate'));
  });

  it('refuses a token at once after it is revoked', async () => {
    const token = await issueToken(app, 'orders:read');
    const before = await callBackend(gateway, withToken(token));
    assert.equal(before.status, 200, `${await before.text()}\n${log(gateway)}`);
    const revoked = await post(`${server.url}/revoke`, { token }, { ca: serverCertificate, headers: { authorization: basicHeader(...app.basic) } });
    assert.equal(revoked.status, 200, revoked.text);
    const res = await callBackend(gateway, withToken(token));
    const body = await res.text();
    assert.equal(res.status, 401, `${body}\n${log(gateway)}`);
    console.log(res.headers.get('www-authenticate'));
  });

  it('lets nothing through when the gateway token lacks the introspect scope', async () => {
    const token = await issueToken(app, 'orders:read');
    assert.equal((await callBackend(gateway, withToken(token))).status, 200, 'the token is valid');
    const res = await callBackend(unscopedGateway, withToken(token));
    const body = await res.text();
    assert.equal(res.status, 401, `${body}\n${log(unscopedGateway)}`);
    console.log(res.headers.get('www-authenticate'));
    console.log(unscopedGateway.errorLog().slice(-3000));
  });
});
