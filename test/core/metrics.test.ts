// GET /metrics on the management listener: the counters move by exactly what the requests
// made did, with the labels the README documents; nothing a caller chose (token values,
// usernames, made-up client ids or grant types, path spellings) becomes a label value; the
// state gauges follow their sources; metrics_auth asks for management credentials; and with
// several workers a scrape reaching any of them reports the sum over all.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'node:http';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { freePort, startTestServer, tempDir, type TestServer } from '../support/server.ts';
import { basicHeader, postForm, toReply } from '../support/http.ts';
import { issueToken, makeClient, makeScope, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { matching, parsePrometheus, valueOf, type Sample } from '../support/prometheus.ts';
import { createPki, issue } from '../mtls/support.ts';
import { addCertificate, parseCertificatePem, removeCertificate } from '../../src/store/certificates.ts';
import { hashPassword } from '../../src/store/passwords.ts';
import { loadConfig } from '../../src/config/index.ts';
import { REPO_ROOT } from '../support/cli.ts';
import { startTcpProxy, viaProxy, type TcpProxy } from '../support/tcp-proxy.ts';

const FAST_HASH = { memoryCost: 8192, timeCost: 1, parallelism: 1 };

async function scrape(managementUrl: string, authorization?: string): Promise<{ text: string; samples: Sample[]; contentType: string | null }> {
  const res = await fetch(`${managementUrl}/metrics`, { headers: authorization ? { authorization } : {} });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return { text, samples: parsePrometheus(text), contentType: res.headers.get('content-type') };
}

describe('metrics', () => {
  let database: TestDatabase;
  let server: TestServer;
  let opaque: TestClient;
  let jwt: TestClient;
  let passwords: TestClient;
  let alice: TestUser;
  let mallet: TestUser;
  /** Every value that must never appear in the metrics: tokens, secrets, usernames, addresses. */
  const secrets: string[] = [];

  /** What `action` changed: after minus before, per sample. */
  async function changes(action: () => Promise<void>) {
    const before = await scrape(server.managementUrl);
    await action();
    const after = await scrape(server.managementUrl);
    return Object.assign(
      (name: string, labels: Record<string, string> = {}) => valueOf(after.samples, name, labels) - valueOf(before.samples, name, labels),
      { after },
    );
  }

  const password = (username: string, pw: string, from?: string) =>
    postForm(`${server.url}/token`, { grant_type: 'password', username, password: pw }, { basic: passwords.basic, ...(from ? { headers: { 'x-forwarded-for': from } } : {}) });

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url, {
      passwordHashMemoryKib: FAST_HASH.memoryCost, passwordHashIterations: FAST_HASH.timeCost, lockoutMaxFailures: 3,
      trustProxy: true, trustedProxies: ['127.0.0.1'],
    });
    opaque = await makeClient(database.db, { scope: ['read'] });
    jwt = await makeClient(database.db, { scope: ['read'], tokenFormat: 'jwt' });
    await makeScope(database.db, 'profile');
    passwords = await makeClient(database.db, { grantTypes: ['password', 'refresh_token'], scope: ['profile'] });
    alice = await makeUser(database.db, 'alice-metrics', { params: FAST_HASH });
    mallet = await makeUser(database.db, 'mallet-metrics', { params: FAST_HASH });
    secrets.push(opaque.secret, jwt.secret, passwords.secret, alice.username, alice.password, mallet.username, mallet.password, '198.51.100.');
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  it('an access token counts once, for its grant type, client and format; the request in the route histogram', async () => {
    const changed = await changes(async () => {
      secrets.push(await issueToken(server.url, opaque), await issueToken(server.url, jwt));
    });
    assert.equal(changed('km_tokens_issued_total', { grant_type: 'client_credentials', client_id: opaque.id, format: 'opaque' }), 1);
    assert.equal(changed('km_tokens_issued_total', { grant_type: 'client_credentials', client_id: jwt.id, format: 'jwt' }), 1);
    assert.equal(changed('km_tokens_issued_total', { grant_type: 'client_credentials', client_id: opaque.id, format: 'jwt' }), 0);
    const route = { route: '/token', status: '200' };
    assert.equal(changed('km_http_request_duration_seconds_count', route), 2);
    assert.equal(changed('km_http_request_duration_seconds_bucket', { ...route, le: '+Inf' }), 2);
    assert.ok(changed('km_http_request_duration_seconds_sum', route) > 0);
    // Buckets are cumulative: never more below a bound than below a higher one.
    const buckets = matching(changed.after.samples, 'km_http_request_duration_seconds_bucket', route)
      .map((s) => [Number(s.labels.le), s.value] as const).sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]![1] >= buckets[i - 1]![1]);
    // Each token's row is written by a statement (a prepared one, past Kysely).
    assert.ok(changed('km_db_query_duration_seconds_count') >= 2);
  });

  it('a wrong secret: one client authentication failure by the method tried, one failed token request, no token', async () => {
    const changed = await changes(async () => {
      const basic = await postForm(`${server.url}/token`, { grant_type: 'client_credentials' }, { basic: [opaque.id, 'not-the-secret'] });
      assert.equal(basic.status, 401);
      const post = await postForm(`${server.url}/token`, { grant_type: 'client_credentials', client_id: opaque.id, client_secret: 'not-the-secret' });
      assert.equal(post.status, 401);
    });
    assert.equal(changed('km_client_auth_failures_total', { method: 'client_secret_basic' }), 1);
    assert.equal(changed('km_client_auth_failures_total', { method: 'client_secret_post' }), 1);
    assert.equal(changed('km_token_requests_failed_total', { grant_type: 'client_credentials', error: 'invalid_client' }), 2);
    assert.equal(changed('km_tokens_issued_total', { grant_type: 'client_credentials', client_id: opaque.id, format: 'opaque' }), 0);
    assert.equal(changed('km_http_request_duration_seconds_count', { route: '/token', status: '401' }), 2);
  });

  it('what a caller chose is never a label value: unknown clients, made-up grant types, other spellings of a path', async () => {
    const madeUpClient = `no-such-client-${randomBytes(6).toString('hex')}`;
    const madeUpGrant = `urn:example:${randomBytes(6).toString('hex')}`;
    const changed = await changes(async () => {
      assert.equal((await postForm(`${server.url}/token`, { grant_type: madeUpGrant }, { basic: [madeUpClient, 'x'] })).status, 401);
      assert.equal((await postForm(`${server.url}/token`, { grant_type: madeUpGrant }, { basic: opaque.basic })).status, 400);
      assert.equal((await postForm(`${server.url}/token`, {}, { basic: opaque.basic })).status, 400);
      // The engine says invalid_request; the client is told unauthorized_client (RFC 6749 §5.2), and so are the metrics.
      const notAllowed = await postForm(`${server.url}/token`, { grant_type: 'password', username: 'x', password: 'y' }, { basic: opaque.basic });
      assert.equal(notAllowed.json.error, 'unauthorized_client');
      for (const path of ['/TOKEN', '/token/', `/${madeUpClient}`]) {
        assert.equal((await postForm(`${server.url}${path}`, { grant_type: 'client_credentials' }, { basic: opaque.basic })).status, 404);
      }
    });
    assert.equal(changed('km_token_requests_failed_total', { grant_type: 'other', error: 'invalid_client' }), 1);
    assert.equal(changed('km_token_requests_failed_total', { grant_type: 'other', error: 'unsupported_grant_type' }), 1);
    assert.equal(changed('km_token_requests_failed_total', { grant_type: 'none', error: 'invalid_request' }), 1);
    assert.equal(changed('km_token_requests_failed_total', { grant_type: 'password', error: 'unauthorized_client' }), 1);
    assert.equal(changed('km_client_auth_failures_total', { method: 'client_secret_basic' }), 1);
    assert.equal(changed('km_http_request_duration_seconds_count', { route: 'unmatched', status: '404' }), 3);
    const text = changed.after.text;
    for (const chosen of [madeUpClient, madeUpGrant, '/TOKEN', '/token/']) assert.ok(!text.includes(chosen), `${chosen} in the metrics`);
    // Every route label is a template the server defines.
    const routes = new Set(matching(changed.after.samples, 'km_http_request_duration_seconds_count').map((s) => s.labels.route));
    for (const route of routes) assert.match(route!, /^(unmatched|\/[a-z/.:-]*)$/, `route label ${route}`);
  });

  it('introspection counts by result: active, inactive, refused', async () => {
    const token = await issueToken(server.url, opaque);
    secrets.push(token);
    const changed = await changes(async () => {
      assert.equal((await postForm(`${server.url}/introspect`, { token }, { basic: opaque.basic })).json.active, true);
      assert.equal((await postForm(`${server.url}/introspect`, { token: `${token}x` }, { basic: opaque.basic })).json.active, false);
      assert.equal((await postForm(`${server.url}/introspect`, { token }, { basic: [opaque.id, 'not-the-secret'] })).status, 401);
      assert.equal((await postForm(`${server.url}/introspect`, {}, { basic: opaque.basic })).status, 400);
    });
    assert.equal(changed('km_introspections_total', { result: 'active' }), 1);
    assert.equal(changed('km_introspections_total', { result: 'inactive' }), 1);
    assert.equal(changed('km_introspections_total', { result: 'refused' }), 2);
    assert.equal(changed('km_introspections_total', { result: 'error' }), 0);
    assert.equal(changed('km_client_auth_failures_total', { method: 'client_secret_basic' }), 1);
    assert.equal(changed('km_http_request_duration_seconds_count', { route: '/introspect', status: '200' }), 2);
  });

  it('password sign-ins by result, a lockout by reason, refresh, reuse and revocation by kind', async () => {
    let refreshToken = '';
    let accessToken = '';
    const signedIn = await changes(async () => {
      const ok = await password(alice.username, alice.password);
      assert.equal(ok.status, 200, ok.text);
      ({ refresh_token: refreshToken, access_token: accessToken } = ok.json);
      assert.equal((await password(alice.username, 'wrong password')).status, 400);
    });
    secrets.push(refreshToken, accessToken);
    assert.equal(signedIn('km_logins_total', { result: 'success' }), 1);
    assert.equal(signedIn('km_logins_total', { result: 'failure' }), 1);
    assert.equal(signedIn('km_tokens_issued_total', { grant_type: 'password', client_id: passwords.id, format: 'opaque' }), 1);
    assert.equal(signedIn('km_token_requests_failed_total', { grant_type: 'password', error: 'invalid_grant' }), 1);

    // lockout_max_failures = 3: the third failure locks the account, the fourth attempt is refused unchecked.
    const locked = await changes(async () => {
      for (let i = 0; i < 4; i++) assert.equal((await password(mallet.username, `guess ${i}`, `198.51.100.${i + 1}`)).status, 400);
    });
    assert.equal(locked('km_logins_total', { result: 'failure' }), 3);
    assert.equal(locked('km_logins_total', { result: 'locked' }), 1);
    assert.equal(locked('km_lockouts_total', { reason: 'account' }), 1);
    assert.equal(locked('km_lockouts_total', { reason: 'address' }), 0);

    let rotated = '';
    const refreshed = await changes(async () => {
      const next = await postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: refreshToken }, { basic: passwords.basic });
      assert.equal(next.status, 200, next.text);
      rotated = next.json.refresh_token;
      // The used one again: reuse, and the whole grant is revoked.
      assert.equal((await postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: refreshToken }, { basic: passwords.basic })).status, 400);
    });
    secrets.push(rotated);
    assert.equal(refreshed('km_tokens_issued_total', { grant_type: 'refresh_token', client_id: passwords.id, format: 'opaque' }), 1);
    assert.equal(refreshed('km_token_reuse_detected_total'), 1);
    assert.equal(refreshed('km_token_requests_failed_total', { grant_type: 'refresh_token', error: 'invalid_grant' }), 1);

    const fresh = (await password(alice.username, alice.password)).json;
    const access = await issueToken(server.url, opaque);
    secrets.push(fresh.refresh_token, fresh.access_token, access);
    const revoked = await changes(async () => {
      const revoke = (token: string, client: TestClient) => postForm(`${server.url}/revoke`, { token }, { basic: client.basic });
      assert.equal((await revoke(fresh.refresh_token, passwords)).status, 200);
      assert.equal((await revoke(access, opaque)).status, 200);
      assert.equal((await revoke(access, opaque)).status, 200);
      assert.equal((await revoke('never-issued', opaque)).status, 200);
    });
    assert.equal(revoked('km_revocations_total', { kind: 'refresh_token' }), 1);
    assert.equal(revoked('km_revocations_total', { kind: 'access_token' }), 1);
    assert.equal(revoked('km_revocations_total', { kind: 'unknown' }), 2);
  });

  it('state read on each scrape: the pool, client certificates, the signing key, the process', async () => {
    const pki = createPki();
    const cert = issue(pki, 'metrics-client', { subject: '/CN=metrics-client/O=Example' });
    const notAfter = new X509Certificate(cert.cert).validToDate.getTime();
    await addCertificate(database.db, opaque.id, 'primary', parseCertificatePem(cert.cert));
    const { samples, contentType } = await scrape(server.managementUrl);
    assert.match(contentType ?? '', /^text\/plain; version=0\.0\.4/);

    const expiry = valueOf(samples, 'km_client_certificate_expiry_seconds', { client_id: opaque.id, thumbprint: cert.thumbprint });
    assert.ok(Math.abs(expiry - (notAfter - Date.now()) / 1000) < 10, `expiry ${expiry}`);
    await removeCertificate(database.db, opaque.id, 'primary');
    assert.deepEqual(matching((await scrape(server.managementUrl)).samples, 'km_client_certificate_expiry_seconds'), []);

    const keyFile = JSON.parse(readFileSync(join(server.keysDir, 'signing-keys.json'), 'utf8')) as { keys: { created_at: string; retire_at: string | null }[] };
    const signing = keyFile.keys.find((k) => k.retire_at === null)!;
    const age = valueOf(samples, 'km_signing_key_age_seconds');
    assert.ok(Math.abs(age - (Date.now() - Date.parse(signing.created_at)) / 1000) < 10, `age ${age}`);

    const total = valueOf(samples, 'km_db_pool_connections', { state: 'total' });
    const idle = valueOf(samples, 'km_db_pool_connections', { state: 'idle' });
    assert.ok(total >= 1 && total <= 4, `total ${total} (pool size 4)`);
    assert.ok(idle >= 0 && idle <= total, `idle ${idle}`);
    assert.equal(matching(samples, 'km_db_pool_connections', { state: 'waiting' }).length, 1);

    assert.equal(valueOf(samples, 'km_workers'), 1);
    for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds']) {
      assert.equal(matching(samples, name).length, 1, name);
    }
  });

  it('no token, secret, username or address in the output', async () => {
    const { text } = await scrape(server.managementUrl);
    assert.ok(secrets.length > 10);
    for (const secret of secrets) assert.ok(!text.includes(secret), `${secret.slice(0, 12)}… in the metrics`);
    assert.ok(!text.includes('127.0.0.1'));
  });

  it('KM_MANAGEMENT_METRICS_AUTH and management.metrics_auth turn the protection on; it is off by default', () => {
    assert.equal(loadConfig({ env: {} }).managementMetricsAuth, false);
    assert.equal(loadConfig({ env: { KM_MANAGEMENT_METRICS_AUTH: 'on' } }).managementMetricsAuth, true);
  });
});

