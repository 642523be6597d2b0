// A gateway whose introspect-scoped token is bound to its client certificate (RFC 8705 §3)
// must present that certificate with the bearer at /introspect: without it, or with another
// one, the token is refused (401 invalid_token), as it would be at any protected resource.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import type { TestServer } from '../support/server.ts';
import { basicHeader } from '../support/http.ts';
import { makeClient } from '../support/fixtures.ts';
import { addCertificate, parseCertificatePem } from '../../src/store/certificates.ts';
import { createPki, issue, post, startTlsServer, type Issued } from '../mtls/support.ts';

describe('certificate-bound bearer at /introspect', () => {
  let database: TestDatabase;
  let server: TestServer;
  let serverCa: string;
  let mine: Issued;
  let another: Issued;

  before(async () => {
    const pki = createPki();
    mine = issue(pki, 'gw-self', { subject: '/CN=gw-self', issuer: 'self' });
    another = issue(pki, 'other-self', { subject: '/CN=other-self', issuer: 'self' });
    database = await createTestDatabase();
    ({ server, serverCa } = await startTlsServer(database.url, pki));
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  it('works with its certificate; without it or with another, 401 invalid_token', async () => {
    const gw = await makeClient(database.db, { authMethod: 'self_signed_tls_client_auth', scope: ['introspect'] });
    await addCertificate(database.db, gw.id, 'primary', parseCertificatePem(mine.cert));
    const issued = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'introspect', client_id: gw.id },
      { ca: serverCa, client: { cert: mine.cert, key: mine.key } });
    assert.equal(issued.status, 200, issued.text);
    const bearer = (issued.json as { access_token: string }).access_token;
    const app = await makeClient(database.db, { scope: ['read'] });
    const target = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { ca: serverCa, headers: { authorization: basicHeader(...app.basic) } });
    const value = (target.json as { access_token: string }).access_token;

    const withCert = await post(`${server.url}/introspect`, { token: value }, { ca: serverCa, client: { cert: mine.cert, key: mine.key }, headers: { authorization: `Bearer ${bearer}` } });
    assert.equal(withCert.status, 200, withCert.text);
    assert.equal((withCert.json as { active: boolean }).active, true);

    const description = 'the access token is bound to a client certificate that was not presented';
    for (const client of [undefined, { cert: another.cert, key: another.key }]) {
      const res = await post(`${server.url}/introspect`, { token: value }, { ca: serverCa, client, headers: { authorization: `Bearer ${bearer}` } });
      assert.equal(res.status, 401, res.text);
      assert.deepEqual(res.json, { error: 'invalid_token', error_description: description });
      assert.equal(res.headers['www-authenticate'], `Bearer realm="${server.config.issuer}", error="invalid_token", error_description="${description}"`);
    }
  });
});
