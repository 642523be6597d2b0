// Proof with a stock gateway: Apache httpd with Debian's mod_oauth2 (bookworm 3.3.1, on
// liboauth2 1.4.5.4) as an OAuth 2.0 resource server in front of keymanager, two ways:
// - opaque tokens introspected at /introspect with client_secret_basic, as a client made by
//   `keymgr client create --introspect-any`. The module caches a verified token for `expiry`
//   seconds (300 by default, whatever Cache-Control says); expiry=0 turns that off, so that a
//   revoked token is refused at once;
// - JWT access tokens (`--token-format jwt`) verified locally against keymanager's signing
//   keys, found through its metadata (`metadata` verifier, RFC 8414 or OpenID discovery) or at
//   /jwks (`jwks_uri`). A JWT verified locally passes until it expires, revoked or not. The
//   metadata verifier introspects what is not a valid JWT at the metadata's
//   introspection_endpoint, without credentials unless introspect.* options are given:
//   keymanager refuses those calls (401 invalid_client), so such tokens are refused.
//
// keymanager listens on plain HTTP here (KM_TLS=off, as behind a TLS-terminating proxy):
// liboauth2 1.4.5.4 has no option for a CA bundle, so over https it needs keymanager's
// certificate in the system trust store (or ssl_verify=false, which no one should use).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair, SignJWT, decodeProtectedHeader } from 'jose';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { getJson, postForm } from '../support/http.ts';
import { issueToken, type TestClient } from '../support/fixtures.ts';
import { runKeymgr, type KeymgrResult } from '../support/cli.ts';
import { BACKEND_BODY, callGateway, quoted, startApache, type GatewayReply, type RunningApache } from './support/apache.ts';

const INTROSPECT = '/introspected';
const METADATA = '/jwt-metadata';
const OIDC_METADATA = '/jwt-openid-configuration';
const JWKS = '/jwt-jwks';