describe('metrics while the database is unreachable', () => {
  let database: TestDatabase;
  let proxy: TcpProxy;
  let server: TestServer;
  let client: TestClient;

  before(async () => {
    database = await createTestDatabase();
    const target = new URL(database.url);
    proxy = await startTcpProxy(target.hostname, Number(target.port));
    server = await startTestServer(viaProxy(database.url, proxy));
    client = await makeClient(database.db, { scope: ['read'] });
    await issueToken(server.url, client);
  });
  after(async () => {
    await server?.stop();
    await proxy?.close();
    await database?.drop();
  });

  it('are still served; failures count as temporarily_unavailable and error', async () => {
    const before = await scrape(server.managementUrl);
    await proxy.cut();
    try {
      const token = await postForm(`${server.url}/token`, { grant_type: 'client_credentials' }, { basic: client.basic });
      assert.equal(token.status, 503, token.text);
      const introspection = await postForm(`${server.url}/introspect`, { token: 'some-token-value' }, { basic: client.basic });
      assert.equal(introspection.status, 503, introspection.text);
      const during = await scrape(server.managementUrl);
      const changed = (name: string, labels: Record<string, string> = {}) => valueOf(during.samples, name, labels) - valueOf(before.samples, name, labels);
      assert.equal(changed('km_token_requests_failed_total', { grant_type: 'client_credentials', error: 'temporarily_unavailable' }), 1);
      assert.equal(changed('km_tokens_issued_total', { grant_type: 'client_credentials', client_id: client.id, format: 'opaque' }), 0);
      assert.equal(changed('km_introspections_total', { result: 'error' }), 1);
      assert.equal(changed('km_http_request_duration_seconds_count', { route: '/token', status: '503' }), 1);
      assert.equal(matching(during.samples, 'km_db_pool_connections').length, 3);
    } finally {
      await proxy.restore();
    }
  });
});

