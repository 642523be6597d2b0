// Metadata (OpenID discovery and RFC 8414), the public JWKS, health endpoints, method checks,
// and a TLS smoke test of the generated development certificate.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { freePort, startTestServer, type TestServer } from '../support/server.ts';
import { basicHeader, getJson, postForm, rawRequest } from '../support/http.ts';
import { makeClient } from '../support/fixtures.ts';

const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth'];

describe('discovery, JWKS and health', () => {
  let database: TestDatabase;
  let server: TestServer;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
  });

  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  for (const path of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
    it(`${path} describes the endpoints`, async () => {
      const res = await getJson(`${server.url}${path}`);
      assert.equal(res.status, 200, res.text);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      const m = res.json;
      // RFC 8414 §3.3: the issuer in the metadata is identical to the one the client used.
      assert.equal(m.issuer, server.config.issuer);
      const issuer = server.config.issuer.replace(/\/$/, '');
      assert.equal(m.token_endpoint, `${issuer}/token`);
      assert.equal(m.jwks_uri, `${issuer}/jwks`);
      assert.equal(m.introspection_endpoint, `${issuer}/introspect`);
      assert.equal(m.revocation_endpoint, `${issuer}/revoke`);
      assert.match(m.authorization_endpoint, /\/authorize$/);
      assert.ok(m.authorization_endpoint.startsWith(issuer));
      assert.ok(Array.isArray(m.token_endpoint_auth_methods_supported));
      assert.ok(m.token_endpoint_auth_methods_supported.includes('client_secret_basic'));
      assert.ok(m.token_endpoint_auth_methods_supported.includes('client_secret_post'));
      assert.ok(Array.isArray(m.grant_types_supported));
      assert.ok(m.grant_types_supported.includes('client_credentials'), JSON.stringify(m.grant_types_supported));
      assert.ok(Array.isArray(m.response_types_supported));
    });
  }

  it('serves the same document under both names', async () => {
    const oidc = await getJson(`${server.url}/.well-known/openid-configuration`);
    const rfc8414 = await getJson(`${server.url}/.well-known/oauth-authorization-server`);
    assert.deepEqual(rfc8414.json, oidc.json);
  });

  it('the endpoints the metadata names answer at those URLs', async () => {
    const m = (await getJson(`${server.url}/.well-known/oauth-authorization-server`)).json;
    // The issuer is this server's base URL, so the advertised URLs are reachable as they are.
    assert.equal((await getJson(m.jwks_uri)).status, 200);
    const client = await makeClient(database.db);
    const token = await postForm(m.token_endpoint, { grant_type: 'client_credentials', scope: 'read' }, { basic: client.basic });
    assert.equal(token.status, 200, token.text);
    const seen = await postForm(m.introspection_endpoint, { token: token.json.access_token }, { basic: client.basic });
    assert.equal(seen.json.active, true);
    const revoked = await postForm(m.revocation_endpoint, { token: token.json.access_token }, { basic: client.basic });
    assert.equal(revoked.status, 200, revoked.text);
  });

  it('/jwks publishes only public keys, each with kid, alg and use', async () => {
    const res = await getJson(`${server.url}/jwks`);
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type') ?? '', /json/);
    assert.ok(Array.isArray(res.json.keys) && res.json.keys.length >= 1);
    for (const key of res.json.keys as Record<string, unknown>[]) {
      for (const member of PRIVATE_JWK_MEMBERS) assert.ok(!(member in key), `private member "${member}" in ${JSON.stringify(key)}`);
      assert.equal(typeof key.kid, 'string');
      assert.equal(typeof key.alg, 'string');
      assert.equal(key.use, 'sig');
      assert.equal(typeof key.kty, 'string');
    }
  });

  it('metadata names the issuer origin whatever Host or X-Forwarded-* the caller sends', async () => {
    const { request } = await import('node:http');
    const port = new URL(server.url).port;
    const body = await new Promise<string>((resolve, reject) => {
      request({
        host: '127.0.0.1',
        port,
        path: '/.well-known/oauth-authorization-server',
        headers: { host: 'evil.example', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' },
      }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c)).on('end', () => resolve(text));
      }).on('error', reject).end();
    });
    const m = JSON.parse(body) as Record<string, unknown>;
    const issuer = server.config.issuer.replace(/\/$/, '');
    for (const key of ['token_endpoint', 'jwks_uri', 'authorization_endpoint', 'introspection_endpoint', 'revocation_endpoint']) {
      assert.ok(String(m[key]).startsWith(`${issuer}/`), `${key} = ${m[key]}`);
    }
    assert.doesNotMatch(body, /evil\.example/);
  });

  it('/healthz answers 200 {"status":"ok"}', async () => {
    const res = await getJson(`${server.url}/healthz`);
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.deepEqual(res.json, { status: 'ok' });
  });

  it('/readyz answers 200 {"status":"ready"} while the database is reachable', async () => {
    const res = await getJson(`${server.url}/readyz`);
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.deepEqual(res.json, { status: 'ready' });
  });

  for (const path of ['/token', '/introspect', '/revoke']) {
    it(`GET ${path} is 405 with Allow: POST and a JSON error`, async () => {
      const res = await fetch(`${server.url}${path}`);
      const text = await res.text();
      assert.equal(res.status, 405, text);
      assert.equal(res.headers.get('allow'), 'POST');
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      const body = JSON.parse(text) as Record<string, unknown>;
      assert.equal(typeof body.error, 'string');
    });
  }

  for (const path of ['/authorize', '/jwks', '/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
    it(`POST ${path} is 405 with Allow: GET, HEAD and a JSON error`, async () => {
      const res = await postForm(`${server.url}${path}`, { response_type: 'code' });
      assert.equal(res.status, 405, res.text);
      assert.equal(res.headers.get('allow'), 'GET, HEAD');
      assert.deepEqual(res.json, { error: 'invalid_request', error_description: 'this endpoint accepts only GET' });
    });
  }

  it('GET /session/end/confirm is 405 with Allow: POST; a POST without the session\'s secret is 400', async () => {
    const get = await fetch(`${server.url}/session/end/confirm`);
    assert.equal(get.status, 405);
    assert.equal(get.headers.get('allow'), 'POST');
    const post = await postForm(`${server.url}/session/end/confirm`, { xsrf: 'guessed', logout: 'yes' });
    assert.equal(post.status, 400, post.text);
    assert.deepEqual(post.json, { error: 'invalid_request', error_description: 'could not find logout details' });
  });

  // RFC 9110 §9.1: a method the server does not implement is 501 (Not Implemented), on every
  // path: the engine's endpoints, ours, and paths that name nothing.
  for (const method of ['PROPFIND', 'TRACE']) {
    for (const path of ['/jwks', '/.well-known/openid-configuration', '/authorize', '/healthz', '/no-such-path']) {
      it(`${method} ${path} is 501 (a method not implemented)`, async () => {
        const res = await rawRequest(server.url, { method, target: path });
        assert.equal(res.status, 501, res.text);
      });
    }
  }
});

