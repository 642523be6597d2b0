// keymgr user, role and scope commands, with --json, against a running server.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { runKeymgr, type KeymgrResult } from '../support/cli.ts';

describe('keymgr user, role and scope', () => {
  let database: TestDatabase;
  let server: TestServer;
  let env: Record<string, string>;
  let client: { id: string; secret: string };
  const keymgr = (args: string[], input?: string) => runKeymgr([...args, '--json'], env, input);
  const ok = (r: KeymgrResult) => assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
  const refused = (r: KeymgrResult, message: RegExp) => {
    assert.notEqual(r.code, 0);
    assert.equal(r.stdout, '');
    assert.match(JSON.parse(r.stderr).error, message);
  };
  const signIn = (username: string, password: string, scope = 's1 s2') =>
    postForm(`${server.url}/token`, { grant_type: 'password', username, password, scope }, { basic: [client.id, client.secret] });

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    env = { DATABASE_URL: database.url, KM_KEYS_DIR: server.keysDir, KM_LOG_LEVEL: 'silent' };
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  it('role create / list; duplicates and bad names are refused', async () => {
    ok(await keymgr(['role', 'create', 'admin', '--description', 'Administrators']));
    refused(await keymgr(['role', 'create', 'admin']), /already exists/);
    refused(await keymgr(['role', 'create', 'bad name!']), /role name/);
    const list = await keymgr(['role', 'list']);
    ok(list);
    assert.deepEqual(list.json, [{ name: 'admin', description: 'Administrators', users: 0 }]);
  });

  it('scope create / list / delete with role bindings', async () => {
    const s1 = await keymgr(['scope', 'create', 's1', '--description', 'First']);
    ok(s1);
    assert.deepEqual(s1.json, { name: 's1', description: 'First', roles: [] });
    ok(await keymgr(['scope', 'create', 's2', '--roles', 'admin']));
    refused(await keymgr(['scope', 'create', 's3', '--roles', 'nope']), /no role "nope"/);
    refused(await keymgr(['scope', 'create', 's1']), /already exists/);
    ok(await keymgr(['scope', 'create', 'gone']));
    ok(await keymgr(['scope', 'delete', 'gone']));
    const list = await keymgr(['scope', 'list']);
    assert.deepEqual(list.json.map((s: { name: string; roles: string[] }) => [s.name, s.roles]), [['s1', []], ['s2', ['admin']]]);
    const c = await keymgr(['client', 'create', '--name', 'app', '--grant-types', 'password,refresh_token', '--scope', 's1 s2']);
    ok(c);
    client = { id: c.json.client_id, secret: c.json.client_secret };
  });

  it('user create reads the password from stdin and stores only an argon2id hash', async () => {
    const r = await keymgr(['user', 'create', '--username', 'Alice', '--password-stdin', '--roles', 'admin'], 'first password 1\n');
    ok(r);
    assert.equal(r.json.username, 'Alice');
    assert.deepEqual(r.json.roles, ['admin']);
    assert.doesNotMatch(r.stdout, /first password|argon2/);
    const row = await database.db.selectFrom('users').select('password_hash').where('id', '=', r.json.id).executeTakeFirstOrThrow();
    assert.match(row.password_hash, /^\$argon2id\$v=19\$/);
    for (const p of ['m=19456', 't=2', 'p=1']) assert.ok(row.password_hash.includes(p), p);
    assert.equal((await database.dumpAllTables()).includes('first password 1'), false);
  });

  it('user create refuses duplicates (any case), unknown roles, bad passwords and usernames', async () => {
    refused(await keymgr(['user', 'create', '--username', 'alice', '--password-stdin'], 'another password'), /already exists/);
    refused(await keymgr(['user', 'create', '--username', 'carl', '--password-stdin', '--roles', 'ghost'], 'a good password'), /no role "ghost"/);
    assert.equal(await database.db.selectFrom('users').select('id').where('username', '=', 'carl').executeTakeFirst(), undefined, 'no half-made user');
    refused(await keymgr(['user', 'create', '--username', 'carl'], 'a good password'), /password-stdin/);
    refused(await keymgr(['user', 'create', '--username', 'carl', '--password-stdin'], ''), /no password/);
    refused(await keymgr(['user', 'create', '--username', 'carl', '--password-stdin'], 'short'), /at least 8/);
    refused(await keymgr(['user', 'create', '--username', 'carl', '--password-stdin'], 'nul\0inside password'), /NUL/);
    refused(await keymgr(['user', 'create', '--username', 'x'.repeat(10 * 1024), '--password-stdin'], 'a good password'), /username/);
    refused(await keymgr(['user', 'create', '--username', 'tab\there', '--password-stdin'], 'a good password'), /control characters/);
  });

  it('user list shows roles and no hashes; role grant and revoke change them', async () => {
    ok(await keymgr(['user', 'create', '--username', 'bob', '--password-stdin'], 'bob password 1'));
    const roles = async (name: string) => (await keymgr(['user', 'list'])).json.find((u: { username: string }) => u.username === name).roles;
    assert.deepEqual(await roles('bob'), []);
    assert.equal((await keymgr(['user', 'list'])).stdout.includes('argon2'), false);
    ok(await keymgr(['role', 'grant', 'bob', 'admin']));
    assert.deepEqual(await roles('bob'), ['admin']);
    ok(await keymgr(['role', 'revoke', 'bob', 'admin']));
    assert.deepEqual(await roles('bob'), []);
    refused(await keymgr(['role', 'grant', 'nobody', 'admin']), /no user/);
    refused(await keymgr(['role', 'grant', 'bob', 'ghost']), /no role/);
  });

  it('what the CLI changes, the running server applies on the next request', async () => {
    const first = await signIn('bob', 'bob password 1');
    assert.equal(first.status, 200, first.text);
    assert.equal(first.json.scope, 's1', 'no admin role: no s2');
    ok(await keymgr(['role', 'grant', 'bob', 'admin']));
    assert.equal((await signIn('bob', 'bob password 1')).json.scope, 's1 s2');

    ok(await keymgr(['user', 'set-password', 'bob', '--password-stdin'], 'bob password 2'));
    assert.equal((await signIn('bob', 'bob password 1')).json.error, 'invalid_grant');
    const fresh = await signIn('bob', 'bob password 2');
    assert.equal(fresh.status, 200);

    ok(await keymgr(['user', 'disable', 'bob']));
    assert.equal((await signIn('bob', 'bob password 2')).json.error, 'invalid_grant');
    const refresh = await postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: fresh.json.refresh_token }, { basic: [client.id, client.secret] });
    assert.equal(refresh.status, 400);
    assert.equal(refresh.json.error, 'invalid_grant');
    ok(await keymgr(['user', 'enable', 'bob']));
    assert.equal((await signIn('bob', 'bob password 2')).status, 200);

    ok(await keymgr(['user', 'delete', 'bob']));
    assert.equal((await signIn('bob', 'bob password 2')).json.error, 'invalid_grant');
    refused(await keymgr(['user', 'delete', 'bob']), /no user/);
  });
});