describe('metrics_auth = true', () => {
  let database: TestDatabase;
  let server: TestServer;
  const ops = (pw: string) => `Basic ${Buffer.from(`ops:${pw}`).toString('base64')}`;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url, {
      managementMetricsAuth: true,
      managementUsers: [
        { username: 'ops', password_hash: await hashPassword('ops-password-1', FAST_HASH), roles: ['admin'] },
        { username: 'watcher', password_hash: await hashPassword('watcher-password-1', FAST_HASH), roles: ['auditor'] },
      ],
    });
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const get = (authorization?: string) => fetch(`${server.managementUrl}/metrics`, { headers: authorization ? { authorization } : {} }).then(toReply);

  it('401 with a Basic challenge without credentials, or with wrong ones', async () => {
    const none = await get();
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate') ?? '', /^Basic /);
    assert.ok(!none.text.includes('km_'));
    assert.equal((await get(ops('wrong-password'))).status, 401);
    assert.equal((await get('Bearer not-a-management-token')).status, 401);
  });

  it('200 for a management user of either role, with Basic credentials or a management token', async () => {
    for (const authorization of [ops('ops-password-1'), `Basic ${Buffer.from('watcher:watcher-password-1').toString('base64')}`]) {
      const res = await get(authorization);
      assert.equal(res.status, 200, res.text);
      assert.ok(matching(parsePrometheus(res.text), 'km_workers').length === 1);
    }
    const login = await fetch(`${server.managementUrl}/management/login`, { headers: { authorization: ops('ops-password-1') } }).then(toReply);
    assert.equal(login.status, 200, login.text);
    assert.equal((await get(`Bearer ${login.json.AccessToken}`)).status, 200);
  });
});

