// keys/signing-keys.json edited by hand (keys/README.md, "A key file edited by hand"): a key
// that cannot sign its alg verifiably stops the start with exit code 2 and one line naming the
// key, never quoting key material; a running instance handed such a file keeps signing with
// the set it has; a rotation on it is refused and writes nothing. A key without kid is named
// by its RFC 7638 thumbprint everywhere: /jwks, the tokens, the JWT introspection answer and
// the key lists.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, type JsonWebKey } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { sql } from 'kysely';
import type { TestDatabase } from '../support/database.ts';
import { freePort, startTestServer, tempDir, type TestServer } from '../support/server.ts';
import { expectReply, managementClient, startManagementApi } from '../support/management.ts';
import { conformanceChecker } from '../support/openapi.ts';
import { getJson, postForm } from '../support/http.ts';
import { issueToken, makeClient, type TestClient } from '../support/fixtures.ts';
import { runKeymgr, runScript } from '../support/cli.ts';

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];
const LABEL = (kid: string) => `signing key ${kid} (signing-keys.json in the keys directory)`;

const rsa = (modulusLength = 2048) => generateKeyPairSync('rsa', { modulusLength }).privateKey.export({ format: 'jwk' });
const ec = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
const entry = (jwk: unknown) => ({ jwk, created_at: new Date().toISOString(), retire_at: null });
const fileOf = (...jwks: unknown[]) => JSON.stringify({ keys: jwks.map(entry) });

/** Every run of 8 characters of every private member: a fragment of key material in the output. */
function fragmentsOf(jwks: JsonWebKey[]): string[] {
  const values = jwks.flatMap((jwk) => PRIVATE_MEMBERS.map((m) => (jwk as Record<string, unknown>)[m]).filter((v): v is string => typeof v === 'string'));
  return values.flatMap((v) => Array.from({ length: v.length - 7 }, (_, i) => v.slice(i, i + 8)));
}

/** Writes the file as keys/README.md says to: a temporary file renamed into place. */
function replaceKeyFile(keysDir: string, content: string): void {
  const path = join(keysDir, 'signing-keys.json');
  writeFileSync(`${path}.edit`, content, { mode: 0o600 });
  renameSync(`${path}.edit`, path);
}

