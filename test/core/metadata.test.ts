// The metadata advertises only what is offered: no /userinfo, logout, PAR or DPoP (switched
// off, and their paths are 404s), and scopes_supported lists the registered scopes as they are
// now. A DPoP header is ignored (RFC 9449 §5: a server without DPoP issues Bearer tokens).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { getJson, postForm } from '../support/http.ts';
import { makeClient, makeScope, makeUser, type TestClient } from '../support/fixtures.ts';
import { createScope, deleteScope } from '../../src/store/scopes.ts';

/** Polls until the condition holds; the deadline is generous, for a busy CI machine. */
async function eventually(what: string, check: () => Promise<boolean>, deadlineMs = 20_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > until) assert.fail(`not within ${deadlineMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('metadata advertises what is offered', () => {
  let database: TestDatabase;
  let server: TestServer;
  let client: TestClient;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    await makeScope(database.db, 'orders:read');
    client = await makeClient(database.db, { grantTypes: ['password'], scope: ['orders:read'] });
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const metadata = async () => (await getJson(`${server.url}/.well-known/openid-configuration`)).json as Record<string, unknown>;

  it('has no userinfo, logout, PAR or DPoP entries', async () => {
    for (const doc of [await metadata(), (await getJson(`${server.url}/.well-known/oauth-authorization-server`)).json]) {
      for (const key of ['userinfo_endpoint', 'end_session_endpoint', 'pushed_authorization_request_endpoint', 'require_pushed_authorization_requests', 'dpop_signing_alg_values_supported']) {
        assert.equal(key in doc, false, `${key} is not advertised`);
      }
    }
  });

  for (const [method, path] of [['GET', '/userinfo'], ['POST', '/userinfo'], ['GET', '/logout'], ['POST', '/logout'], ['POST', '/request']] as const) {
    it(`${method} ${path} is 404`, async () => {
      const res = await fetch(`${server.url}${path}`, { method, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: method === 'POST' ? 'client_id=x' : undefined });
      assert.equal(res.status, 404);
      assert.deepEqual(await res.json(), { error: 'invalid_request', error_description: 'no such endpoint' });
    });
  }

  it('advertises client_id-only revocation (public clients) but not client_id-only introspection', async () => {
    const doc = await metadata();
    assert.deepEqual(doc.revocation_endpoint_auth_methods_supported, ['client_secret_basic', 'client_secret_post', 'tls_client_auth', 'self_signed_tls_client_auth', 'none']);
    assert.deepEqual(doc.introspection_endpoint_auth_methods_supported, ['client_secret_basic', 'client_secret_post', 'tls_client_auth', 'self_signed_tls_client_auth']);
    // RFC 9701 §7: JWT introspection responses are signed with RS256, the server's key type.
    assert.deepEqual(doc.introspection_signing_alg_values_supported, ['RS256']);
  });

  it('scopes_supported lists the registered scopes, and follows the registry', async () => {
    // `introspect` is registered by the server itself (migration 0010, README "API gateways").
    assert.deepEqual(await metadata().then((m) => m.scopes_supported), ['openid', 'offline_access', 'introspect', 'orders:read']);
    await createScope(database.db, 'orders:write');
    await eventually('a new scope appears', async () => ((await metadata()).scopes_supported as string[]).includes('orders:write'));
    await deleteScope(database.db, 'orders:read');
    await eventually('a deleted scope disappears', async () => !((await metadata()).scopes_supported as string[]).includes('orders:read'));
    assert.deepEqual((await metadata()).scopes_supported, ['openid', 'offline_access', 'introspect', 'orders:write']);
  });

  it('a DPoP header is ignored: the token is a Bearer token, as advertised', async () => {
    const user = await makeUser(database.db, 'olga');
    const res = await postForm(`${server.url}/token`, { grant_type: 'password', username: 'olga', password: user.password },
      { basic: client.basic, headers: { dpop: 'garbage' } });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.token_type, 'Bearer');
  });
});