describe('metrics with several workers (KM_WORKERS=2)', () => {
  let database: TestDatabase;
  let primary: ChildProcess;
  let publicPort: number;
  let managementPort: number;
  let client: TestClient;
  let exitCode: number | null | undefined;
  let output = '';

  /** One request on a connection of its own: the primary hands connections to the workers in turn. */
  const call = (port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string) =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method, path, agent: false, headers: { ...headers, ...(body ? { 'content-length': String(Buffer.byteLength(body)) } : {}) } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => { text += c; });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on('error', reject);
      req.end(body);
    });

  const workersOf = (pid: number) => {
    try {
      return execFileSync('ps', ['--ppid', String(pid), '-o', 'pid='], { encoding: 'utf8' }).split('\n').map((l) => Number(l.trim())).filter(Boolean);
    } catch {
      return [];
    }
  };

  before(async () => {
    database = await createTestDatabase();
    client = await makeClient(database.db, { scope: ['read'] });
    publicPort = await freePort();
    managementPort = await freePort();
    primary = spawn(process.execPath, ['src/main.ts'], {
      cwd: REPO_ROOT,
      env: {
        ...process.env, DATABASE_URL: database.url, KM_WORKERS: '2', KM_TLS: 'off', KM_HOST: '127.0.0.1', KM_PORT: String(publicPort),
        KM_ISSUER: `http://127.0.0.1:${publicPort}`, KM_MANAGEMENT_PORT: String(managementPort), KM_KEYS_DIR: tempDir('km-keys-'),
        KM_DATA_DIR: tempDir('km-data-'), KM_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    primary.stdout!.on('data', (c: Buffer) => { output += c.toString(); });
    primary.stderr!.on('data', (c: Buffer) => { output += c.toString(); });
    primary.once('exit', (code) => { exitCode = code; });
    const deadline = Date.now() + 60_000;
    // Until both workers answer: then each one's metrics are in the sum.
    let reporting = 0;
    for (;;) {
      assert.ok(Date.now() < deadline, `no scrape reported both workers (km_workers ${reporting}): ${output.slice(-2000)}`);
      const res = workersOf(primary.pid!).length === 2 ? await call(managementPort, 'GET', '/metrics').catch(() => undefined) : undefined;
      if (res?.status === 200) reporting = valueOf(parsePrometheus(res.text), 'km_workers');
      if (reporting === 2) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  after(async () => {
    if (exitCode === undefined) {
      primary.kill('SIGTERM');
      await new Promise((r) => primary.once('exit', r));
    }
    await database?.drop();
  });

  it('a scrape reaching either worker reports the tokens issued by both', async () => {
    const issued = 20;
    const form = 'grant_type=client_credentials&scope=read';
    for (let i = 0; i < issued; i++) {
      const res = await call(publicPort, 'POST', '/token', { authorization: basicHeader(...client.basic), 'content-type': 'application/x-www-form-urlencoded' }, form);
      assert.equal(res.status, 200, res.text);
    }
    // Successive connections go to the workers in turn, so these scrapes reach both.
    for (let i = 0; i < 4; i++) {
      const res = await call(managementPort, 'GET', '/metrics');
      assert.equal(res.status, 200, res.text);
      const samples = parsePrometheus(res.text);
      assert.equal(valueOf(samples, 'km_workers'), 2);
      assert.equal(valueOf(samples, 'km_tokens_issued_total', { grant_type: 'client_credentials', client_id: client.id, format: 'opaque' }), issued);
      assert.equal(valueOf(samples, 'km_http_request_duration_seconds_count', { route: '/token', status: '200' }), issued);
      // One copy of what every worker reads alike, not the sum of two.
      const age = valueOf(samples, 'km_signing_key_age_seconds');
      assert.ok(age >= 0 && age < 600, `signing key age ${age}`);
    }
  });
});
