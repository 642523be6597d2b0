// RFC 8705 client authentication over real TLS: self_signed_tls_client_auth and tls_client_auth
// at /token, /introspect and /revoke, certificate-bound tokens (cnf x5t#S256, tier), and every
// bad input of issue 6 answered with invalid_client, never a 500.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import type { TestServer } from '../support/server.ts';
import { basicHeader } from '../support/http.ts';
import { makeClient, makeUser } from '../support/fixtures.ts';
import { addCertificate, describeX509, parseCertificatePem, removeCertificate } from '../../src/store/certificates.ts';
import { X509Certificate } from 'node:crypto';
import { sql } from 'kysely';
import { syncEveryInstance, waitFor } from '../support/wait.ts';
import { assertInvalidClient, createPki, get, issue, post, startTlsServer, thumbprintOf, type Issued, type Pki, type TlsReply } from './support.ts';

describe('mutual TLS client authentication', () => {
  let database: TestDatabase;
  let server: TestServer;
  let serverCa: string;
  let pki: Pki;
  // Certificates
  let gateway: Issued; // CA-signed, O=Example,CN=gateway, DNS:gw.example.com
  let other: Issued; // CA-signed, O=Example,CN=other, DNS:other.example.com
  let selfA: Issued;
  let selfB: Issued;
  let rogue: Issued; // same subject and SAN as gateway, signed by an untrusted CA
  let expiredCaSigned: Issued;
  let expiredSelf: Issued;

  before(async () => {
    pki = createPki();
    gateway = issue(pki, 'gateway', { subject: '/CN=gateway/O=Example', san: 'DNS:gw.example.com' });
    other = issue(pki, 'other', { subject: '/CN=other/O=Example', san: 'DNS:other.example.com' });
    selfA = issue(pki, 'self-a', { subject: '/CN=self-a', issuer: 'self' });
    selfB = issue(pki, 'self-b', { subject: '/CN=self-b', issuer: 'self' });
    rogue = issue(pki, 'rogue', { subject: '/CN=gateway/O=Example', san: 'DNS:gw.example.com', issuer: 'rogue-ca' });
    expiredCaSigned = issue(pki, 'expired', { subject: '/CN=gateway/O=Example', san: 'DNS:gw.example.com', startDate: '20200101000000Z', endDate: '20200201000000Z' });
    expiredSelf = issue(pki, 'expired-self', { subject: '/CN=expired-self', issuer: 'self', startDate: '20200101000000Z', endDate: '20200201000000Z' });
    database = await createTestDatabase();
    ({ server, serverCa } = await startTlsServer(database.url, pki));
  });

  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const as = (c: Issued | undefined) => ({ ca: serverCa, client: c ? { cert: c.cert, key: c.key } : undefined });
  const token = (clientId: string, cert: Issued | undefined, extra: Record<string, string> = {}) =>
    post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read', client_id: clientId, ...extra }, as(cert));
  const introspect = (clientId: string, cert: Issued | undefined, value: string) =>
    post(`${server.url}/introspect`, { token: value, client_id: clientId }, as(cert));
  const revoke = (clientId: string, cert: Issued | undefined, value: string) =>
    post(`${server.url}/revoke`, { token: value, client_id: clientId }, as(cert));

  function assertOk(res: TlsReply, what: string): void {
    assert.equal(res.status, 200, `${what}: ${res.text}`);
  }

  async function selfSignedClient(cert?: Issued, tier?: string): Promise<string> {
    const c = await makeClient(database.db, { authMethod: 'self_signed_tls_client_auth' });
    if (cert) await addCertificate(database.db, c.id, 'primary', parseCertificatePem(cert.cert), tier);
    return c.id;
  }

  describe('self_signed_tls_client_auth', () => {
    it('a registered certificate gets a token bound to its thumbprint, with the tier in introspection', async () => {
      const id = await selfSignedClient(selfA, 'gold');
      const res = await token(id, selfA);
      assertOk(res, 'token');
      assert.equal(typeof res.json.access_token, 'string');
      assert.equal(res.json.token_type, 'Bearer');
      const seen = await introspect(id, selfA, res.json.access_token);
      assertOk(seen, 'introspect');
      assert.equal(seen.json.active, true);
      assert.equal(seen.json.client_id, id);
      assert.deepEqual(seen.json.cnf, { 'x5t#S256': selfA.thumbprint });
      assert.equal(seen.json.tier, 'gold');
    });

    it('no tier in introspection when the certificate has none', async () => {
      const id = await selfSignedClient(selfB);
      const res = await token(id, selfB);
      assertOk(res, 'token');
      const seen = await introspect(id, selfB, res.json.access_token);
      assert.equal(seen.json.active, true);
      assert.deepEqual(seen.json.cnf, { 'x5t#S256': selfB.thumbprint });
      assert.ok(!('tier' in seen.json), seen.text);
      await removeCertificate(database.db, id, 'primary');
    });

    it('the password grant binds the refresh token to the certificate too: another certificate of the same client cannot refresh it', async () => {
      const first = issue(pki, 'pw-first', { subject: '/CN=pw-first', issuer: 'self' });
      const second = issue(pki, 'pw-second', { subject: '/CN=pw-second', issuer: 'self' });
      const c = await makeClient(database.db, { authMethod: 'self_signed_tls_client_auth', grantTypes: ['password', 'refresh_token'], scope: ['read'] });
      await addCertificate(database.db, c.id, 'first', parseCertificatePem(first.cert));
      await addCertificate(database.db, c.id, 'second', parseCertificatePem(second.cert));
      const user = await makeUser(database.db, 'mtls-password-user');
      const signIn = await post(`${server.url}/token`, { grant_type: 'password', client_id: c.id, username: user.username, password: user.password, scope: 'read' }, as(first));
      assertOk(signIn, 'password grant');
      const bound = { 'x5t#S256': thumbprintOf(first.cert) };
      for (const token of [signIn.json.access_token, signIn.json.refresh_token]) {
        const seen = await introspect(c.id, first, token);
        assert.equal(seen.json.active, true, seen.text);
        assert.deepEqual(seen.json.cnf, bound);
      }
      // The client authenticates with its other certificate, but the token is not bound to it.
      const refresh = (cert: Issued) => post(`${server.url}/token`, { grant_type: 'refresh_token', client_id: c.id, refresh_token: signIn.json.refresh_token }, as(cert));
      const elsewhere = await refresh(second);
      assert.equal(elsewhere.status, 400, elsewhere.text);
      assert.deepEqual(elsewhere.json, { error: 'invalid_grant', error_description: 'grant request is invalid' });
      // Refused before it was spent: with its own certificate it still refreshes, and stays bound.
      const rotated = await refresh(first);
      assertOk(rotated, 'refresh with the bound certificate');
      const seen = await introspect(c.id, first, rotated.json.refresh_token);
      assert.deepEqual(seen.json.cnf, bound);
    });

    it('revocation with the certificate', async () => {
      const id = await selfSignedClient(issue(pki, 'self-rev', { subject: '/CN=self-rev', issuer: 'self' }));
      const cert = issue(pki, 'self-rev2', { subject: '/CN=self-rev2', issuer: 'self' });
      await addCertificate(database.db, id, 'second', parseCertificatePem(cert.cert));
      const res = await token(id, cert);
      assertOk(res, 'token');
      assertOk(await revoke(id, cert, res.json.access_token), 'revoke');
      const seen = await introspect(id, cert, res.json.access_token);
      assert.deepEqual(seen.json, { active: false });
    });

    it('no certificate at all: invalid_client at /token, /introspect and /revoke', async () => {
      const id = await selfSignedClient(issue(pki, 'self-nocert', { subject: '/CN=self-nocert', issuer: 'self' }));
      assertInvalidClient(await token(id, undefined), 'token');
      assertInvalidClient(await introspect(id, undefined, 'whatever'), 'introspect');
      assertInvalidClient(await revoke(id, undefined, 'whatever'), 'revoke');
    });

    it('an unregistered certificate: invalid_client', async () => {
      const id = await selfSignedClient(issue(pki, 'self-reg', { subject: '/CN=self-reg', issuer: 'self' }));
      const stranger = issue(pki, 'self-stranger', { subject: '/CN=self-reg', issuer: 'self' });
      assertInvalidClient(await token(id, stranger), 'token');
      assertInvalidClient(await introspect(id, stranger, 'whatever'), 'introspect');
    });

    it('a certificate registered to client A never authenticates client B', async () => {
      const certA = issue(pki, 'self-owner-a', { subject: '/CN=owner', issuer: 'self' });
      const certB = issue(pki, 'self-owner-b', { subject: '/CN=owner', issuer: 'self' });
      const a = await selfSignedClient(certA);
      const b = await selfSignedClient(certB);
      assertOk(await token(a, certA), 'A with its own');
      assertOk(await token(b, certB), 'B with its own');
      assertInvalidClient(await token(b, certA), 'B with A\'s certificate');
      assertInvalidClient(await token(a, certB), 'A with B\'s certificate');
      const tokenOfA = (await token(a, certA)).json.access_token as string;
      assertInvalidClient(await introspect(b, certA, tokenOfA), 'introspect as B with A\'s certificate');
      assertInvalidClient(await revoke(b, certA, tokenOfA), 'revoke as B with A\'s certificate');
      assert.equal((await introspect(a, certA, tokenOfA)).json.active, true, 'the token stays active');
    });

    it('a certificate removed with plain SQL fails once its change notice has arrived', async () => {
      const cert = issue(pki, 'self-removed', { subject: '/CN=self-removed', issuer: 'self' });
      const id = await selfSignedClient(cert);
      const first = await token(id, cert);
      assertOk(first, 'before removal');
      // The store function, as an admin script would: the README promises "as soon as its notice
      // arrives", not the next request (that is keymgr's and the API's promise, cli.test.ts), so
      // the first refusal is waited for; from then on every endpoint refuses it.
      assert.ok(await removeCertificate(database.db, id, 'primary'));
      const refused = await waitFor('the removed certificate to be refused', async () => {
        const r = await token(id, cert);
        return r.status === 200 ? undefined : r;
      });
      assertInvalidClient(refused, 'token after removal');
      assertInvalidClient(await introspect(id, cert, first.json.access_token), 'introspect after removal');
      assertInvalidClient(await revoke(id, cert, first.json.access_token), 'revoke after removal');
    });

    it('while its client is cached, a certificate is refused from its notAfter on, and one registered before it is valid works from its notBefore on', async () => {
      // openssl's dates, a few seconds ahead (whole seconds, as certificates hold them): one
      // certificate ends and another begins at that instant.
      const boundary = new Date(Math.ceil(Date.now() / 1000) * 1000 + 5000);
      const stamp = boundary.toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z');
      const current = issue(pki, 'self-current', { subject: '/CN=self-current', issuer: 'self' });
      const ending = issue(pki, 'self-ending', { subject: '/CN=self-ending', issuer: 'self', startDate: '20200101000000Z', endDate: stamp });
      const upcoming = issue(pki, 'self-upcoming', { subject: '/CN=self-upcoming', issuer: 'self', startDate: stamp, endDate: '20991231000000Z' });
      // Two clients: each one's cache entry must end at its own certificate's date.
      const endingOf = await selfSignedClient(current);
      const upcomingOf = await selfSignedClient(issue(pki, 'self-current-2', { subject: '/CN=self-current-2', issuer: 'self' }));
      // Upload refuses certificates expired or not valid yet (cli.test.ts); put them in as an admin script could.
      await addCertificate(database.db, endingOf, 'ending', describeX509(new X509Certificate(ending.cert)));
      await addCertificate(database.db, upcomingOf, 'upcoming', describeX509(new X509Certificate(upcoming.cert)));
      // Both clients are now cached: one with the ending certificate, the other without the upcoming one.
      assertOk(await token(endingOf, current), 'the current one');
      assertInvalidClient(await token(upcomingOf, current), 'a certificate of the other client');
      await waitFor('the boundary to pass', async () => Date.now() >= boundary.getTime() + 1000);
      assertInvalidClient(await token(endingOf, ending), 'after its notAfter');
      assertOk(await token(upcomingOf, upcoming), 'after its notBefore');
    });

    it('an expired certificate (registered before it expired) fails', async () => {
      const id = await selfSignedClient();
      // Upload refuses it (cli.test.ts); put it in as if it had been registered while valid.
      await addCertificate(database.db, id, 'old', describeX509(new X509Certificate(expiredSelf.cert)));
      assertInvalidClient(await token(id, expiredSelf), 'token');
      assertInvalidClient(await introspect(id, expiredSelf, 'whatever'), 'introspect');
    });

    it("the schema refuses certificate dates of ±infinity, which no certificate has (db/README.md, 0016), and the client keeps working", async () => {
      // pg hands ±infinity over as a number, not a Date: stored, such a row made every
      // certificate of its client a 500 (the client cache), the listing and the expiry metric too.
      const current = issue(pki, 'self-beside-infinite', { subject: '/CN=self-beside-infinite', issuer: 'self' });
      const other = issue(pki, 'self-infinite', { subject: '/CN=self-infinite', issuer: 'self' });
      const id = await selfSignedClient(current);
      await addCertificate(database.db, id, 'other', describeX509(new X509Certificate(other.cert)));
      for (const set of ["not_before = 'infinity'", "not_after = 'infinity'", "not_before = '-infinity'", "not_after = '-infinity'"]) {
        await assert.rejects(
          sql`update client_certificates set ${sql.raw(set)} where client_id = ${id} and alias = 'other'`.execute(database.db),
          (err: { code?: string; constraint?: string }) => err.code === '23514' && err.constraint === 'client_certificates_dates_finite',
          set,
        );
      }
      assertOk(await token(id, current), 'the current certificate');
      assertOk(await token(id, other), 'the other certificate, its dates unchanged');
    });

    it('the schema refuses certificate dates after the last instant a JavaScript Date holds (db/README.md, 0017): a cached client stops taking a certificate at its notAfter', async () => {
      // pg hands an instant after 275760-09-13 over as an invalid Date: stored on one certificate
      // of a client, it made the client's cache entry last until the next change notice, and the
      // client's other certificates went on authenticating past their notAfter.
      const boundary = new Date(Math.ceil(Date.now() / 1000) * 1000 + 8000);
      const stamp = boundary.toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z');
      const current = issue(pki, 'self-far-future', { subject: '/CN=self-far-future', issuer: 'self' });
      const ending = issue(pki, 'self-ending-beside', { subject: '/CN=self-ending-beside', issuer: 'self', startDate: '20200101000000Z', endDate: stamp });
      const id = await selfSignedClient(current);
      await addCertificate(database.db, id, 'ending', describeX509(new X509Certificate(ending.cert)));
      const refused = await sql`update client_certificates set not_after = '294276-12-31 23:59:59+00' where client_id = ${id} and alias = 'primary'`
        .execute(database.db).then(() => 'accepted', (err: { code?: string; constraint?: string }) => `${err.code} ${err.constraint}`);
      // Every notice handled: the next read of the client is the one its cache entry keeps.
      await syncEveryInstance(database.url);
      assertOk(await token(id, ending), 'before its notAfter');
      await waitFor('the boundary to pass', async () => Date.now() >= boundary.getTime() + 1000);
      assertInvalidClient(await token(id, ending), 'after its notAfter');
      assertOk(await token(id, current), 'the certificate whose date the update would have moved');
      assert.equal(refused, '23514 client_certificates_dates_in_range');
    });

    it('a certificate with a wrong client_id (unknown client) is invalid_client', async () => {
      assertInvalidClient(await token('no-such-client', selfA), 'token');
      assertInvalidClient(await introspect('no-such-client', selfA, 'whatever'), 'introspect');
    });
  });

  describe('tls_client_auth', () => {
    it('by subject DN: a CA-signed certificate with that subject gets a bound token', async () => {
      const c = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSubjectDn: 'O=Example,CN=gateway' });
      const res = await token(c.id, gateway);
      assertOk(res, 'token');
      const seen = await introspect(c.id, gateway, res.json.access_token);
      assertOk(seen, 'introspect');
      assert.equal(seen.json.active, true);
      assert.deepEqual(seen.json.cnf, { 'x5t#S256': gateway.thumbprint });
      assertOk(await revoke(c.id, gateway, res.json.access_token), 'revoke');
      assert.deepEqual((await introspect(c.id, gateway, res.json.access_token)).json, { active: false });
    });

    it('by DNS SAN', async () => {
      const c = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSanDns: 'gw.example.com' });
      const res = await token(c.id, gateway);
      assertOk(res, 'token');
      const seen = await introspect(c.id, gateway, res.json.access_token);
      assert.deepEqual(seen.json.cnf, { 'x5t#S256': gateway.thumbprint });
    });

    it('a JWT access token carries cnf x5t#S256 (RFC 8705 §3.1)', async () => {
      const c = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSubjectDn: 'O=Example,CN=gateway', tokenFormat: 'jwt' });
      const res = await token(c.id, gateway);
      assertOk(res, 'token');
      const [, payload] = String(res.json.access_token).split('.');
      const claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString('utf8'));
      assert.deepEqual(claims.cnf, { 'x5t#S256': gateway.thumbprint });
      const seen = await introspect(c.id, gateway, res.json.access_token);
      assert.deepEqual(seen.json.cnf, { 'x5t#S256': gateway.thumbprint });
    });

    it('tier of a registered certificate is returned for a tls_client_auth token too', async () => {
      const c = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSanDns: 'other.example.com' });
      await addCertificate(database.db, c.id, 'other', parseCertificatePem(other.cert), 'silver');
      const res = await token(c.id, other);
      assertOk(res, 'token');
      const seen = await introspect(c.id, other, res.json.access_token);
      assert.equal(seen.json.tier, 'silver', seen.text);
    });

    it('a wrong subject is invalid_client', async () => {
      const bySubject = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSubjectDn: 'O=Example,CN=gateway' });
      assertInvalidClient(await token(bySubject.id, other), 'subject DN: other certificate');
      assertInvalidClient(await introspect(bySubject.id, other, 'x'), 'subject DN: introspect');
      // Either order of writing a DN is accepted (test/mtls/subject-dn.test.ts); other names are not.
      const moved = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSubjectDn: 'CN=Example,O=gateway' });
      assertInvalidClient(await token(moved.id, gateway), 'values swapped between attributes');
      const bySan = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSanDns: 'gw.example.com' });
      assertInvalidClient(await token(bySan.id, other), 'SAN: other certificate');
      const partialSan = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSanDns: 'example.com' });
      assertInvalidClient(await token(partialSan.id, gateway), 'SAN: suffix only');
    });

    it('a certificate that matches client A does not authenticate client B', async () => {
      const a = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSubjectDn: 'O=Example,CN=gateway' });
      const b = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSubjectDn: 'O=Example,CN=other' });
      assertOk(await token(a.id, gateway), 'A');
      assertOk(await token(b.id, other), 'B');
      assertInvalidClient(await token(b.id, gateway), 'B with A\'s certificate');
      assertInvalidClient(await token(a.id, other), 'A with B\'s certificate');
    });

    it('an untrusted chain with the right subject and SAN is invalid_client', async () => {
      const bySubject = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSubjectDn: 'O=Example,CN=gateway' });
      const bySan = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSanDns: 'gw.example.com' });
      assertInvalidClient(await token(bySubject.id, rogue), 'subject');
      assertInvalidClient(await token(bySan.id, rogue), 'SAN');
      assertInvalidClient(await introspect(bySan.id, rogue, 'x'), 'introspect');
      assertInvalidClient(await revoke(bySan.id, rogue, 'x'), 'revoke');
      // A self-signed certificate with the subject is not CA-issued either.
      const selfGateway = issue(pki, 'self-gateway', { subject: '/CN=gateway/O=Example', san: 'DNS:gw.example.com', issuer: 'self' });
      assertInvalidClient(await token(bySubject.id, selfGateway), 'self-signed with the subject');
    });

    it('an expired CA-signed certificate is invalid_client', async () => {
      const c = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSubjectDn: 'O=Example,CN=gateway' });
      assertInvalidClient(await token(c.id, expiredCaSigned), 'token');
      assertInvalidClient(await introspect(c.id, expiredCaSigned, 'x'), 'introspect');
    });

    it('no certificate: invalid_client', async () => {
      const c = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSubjectDn: 'O=Example,CN=gateway' });
      assertInvalidClient(await token(c.id, undefined), 'token');
      assertInvalidClient(await introspect(c.id, undefined, 'x'), 'introspect');
      assertInvalidClient(await revoke(c.id, undefined, 'x'), 'revoke');
    });

    it('a secret presented for a certificate client does not authenticate it', async () => {
      const c = await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSubjectDn: 'O=Example,CN=gateway' });
      const res = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, {
        ...as(undefined), headers: { authorization: basicHeader(c.id, 'guessed') },
      });
      assertInvalidClient(res, 'basic');
    });
  });

  describe('secret-based clients on the same TLS port', () => {
    it('work without presenting a certificate, and their tokens are not bound', async () => {
      const c = await makeClient(database.db);
      const headers = { authorization: basicHeader(...c.basic) };
      const res = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { ca: serverCa, headers });
      assertOk(res, 'token');
      const seen = await post(`${server.url}/introspect`, { token: res.json.access_token }, { ca: serverCa, headers });
      assert.equal(seen.json.active, true);
      assert.ok(!('cnf' in seen.json), seen.text);
      assertOk(await post(`${server.url}/revoke`, { token: res.json.access_token }, { ca: serverCa, headers }), 'revoke');
    });

    it('still work when they happen to present a certificate', async () => {
      const c = await makeClient(database.db);
      const headers = { authorization: basicHeader(...c.basic) };
      const res = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { ...as(gateway), headers });
      assertOk(res, 'token');
      const seen = await post(`${server.url}/introspect`, { token: res.json.access_token }, { ...as(gateway), headers });
      assert.equal(seen.json.active, true);
    });

    it('a client_id without a secret for a secret-based client is invalid_client, even with a certificate', async () => {
      const c = await makeClient(database.db);
      assertInvalidClient(await token(c.id, gateway), 'token');
      assertInvalidClient(await introspect(c.id, gateway, 'x'), 'introspect');
    });
  });

  describe('discovery', () => {
    it('advertises certificate-bound tokens, the mTLS auth methods and the endpoint aliases', async () => {
      const res = await get(`${server.url}/.well-known/oauth-authorization-server`, { ca: serverCa });
      assertOk(res, 'metadata');
      const m = res.json;
      assert.equal(m.tls_client_certificate_bound_access_tokens, true);
      assert.ok(m.token_endpoint_auth_methods_supported.includes('tls_client_auth'), res.text);
      assert.ok(m.token_endpoint_auth_methods_supported.includes('self_signed_tls_client_auth'), res.text);
      const issuer = server.config.issuer.replace(/\/$/, '');
      assert.equal(typeof m.mtls_endpoint_aliases, 'object', res.text);
      assert.equal(m.mtls_endpoint_aliases.token_endpoint, `${issuer}/token`);
      for (const key of ['introspection_endpoint_auth_methods_supported', 'revocation_endpoint_auth_methods_supported']) {
        for (const method of ['tls_client_auth', 'self_signed_tls_client_auth']) assert.ok(m[key].includes(method), `${key} lists ${method}`);
      }
      assert.equal(m.mtls_endpoint_aliases.introspection_endpoint, `${issuer}/introspect`);
      assert.equal(m.mtls_endpoint_aliases.revocation_endpoint, `${issuer}/revoke`);
    });
  });
});
