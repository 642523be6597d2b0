// signing_algorithm (KM_SIGNING_ALGORITHM): RS256, PS256, ES256 or EdDSA. What the signing keys
// sign — JWT access tokens, ID tokens, JWT introspection answers — carries the algorithm of the
// key that signs, and verifies against /jwks; discovery names that algorithm. At start, a
// signing key of another algorithm than the setting's is replaced by a new one (once, however
// many instances start together); the old key stays published, so what it signed still
// verifies, and instances already running follow the new key. Another value stops the start.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet, type JWK } from 'jose';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, tempDir, type TestServer } from '../support/server.ts';
import { getJson, postForm } from '../support/http.ts';
import { issueToken, makeClient, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { Browser, runCodeFlow } from '../support/browserless.ts';
import { REPO_ROOT } from '../support/cli.ts';

/** What each algorithm's key looks like in /jwks (RFC 7518 §3.3–3.5, RFC 8037 §3.1). */
const EXPECTED: Record<string, { kty: string; crv?: string }> = {
  RS256: { kty: 'RSA' },
  PS256: { kty: 'RSA' },
  ES256: { kty: 'EC', crv: 'P-256' },
  EdDSA: { kty: 'OKP', crv: 'Ed25519' },
};
/** Default access_token_ttl + clock_skew (README): how long a replaced key stays published. */
const RETIRE_AFTER_MS = (3600 + 30) * 1000;
const REDIRECT = 'https://app.example/cb';
const JWT_INTROSPECTION = 'application/token-introspection+jwt';

const headerOf = (jwt: string) => decodeProtectedHeader(jwt);
const jwksOf = async (s: TestServer) => {
  const res = await getJson(`${s.url}/jwks`);
  assert.equal(res.status, 200);
  return res.json as JSONWebKeySet;
};
const keyFile = (keysDir: string) => JSON.parse(readFileSync(join(keysDir, 'signing-keys.json'), 'utf8')) as { keys: { jwk: JWK; retire_at: string | null }[] };

/** Asserts that the published key `kid` is of the shape `alg` needs, and returns it. */
function assertKeyFor(jwks: JSONWebKeySet, kid: string | undefined, alg: string): JWK {
  const key = jwks.keys.find((k) => k.kid === kid);
  assert.ok(key, `kid ${kid} is not in /jwks`);
  assert.equal(key.kty, EXPECTED[alg]!.kty);
  assert.equal(key.crv, EXPECTED[alg]!.crv);
  assert.equal(key.alg, alg);
  if (key.kty === 'RSA') assert.equal(Buffer.from(key.n!, 'base64url').length * 8, 2048);
  for (const secret of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal((key as Record<string, unknown>)[secret], undefined, `private ${secret} published`);
  return key;
}

describe('signing algorithm', () => {
  let database: TestDatabase;
  let jwtClient: TestClient;
  let gateway: TestClient;
  let web: TestClient;
  let alice: TestUser;
  const running: TestServer[] = [];
  const start = async (signingAlgorithm: string, keysDir?: string) => {
    const s = await startTestServer(database.url, { signingAlgorithm, ...(keysDir ? { keysDir } : {}) });
    running.push(s);
    return s;
  };

  before(async () => {
    database = await createTestDatabase();
    jwtClient = await makeClient(database.db, { tokenFormat: 'jwt', scope: ['read'] });
    gateway = await makeClient(database.db, { introspectAny: true, scope: [] });
    web = await makeClient(database.db, { grantTypes: ['authorization_code'], scope: ['read'], redirectUris: [REDIRECT], tokenFormat: 'jwt', firstParty: true });
    alice = await makeUser(database.db, 'alice', { params: { memoryCost: 8192, timeCost: 1, parallelism: 1 } });
  });
  after(async () => {
    for (const s of running) await s.stop();
    await database?.drop();
  });

  for (const alg of Object.keys(EXPECTED)) {
    it(`${alg}: access tokens, ID tokens and JWT introspection answers are ${alg}-signed and verify with /jwks; discovery says ${alg}`, async () => {
      const server = await start(alg);
      const jwks = await jwksOf(server);
      assert.equal(jwks.keys.length, 1);
      const verifyWith = createLocalJWKSet(jwks);

      const token = await issueToken(server.url, jwtClient);
      const header = headerOf(token);
      assert.equal(header.alg, alg);
      assert.equal(header.typ, 'at+jwt');
      assertKeyFor(jwks, header.kid, alg);
      const { payload } = await jwtVerify(token, verifyWith, { issuer: server.config.issuer, audience: server.config.issuer, typ: 'at+jwt', algorithms: [alg] });
      assert.equal(payload.client_id, jwtClient.id);

      const answer = await postForm(`${server.url}/introspect`, { token }, { basic: gateway.basic, headers: { accept: JWT_INTROSPECTION } });
      assert.equal(answer.status, 200, answer.text);
      assert.equal(headerOf(answer.text).alg, alg);
      assert.equal(headerOf(answer.text).kid, header.kid);
      const introspected = await jwtVerify(answer.text, verifyWith, { audience: gateway.id, typ: 'token-introspection+jwt', algorithms: [alg] });
      assert.equal((introspected.payload.token_introspection as { active: boolean }).active, true);

      const back = await runCodeFlow(new Browser(server.url), { clientId: web.id, redirectUri: REDIRECT, scope: 'openid read', username: alice.username, password: alice.password });
      const code = back.searchParams.get('code');
      assert.ok(code, back.href);
      const redeemed = await postForm(`${server.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT }, { basic: web.basic });
      assert.equal(redeemed.status, 200, redeemed.text);
      const idToken = redeemed.json.id_token as string;
      assert.equal(typeof idToken, 'string', `no ID token: ${redeemed.text}`);
      assert.equal(headerOf(idToken).alg, alg);
      const id = await jwtVerify(idToken, verifyWith, { issuer: server.config.issuer, audience: web.id, algorithms: [alg] });
      assert.equal(id.payload.sub, alice.id);
      assert.equal(headerOf(redeemed.json.access_token).alg, alg);

      for (const path of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
        const meta = (await getJson(`${server.url}${path}`)).json;
        assert.deepEqual(meta.id_token_signing_alg_values_supported, [alg], path);
        assert.deepEqual(meta.introspection_signing_alg_values_supported, [alg], path);
      }
    });
  }

  it('ES256: every one of 2,000 access tokens verifies with /jwks, those whose r or s begins with a zero byte included', async () => {
    // The server converts OpenSSL's DER signature to JWS's fixed-width r || s itself. DER
    // drops leading zero bytes, so about one signature in 128 has a shorter r or s: 2,000
    // tokens all but certainly include some (the chance of none is below 1 in 5 million).
    const server = await start('ES256');
    const verifyWith = createLocalJWKSet(await jwksOf(server));
    const tokens: string[] = [];
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (tokens.length < 2000) tokens.push(await issueToken(server.url, jwtClient));
    }));
    let padded = 0;
    for (const token of tokens) {
      const signature = Buffer.from(token.split('.')[2]!, 'base64url');
      assert.equal(signature.length, 64);
      if (signature[0] === 0 || signature[32] === 0) padded++;
      await jwtVerify(token, verifyWith, { issuer: server.config.issuer, algorithms: ['ES256'] });
    }
    assert.ok(padded > 0, 'no signature with a short r or s among 2,000');
  });

  it('a start with another algorithm replaces the signing key once; old tokens still verify; running instances follow', async () => {
    const keysDir = tempDir('km-keys-');
    const a = await start('RS256', keysDir);
    const rs256Token = await issueToken(a.url, jwtClient);
    assert.equal(headerOf(rs256Token).alg, 'RS256');
    const rsaKid = headerOf(rs256Token).kid;

    // Restarted with another setting (a keeps running, as another instance of the cluster would).
    const startedAt = Date.now();
    const b = await start('ES256', keysDir);
    const es256Token = await issueToken(b.url, jwtClient);
    assert.equal(headerOf(es256Token).alg, 'ES256');
    const ecKid = headerOf(es256Token).kid;
    assert.notEqual(ecKid, rsaKid);

    const jwks = await jwksOf(b);
    assert.deepEqual(jwks.keys.map((k) => k.kid), [ecKid, rsaKid]);
    assertKeyFor(jwks, ecKid, 'ES256');
    assertKeyFor(jwks, rsaKid, 'RS256');
    for (const t of [rs256Token, es256Token]) await jwtVerify(t, createLocalJWKSet(jwks));
    const discovery = (await getJson(`${b.url}/.well-known/openid-configuration`)).json;
    assert.deepEqual(discovery.id_token_signing_alg_values_supported, ['ES256']);

    // The RSA key is retired as a rotation retires it: published until what it signed expired.
    const stored = keyFile(keysDir).keys;
    assert.deepEqual(stored.map((k) => [k.jwk.kid, k.jwk.alg]), [[ecKid, 'ES256'], [rsaKid, 'RS256']]);
    assert.equal(stored[0]!.retire_at, null);
    const retireAt = Date.parse(stored[1]!.retire_at!);
    assert.ok(retireAt >= startedAt + RETIRE_AFTER_MS && retireAt <= Date.now() + RETIRE_AFTER_MS, stored[1]!.retire_at!);

    // a, still configured RS256, signs with the key that signs now, not with its setting.
    const deadline = Date.now() + 15_000;
    for (;;) {
      const t = await issueToken(a.url, jwtClient);
      if (headerOf(t).kid === ecKid) {
        assert.equal(headerOf(t).alg, 'ES256');
        break;
      }
      assert.ok(Date.now() < deadline, `a still signs with ${headerOf(t).kid}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual((await jwksOf(a)).keys.map((k) => k.kid), [ecKid, rsaKid]);
    await jwtVerify(rs256Token, createLocalJWKSet(await jwksOf(a)));

    // Restarting with the algorithm already in use changes nothing.
    const c = await start('ES256', keysDir);
    assert.equal(headerOf(await issueToken(c.url, jwtClient)).kid, ecKid);
    assert.equal(keyFile(keysDir).keys.length, 2);
  });

  it('instances starting together with a new algorithm make one new key between them', async () => {
    const keysDir = tempDir('km-keys-');
    const first = await start('RS256', keysDir);
    const old = await issueToken(first.url, jwtClient);
    const together = await Promise.all([start('EdDSA', keysDir), start('EdDSA', keysDir), start('EdDSA', keysDir)]);
    const stored = keyFile(keysDir).keys;
    assert.deepEqual(stored.map((k) => k.jwk.alg), ['EdDSA', 'RS256']);
    const kids = new Set<string | undefined>();
    for (const s of together) {
      const t = await issueToken(s.url, jwtClient);
      assert.equal(headerOf(t).alg, 'EdDSA');
      kids.add(headerOf(t).kid);
      const jwks = await jwksOf(s);
      assert.equal(jwks.keys.length, 2);
      await jwtVerify(old, createLocalJWKSet(jwks));
      await jwtVerify(t, createLocalJWKSet(jwks));
    }
    assert.deepEqual([...kids], [stored[0]!.jwk.kid]);
  });

  it('a key whose type does not fit its alg (edited by hand) stops the start, naming the key and what the alg needs', async () => {
    const cases = [
      { alg: 'ES256', key: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, needs: 'an EC P-256 key' },
      { alg: 'RS256', key: generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey, needs: 'an RSA key of at least 2048 bits' },
      { alg: 'PS256', key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, needs: 'an RSA key of at least 2048 bits' },
      { alg: 'ES256', key: generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey, needs: 'an EC P-256 key' },
      { alg: 'EdDSA', key: generateKeyPairSync('ed448').privateKey, needs: 'an Ed25519 key' },
    ];
    for (const [i, { alg, key, needs }] of cases.entries()) {
      const keysDir = tempDir('km-keys-');
      const jwk = { ...key.export({ format: 'jwk' }), kid: `hand-edited-${i}`, alg, use: 'sig' };
      writeFileSync(join(keysDir, 'signing-keys.json'), JSON.stringify({ keys: [{ jwk, created_at: new Date().toISOString(), retire_at: null }] }));
      await assert.rejects(start(alg, keysDir), { message: `signing key hand-edited-${i} (signing-keys.json in the keys directory): ${alg} needs ${needs}` });
    }
  });

  it('refuses another value at start, naming the setting and the accepted values', async () => {
    const dir = tempDir('km-config-');
    const emptyToml = join(dir, 'empty.toml');
    writeFileSync(emptyToml, '');
    for (const [name, env] of [['KM_SIGNING_ALGORITHM', { KM_SIGNING_ALGORITHM: 'HS256' }], ['signing_algorithm', { KM_CONFIG: join(dir, 'bad.toml') }]] as const) {
      writeFileSync(join(dir, 'bad.toml'), 'signing_algorithm = "ES384"\n');
      const child = spawn(process.execPath, ['src/main.ts'], {
        cwd: REPO_ROOT,
        env: {
          ...process.env, KM_CONFIG: emptyToml, ...env,
          // Should the value be accepted after all, fail fast instead of starting a real server.
          DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none', KM_TLS: 'off', KM_KEYS_DIR: join(dir, 'keys'), KM_LOG_LEVEL: 'silent',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => { stderr += c.toString('utf8'); });
      const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
      assert.equal(code, 2, stderr);
      assert.ok(stderr.includes(name), stderr);
      assert.ok(stderr.includes('RS256, PS256, ES256, EdDSA'), stderr);
      assert.equal(stderr.trim().split('\n').length, 1, stderr);
    }
  });
});
