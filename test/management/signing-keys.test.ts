// /management/signing-keys and `keymgr keys`: the published keys are listed without their
// private parts; a rotation (API or CLI) makes the new key sign at once on the instance that
// rotated and, without a restart, on every other instance sharing the keys directory; the old
// key stays in /jwks, so what it signed still verifies — also when the new key is of another
// algorithm (?algorithm=, --algorithm). Responses conform to the OpenAPI document.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { sql } from 'kysely';
import type { TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { expectReply, managementClient, startManagementApi } from '../support/management.ts';
import { conformanceChecker } from '../support/openapi.ts';
import { issueToken, makeClient, type TestClient } from '../support/fixtures.ts';
import { basicHeader, getJson } from '../support/http.ts';
import { post as tlsPost } from '../mtls/support.ts';
import { runKeymgr } from '../support/cli.ts';

/** Default access token lifetime (README: 3600 s) plus the default clock skew (README: 30 s). */
const RETIRE_AFTER_MS = (3600 + 30) * 1000;

describe('management API: signing keys', () => {
  let database: TestDatabase;
  let server: TestServer;
  /** Two more instances on the same database and keys directory, started before any rotation. */
  let b: TestServer;
  let c: TestServer;
  let call: ReturnType<typeof managementClient>;
  let conformance: ReturnType<typeof conformanceChecker>;
  let admin: string;
  let auditor: string;
  let client: TestClient;

  before(async () => {
    ({ database, server, call, conformance, admin, auditor } = await startManagementApi({}));
    b = await startTestServer(database.url, { keysDir: server.keysDir });
    c = await startTestServer(database.url, { keysDir: server.keysDir });
    client = await makeClient(database.db, { tokenFormat: 'jwt', scope: ['read'] });
  });
  after(async () => {
    await c?.stop();
    await b?.stop();
    await server?.stop();
    await database?.drop();
  });

  const expect = expectReply(() => ({ call, conformance, admin }));

  /** A JWT access token from the management instance's own (HTTPS) public listener. */
  const issueHere = async () => {
    const ca = readFileSync(join(server.keysDir, 'tls', 'server.crt'), 'utf8');
    const res = await tlsPost(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { ca, headers: { authorization: basicHeader(...client.basic) } });
    assert.equal(res.status, 200, res.text);
    return (res.json as { access_token: string }).access_token;
  };
  const kidOf = (jwt: string) => decodeProtectedHeader(jwt).kid;
  const jwksOf = async (s: TestServer) => {
    const res = await getJson(`${s.url}/jwks`);
    assert.equal(res.status, 200);
    return res.json as JSONWebKeySet;
  };
  /** Polls until the instance signs with `kid` (a notice crosses a connection: no fixed delay). */
  const signsWith = async (s: TestServer, kid: string) => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const current = kidOf(await issueToken(s.url, client));
      if (current === kid) return;
      assert.ok(Date.now() < deadline, `${s.url} still signs with ${current}, not ${kid}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  it('lists the one signing key for an auditor, as /jwks publishes it, without private parts', async () => {
    const jwks = await jwksOf(b);
    assert.equal(jwks.keys.length, 1);
    const res = await expect(200, 'GET', '/management/signing-keys', { authorization: auditor });
    assert.equal(res.json.total, 1);
    assert.equal(res.json.next_cursor, null);
    assert.equal(res.json.items.length, 1);
    const [key] = res.json.items;
    assert.equal(key.kid, jwks.keys[0]!.kid);
    assert.equal(key.alg, 'RS256');
    assert.equal(key.signing, true);
    assert.equal(key.retire_at, null);
    assert.ok(!res.text.includes('"d"') && !res.text.includes('"p"'), 'private key material in the response');
    const one = await expect(200, 'GET', `/management/signing-keys/${key.kid}`, { authorization: auditor });
    assert.deepEqual(one.json, key);
    await expect(404, 'GET', '/management/signing-keys/no-such-kid');
  });

  it('refuses a rotation by an auditor (403) and changes nothing', async () => {
    const before = await jwksOf(b);
    await expect(403, 'POST', '/management/signing-keys/rotate', { authorization: auditor });
    assert.deepEqual(await jwksOf(b), before);
    assert.equal((await expect(200, 'GET', '/management/signing-keys')).json.total, 1);
  });

  it('rotates: the new key signs at once here and, without a restart, on the other instances; the old key stays published', async () => {
    const oldToken = await issueHere();
    const oldKid = kidOf(oldToken);
    const startedAt = Date.now();
    const res = await expect(201, 'POST', '/management/signing-keys/rotate');
    const newKid = res.json.kid as string;
    assert.notEqual(newKid, oldKid);
    assert.equal(res.headers.location, `/management/signing-keys/${newKid}`);
    const published = res.json.published as { kid: string; signing: boolean; retire_at: string | null }[];
    assert.deepEqual(published.map((k) => [k.kid, k.signing]), [[newKid, true], [oldKid, false]]);
    const retireAt = Date.parse(published[1]!.retire_at!);
    assert.ok(retireAt >= startedAt + RETIRE_AFTER_MS && retireAt <= Date.now() + RETIRE_AFTER_MS, published[1]!.retire_at!);

    // The instance that rotated answered only once it signs with the new key.
    assert.equal(kidOf(await issueHere()), newKid);
    await signsWith(b, newKid);
    await signsWith(c, newKid);
    for (const s of [b, c]) {
      const jwks = await jwksOf(s);
      assert.deepEqual(jwks.keys.map((k) => k.kid), [newKid, oldKid]);
      // What the old key signed still verifies, and so does what the new one signs.
      const { payload } = await jwtVerify(oldToken, createLocalJWKSet(jwks));
      assert.equal(payload.client_id, client.id);
      await jwtVerify(await issueToken(s.url, client), createLocalJWKSet(jwks));
    }

    const list = await expect(200, 'GET', '/management/signing-keys?limit=1');
    assert.equal(list.json.total, 2);
    assert.deepEqual(list.json.items.map((k: { kid: string }) => k.kid), [newKid]);
    const rest = await expect(200, 'GET', `/management/signing-keys?limit=1&cursor=${list.json.next_cursor}`);
    assert.deepEqual(rest.json.items.map((k: { kid: string }) => k.kid), [oldKid]);
    assert.equal(rest.json.next_cursor, null);

    const audit = await sql<{ actor: string; action: string; resource_id: string; outcome: string }>`
      select actor, action, resource_id, outcome from audit_events where action = 'POST /signing-keys/rotate' and outcome = 'success'`.execute(database.db);
    assert.deepEqual(audit.rows, [{ actor: 'ops', action: 'POST /signing-keys/rotate', resource_id: newKid, outcome: 'success' }]);
  });

  it('keymgr keys rotate reaches every running instance without a restart, and keys list shows it', async () => {
    const env = { DATABASE_URL: database.url, KM_KEYS_DIR: server.keysDir, KM_LOG_LEVEL: 'silent' };
    const r = await runKeymgr(['keys', 'rotate', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    const newKid = r.json.kid as string;
    for (const s of [b, c]) await signsWith(s, newKid);
    assert.equal(kidOf(await issueHere()), newKid);
    const listed = await runKeymgr(['keys', 'list', '--json'], env);
    assert.equal(listed.code, 0, listed.stderr);
    assert.equal(listed.json.length, 3);
    assert.deepEqual(listed.json.filter((k: { signing: boolean }) => k.signing).map((k: { kid: string }) => k.kid), [newKid]);
    assert.ok(!listed.stdout.includes('"d"'), 'private key material printed');
  });

  it('rotates to another algorithm on request (API ?algorithm=, keymgr --algorithm); every instance follows; what the old keys signed still verifies', async () => {
    const refused = await expect(400, 'POST', '/management/signing-keys/rotate?algorithm=HS256');
    assert.match(refused.json.error_description, /^algorithm: .*RS256, PS256, ES256, EdDSA/);
    const unchanged = (await expect(200, 'GET', '/management/signing-keys')).json.total;

    const rsaToken = await issueHere();
    assert.equal(decodeProtectedHeader(rsaToken).alg, 'RS256');
    const res = await expect(201, 'POST', '/management/signing-keys/rotate?algorithm=ES256');
    const ecKid = res.json.kid as string;
    assert.deepEqual(res.json.published.map((k: { kid: string; alg: string; signing: boolean }) => [k.alg, k.signing]).slice(0, 2), [['ES256', true], ['RS256', false]]);
    assert.equal((await expect(200, 'GET', `/management/signing-keys/${ecKid}`)).json.alg, 'ES256');
    assert.equal(decodeProtectedHeader(await issueHere()).alg, 'ES256');
    await signsWith(b, ecKid);
    await signsWith(c, ecKid);
    const ecToken = await issueToken(b.url, client);
    assert.equal(decodeProtectedHeader(ecToken).alg, 'ES256');

    const env = { DATABASE_URL: database.url, KM_KEYS_DIR: server.keysDir, KM_LOG_LEVEL: 'silent' };
    const bad = await runKeymgr(['keys', 'rotate', '--algorithm', 'HS256'], env);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /RS256.*PS256.*ES256.*EdDSA/s);
    const r = await runKeymgr(['keys', 'rotate', '--algorithm', 'EdDSA', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json.published[0].alg, 'EdDSA');
    for (const s of [b, c]) await signsWith(s, r.json.kid);
    const edToken = await issueToken(c.url, client);
    assert.equal(decodeProtectedHeader(edToken).alg, 'EdDSA');

    const jwks = await jwksOf(b);
    assert.deepEqual(jwks.keys.slice(0, 3).map((k) => [k.kid, k.kty, k.crv]), [[r.json.kid, 'OKP', 'Ed25519'], [ecKid, 'EC', 'P-256'], [decodeProtectedHeader(rsaToken).kid, 'RSA', undefined]]);
    for (const t of [rsaToken, ecToken, edToken]) await jwtVerify(t, createLocalJWKSet(jwks));
    assert.equal((await expect(200, 'GET', '/management/signing-keys')).json.total, unchanged + 2);
  });

  it('every documented operation under /management/signing-keys was exercised above', () => {
    assert.deepEqual(conformance.unexercised((op) => op.split(' ')[1]!.startsWith('/management/signing-keys')), []);
  });
});
