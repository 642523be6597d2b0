// keymgr cert … and client create --auth-method …tls…, against two TLS instances sharing one
// database: a certificate added with the CLI authenticates on the next request, on both, with
// no restart; a removed one fails on the next request, on both. Bad uploads are refused clearly.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import type { TestServer } from '../support/server.ts';
import { runKeymgr } from '../support/cli.ts';
import { ensureScopes } from '../support/fixtures.ts';
import { assertInvalidClient, createPki, issue, post, rfc2253Subject, startTlsServer, type Issued, type Pki } from './support.ts';

describe('keymgr cert and mTLS clients, on two instances', () => {
  let database: TestDatabase;
  let servers: TestServer[] = [];
  let serverCas: string[] = [];
  let pki: Pki;
  let env: Record<string, string>;
  const keymgr = (...args: string[]) => runKeymgr(args, env);

  before(async () => {
    pki = createPki();
    database = await createTestDatabase();
    await ensureScopes(database.db, ['read']);
    for (let i = 0; i < 2; i++) {
      const { server, serverCa } = await startTlsServer(database.url, pki);
      servers.push(server);
      serverCas.push(serverCa);
    }
    env = { DATABASE_URL: database.url, KM_KEYS_DIR: servers[0]!.keysDir, KM_LOG_LEVEL: 'silent' };
  });

  after(async () => {
    for (const s of servers) await s.stop();
    await database?.drop();
  });

  const token = (i: number, clientId: string, cert: Issued) =>
    post(`${servers[i]!.url}/token`, { grant_type: 'client_credentials', scope: 'read', client_id: clientId }, { ca: serverCas[i], client: { cert: cert.cert, key: cert.key } });
  const introspect = (i: number, clientId: string, cert: Issued, value: string) =>
    post(`${servers[i]!.url}/introspect`, { token: value, client_id: clientId }, { ca: serverCas[i], client: { cert: cert.cert, key: cert.key } });

  async function createClient(...args: string[]): Promise<string> {
    const r = await keymgr('client', 'create', '--name', 'mtls', '--scope', 'read', '--json', ...args);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(typeof r.json.client_id, 'string');
    return r.json.client_id as string;
  }

  it('self_signed_tls_client_auth: cert add works on the next request on both instances; cert remove fails on both', async () => {
    const id = await createClient('--auth-method', 'self_signed_tls_client_auth');
    const cert = issue(pki, 'cli-self', { subject: '/CN=cli-self', issuer: 'self' });
    // Before registration: refused everywhere (and the refusal is not cached afterwards).
    for (const i of [0, 1]) assertInvalidClient(await token(i, id, cert), `instance ${i} before add`);
    const added = await keymgr('cert', 'add', '--client', id, '--alias', 'primary', '--file', cert.certFile, '--tier', 'gold', '--json');
    assert.equal(added.code, 0, added.stderr);
    assert.equal(added.json.thumbprint_sha256, cert.thumbprint);
    assert.equal(added.json.tier, 'gold');
    const tokens: string[] = [];
    for (const i of [0, 1]) {
      const res = await token(i, id, cert);
      assert.equal(res.status, 200, `instance ${i} after add: ${res.text}`);
      tokens.push(res.json.access_token);
    }
    // Each instance sees the binding and tier of a token issued by the other.
    const seen = await introspect(1, id, cert, tokens[0]!);
    assert.equal(seen.json.active, true, seen.text);
    assert.deepEqual(seen.json.cnf, { 'x5t#S256': cert.thumbprint });
    assert.equal(seen.json.tier, 'gold');
    const removed = await keymgr('cert', 'remove', '--client', id, '--alias', 'primary', '--json');
    assert.equal(removed.code, 0, removed.stderr);
    assert.deepEqual(removed.json, { client_id: id, alias: 'primary', removed: true });
    for (const i of [0, 1]) {
      assertInvalidClient(await token(i, id, cert), `instance ${i} token after remove`);
      assertInvalidClient(await introspect(i, id, cert, tokens[i]!), `instance ${i} introspect after remove`);
    }
    // Removing again is an error; the alias is free for a new certificate.
    const again = await keymgr('cert', 'remove', '--client', id, '--alias', 'primary');
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /no certificate/);
    const cert2 = issue(pki, 'cli-self-2', { subject: '/CN=cli-self-2', issuer: 'self' });
    const readd = await keymgr('cert', 'add', '--client', id, '--alias', 'primary', '--file', cert2.certFile, '--json');
    assert.equal(readd.code, 0, readd.stderr);
    for (const i of [0, 1]) assert.equal((await token(i, id, cert2)).status, 200, `instance ${i} with the new certificate`);
    for (const i of [0, 1]) assertInvalidClient(await token(i, id, cert), `instance ${i} with the removed one`);
  });

  it('tls_client_auth clients created with --tls-subject-dn (as openssl prints it) and --tls-san-dns', async () => {
    const cert = issue(pki, 'cli-gw', { subject: '/CN=gateway/O=Example', san: 'DNS:gw.example.com' });
    const dn = rfc2253Subject(pki, cert.certFile);
    assert.equal(dn, 'O=Example,CN=gateway');
    const byDn = await createClient('--auth-method', 'tls_client_auth', '--tls-subject-dn', dn);
    const bySan = await createClient('--auth-method', 'tls_client_auth', '--tls-san-dns', 'gw.example.com');
    const wrong = await createClient('--auth-method', 'tls_client_auth', '--tls-subject-dn', 'O=Example,CN=someone-else');
    for (const i of [0, 1]) {
      assert.equal((await token(i, byDn, cert)).status, 200, `instance ${i} by DN`);
      assert.equal((await token(i, bySan, cert)).status, 200, `instance ${i} by SAN`);
      assertInvalidClient(await token(i, wrong, cert), `instance ${i} wrong subject`);
    }
  });

  it('client create refuses inconsistent mTLS options with a message', async () => {
    const neither = await keymgr('client', 'create', '--name', 'x', '--scope', 'read', '--auth-method', 'tls_client_auth');
    assert.notEqual(neither.code, 0, 'tls_client_auth without a subject DN or SAN');
    assert.match(neither.stderr, /subject|san|dn/i);
    const both = await keymgr('client', 'create', '--name', 'x', '--scope', 'read', '--auth-method', 'tls_client_auth', '--tls-subject-dn', 'CN=a', '--tls-san-dns', 'a.example');
    assert.notEqual(both.code, 0, 'both a subject DN and a SAN');
    const bogus = await keymgr('client', 'create', '--name', 'x', '--scope', 'read', '--auth-method', 'tls_bogus');
    assert.notEqual(bogus.code, 0);
    assert.match(bogus.stderr, /auth-method/);
  });

  describe('cert add refuses bad uploads with a clear message', () => {
    let clientId: string;
    before(async () => {
      clientId = await createClient('--auth-method', 'self_signed_tls_client_auth');
    });

    async function refused(file: string, pattern: RegExp, json = false): Promise<void> {
      const r = await keymgr('cert', 'add', '--client', clientId, '--alias', 'bad', '--file', file, ...(json ? ['--json'] : []));
      assert.notEqual(r.code, 0, `${file}: ${r.stdout}`);
      assert.match(r.stderr, pattern);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      if (json) assert.equal(typeof JSON.parse(r.stderr).error, 'string');
    }

    it('a private key', async () => {
      const cert = issue(pki, 'bad-key', { subject: '/CN=bad-key', issuer: 'self' });
      await refused(cert.keyFile, /private key/i);
      const both = join(pki.dir, 'cert-and-key.pem');
      writeFileSync(both, cert.cert + cert.key);
      await refused(both, /private key/i, true);
    });

    it('a chain', async () => {
      const cert = issue(pki, 'bad-chain', { subject: '/CN=bad-chain' });
      const chain = join(pki.dir, 'chain.pem');
      writeFileSync(chain, cert.cert + pki.caPem);
      await refused(chain, /chain|2 certificates/i);
    });

    it('not a certificate', async () => {
      const text = join(pki.dir, 'text.pem');
      writeFileSync(text, 'hello, I am not a certificate\n');
      await refused(text, /no PEM certificate|not a certificate/i);
      const broken = join(pki.dir, 'broken.pem');
      writeFileSync(broken, '-----BEGIN CERTIFICATE-----\nTUlJQm9ndXM=\n-----END CERTIFICATE-----\n');
      await refused(broken, /not a valid X\.509/i);
      const csr = join(pki.dir, 'bad-chain.csr');
      await refused(csr, /no PEM certificate/i);
      await refused(join(pki.dir, 'does-not-exist.pem'), /cannot read/);
    });

    it('an expired certificate', async () => {
      const old = issue(pki, 'bad-old', { subject: '/CN=bad-old', issuer: 'self', startDate: '20200101000000Z', endDate: '20200201000000Z' });
      await refused(old.certFile, /expired/);
    });

    it('a certificate that is not yet valid', async () => {
      const future = issue(pki, 'bad-future', { subject: '/CN=bad-future', issuer: 'self', startDate: '20990101000000Z', endDate: '20991231000000Z' });
      await refused(future.certFile, /not valid before/);
    });

    it('a certificate already registered to another client', async () => {
      const cert = issue(pki, 'dup', { subject: '/CN=dup', issuer: 'self' });
      const other = await createClient('--auth-method', 'self_signed_tls_client_auth');
      assert.equal((await keymgr('cert', 'add', '--client', other, '--alias', 'a', '--file', cert.certFile)).code, 0);
      await refused(cert.certFile, /already registered/);
      // … and it still authenticates only its owner.
      assert.equal((await token(0, other, cert)).status, 200);
      assertInvalidClient(await token(0, clientId, cert), 'the client whose upload was refused');
    });

    it('an unknown client or a bad alias', async () => {
      const cert = issue(pki, 'orphan', { subject: '/CN=orphan', issuer: 'self' });
      const r = await keymgr('cert', 'add', '--client', 'no-such-client', '--alias', 'a', '--file', cert.certFile);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /no client/);
      const a = await keymgr('cert', 'add', '--client', clientId, '--alias', 'has space', '--file', cert.certFile);
      assert.notEqual(a.code, 0);
      assert.match(a.stderr, /alias/);
    });
  });

  it('cert list --client, list --expiring-within, show', async () => {
    const id = await createClient('--auth-method', 'self_signed_tls_client_auth');
    const shortLived = issue(pki, 'list-short', { subject: '/CN=list-short/O=Example', san: 'DNS:short.example.com' }); // 30 days
    const longLived = issue(pki, 'list-long', { subject: '/CN=list-long', issuer: 'self', startDate: '20240101000000Z', endDate: '20990101000000Z' });
    assert.equal((await keymgr('cert', 'add', '--client', id, '--alias', 'short', '--file', shortLived.certFile, '--tier', 'silver')).code, 0);
    assert.equal((await keymgr('cert', 'add', '--client', id, '--alias', 'long', '--file', longLived.certFile)).code, 0);

    const list = await keymgr('cert', 'list', '--client', id, '--json');
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(list.json.map((c: { alias: string }) => c.alias), ['long', 'short']);
    const short = list.json.find((c: { alias: string }) => c.alias === 'short');
    assert.equal(short.client_id, id);
    assert.equal(short.subject_dn, 'O=Example,CN=list-short');
    assert.equal(short.issuer_dn, 'O=Example,CN=Test Client CA');
    assert.deepEqual(short.san_dns, ['short.example.com']);
    assert.equal(short.thumbprint_sha256, shortLived.thumbprint);
    assert.equal(short.tier, 'silver');
    assert.ok(!('pem' in short), 'list does not print PEMs');

    const expiring = await keymgr('cert', 'list', '--expiring-within', '31', '--json');
    assert.equal(expiring.code, 0, expiring.stderr);
    const mine = expiring.json.filter((c: { client_id: string }) => c.client_id === id).map((c: { alias: string }) => c.alias);
    assert.deepEqual(mine, ['short']);
    const none = await keymgr('cert', 'list', '--client', id, '--expiring-within', '1', '--json');
    assert.deepEqual(none.json, []);
    const badDays = await keymgr('cert', 'list', '--expiring-within', 'soon');
    assert.notEqual(badDays.code, 0);
    assert.match(badDays.stderr, /whole number/);

    const show = await keymgr('cert', 'show', '--client', id, '--alias', 'long', '--json');
    assert.equal(show.code, 0, show.stderr);
    assert.equal(show.json.alias, 'long');
    assert.equal(show.json.subject_dn, 'CN=list-long');
    assert.equal(show.json.not_after, '2099-01-01T00:00:00.000Z');
    assert.equal(show.json.tier, null);
    assert.equal(show.json.pem.trim(), longLived.cert.trim());
    const missing = await keymgr('cert', 'show', '--client', id, '--alias', 'nope', '--json');
    assert.notEqual(missing.code, 0);
    assert.match(JSON.parse(missing.stderr).error, /no certificate/);

    // Removed certificates leave the listing and cannot be shown.
    assert.equal((await keymgr('cert', 'remove', '--client', id, '--alias', 'short')).code, 0);
    assert.deepEqual((await keymgr('cert', 'list', '--client', id, '--json')).json.map((c: { alias: string }) => c.alias), ['long']);
    assert.notEqual((await keymgr('cert', 'show', '--client', id, '--alias', 'short')).code, 0);
    const text = await keymgr('cert', 'list', '--client', id);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /long\s+CN=list-long/);
  });
});
