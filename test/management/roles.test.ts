// /management/roles: every route's success and error cases, each response checked against
// the served OpenAPI document.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { TestDatabase } from '../support/database.ts';
import type { TestServer } from '../support/server.ts';
import { expectReply, managementClient, startManagementApi } from '../support/management.ts';
import { conformanceChecker } from '../support/openapi.ts';
import { runKeymgr } from '../support/cli.ts';
import pg from 'pg';
import { hashPassword } from '../../src/store/passwords.ts';
import { createScope } from '../../src/store/scopes.ts';
import { createUser } from '../../src/store/users.ts';

const FAST = { memoryCost: 8192, timeCost: 1, parallelism: 1 };
const PREFIX = '/management/roles';

describe('management API: roles', () => {
  let database: TestDatabase;
  let server: TestServer;
  let call: ReturnType<typeof managementClient>;
  let conformance: ReturnType<typeof conformanceChecker>;
  let admin: string;
  let auditor: string;

  before(async () => {
    ({ database, server, call, conformance, admin, auditor } = await startManagementApi({}));
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const expect = expectReply(() => ({ call, conformance, admin }));

  it('creates a role: 201; a duplicate is 409; bad names and descriptions are 400', async () => {
    const res = await expect(201, 'POST', PREFIX, { body: { name: 'staff', description: 'everyone employed' } });
    assert.deepEqual(res.json, { name: 'staff', description: 'everyone employed', users: 0 });
    assert.equal(res.headers.location, `${PREFIX}/staff`);
    assert.deepEqual((await expect(201, 'POST', PREFIX, { body: { name: 'finance' } })).json, { name: 'finance', description: '', users: 0 });
    assert.equal((await expect(409, 'POST', PREFIX, { body: { name: 'staff' } })).json.error, 'conflict');
    for (const [body, reason] of [
      [{ name: 'bad role' }, /^name: /],
      [{ name: '' }, /^name: /],
      [{}, /^name: /],
      [{ name: 'x', description: 'a\u0000b' }, /^description: /],
      [{ name: 'x', description: 'd'.repeat(1001) }, /^description: /],
      [{ name: 'x', users: 3 }, /users/],
    ] as const) {
      assert.match((await expect(400, 'POST', PREFIX, { body })).json.error_description, reason, JSON.stringify(body));
    }
  });

  it('lists with a cursor and a total, with how many users hold each role (as keymgr role list --json)', async () => {
    const hash = await hashPassword('user-password-1', FAST);
    await createUser(database.db, 'alice', hash, ['staff', 'finance']);
    await createUser(database.db, 'bob', hash, ['staff']);
    for (const name of ['auditors', 'ops']) await expect(201, 'POST', PREFIX, { body: { name } });
    const first = await expect(200, 'GET', `${PREFIX}?limit=3`);
    // Four made here, and `introspector`, which migration 0010 creates (README "API gateways").
    assert.equal(first.json.total, 5);
    const items = [...first.json.items];
    let cursor = first.json.next_cursor as string | null;
    while (cursor) {
      const next = await expect(200, 'GET', `${PREFIX}?limit=3&cursor=${cursor}`);
      items.push(...next.json.items);
      cursor = next.json.next_cursor;
    }
    assert.deepEqual(items, [
      { name: 'auditors', description: '', users: 0 },
      { name: 'finance', description: '', users: 1 },
      { name: 'introspector', description: 'may introspect any token and follow the revocation feed with a user token carrying the introspect scope', users: 0 },
      { name: 'ops', description: '', users: 0 },
      { name: 'staff', description: 'everyone employed', users: 2 },
    ]);
    await expect(400, 'GET', `${PREFIX}?limit=0`);
    await expect(400, 'GET', `${PREFIX}?cursor=AA`);
  });

  it('shows a role; unknown or impossible names are 404', async () => {
    assert.deepEqual((await expect(200, 'GET', `${PREFIX}/staff`)).json, { name: 'staff', description: 'everyone employed', users: 2 });
    await expect(404, 'GET', `${PREFIX}/nope`);
    await expect(404, 'GET', `${PREFIX}/a%00b`);
  });

  it('changes a role\'s description (API and keymgr role update); unknown is 404, a bad body 400', async () => {
    const before = (await expect(200, 'GET', `${PREFIX}/ops`)).json;
    assert.deepEqual((await expect(200, 'PATCH', `${PREFIX}/ops`, { body: { description: 'runs things' } })).json, { ...before, description: 'runs things' });
    assert.match((await expect(400, 'PATCH', `${PREFIX}/ops`, { body: { description: 'x', name: 'renamed' } })).json.error_description, /name/);
    assert.match((await expect(400, 'PATCH', `${PREFIX}/ops`, { body: {} })).json.error_description, /^description: /);
    await expect(404, 'PATCH', `${PREFIX}/nope`, { body: { description: 'x' } });
    await expect(403, 'PATCH', `${PREFIX}/ops`, { authorization: auditor, body: { description: 'mallory' } });
    const env = { DATABASE_URL: database.url, KM_KEYS_DIR: server.keysDir, KM_LOG_LEVEL: 'silent' };
    const cli = await runKeymgr(['role', 'update', 'ops', '--description', 'on call', '--json'], env);
    assert.equal(cli.code, 0, cli.stderr);
    assert.deepEqual(cli.json, { name: 'ops', description: 'on call' });
    assert.deepEqual((await expect(200, 'GET', `${PREFIX}/ops`)).json, { ...before, description: 'on call' });
    const unknown = await runKeymgr(['role', 'update', 'nope', '--description', 'x', '--json'], env);
    assert.equal(unknown.code, 1);
    assert.deepEqual(JSON.parse(unknown.stderr), { error: 'no role "nope"' });
  });

  it('deletes a role (users lose it); refused with 409 while a scope is bound to it; unknown is 404', async () => {
    await createScope(database.db, 'payroll', '', ['finance']);
    const refused = await expect(409, 'DELETE', `${PREFIX}/finance`);
    assert.match(refused.json.error_description, /restricts scope\(s\) payroll/);
    assert.deepEqual((await expect(200, 'DELETE', `${PREFIX}/staff`)).json, { name: 'staff', deleted: true });
    const held = await database.db.selectFrom('user_roles').select('role_name').where('role_name', '=', 'staff').execute();
    assert.equal(held.length, 0);
    await expect(404, 'DELETE', `${PREFIX}/staff`);
    await expect(404, 'DELETE', `${PREFIX}/bad%20role`);
  });

  it('a scope bound to the role while it is being deleted: 409, never a 500, and the role stays', async () => {
    await expect(201, 'POST', PREFIX, { body: { name: 'contested' } });
    await createScope(database.db, 'contested:scope');
    // A binding written by a transaction that commits only once the DELETE has passed its own
    // check and waits on the row: the foreign key's RESTRICT is what refuses it then.
    const binder = new pg.Client({ connectionString: database.url });
    await binder.connect();
    try {
      await binder.query('begin');
      await binder.query("insert into scope_roles (scope_name, role_name) values ('contested:scope', 'contested')");
      const deletion = call('DELETE', `${PREFIX}/contested`, { authorization: admin });
      const deadline = Date.now() + 10_000;
      for (;;) {
        await binder.query('select pg_stat_clear_snapshot()'); // else fixed at its first read in a transaction
        const { rows } = await binder.query("select count(*)::int as n from pg_locks l join pg_stat_activity a using (pid) where not l.granted and a.query ilike 'delete from \"roles\"%'");
        if (rows[0].n > 0) break;
        assert.ok(Date.now() < deadline, 'the DELETE never waited on the binding');
        await new Promise((r) => setTimeout(r, 20));
      }
      await binder.query('commit');
      const res = await deletion;
      assert.equal(res.status, 409, res.text);
      conformance.check('DELETE', `${PREFIX}/{name}`, 409, res.json);
      assert.deepEqual(res.json, { error: 'conflict', error_description: 'role "contested" is bound to a scope' });
    } finally {
      await binder.end();
    }
    await expect(200, 'GET', `${PREFIX}/contested`);
  });

  it('an auditor reads, never writes', async () => {
    await expect(200, 'GET', PREFIX, { authorization: auditor });
    await expect(200, 'GET', `${PREFIX}/ops`, { authorization: auditor });
    await expect(403, 'POST', PREFIX, { authorization: auditor, body: { name: 'mallory' } });
    await expect(403, 'DELETE', `${PREFIX}/ops`, { authorization: auditor });
    await expect(200, 'GET', `${PREFIX}/ops`);
    await expect(401, 'GET', PREFIX, { authorization: 'Bearer nope' });
  });

  it('every documented roles operation was exercised above', () => {
    assert.deepEqual(conformance.unexercised((op) => op.split(' ')[1]!.startsWith(PREFIX)), []);
  });
});
