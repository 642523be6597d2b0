// Behind a TLS-terminating proxy (issue 6 §5): the client certificate comes in a header as a
// URL-encoded PEM, believed only from a configured proxy address; from anywhere else it is
// ignored and logged. Garbage in the header is invalid_client, never a 500.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { makeClient } from '../support/fixtures.ts';
import { addCertificate, describeX509, parseCertificatePem, removeCertificate } from '../../src/store/certificates.ts';
import { waitFor } from '../support/wait.ts';
import { rawRequest } from '../support/http.ts';
import { assertInvalidClient, createPki, issue, post, type Issued, type Pki } from './support.ts';

const HEADER = 'x-client-cert';

describe('client certificate from a proxy header', () => {
  let database: TestDatabase;
  let trusting: TestServer; // trusts 127.0.0.1
  let distrusting: TestServer; // trusts another address only
  let pki: Pki;
  let gateway: Issued;
  let other: Issued;
  let rogue: Issued;
  let expired: Issued;
  let selfSigned: Issued;

  before(async () => {
    pki = createPki();
    gateway = issue(pki, 'gateway', { subject: '/CN=gateway/O=Example', san: 'DNS:gw.example.com' });
    other = issue(pki, 'other', { subject: '/CN=other/O=Example', san: 'DNS:other.example.com' });
    rogue = issue(pki, 'rogue', { subject: '/CN=gateway/O=Example', san: 'DNS:gw.example.com', issuer: 'rogue-ca' });
    expired = issue(pki, 'expired', { subject: '/CN=gateway/O=Example', san: 'DNS:gw.example.com', startDate: '20200101000000Z', endDate: '20200201000000Z' });
    selfSigned = issue(pki, 'self', { subject: '/CN=self', issuer: 'self' });
    database = await createTestDatabase();
    trusting = await startTestServer(database.url, { clientCaFile: pki.caFile, clientCertHeader: HEADER, trustedProxies: ['127.0.0.1'] });
    distrusting = await startTestServer(database.url, { clientCaFile: pki.caFile, clientCertHeader: HEADER, trustedProxies: ['10.9.8.7'] });
  });

  after(async () => {
    await trusting?.stop();
    await distrusting?.stop();
    await database?.drop();
  });

  const encoded = (pem: string) => encodeURIComponent(pem);
  const withHeader = (value: string | undefined) => (value === undefined ? {} : { headers: { [HEADER]: value } });
  const token = (server: TestServer, clientId: string, header: string | undefined) =>
    post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read', client_id: clientId }, withHeader(header));
  const introspect = (server: TestServer, clientId: string, header: string | undefined, value: string) =>
    post(`${server.url}/introspect`, { token: value, client_id: clientId }, withHeader(header));

  it('tls_client_auth: a URL-encoded CA-signed certificate from the trusted proxy authenticates, and binds the token', async () => {
    const c = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSubjectDn: 'O=Example,CN=gateway' });
    const res = await token(trusting, c.id, encoded(gateway.cert));
    assert.equal(res.status, 200, res.text);
    const seen = await introspect(trusting, c.id, encoded(gateway.cert), res.json.access_token);
    assert.equal(seen.status, 200, seen.text);
    assert.equal(seen.json.active, true);
    assert.deepEqual(seen.json.cnf, { 'x5t#S256': gateway.thumbprint });
  });

  it('tls_client_auth by DNS SAN through the header', async () => {
    const c = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSanDns: 'other.example.com' });
    assert.equal((await token(trusting, c.id, encoded(other.cert))).status, 200);
    assertInvalidClient(await token(trusting, c.id, encoded(gateway.cert)), 'wrong SAN');
  });

  it('self_signed_tls_client_auth through the header, until the certificate is removed', async () => {
    const c = await makeClient(database.db, { authMethod: 'self_signed_tls_client_auth' });
    await addCertificate(database.db, c.id, 'self', parseCertificatePem(selfSigned.cert), 'bronze');
    const res = await token(trusting, c.id, encoded(selfSigned.cert));
    assert.equal(res.status, 200, res.text);
    const seen = await introspect(trusting, c.id, encoded(selfSigned.cert), res.json.access_token);
    assert.deepEqual(seen.json.cnf, { 'x5t#S256': selfSigned.thumbprint });
    assert.equal(seen.json.tier, 'bronze');
    // Removed with the store function, as an admin script would: seen once its change notice
    // arrives (README, Running several instances), so waited for, not assumed to be instant.
    await removeCertificate(database.db, c.id, 'self');
    const refused = await waitFor('the removed certificate to be refused', async () => {
      const r = await token(trusting, c.id, encoded(selfSigned.cert));
      return r.status === 200 ? undefined : r;
    });
    assertInvalidClient(refused, 'after removal');
  });

  it('an untrusted chain or an expired certificate in the header is invalid_client', async () => {
    const c = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSubjectDn: 'O=Example,CN=gateway' });
    assertInvalidClient(await token(trusting, c.id, encoded(rogue.cert)), 'rogue CA');
    assertInvalidClient(await token(trusting, c.id, encoded(expired.cert)), 'expired');
    assertInvalidClient(await token(trusting, c.id, encoded(selfSigned.cert)), 'self-signed');
    const s = await makeClient(database.db, { authMethod: 'self_signed_tls_client_auth' });
    const expiredSelf = issue(pki, 'expired-self', { subject: '/CN=expired-self', issuer: 'self', startDate: '20200101000000Z', endDate: '20200201000000Z' });
    await addCertificate(database.db, s.id, 'old', describeX509(new X509Certificate(expiredSelf.cert)));
    assertInvalidClient(await token(trusting, s.id, encoded(expiredSelf.cert)), 'expired self-signed');
  });

  it('through the header, only what the TLS handshake would take: no CA certificate, nothing meant only for servers', async () => {
    // The same CA, the registered subject: the handshake refuses each of these (the
    // certificate's purpose, RFC 5280 §4.2.1.12; a CA is not a client), so the header must too.
    const c = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSubjectDn: 'O=Example,CN=gateway' });
    const serverOnly = issue(pki, 'server-only', { subject: '/CN=gateway/O=Example', extensions: ['extendedKeyUsage=serverAuth'] });
    const subCa = issue(pki, 'sub-ca', { subject: '/CN=gateway/O=Example', extensions: ['basicConstraints=critical,CA:TRUE'] });
    const clientOnly = issue(pki, 'client-only', { subject: '/CN=gateway/O=Example', extensions: ['extendedKeyUsage=clientAuth'] });
    assertInvalidClient(await token(trusting, c.id, encoded(serverOnly.cert)), 'serverAuth only');
    assertInvalidClient(await token(trusting, c.id, encoded(subCa.cert)), 'a CA certificate');
    // The anchor's own certificate, for a client registered with the anchor's subject.
    const anchor = new X509Certificate(pki.caPem);
    const a = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSubjectDn: anchor.subject.split('\n').reverse().join(',') });
    assertInvalidClient(await token(trusting, a.id, encoded(pki.caPem)), 'the trust anchor itself');
    // Meant for client authentication: taken.
    const res = await token(trusting, c.id, encoded(clientOnly.cert));
    assert.equal(res.status, 200, res.text);
  });

  it('no header: invalid_client', async () => {
    const c = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSubjectDn: 'O=Example,CN=gateway' });
    assertInvalidClient(await token(trusting, c.id, undefined), 'token');
    assertInvalidClient(await introspect(trusting, c.id, undefined, 'x'), 'introspect');
  });

  it('garbage in the header is invalid_client, never a 500', async () => {
    const c = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSubjectDn: 'O=Example,CN=gateway' });
    const s = await makeClient(database.db, { authMethod: 'self_signed_tls_client_auth' });
    await addCertificate(database.db, s.id, 'self', parseCertificatePem(issue(pki, 'self-g', { subject: '/CN=self-g', issuer: 'self' }).cert));
    const garbage = [
      'not a certificate',
      '%E0%A4%A', // malformed percent-encoding
      '%00%01%02',
      encoded('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'),
      encoded(gateway.key),
      gateway.cert.replace(/\n/g, ' '), // not URL-encoded: spaces kept, still not a parsable PEM
      encoded(gateway.cert).slice(0, 200),
      Buffer.from(gateway.cert).toString('base64'),
      'x'.repeat(6000),
    ];
    for (const value of garbage) {
      for (const [id, what] of [[c.id, 'tls_client_auth'], [s.id, 'self_signed']] as const) {
        const res = await token(trusting, id, value);
        assert.notEqual(res.status, 500, `${what} ${value.slice(0, 40)}: ${res.text}`);
        assertInvalidClient(res, `${what} ${value.slice(0, 40)}`);
        const i = await introspect(trusting, id, value, 'x');
        assert.notEqual(i.status, 500, i.text);
        assertInvalidClient(i, `introspect ${what} ${value.slice(0, 40)}`);
      }
    }
    assert.ok(trusting.logs.some((l) => l.includes('mtls.bad_header')), 'bad header logged');
  });

  it('a header sent twice (a proxy that adds its own after the caller\'s) is ignored, whichever comes first, and logged', async () => {
    const c = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSubjectDn: 'O=Example,CN=gateway' });
    const form = `grant_type=client_credentials&scope=read&client_id=${encodeURIComponent(c.id)}`;
    const send = (headers: [string, string][]) => rawRequest(trusting.url, {
      method: 'POST', target: '/token', headers: [['Content-Type', 'application/x-www-form-urlencoded'], ...headers], body: form,
    });
    // The caller's own header (the registered subject's certificate, which is public) first,
    // the proxy's (another certificate) after it; and the other way round.
    for (const [first, second] of [[gateway.cert, other.cert], [other.cert, gateway.cert], [gateway.cert, gateway.cert]]) {
      const mark = trusting.logMark();
      assertInvalidClient(await send([[HEADER, encoded(first!)], [HEADER, encoded(second!)]]), 'two headers');
      assert.ok(trusting.logsSince(mark).some((l) => l.event === 'mtls.repeated_header'), 'logged');
    }
    // One header holding two certificates, as a proxy that joins them would send.
    const mark = trusting.logMark();
    assertInvalidClient(await token(trusting, c.id, `${encoded(gateway.cert)}, ${encoded(other.cert)}`), 'two certificates in one header');
    assertInvalidClient(await token(trusting, c.id, encoded(gateway.cert + other.cert)), 'a bundle in one header');
    // The caller's copy relabelled as OpenSSL also reads it, before the proxy's, in one value
    // or two: no label but CERTIFICATE, and never a second block.
    const relabel = (pem: string, label: string) => pem.replace(/(BEGIN|END) CERTIFICATE/g, `$1 ${label}`);
    for (const label of ['X509 CERTIFICATE', 'TRUSTED CERTIFICATE']) {
      assertInvalidClient(await token(trusting, c.id, `${encoded(relabel(gateway.cert, label))}, ${encoded(other.cert)}`), `${label} first`);
      assertInvalidClient(await token(trusting, c.id, encoded(relabel(gateway.cert, label) + other.cert)), `${label} glued`);
      assertInvalidClient(await token(trusting, c.id, encoded(relabel(gateway.cert, label))), `${label} alone`);
    }
    assert.equal(trusting.logsSince(mark).filter((l) => l.event === 'mtls.repeated_header').length, 6);
    // The certificate alone still authenticates.
    assert.equal((await send([[HEADER, encoded(gateway.cert)]])).status, 200);
  });

  it('a header from an address that is not a trusted proxy is ignored, and logged', async () => {
    const c = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSubjectDn: 'O=Example,CN=gateway' });
    const s = await makeClient(database.db, { authMethod: 'self_signed_tls_client_auth' });
    const cert = issue(pki, 'self-u', { subject: '/CN=self-u', issuer: 'self' });
    await addCertificate(database.db, s.id, 'self', parseCertificatePem(cert.cert));
    // The same requests work from a trusted address …
    assert.equal((await token(trusting, c.id, encoded(gateway.cert))).status, 200);
    assert.equal((await token(trusting, s.id, encoded(cert.cert))).status, 200);
    // … and not from an untrusted one.
    const before = distrusting.logs.length;
    assertInvalidClient(await token(distrusting, c.id, encoded(gateway.cert)), 'tls_client_auth');
    assertInvalidClient(await token(distrusting, s.id, encoded(cert.cert)), 'self_signed');
    assertInvalidClient(await introspect(distrusting, s.id, encoded(cert.cert), 'x'), 'introspect');
    const logged = distrusting.logs.slice(before).filter((l) => l.includes('mtls.untrusted_header'));
    assert.ok(logged.length >= 1, distrusting.logs.slice(before).join('\n'));
    assert.match(logged[0]!, /127\.0\.0\.1/);
    // The header's value is not written to the log.
    assert.ok(!distrusting.logs.some((l) => l.includes(encoded(cert.cert).slice(40, 120))), 'certificate not logged');
  });

  it('a secret-based client is unaffected by the header, trusted or not', async () => {
    const c = await makeClient(database.db);
    for (const server of [trusting, distrusting]) {
      const res = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read', client_id: c.id, client_secret: c.secret },
        withHeader(encoded(gateway.cert)));
      assert.equal(res.status, 200, res.text);
    }
  });
});