interface HttpsReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

function httpsCall(url: string, ca: string | undefined, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<HttpsReply> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpsRequest({
      host: '127.0.0.1',
      port: u.port,
      path: `${u.pathname}${u.search}`,
      method: opts.method ?? 'GET',
      // Connect to 127.0.0.1 (localhost may resolve to ::1 first) but address the server as
      // https://localhost:<port>, the name its certificate and issuer carry.
      headers: { host: `localhost:${u.port}`, ...opts.headers },
      ca,
      servername: 'localhost',
      agent: false,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

describe('TLS', () => {
  let database: TestDatabase;
  let server: TestServer;
  let ca: string;

  before(async () => {
    database = await createTestDatabase();
    const port = await freePort();
    server = await startTestServer(database.url, { tls: true, port, issuer: `https://localhost:${port}` });
    ca = readFileSync(join(server.keysDir, 'tls', 'server.crt'), 'utf8');
  });

  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  it('serves HTTPS with the generated development certificate', async () => {
    assert.match(server.url, /^https:\/\//);
    assert.match(ca, /-----BEGIN CERTIFICATE-----/);
    const res = await httpsCall(`${server.url}/healthz`, ca);
    assert.equal(res.status, 200, res.text);
  });

  it('refuses a client that does not trust the certificate', async () => {
    // Without the certificate as a trust anchor, verification fails: it is self-signed.
    await assert.rejects(httpsCall(`${server.url}/healthz`, undefined), (err: NodeJS.ErrnoException) => {
      assert.match(String(err.code), /SELF_SIGNED|UNABLE_TO_VERIFY|CERT/);
      return true;
    });
  });

  it('issues a client-credentials token over HTTPS', async () => {
    const client = await makeClient(database.db);
    const res = await httpsCall(`${server.url}/token`, ca, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicHeader(...client.basic) },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'read' }).toString(),
    });
    assert.equal(res.status, 200, res.text);
    const body = JSON.parse(res.text) as Record<string, unknown>;
    assert.equal(typeof body.access_token, 'string');
    assert.equal(body.token_type, 'Bearer');
    assert.equal(res.headers['cache-control'], 'no-store');
  });

  it('publishes https endpoints in its metadata', async () => {
    const res = await httpsCall(`${server.url}/.well-known/oauth-authorization-server`, ca);
    assert.equal(res.status, 200, res.text);
    const m = JSON.parse(res.text) as Record<string, string>;
    assert.equal(m.issuer, server.config.issuer);
    assert.match(m.token_endpoint ?? '', /^https:\/\/localhost:\d+\/token$/);
  });

  it('answers an introspection over HTTPS', async () => {
    const client = await makeClient(database.db);
    const plain = await issueTokenOverHttps(client.basic);
    const res = await httpsCall(`${server.url}/introspect`, ca, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicHeader(...client.basic) },
      body: new URLSearchParams({ token: plain }).toString(),
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(JSON.parse(res.text).active, true);
  });

  async function issueTokenOverHttps(basic: [string, string]): Promise<string> {
    const res = await httpsCall(`${server.url}/token`, ca, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicHeader(...basic) },
      body: 'grant_type=client_credentials&scope=read',
    });
    assert.equal(res.status, 200, res.text);
    return (JSON.parse(res.text) as { access_token: string }).access_token;
  }
});
