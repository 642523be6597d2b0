// /management/management-users and `keymgr management unlock|revoke-tokens`: operators see
// who is locked out and how many live tokens each holds; an admin lifts a lockout and revokes
// another operator's tokens, refused from then on at every instance. Responses conform to the
// OpenAPI document.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import type { TestDatabase } from '../support/database.ts';
import { freePort, startTestServer, tempDir, type TestServer } from '../support/server.ts';
import { basicAuth, expectReply, managementClient, startManagementApi } from '../support/management.ts';
import { conformanceChecker } from '../support/openapi.ts';
import { hashPassword } from '../../src/store/passwords.ts';
import { runKeymgr } from '../support/cli.ts';
import { makeClient } from '../support/fixtures.ts';
import { basicHeader } from '../support/http.ts';
import { post as tlsPost } from '../mtls/support.ts';

const FAST = { memoryCost: 8192, timeCost: 1, parallelism: 1 };
const LOCKOUT_AFTER = 3;

describe('management API: management users', () => {
  let database: TestDatabase;
  let server: TestServer;
  /** A second instance on the same database and keys. */
  let other: TestServer;
  let call: ReturnType<typeof managementClient>;
  let callOther: ReturnType<typeof managementClient>;
  let conformance: ReturnType<typeof conformanceChecker>;
  let admin: string;
  let auditor: string;
  let users: { username: string; password_hash: string; roles: string[] }[];

  before(async () => {
    users = [
      { username: 'ops', password_hash: await hashPassword('ops-password-1', FAST), roles: ['admin'] },
      { username: 'watcher', password_hash: await hashPassword('watcher-password-1', FAST), roles: ['auditor'] },
      { username: 'spare', password_hash: await hashPassword('spare-password-1', FAST), roles: ['admin'] },
    ];
    ({ database, server, call, conformance, admin, auditor } = await startManagementApi({ managementUsers: users, lockoutMaxFailures: LOCKOUT_AFTER }));
    other = await startTestServer(database.url, {
      tls: true, port: await freePort(), issuer: 'https://localhost:9443', keysDir: server.keysDir, managementUsers: users, lockoutMaxFailures: LOCKOUT_AFTER,
    });
    callOther = managementClient(other);
  });
  after(async () => {
    await other?.stop();
    await server?.stop();
    await database?.drop();
  });

  const expect = expectReply(() => ({ call, conformance, admin }));
  const login = async (username: string, password: string) => {
    const res = await call('GET', '/management/login', { authorization: basicAuth(username, password) });
    return res.status === 200 ? `Bearer ${res.json.AccessToken}` : res.status;
  };
  const lockOut = async (username: string) => {
    for (let i = 0; i < LOCKOUT_AFTER; i++) assert.equal(await login(username, `wrong-${i}`), 401);
  };

  it('lists the configured operators for an auditor: roles, lockout and live tokens, paged by username', async () => {
    const res = await expect(200, 'GET', '/management/management-users', { authorization: auditor });
    assert.deepEqual(res.json, {
      items: [
        { username: 'ops', roles: ['admin'], locked: false, failed_sign_ins: 0, active_tokens: 1 },
        { username: 'spare', roles: ['admin'], locked: false, failed_sign_ins: 0, active_tokens: 0 },
        { username: 'watcher', roles: ['auditor'], locked: false, failed_sign_ins: 0, active_tokens: 1 },
      ],
      next_cursor: null,
      total: 3,
    });
    const first = await expect(200, 'GET', '/management/management-users?limit=2');
    assert.deepEqual(first.json.items.map((u: { username: string }) => u.username), ['ops', 'spare']);
    const second = await expect(200, 'GET', `/management/management-users?limit=2&cursor=${first.json.next_cursor}`);
    assert.deepEqual(second.json.items.map((u: { username: string }) => u.username), ['watcher']);
    assert.equal(second.json.next_cursor, null);
    await expect(404, 'GET', '/management/management-users/nobody');
  });

  it('shows a locked-out operator; an admin unlocks them (an auditor may not), and they sign in again', async () => {
    await lockOut('spare');
    // Refused before any password check, so not counted again.
    assert.equal(await login('spare', 'spare-password-1'), 401, 'locked: even the right password is refused');
    const shown = await expect(200, 'GET', '/management/management-users/spare', { authorization: auditor });
    assert.deepEqual(shown.json, { username: 'spare', roles: ['admin'], locked: true, failed_sign_ins: LOCKOUT_AFTER, active_tokens: 0 });

    await expect(403, 'POST', '/management/management-users/spare/unlock', { authorization: auditor });
    assert.equal(await login('spare', 'spare-password-1'), 401, 'still locked after the refused unlock');
    const res = await expect(200, 'POST', '/management/management-users/spare/unlock');
    assert.deepEqual(res.json, { username: 'spare', unlocked: true, login_failures_deleted: LOCKOUT_AFTER });
    assert.equal(typeof await login('spare', 'spare-password-1'), 'string');
    await expect(404, 'POST', '/management/management-users/nobody/unlock');
  });

  it('revokes every token of one operator: refused on both instances at once; the others keep working', async () => {
    const a = await login('spare', 'spare-password-1');
    const b = await login('spare', 'spare-password-1');
    assert.equal(typeof a, 'string');
    for (const token of [a, b] as string[]) assert.equal((await callOther('GET', '/management/clients', { authorization: token })).status, 200);
    const listed = await expect(200, 'GET', '/management/management-users/spare');
    assert.equal(listed.json.active_tokens, 3, 'two here plus the one of the previous test');

    await expect(403, 'POST', '/management/management-users/spare/revoke-tokens', { authorization: auditor });
    const res = await expect(200, 'POST', '/management/management-users/spare/revoke-tokens');
    assert.deepEqual(res.json, { username: 'spare', revoked: 3 });
    for (const token of [a, b] as string[]) {
      assert.equal((await call('GET', '/management/clients', { authorization: token })).status, 401);
      assert.equal((await callOther('GET', '/management/clients', { authorization: token })).status, 401);
    }
    assert.equal((await callOther('GET', '/management/clients', { authorization: admin })).status, 200);
    assert.equal((await callOther('GET', '/management/clients', { authorization: auditor })).status, 200);
    await expect(404, 'POST', '/management/management-users/nobody/revoke-tokens');
  });

  it('sign-ins at the public surface never count against an operator (a username carrying the management lockout key)', async () => {
    const client = await makeClient(database.db, { grantTypes: ['password'], scope: ['read'] });
    const ca = readFileSync(join(server.keysDir, 'tls', 'server.crt'), 'utf8');
    for (let i = 0; i < LOCKOUT_AFTER + 2; i++) {
      const res = await tlsPost(`${other.url}/token`, { grant_type: 'password', username: '\u0001management:ops', password: `guess-${i}` },
        { ca, headers: { authorization: basicHeader(...client.basic) } });
      assert.equal(res.status, 400, res.text);
      assert.equal((res.json as { error: string }).error, 'invalid_grant');
    }
    const shown = await expect(200, 'GET', '/management/management-users/ops');
    assert.equal(shown.json.locked, false);
    assert.equal(shown.json.failed_sign_ins, 0);
    assert.equal(typeof await login('ops', 'ops-password-1'), 'string');
  });

  it('keymgr management unlock and revoke-tokens do the same, audited as the OS user', async () => {
    const dir = tempDir('km-cli-config-');
    const toml = users.map((u) => `[[management.users]]\nusername = "${u.username}"\npassword_hash = "${u.password_hash}"\nroles = ["${u.roles[0]}"]\n`).join('\n');
    writeFileSync(join(dir, 'keymanager.toml'), toml);
    const env = { DATABASE_URL: database.url, KM_KEYS_DIR: server.keysDir, KM_CONFIG: join(dir, 'keymanager.toml'), KM_LOG_LEVEL: 'silent' };

    await lockOut('watcher');
    assert.equal(await login('watcher', 'watcher-password-1'), 401);
    const unlocked = await runKeymgr(['management', 'unlock', 'watcher', '--json'], env);
    assert.equal(unlocked.code, 0, unlocked.stderr);
    assert.deepEqual(unlocked.json, { username: 'watcher', unlocked: true, login_failures_deleted: LOCKOUT_AFTER });
    const token = await login('watcher', 'watcher-password-1');
    assert.equal(typeof token, 'string');

    const revoked = await runKeymgr(['management', 'revoke-tokens', 'watcher', '--json'], env);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.deepEqual(revoked.json, { username: 'watcher', revoked: 2 });
    assert.equal((await callOther('GET', '/management/clients', { authorization: token as string })).status, 401);
    assert.equal((await callOther('GET', '/management/clients', { authorization: auditor })).status, 401);

    const unknown = await runKeymgr(['management', 'unlock', 'nobody', '--json'], env);
    assert.equal(unknown.code, 1);
    assert.deepEqual(JSON.parse(unknown.stderr), { error: 'no management user "nobody" in [[management.users]]' });

    const audit = await sql<{ actor_type: string; action: string; resource_id: string; outcome: string }>`
      select actor_type, action, resource_id, outcome from audit_events where action like 'keymgr management %' order by id`.execute(database.db);
    assert.deepEqual(audit.rows, [
      { actor_type: 'cli', action: 'keymgr management unlock', resource_id: 'watcher', outcome: 'success' },
      { actor_type: 'cli', action: 'keymgr management revoke-tokens', resource_id: 'watcher', outcome: 'success' },
      { actor_type: 'cli', action: 'keymgr management unlock', resource_id: 'nobody', outcome: 'failure' },
    ]);
  });

  it('every documented operation under /management/management-users was exercised above', () => {
    assert.deepEqual(conformance.unexercised((op) => op.split(' ')[1]!.startsWith('/management/management-users')), []);
  });
});