function ok(r: KeymgrResult): KeymgrResult {
  assert.equal(r.code, 0, `keymgr exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

/** OAuth2TokenVerify's options argument: query-encoded, in quotes. */
function options(values: Record<string, string>): string {
  return quoted(new URLSearchParams(values).toString());
}

describe('Apache httpd with mod_oauth2 3.3.1 in front of keymanager', () => {
  let database: TestDatabase;
  let server: TestServer;
  let env: Record<string, string>;
  let gateway: RunningApache;
  let app: TestClient;
  let jwtApp: TestClient;

  const keymgr = async (...args: string[]) => ok(await runKeymgr(args, env));

  async function createClientWithCli(...args: string[]): Promise<TestClient> {
    const { json } = await keymgr('client', 'create', ...args, '--json');
    assert.equal(typeof json.client_secret, 'string');
    return { id: json.client_id, secret: json.client_secret, basic: [json.client_id, json.client_secret] };
  }

  const callBackend = (path: string, token?: string) => callGateway(gateway, path, token);

  function assertPassed(reply: GatewayReply, clientId: string): void {
    assert.equal(reply.status, 200, reply.explain);
    assert.equal(reply.body, BACKEND_BODY);
    // REMOTE_USER is the token's sub: the client itself for client-credentials tokens.
    assert.equal(reply.remoteUser, clientId, reply.explain);
  }

  function assertRefused(reply: GatewayReply, error: 'invalid_token' | 'invalid_request' = 'invalid_token'): void {
    assert.equal(reply.status, 401, reply.explain);
    assert.notEqual(reply.body, BACKEND_BODY);
    assert.match(reply.challenge ?? '', new RegExp(`^Bearer error="${error}"`), reply.explain);
  }

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    env = { DATABASE_URL: database.url, KM_KEYS_DIR: server.keysDir, KM_LOG_LEVEL: 'silent' };
    await keymgr('scope', 'create', 'orders:read');
    const gw = await createClientWithCli('--name', 'apache mod_oauth2 gateway', '--introspect-any');
    app = await createClientWithCli('--name', 'an application', '--scope', 'orders:read');
    jwtApp = await createClientWithCli('--name', 'an application with JWT tokens', '--scope', 'orders:read', '--token-format', 'jwt');

    gateway = await startApache({
      modules: ['mod_oauth2.so'],
      // liboauth2 logs at the server's level, not at a per-module one (LogLevel oauth2:debug shows nothing).
      logLevel: 'debug',
      locations: [
        {
          path: INTROSPECT,
          directives: [
            'AuthType oauth2',
            `OAuth2TokenVerify introspect ${quoted(`${server.url}/introspect`)} ${options({
              'introspect.auth': 'client_secret_basic', client_id: gw.id, client_secret: gw.secret,
              // The verified result is cached for 0 s: every request is introspected again.
              expiry: '0',
            })}`,
            'Require valid-user',
          ],
        },
        {
          path: METADATA,
          directives: [
            'AuthType oauth2',
            `OAuth2TokenVerify metadata ${quoted(`${server.url}/.well-known/oauth-authorization-server`)}`,
            'Require valid-user',
          ],
        },
        {
          // The same verifier pointed at OpenID Connect discovery, which also names jwks_uri.
          path: OIDC_METADATA,
          directives: [
            'AuthType oauth2',
            `OAuth2TokenVerify metadata ${quoted(`${server.url}/.well-known/openid-configuration`)}`,
            'Require valid-user',
          ],
        },
        {
          path: JWKS,
          directives: [
            'AuthType oauth2',
            `OAuth2TokenVerify jwks_uri ${quoted(`${server.url}/jwks`)}`,
            'Require valid-user',
          ],
        },
      ],
    });
  });

  after(async () => {
    await gateway?.stop();
    await server?.stop();
    await database?.drop();
  });

  describe('introspection with client_secret_basic', () => {
    it('lets a valid access token through to the backend', async () => {
      const token = await issueToken(server.url, app, 'orders:read');
      assertPassed(await callBackend(INTROSPECT, token), app.id);
      assertPassed(await callBackend(INTROSPECT, token), app.id);
    });

    it('refuses a request without a token', async () => {
      assertRefused(await callBackend(INTROSPECT), 'invalid_request');
    });

    it('refuses a forged token', async () => {
      assertRefused(await callBackend(INTROSPECT, 'pE9I9MlunXq8L7dP_0oMTMSSfGoIWcmY17wGSNKbyl4'));
      const token = await issueToken(server.url, app, 'orders:read');
      assertRefused(await callBackend(INTROSPECT, token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A')));
    });

    it('refuses a token at once after it is revoked', async () => {
      const token = await issueToken(server.url, app, 'orders:read');
      assertPassed(await callBackend(INTROSPECT, token), app.id);
      const revoked = await postForm(`${server.url}/revoke`, { token }, { basic: app.basic });
      assert.equal(revoked.status, 200, revoked.text);
      assertRefused(await callBackend(INTROSPECT, token));
    });
  });

  const jwtVerifiers = [
    ['metadata (RFC 8414 /.well-known/oauth-authorization-server)', METADATA],
    ['metadata (/.well-known/openid-configuration)', OIDC_METADATA],
    ['jwks_uri', JWKS],
  ] as const;
  for (const [name, path] of jwtVerifiers) {
    describe(`JWT access tokens with the ${name} verifier`, () => {
      it('lets a valid JWT access token through to the backend', async () => {
        const token = await issueToken(server.url, jwtApp, 'orders:read');
        assert.equal(token.split('.').length, 3, 'a JWT');
        assertPassed(await callBackend(path, token), jwtApp.id);
      });

      it('refuses a request without a token', async () => {
        assertRefused(await callBackend(path), 'invalid_request');
      });

      it('refuses a JWT whose payload was altered after signing', async () => {
        const token = await issueToken(server.url, jwtApp, 'orders:read');
        const [header, payload, signature] = token.split('.') as [string, string, string];
        const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
        claims.scope = 'orders:read orders:write';
        claims.sub = 'someone-else';
        const tampered = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${signature}`;
        assertRefused(await callBackend(path, tampered));
      });

      it('refuses a JWT signed by another key under keymanager\'s kid', async () => {
        const token = await issueToken(server.url, jwtApp, 'orders:read');
        const { kid } = decodeProtectedHeader(token);
        const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8'));
        const { privateKey } = await generateKeyPair('RS256');
        const forged = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid, typ: 'at+jwt' }).sign(privateKey);
        assertRefused(await callBackend(path, forged));
      });

      it('refuses an unsigned JWT (alg none)', async () => {
        const token = await issueToken(server.url, jwtApp, 'orders:read');
        const payload = token.split('.')[1]!;
        const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url');
        assertRefused(await callBackend(path, `${header}.${payload}.`));
      });

      it('refuses an opaque token it cannot verify locally', async () => {
        const token = await issueToken(server.url, app, 'orders:read');
        assertRefused(await callBackend(path, token));
      });
    });
  }

  it('keymanager publishes what the metadata verifier follows', async () => {
    for (const document of ['oauth-authorization-server', 'openid-configuration']) {
      const meta = await getJson(`${server.url}/.well-known/${document}`);
      assert.equal(meta.status, 200, document);
      assert.equal(meta.json.issuer, server.config.issuer, document);
      assert.equal(meta.json.jwks_uri, `${server.url}/jwks`, document);
    }
  });
});