describe('signing-keys.json edited by hand', () => {
  let database: TestDatabase;
  let server: TestServer;
  let call: ReturnType<typeof managementClient>;
  let conformance: ReturnType<typeof conformanceChecker>;
  let admin: string;
  let jwtClient: TestClient;
  let gateway: TestClient;
  const others: TestServer[] = [];

  before(async () => {
    ({ database, server, call, conformance, admin } = await startManagementApi({}));
    jwtClient = await makeClient(database.db, { tokenFormat: 'jwt', scope: ['read'] });
    gateway = await makeClient(database.db, { introspectAny: true, scope: [] });
  });
  after(async () => {
    for (const s of others) await s.stop();
    await server?.stop();
    await database?.drop();
  });

  const expect = expectReply(() => ({ call, conformance, admin }));
  const jwksOf = async (s: TestServer) => (await getJson(`${s.url}/jwks`)).json as JSONWebKeySet;

  it('a key that cannot sign its alg verifiably stops the start: exit code 2, one line naming the key, no key material on stderr or in the log', async () => {
    const a = rsa();
    const b = rsa();
    const { p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...withoutCrt } = rsa();
    const unquoted = rsa();
    const cases: { name: string; file: string; jwks: JsonWebKey[]; line: (path: string) => string; workers?: number }[] = [
      { name: 'RSA without p, q, dp, dq, qi', file: fileOf({ ...withoutCrt, kid: 'no-crt', alg: 'RS256' }), jwks: [withoutCrt],
        line: () => `${LABEL('no-crt')}: not a valid private key: members missing or damaged (RSA needs n, e, d, p, q, dp, dq, qi; EC crv, x, y, d; OKP crv, x, d)` },
      // With workers, the supervising process reads the file first: one refusal, not a worker
      // started again and again.
      { name: 'RSA without p, q, dp, dq, qi, two workers', file: fileOf({ ...withoutCrt, kid: 'no-crt', alg: 'RS256' }), jwks: [withoutCrt], workers: 2,
        line: () => `${LABEL('no-crt')}: not a valid private key: members missing or damaged (RSA needs n, e, d, p, q, dp, dq, qi; EC crv, x, y, d; OKP crv, x, d)` },
      { name: 'public members only', file: fileOf({ kty: 'RSA', n: a.n, e: a.e, kid: 'public-only', alg: 'RS256' }), jwks: [],
        line: () => `${LABEL('public-only')}: not a valid private key: members missing or damaged (RSA needs n, e, d, p, q, dp, dq, qi; EC crv, x, y, d; OKP crv, x, d)` },
      { name: 'the public modulus of another key', file: fileOf({ ...b, n: a.n, kid: 'mixed', alg: 'RS256' }), jwks: [a, b],
        line: () => `${LABEL('mixed')}: its private and public members are not of one key pair: what it signed would not verify with /jwks` },
      { name: 'HS256 with a shared secret', file: fileOf({ kty: 'oct', k: 'c2hhcmVkLXNlY3JldC1vZi0zMi1ieXRlcy1sb25nLXh4', kid: 'hmac', alg: 'HS256' }),
        jwks: [{ k: 'c2hhcmVkLXNlY3JldC1vZi0zMi1ieXRlcy1sb25nLXh4' } as JsonWebKey],
        line: () => `${LABEL('hmac')}: unsupported alg HS256 (expected one of RS256, PS256, ES256, EdDSA)` },
      { name: 'alg none', file: fileOf({ ...a, kid: 'none', alg: 'none' }), jwks: [a],
        line: () => `${LABEL('none')}: unsupported alg none (expected one of RS256, PS256, ES256, EdDSA)` },
      { name: 'use enc', file: fileOf({ ...a, kid: 'enc', alg: 'RS256', use: 'enc' }), jwks: [a],
        line: () => `${LABEL('enc')}: use is not "sig": not a signing key` },
      { name: 'key_ops without sign', file: fileOf({ ...a, kid: 'verify-only', alg: 'RS256', key_ops: ['verify'] }), jwks: [a],
        line: () => `${LABEL('verify-only')}: key_ops does not include "sign"` },
      { name: 'two keys with one kid', file: fileOf({ ...a, kid: 'twice', alg: 'RS256' }, { ...b, kid: 'twice', alg: 'RS256' }), jwks: [a, b],
        line: () => `${LABEL('twice')}: another published key has the same kid` },
      { name: 'a kid that is not a string', file: fileOf({ ...a, kid: 42, alg: 'RS256' }), jwks: [a],
        line: () => `${LABEL('#1')}: kid is not a non-empty string` },
      { name: 'an entry without a JWK', file: JSON.stringify({ keys: [{ created_at: new Date().toISOString(), retire_at: null }] }), jwks: [],
        line: () => `${LABEL('#1')}: "jwk" is not a JWK object` },
      // A quote lost before d: JSON.parse's own message would quote the text around the fault.
      { name: 'JSON broken inside the private key', file: fileOf({ ...unquoted, kid: 'broken', alg: 'RS256' }).replace(`"d":"${unquoted.d}"`, `"d":${unquoted.d}"`), jwks: [unquoted],
        line: (path) => `${path}: not valid JSON` },
    ];
    for (const { name, file, jwks, line, workers = 1 } of cases) {
      const dir = tempDir('km-keyfile-');
      const keysDir = join(dir, 'keys');
      mkdirSync(keysDir);
      writeFileSync(join(keysDir, 'signing-keys.json'), file);
      writeFileSync(join(dir, 'empty.toml'), '');
      const { code, stdout, stderr } = await runScript('src/main.ts', [], {
        KM_CONFIG: join(dir, 'empty.toml'), DATABASE_URL: database.url, KM_TLS: 'off', KM_KEYS_DIR: keysDir, KM_DATA_DIR: join(dir, 'data'),
        KM_PORT: String(await freePort()), KM_MANAGEMENT_PORT: String(await freePort()), KM_WORKERS: String(workers), KM_LOG_LEVEL: 'info',
      }, { stopAfterMs: 60_000 });
      assert.equal(code, 2, `${name}: ${stderr}`);
      assert.equal(stderr, `keymanager: ${line(join(keysDir, 'signing-keys.json'))}\n`, name);
      for (const fragment of fragmentsOf(jwks)) assert.ok(!stdout.includes(fragment) && !stderr.includes(fragment), `${name}: key material "${fragment}" in the output`);
    }
  });

  it('a running instance handed an unusable key file keeps signing with its set; a rotation on that file is refused and writes nothing', async () => {
    const b = await startTestServer(database.url, { keysDir: server.keysDir });
    others.push(b);
    const path = join(server.keysDir, 'signing-keys.json');
    const good = readFileSync(path, 'utf8');
    const signingKid = decodeProtectedHeader(await issueToken(b.url, jwtClient)).kid;

    // An EC key marked RS256 put first, the good key kept as retiring.
    const retiring = JSON.parse(good) as { keys: { retire_at: string | null }[] };
    for (const k of retiring.keys) k.retire_at = new Date(Date.now() + 3600_000).toISOString();
    const bad = JSON.stringify({ keys: [entry({ ...ec(), kid: 'ec-marked-rs256', alg: 'RS256' }), ...retiring.keys] });
    const mark = b.logMark();
    replaceKeyFile(server.keysDir, bad);
    await sql`select pg_notify('km_changes', 'signing_keys')`.execute(database.db);
    const deadline = Date.now() + 15_000;
    let refused;
    while (!(refused = b.logsSince(mark).find((l) => l.msg === 'signing keys not reloaded; still signing with the previous set'))) {
      assert.ok(Date.now() < deadline, 'the instance did not read the new file');
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(refused.error, `${LABEL('ec-marked-rs256')}: RS256 needs an RSA key of at least 2048 bits`);
    const token = await issueToken(b.url, jwtClient);
    assert.equal(decodeProtectedHeader(token).kid, signingKid);
    await jwtVerify(token, createLocalJWKSet(await jwksOf(b)), { algorithms: ['RS256'] });

    // The engine's own answer to a failure it cannot name to the caller; the log has the line.
    const refusedRotation = await call('POST', '/management/signing-keys/rotate', { authorization: admin });
    assert.equal(refusedRotation.status, 500, refusedRotation.text);
    assert.deepEqual(refusedRotation.json, { error: 'server_error', error_description: 'an unexpected error occurred' });
    const cli = await runKeymgr(['keys', 'rotate'], { DATABASE_URL: database.url, KM_KEYS_DIR: server.keysDir, KM_LOG_LEVEL: 'silent' });
    assert.equal(cli.code, 2, cli.stdout);
    assert.equal(cli.stderr, `keymgr: ${LABEL('ec-marked-rs256')}: RS256 needs an RSA key of at least 2048 bits\n`);
    assert.equal(readFileSync(path, 'utf8'), bad);
    assert.equal(decodeProtectedHeader(await issueToken(b.url, jwtClient)).kid, signingKid);

    replaceKeyFile(server.keysDir, good);
    const rotated = await expect(201, 'POST', '/management/signing-keys/rotate');
    const followed = Date.now() + 15_000;
    while (decodeProtectedHeader(await issueToken(b.url, jwtClient)).kid !== rotated.json.kid) {
      assert.ok(Date.now() < followed, 'the instance did not follow the rotation');
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  it('a key without kid is named by its RFC 7638 thumbprint in /jwks, the tokens, the JWT introspection answer and the key lists', async () => {
    const jwk = ec();
    const thumbprint = await calculateJwkThumbprint({ kty: jwk.kty!, crv: jwk.crv!, x: jwk.x!, y: jwk.y! });
    const keysDir = tempDir('km-keys-');
    writeFileSync(join(keysDir, 'signing-keys.json'), fileOf({ ...jwk, alg: 'ES256', use: 'sig' }));
    const s = await startTestServer(database.url, { keysDir, signingAlgorithm: 'ES256' });
    others.push(s);

    const jwks = await jwksOf(s);
    assert.deepEqual(jwks.keys.map((k) => k.kid), [thumbprint]);
    const token = await issueToken(s.url, jwtClient);
    assert.equal(decodeProtectedHeader(token).kid, thumbprint);
    const answer = await postForm(`${s.url}/introspect`, { token }, { basic: gateway.basic, headers: { accept: 'application/token-introspection+jwt' } });
    assert.equal(answer.status, 200, answer.text);
    assert.equal(decodeProtectedHeader(answer.text).kid, thumbprint);
    await jwtVerify(answer.text, createLocalJWKSet(jwks), { audience: gateway.id, algorithms: ['ES256'] });

    const listed = await runKeymgr(['keys', 'list', '--json'], { DATABASE_URL: database.url, KM_KEYS_DIR: keysDir, KM_LOG_LEVEL: 'silent' });
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(listed.json.map((k: { kid: string; alg: string; signing: boolean }) => [k.kid, k.alg, k.signing]), [[thumbprint, 'ES256', true]]);
  });
  it('cookie-keys.json and management-token-key.json damaged by hand stop the start the same way: exit code 2, one line naming the file, no secret on stderr or in the log', async () => {
    const secret = randomBytes(32).toString('base64url');
    const management = { ...rsa(), kid: 'mgmt', alg: 'RS256', use: 'sig' };
    const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicOnly } = management;
    const cookieLine = (path: string) => `${path}: expected a JSON array of secrets of at least 32 characters`;
    const managementLine = (path: string) => `${path}: expected a private RSA JWK with a kid (delete the file to have a new key made; management tokens signed with the old one stop working)`;
    const cases: { name: string; file: string; content: string; line: (path: string) => string }[] = [
      // A closing quote lost: JSON.parse's own message would quote the secret around the fault.
      { name: 'cookie keys, JSON broken inside a secret', file: 'cookie-keys.json', content: `["${secret}]`, line: (path) => `${path}: not valid JSON` },
      { name: 'cookie keys, a secret too short', file: 'cookie-keys.json', content: '["short"]', line: cookieLine },
      { name: 'cookie keys, not an array', file: 'cookie-keys.json', content: `{"key":"${secret}"}`, line: cookieLine },
      { name: 'management key, JSON broken inside d', file: 'management-token-key.json', content: JSON.stringify(management).replace(`"d":"${management.d}"`, `"d":${management.d}"`), line: (path) => `${path}: not valid JSON` },
      { name: 'management key, public members only', file: 'management-token-key.json', content: JSON.stringify(publicOnly), line: managementLine },
      { name: 'management key, without kid', file: 'management-token-key.json', content: JSON.stringify({ ...management, kid: undefined }), line: managementLine },
      { name: 'management key, not a JWK', file: 'management-token-key.json', content: '[1, 2]', line: managementLine },
      { name: 'management key, an EC key', file: 'management-token-key.json', content: JSON.stringify({ ...ec(), kid: 'mgmt' }), line: managementLine },
    ];
    for (const { name, file, content, line } of cases) {
      const dir = tempDir('km-keyfile-');
      const keysDir = join(dir, 'keys');
      mkdirSync(keysDir);
      writeFileSync(join(keysDir, file), content);
      writeFileSync(join(dir, 'empty.toml'), '');
      const { code, stdout, stderr } = await runScript('src/main.ts', [], {
        KM_CONFIG: join(dir, 'empty.toml'), DATABASE_URL: database.url, KM_TLS: 'off', KM_KEYS_DIR: keysDir, KM_DATA_DIR: join(dir, 'data'),
        KM_PORT: String(await freePort()), KM_MANAGEMENT_PORT: String(await freePort()), KM_LOG_LEVEL: 'info',
      }, { stopAfterMs: 60_000 });
      assert.equal(code, 2, `${name}: ${stderr}`);
      assert.equal(stderr, `keymanager: ${line(join(keysDir, file))}\n`, name);
      for (const fragment of [...fragmentsOf([management]), ...Array.from({ length: secret.length - 7 }, (_, i) => secret.slice(i, i + 8))]) {
        assert.ok(!stdout.includes(fragment) && !stderr.includes(fragment), `${name}: key material "${fragment}" in the output`);
      }
    }
  });
});
