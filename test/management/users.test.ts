// /management/users: every route's success and error cases, each response checked against
// the served OpenAPI document.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import type { TestDatabase } from '../support/database.ts';
import type { TestServer } from '../support/server.ts';
import { expectReply, managementClient, startManagementApi } from '../support/management.ts';
import { conformanceChecker } from '../support/openapi.ts';
import { verifyPassword } from '../../src/store/passwords.ts';
import { reserveLoginAttempt } from '../../src/store/login-failures.ts';
import { createRole } from '../../src/store/users.ts';
import { runKeymgr } from '../support/cli.ts';

const PREFIX = '/management/users';

describe('management API: users', () => {
  let database: TestDatabase;
  let server: TestServer;
  let call: ReturnType<typeof managementClient>;
  let conformance: ReturnType<typeof conformanceChecker>;
  let admin: string;
  let auditor: string;

  before(async () => {
    ({ database, server, call, conformance, admin, auditor } = await startManagementApi({ passwordHashMemoryKib: 8192, passwordHashIterations: 1 }));
    for (const role of ['staff', 'finance', 'ops']) await createRole(database.db, role);
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const expect = expectReply(() => ({ call, conformance, admin }));
  const storedHash = async (username: string) => (await database.db.selectFrom('users').select('password_hash')
    .where('username', '=', username).executeTakeFirstOrThrow()).password_hash;

  it('creates a user: 201, roles granted, the password hashed and never returned', async () => {
    const res = await expect(201, 'POST', PREFIX, { body: { username: 'Alice', password: 'alice-password-1', roles: ['staff', 'finance', 'staff'] } });
    assert.equal(res.headers.location, `${PREFIX}/Alice`);
    assert.equal(res.json.username, 'Alice');
    assert.deepEqual(res.json.roles, ['finance', 'staff']);
    assert.equal(res.json.disabled, false);
    assert.equal(res.json.federated_idp, null);
    assert.equal(JSON.stringify(res.json).includes('password'), false, 'no password field, not even the hash');
    const hash = await storedHash('Alice');
    assert.match(hash, /^\$argon2id\$v=19\$m=8192,t=1,p=1\$/);
    assert.equal(await verifyPassword(hash, 'alice-password-1'), true);
    const shown = await expect(200, 'GET', `${PREFIX}/alice`);
    assert.deepEqual(shown.json, res.json, 'found regardless of case');
    const unicode = await expect(201, 'POST', PREFIX, { body: { username: 'zoë/ops', password: 'zoë-password-1' } });
    assert.equal(unicode.headers.location, `${PREFIX}/${encodeURIComponent('zoë/ops')}`);
    assert.equal((await expect(200, 'GET', unicode.headers.location as string)).json.username, 'zoë/ops');
  });

  it('refuses bad bodies with the field at fault (400), duplicates (409)', async () => {
    const cases: [unknown, RegExp][] = [
      [{ username: 'bob' }, /^password: /],
      [{ username: 'bob', password: 'short' }, /^password: password must be at least 8 characters/],
      [{ username: 'bob', password: 'bob-\ud800-password' }, /^password: /],
      [{ username: 'bob\u200b', password: 'bob-password-1' }, /^username: username must not contain control/],
      [{ username: 'bob\ud800', password: 'bob-password-1' }, /^username: /],
      [{ username: '', password: 'bob-password-1' }, /^username: /],
      [{ username: 'b'.repeat(256), password: 'bob-password-1' }, /^username: /],
      [{ username: 'bob', password: 'bob-password-1', roles: ['nope'] }, /^roles: no role "nope"/],
      [{ username: 'bob', password: 'bob-password-1', roles: ['bad role'] }, /^roles\.0: /],
      [{ username: 'bob', password: 'bob-password-1', password_hash: '$argon2id$x' }, /password_hash/],
    ];
    for (const [body, reason] of cases) {
      const res = await expect(400, 'POST', PREFIX, { body });
      assert.equal(res.json.error, 'invalid_request');
      assert.match(res.json.error_description, reason, JSON.stringify(body));
    }
    assert.equal(await database.db.selectFrom('users').select('id').where('username', '=', 'bob').executeTakeFirst(), undefined, 'nothing half-created');
    const duplicate = await expect(409, 'POST', PREFIX, { body: { username: 'ALICE', password: 'other-password-1' } });
    assert.equal(duplicate.json.error, 'conflict');
    const notJson = await call('POST', PREFIX, { authorization: admin });
    assert.equal(notJson.status, 415);
    conformance.check('POST', PREFIX, 415, notJson.json);
  });

  it('lists with a cursor and a total, in the order of keymgr user list', async () => {
    for (const name of ['carol', 'Dave', 'erin']) await expect(201, 'POST', PREFIX, { body: { username: name, password: `${name}-password-1` } });
    const first = await expect(200, 'GET', `${PREFIX}?limit=2`);
    assert.equal(first.json.total, 5);
    assert.equal(first.json.items.length, 2);
    const names: string[] = first.json.items.map((u: { username: string }) => u.username);
    let cursor = first.json.next_cursor as string | null;
    while (cursor) {
      const next = await expect(200, 'GET', `${PREFIX}?limit=2&cursor=${cursor}`);
      names.push(...next.json.items.map((u: { username: string }) => u.username));
      cursor = next.json.next_cursor;
    }
    assert.deepEqual(names, ['Alice', 'carol', 'Dave', 'erin', 'zoë/ops']);
    const all = await expect(200, 'GET', PREFIX);
    assert.deepEqual(all.json.items[0].roles, ['finance', 'staff']);
    assert.equal(all.json.next_cursor, null);
    await expect(400, 'GET', `${PREFIX}?limit=0`);
    await expect(400, 'GET', `${PREFIX}?limit=501`);
    await expect(400, 'GET', `${PREFIX}?cursor=AA`); // decodes to a NUL
    await expect(400, 'GET', `${PREFIX}?cursor=not*a*cursor`);
  });

  it('shows; unknown or impossible usernames are 404', async () => {
    await expect(404, 'GET', `${PREFIX}/nobody`);
    await expect(404, 'GET', `${PREFIX}/a%00b`);
    await expect(404, 'GET', `${PREFIX}/${'x'.repeat(300)}`);
    await expect(404, 'GET', `${PREFIX}/%E0%A4%A`); // not a valid escape
  });

  it('updates roles (replacing them) and the disabled flag; refuses an empty change, an unknown role or user', async () => {
    const res = await expect(200, 'PATCH', `${PREFIX}/alice`, { body: { roles: ['ops', 'staff'] } });
    assert.deepEqual(res.json.roles, ['ops', 'staff']);
    const disabled = await expect(200, 'PATCH', `${PREFIX}/alice`, { body: { disabled: true, roles: [] } });
    assert.equal(disabled.json.disabled, true);
    assert.deepEqual(disabled.json.roles, []);
    assert.equal((await expect(200, 'PATCH', `${PREFIX}/alice`, { body: { disabled: false, roles: ['staff', 'finance'] } })).json.disabled, false);
    await expect(400, 'PATCH', `${PREFIX}/alice`, { body: {} });
    const unknownRole = await expect(400, 'PATCH', `${PREFIX}/alice`, { body: { roles: ['staff', 'nope'] } });
    assert.match(unknownRole.json.error_description, /^roles: no role "nope"/);
    assert.deepEqual((await expect(200, 'GET', `${PREFIX}/alice`)).json.roles, ['finance', 'staff'], 'unchanged by the refused update');
    await expect(400, 'PATCH', `${PREFIX}/alice`, { body: { username: 'alicia' } });
    await expect(404, 'PATCH', `${PREFIX}/nobody`, { body: { disabled: true } });
    await expect(404, 'PATCH', `${PREFIX}/nobody`, { body: { roles: ['staff'] } });
  });

  it('sets a password: hashed, checked against the policy; unknown user 404', async () => {
    const before = await storedHash('Alice');
    assert.deepEqual((await expect(200, 'PUT', `${PREFIX}/ALICE/password`, { body: { password: 'alice-password-2' } })).json,
      { username: 'Alice', password_changed: true });
    const after = await storedHash('Alice');
    assert.notEqual(after, before);
    assert.equal(await verifyPassword(after, 'alice-password-2'), true);
    const short = await expect(400, 'PUT', `${PREFIX}/alice/password`, { body: { password: 'short' } });
    assert.match(short.json.error_description, /^password: /);
    await expect(400, 'PUT', `${PREFIX}/alice/password`, { body: { password: 'a'.repeat(1025) } });
    await expect(400, 'PUT', `${PREFIX}/alice/password`, { body: {} });
    await expect(404, 'PUT', `${PREFIX}/nobody/password`, { body: { password: 'nobody-password-1' } });
    assert.equal(await storedHash('Alice'), after);
  });

  it('disables and enables; unknown users are 404', async () => {
    assert.deepEqual((await expect(200, 'POST', `${PREFIX}/alice/disable`)).json, { username: 'Alice', disabled: true });
    assert.equal((await expect(200, 'GET', `${PREFIX}/alice`)).json.disabled, true);
    assert.deepEqual((await expect(200, 'POST', `${PREFIX}/alice/enable`)).json, { username: 'Alice', disabled: false });
    await expect(404, 'POST', `${PREFIX}/nobody/disable`);
    await expect(404, 'POST', `${PREFIX}/nobody/enable`);
  });

  it('unlocks: the account\'s failed sign-ins (keyed by lower(username)) are forgotten, others\' stay', async () => {
    const policy = { maxFailures: 3, maxFailuresPerAddress: 100, windowSeconds: 300 };
    const failures = (username: string, n: number) => database.db.insertInto('login_failures')
      .values(Array.from({ length: n }, () => ({ username_lower: sql<string>`lower(${username})`, source_address: '192.0.2.1', in_flight: false }))).execute();
    await failures('ALICE', 3);
    await failures('carol', 2);
    assert.deepEqual(await reserveLoginAttempt(database.db, 'Alice', '192.0.2.9', policy), { outcome: 'locked', reason: 'account' });
    const res = await expect(200, 'POST', `${PREFIX}/alice/unlock`);
    assert.deepEqual(res.json, { username: 'Alice', unlocked: true, login_failures_deleted: 3 });
    assert.equal((await reserveLoginAttempt(database.db, 'Alice', '192.0.2.9', policy)).outcome, 'reserved');
    const carol = await database.db.selectFrom('login_failures').select('id').where('username_lower', '=', 'carol').execute();
    assert.equal(carol.length, 2);
    await expect(404, 'POST', `${PREFIX}/nobody/unlock`);

    // keymgr user unlock calls the same store function: three new failures and the attempt
    // reserved just above (in flight) go.
    await failures('ALICE', 3);
    const env = { DATABASE_URL: database.url, KM_KEYS_DIR: server.keysDir, KM_LOG_LEVEL: 'silent' };
    const cli = await runKeymgr(['user', 'unlock', 'alice', '--json'], env);
    assert.equal(cli.code, 0, cli.stderr);
    assert.deepEqual(cli.json, { username: 'Alice', unlocked: true, login_failures_deleted: 4 });
    assert.equal((await reserveLoginAttempt(database.db, 'Alice', '192.0.2.9', policy)).outcome, 'reserved');
    const unknown = await runKeymgr(['user', 'unlock', 'nobody', '--json'], env);
    assert.equal(unknown.code, 1);
    assert.deepEqual(JSON.parse(unknown.stderr), { error: 'no user "nobody"' });
  });

  it('grants and revokes roles; unknown users and roles are 404', async () => {
    assert.deepEqual((await expect(200, 'PUT', `${PREFIX}/carol/roles/ops`)).json, { username: 'carol', role: 'ops', granted: true });
    await expect(200, 'PUT', `${PREFIX}/carol/roles/ops`); // again: nothing changes
    assert.deepEqual((await expect(200, 'GET', `${PREFIX}/carol`)).json.roles, ['ops']);
    await expect(404, 'PUT', `${PREFIX}/carol/roles/nope`);
    await expect(404, 'PUT', `${PREFIX}/carol/roles/bad%20role`);
    await expect(404, 'PUT', `${PREFIX}/nobody/roles/ops`);
    assert.deepEqual((await expect(200, 'DELETE', `${PREFIX}/carol/roles/ops`)).json, { username: 'carol', role: 'ops', revoked: true });
    assert.deepEqual((await expect(200, 'DELETE', `${PREFIX}/carol/roles/ops`)).json, { username: 'carol', role: 'ops', revoked: false });
    await expect(404, 'DELETE', `${PREFIX}/carol/roles/nope`);
    await expect(404, 'DELETE', `${PREFIX}/nobody/roles/ops`);
  });

  it('deletes a user; then it is 404', async () => {
    const res = await expect(200, 'DELETE', `${PREFIX}/dave`);
    assert.equal(res.json.username, 'Dave');
    assert.equal(res.json.deleted, true);
    await expect(404, 'GET', `${PREFIX}/dave`);
    await expect(404, 'DELETE', `${PREFIX}/dave`);
  });

  it('an auditor reads, never writes', async () => {
    await expect(200, 'GET', PREFIX, { authorization: auditor });
    await expect(200, 'GET', `${PREFIX}/alice`, { authorization: auditor });
    for (const [method, path, body] of [
      ['POST', PREFIX, { username: 'mallory', password: 'mallory-password-1' }],
      ['PATCH', `${PREFIX}/alice`, { disabled: true }],
      ['DELETE', `${PREFIX}/alice`, undefined],
      ['PUT', `${PREFIX}/alice/password`, { password: 'mallory-password-1' }],
      ['POST', `${PREFIX}/alice/disable`, undefined],
      ['POST', `${PREFIX}/alice/enable`, undefined],
      ['POST', `${PREFIX}/alice/unlock`, undefined],
      ['PUT', `${PREFIX}/alice/roles/ops`, undefined],
      ['DELETE', `${PREFIX}/alice/roles/staff`, undefined],
    ] as const) {
      const refused = await expect(403, method, path, { authorization: auditor, body });
      assert.equal(refused.json.error, 'forbidden');
    }
    const alice = (await expect(200, 'GET', `${PREFIX}/alice`)).json;
    assert.equal(alice.disabled, false);
    assert.deepEqual(alice.roles, ['finance', 'staff']);
    await expect(401, 'GET', PREFIX, { authorization: 'Bearer nope' });
  });

  it('every documented users operation was exercised above', () => {
    // revoke-tokens is the tokens resource's (test/management/tokens.test.ts).
    assert.deepEqual(conformance.unexercised((op) => op.split(' ')[1]!.startsWith(PREFIX) && !op.endsWith('/revoke-tokens')), []);
  });
});
