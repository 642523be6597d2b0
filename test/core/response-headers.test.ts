// Headers every answer of the public listener carries (README "Security notes"): no framing by
// another site, Pragma with no-store (RFC 6749 §5.1), and HSTS for an HTTPS issuer that is not
// this machine (RFC 6797).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { issueToken, makeClient, type TestClient } from '../support/fixtures.ts';

describe('public listener: response headers', () => {
  let database: TestDatabase;
  let plain: TestServer;
  let named: TestServer;
  let local: TestServer;
  let app: TestClient;

  before(async () => {
    database = await createTestDatabase();
    plain = await startTestServer(database.url);
    // Listeners are plain HTTP in tests; only the issuer's scheme and name decide HSTS.
    named = await startTestServer(database.url, { issuer: 'https://km.example.test' });
    local = await startTestServer(database.url, { issuer: 'https://localhost:9443' });
    app = await makeClient(database.db, { scope: [] });
  });
  after(async () => {
    for (const server of [plain, named, local]) await server?.stop();
    await database?.drop();
  });

  it('no answer may be framed by another site: the engine\'s error page, JSON, the health check', async () => {
    const pages = [
      await fetch(`${plain.url}/authorize?response_type=code&client_id=no-such-client&redirect_uri=https%3A%2F%2Fapp.example%2Fcb`),
      await fetch(`${plain.url}/jwks`),
      await fetch(`${plain.url}/healthz`),
      await fetch(`${plain.url}/no-such-path`),
    ];
    assert.deepEqual(pages.map((r) => r.status), [400, 200, 200, 404]);
    assert.match(pages[0]!.headers.get('content-type') ?? '', /^text\/html/);
    for (const res of pages) {
      assert.equal(res.headers.get('x-frame-options'), 'DENY', res.url);
      assert.equal(res.headers.get('content-security-policy'), "frame-ancestors 'none'", res.url);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', res.url);
    }
  });

  it('Pragma: no-cache wherever Cache-Control is no-store (tokens and refusals), and nowhere else', async () => {
    const issued = await postForm(`${plain.url}/token`, { grant_type: 'client_credentials' }, { basic: app.basic });
    assert.equal(issued.status, 200, issued.text);
    const refused = await postForm(`${plain.url}/token`, { grant_type: 'client_credentials' }, { basic: [app.id, 'wrong-secret'] });
    assert.equal(refused.status, 401, refused.text);
    for (const res of [issued, refused]) {
      assert.equal(res.headers.get('cache-control'), 'no-store');
      assert.equal(res.headers.get('pragma'), 'no-cache');
    }
    // An active introspection answer may be cached for a while (README "Cache hints").
    const introspected = await postForm(`${plain.url}/introspect`, { token: await issueToken(plain.url, app, '') }, { basic: app.basic });
    assert.equal(introspected.headers.get('cache-control'), 'private, max-age=60');
    assert.equal(introspected.headers.get('pragma'), null);
  });

  it('every 401 invalid_client carries a Basic challenge, also when the client authenticated in the body (RFC 9110 §15.5.2)', async () => {
    const spa = await makeClient(database.db, { grantTypes: ['authorization_code'], scope: [], redirectUris: ['https://spa.example/cb'], authMethod: 'none' });
    const token = await issueToken(plain.url, app, '');
    const refusals = [
      await postForm(`${plain.url}/token`, { grant_type: 'client_credentials', client_id: app.id, client_secret: 'wrong-secret' }),
      await postForm(`${plain.url}/introspect`, { token, client_id: app.id, client_secret: 'wrong-secret' }),
      await postForm(`${plain.url}/introspect`, { token, client_id: spa.id }),
      await postForm(`${plain.url}/revoke`, { token, client_id: app.id, client_secret: 'wrong-secret' }),
    ];
    for (const res of refusals) {
      assert.equal(res.status, 401, res.text);
      assert.equal(res.json.error, 'invalid_client');
      assert.equal(res.headers.get('www-authenticate'), `Basic realm="${plain.config.issuer}", error="invalid_client", error_description="${res.json.error_description}"`);
    }
  });

  it('a client that prefers HTML still gets RFC 6749 §5.2\'s JSON errors at /token, with the 401 and its challenge', async () => {
    const html = { accept: 'text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2' }; // Java HttpURLConnection's default
    const cases = [
      [await postForm(`${plain.url}/token`, { grant_type: 'client_credentials' }, { headers: html }), 401, 'invalid_client'],
      [await postForm(`${plain.url}/token`, { grant_type: 'client_credentials' }, { basic: [app.id, 'wrong-secret'], headers: html }), 401, 'invalid_client'],
      [await postForm(`${plain.url}/token`, { grant_type: 'urn:example:unknown' }, { basic: app.basic, headers: html }), 400, 'unsupported_grant_type'],
    ] as const;
    for (const [res, status, error] of cases) {
      assert.equal(res.status, status, res.text);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/, res.text);
      assert.equal(res.json.error, error);
      if (status === 401) assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm="[^"]+", error="invalid_client"/);
    }
  });

  it('Strict-Transport-Security for an HTTPS issuer with a real name; none for http:// or localhost', async () => {
    for (const path of ['/healthz', '/jwks', '/no-such-path']) {
      assert.equal((await fetch(`${named.url}${path}`)).headers.get('strict-transport-security'), 'max-age=31536000', path);
      assert.equal((await fetch(`${plain.url}${path}`)).headers.get('strict-transport-security'), null, path);
      assert.equal((await fetch(`${local.url}${path}`)).headers.get('strict-transport-security'), null, path);
    }
  });
});
