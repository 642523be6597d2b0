// tls_client_auth by subject DN, with real certificates over real TLS: the registered DN
// matches the certificate's subject however people write the name — RFC 4514 order (what
// `openssl x509 -nameopt RFC2253` prints), the reverse order of openssl's one-line output and
// of the README's example, openssl's `/O=…/CN=…` form, long attribute names, other case and
// spacing — and never a different name: another value, an extra or missing RDN, values
// swapped between attributes, a multi-valued RDN, a `/…` form in the wrong order.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import type { TestServer } from '../support/server.ts';
import { runKeymgr } from '../support/cli.ts';
import { makeClient } from '../support/fixtures.ts';
import { createPki, issue, post, rfc2253Subject, startTlsServer, type Issued, type Pki } from './support.ts';

describe('tls_client_auth: the subject DN is compared as a name', () => {
  let database: TestDatabase;
  let server: TestServer;
  let serverCa: string;
  let pki: Pki;
  let gateway: Issued; // /O=Example/CN=gateway
  let acme: Issued; // /C=DE/O=Acme, Inc./CN=api gateway
  let swapped: Issued; // /O=gateway/CN=Example
  let longer: Issued; // /C=DE/O=Example/CN=gateway
  let withUnit: Issued; // /O=Example/OU=api/CN=gateway

  before(async () => {
    pki = createPki();
    gateway = issue(pki, 'dn-gateway', { subject: '/O=Example/CN=gateway' });
    acme = issue(pki, 'dn-acme', { subject: '/C=DE/O=Acme\\, Inc./CN=api gateway' });
    swapped = issue(pki, 'dn-swapped', { subject: '/O=gateway/CN=Example' });
    longer = issue(pki, 'dn-longer', { subject: '/C=DE/O=Example/CN=gateway' });
    withUnit = issue(pki, 'dn-unit', { subject: '/O=Example/OU=api/CN=gateway' });
    database = await createTestDatabase();
    ({ server, serverCa } = await startTlsServer(database.url, pki));
  });

  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const token = (clientId: string, cert: Issued) =>
    post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read', client_id: clientId }, { ca: serverCa, client: { cert: cert.cert, key: cert.key } });

  async function registered(dn: string): Promise<string> {
    return (await makeClient(database.db, { authMethod: 'tls_client_auth', tlsSubjectDn: dn })).id;
  }

  async function assertAccepted(dn: string, cert: Issued): Promise<void> {
    const res = await token(await registered(dn), cert);
    assert.equal(res.status, 200, `${dn}: ${res.text}`);
    assert.equal(res.json.token_type, 'Bearer', dn);
  }

  async function assertRefused(dn: string, cert: Issued): Promise<void> {
    const res = await token(await registered(dn), cert);
    assert.equal(res.status, 401, `${dn}: ${res.text}`);
    assert.equal(res.json.error, 'invalid_client', dn);
  }

  /** `openssl x509 -noout -subject` without -nameopt: openssl's one-line form, most significant first. */
  function opensslOneLine(cert: Issued): string {
    return execFileSync('openssl', ['x509', '-in', cert.certFile, '-noout', '-subject'], { encoding: 'utf8' }).trim().replace(/^subject=/, '');
  }

  it('openssl prints the two orders this test relies on', () => {
    assert.equal(rfc2253Subject(pki, gateway.certFile), 'CN=gateway,O=Example');
    assert.equal(opensslOneLine(gateway), 'O = Example, CN = gateway');
  });

  it('RFC 4514 order, as openssl -nameopt RFC2253 prints it', async () => {
    await assertAccepted(rfc2253Subject(pki, gateway.certFile), gateway);
    await assertAccepted(rfc2253Subject(pki, acme.certFile), acme);
  });

  it('the reverse order: the README example, and openssl\'s one-line output', async () => {
    await assertAccepted('O=Example,CN=gateway', gateway);
    await assertAccepted(opensslOneLine(gateway), gateway);
    await assertAccepted(opensslOneLine(acme), acme);
    await assertAccepted('C=DE, O=Acme\\, Inc., CN=api gateway', acme);
  });

  it('openssl\'s -subj form, in its own order', async () => {
    await assertAccepted('/O=Example/CN=gateway', gateway);
    await assertAccepted('/C=DE/O=Acme, Inc./CN=api gateway', acme);
  });

  it('attribute names of any case, long names and OIDs; spaces around separators; escapes and quotes', async () => {
    await assertAccepted('cn=gateway, o=Example', gateway);
    await assertAccepted('commonName=gateway;organizationName=Example', gateway);
    await assertAccepted('2.5.4.3=gateway,2.5.4.10=Example', gateway);
    await assertAccepted('CN = api gateway , O = "Acme, Inc." , C = DE', acme);
    await assertAccepted('CN=api\\20gateway,O=Acme\\2C Inc.,C=DE', acme);
  });

  it('values are compared as X.520 does: case and repeated spaces do not count', async () => {
    await assertAccepted('CN=GATEWAY,O=example', gateway);
    await assertAccepted('CN=api   gateway,O=Acme\\, Inc.,C=de', acme);
  });

  it('a look-alike is a different value: fullwidth letters, a trailing no-break space or BOM, the Kelvin sign', async () => {
    // The same CA, issued on request: a CA that lets a requester choose the characters of a
    // name must not be able to issue another client's identity.
    const fullwidth = issue(pki, 'dn-fullwidth', { subject: '/O=Example/CN=\uFF47\uFF41\uFF54\uFF45\uFF57\uFF41\uFF59' });
    const noBreak = issue(pki, 'dn-nbsp', { subject: '/O=Example/CN=gateway\u00A0' });
    const bom = issue(pki, 'dn-bom', { subject: '/O=Example\uFEFF/CN=gateway' });
    const kelvin = issue(pki, 'dn-kelvin', { subject: '/O=Example/CN=\u212Aey' });
    await assertRefused('CN=gateway,O=Example', fullwidth);
    await assertRefused('CN=gateway,O=Example', noBreak);
    await assertRefused('CN=gateway,O=Example', bom);
    await assertRefused('CN=key,O=Example', kelvin);
    // Each is its own name, written as it is.
    await assertAccepted('CN=\uFF47\uFF41\uFF54\uFF45\uFF57\uFF41\uFF59,O=Example', fullwidth);
  });

  it('a different value is refused', async () => {
    await assertRefused('CN=gateway2,O=Example', gateway);
    await assertRefused('CN=gateway,O=Example Ltd', gateway);
    await assertRefused('CN=api gateway,O=Acme Inc.,C=DE', acme);
  });

  it('an RDN more or less is refused, in either order', async () => {
    await assertRefused('CN=gateway,O=Example,C=DE', gateway);
    await assertRefused('C=DE,O=Example,CN=gateway', gateway);
    await assertRefused('CN=gateway', gateway);
    await assertRefused('CN=gateway,O=Example', longer);
    await assertRefused('O=Example,CN=gateway', longer);
    await assertRefused('CN=gateway,O=Example', withUnit);
    await assertRefused('/O=Example/CN=gateway', withUnit);
  });

  it('values swapped between attributes, or moved, are refused', async () => {
    await assertRefused('CN=gateway,O=Example', swapped);
    await assertRefused('O=Example,CN=gateway', swapped);
    await assertRefused('CN=Example,O=gateway', gateway);
    await assertRefused('CN=gateway,C=DE,O=Example', longer);
    await assertRefused('CN=gateway+O=Example', gateway);
  });

  it('the -subj form is read in its own order only', async () => {
    await assertRefused('/CN=gateway/O=Example', gateway);
  });

  it('a DN that does not parse is refused at registration, with the flags named', async () => {
    const env = { DATABASE_URL: database.url, KM_LOG_LEVEL: 'silent' };
    const r = await runKeymgr(['client', 'create', '--name', 'bad-dn', '--auth-method', 'tls_client_auth', '--tls-subject-dn', 'gateway'], env);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr, 'keymgr: the subject DN "gateway" does not parse: "gateway" is not of the form type=value (write it as CN=gateway,O=Example or /O=Example/CN=gateway)\n');
    // A BER-encoded value (#…) would be compared as its hex, not as the text it encodes.
    const ber = await runKeymgr(['client', 'create', '--name', 'ber-dn', '--auth-method', 'tls_client_auth', '--tls-subject-dn', 'CN=#0c0767617465776179,O=Example'], env);
    assert.equal(ber.code, 1, ber.stderr);
    assert.equal(ber.stderr, 'keymgr: the subject DN "CN=#0c0767617465776179,O=Example" does not parse: the value of cn is BER-encoded (#…): write it as text, or escape a leading # as \\# (write it as CN=gateway,O=Example or /O=Example/CN=gateway)\n');
  });
});
