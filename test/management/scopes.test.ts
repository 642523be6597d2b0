// /management/scopes: every route's success and error cases, each response checked against
// the served OpenAPI document.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { TestDatabase } from '../support/database.ts';
import type { TestServer } from '../support/server.ts';
import { expectReply, managementClient, startManagementApi } from '../support/management.ts';
import { conformanceChecker } from '../support/openapi.ts';
import { createRole } from '../../src/store/users.ts';
import { runKeymgr } from '../support/cli.ts';

const PREFIX = '/management/scopes';

describe('management API: scopes', () => {
  let database: TestDatabase;
  let server: TestServer;
  let call: ReturnType<typeof managementClient>;
  let conformance: ReturnType<typeof conformanceChecker>;
  let admin: string;
  let auditor: string;

  before(async () => {
    ({ database, server, call, conformance, admin, auditor } = await startManagementApi({}));
    for (const role of ['staff', 'finance']) await createRole(database.db, role);
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const expect = expectReply(() => ({ call, conformance, admin }));

  it('creates a scope, optionally bound to roles: 201; a duplicate is 409', async () => {
    const res = await expect(201, 'POST', PREFIX, { body: { name: 'payroll:read', description: 'read the payroll', roles: ['staff', 'finance', 'finance'] } });
    assert.deepEqual({ ...res.json, roles: [...res.json.roles].sort() }, { name: 'payroll:read', description: 'read the payroll', roles: ['finance', 'staff'] });
    assert.equal(res.headers.location, `${PREFIX}/${encodeURIComponent('payroll:read')}`);
    assert.deepEqual((await expect(201, 'POST', PREFIX, { body: { name: 'profile' } })).json, { name: 'profile', description: '', roles: [] });
    assert.equal((await expect(409, 'POST', PREFIX, { body: { name: 'profile' } })).json.error, 'conflict');
  });

  it('refuses bad bodies with the field at fault (400), nothing half-created', async () => {
    for (const [body, reason] of [
      [{ name: 'two words' }, /^name: /],
      [{ name: 'quote"' }, /^name: /],
      [{ name: 's'.repeat(201) }, /^name: /],
      [{}, /^name: /],
      [{ name: 'x', roles: ['nope'] }, /^roles: no role "nope"/],
      [{ name: 'x', roles: ['bad role'] }, /^roles\.0: /],
      [{ name: 'x', description: 'a\u0000b' }, /^description: /],
      [{ name: 'x', description: 'a\ud800b' }, /^description: /],
      [{ name: 'x', bound: true }, /bound/],
    ] as const) {
      assert.match((await expect(400, 'POST', PREFIX, { body })).json.error_description, reason, JSON.stringify(body));
    }
    assert.equal(await database.db.selectFrom('scopes').select('name').where('name', '=', 'x').executeTakeFirst(), undefined);
  });

  it('lists with a cursor and a total (as keymgr scope list --json)', async () => {
    for (const name of ['a', 'b', 'c']) await expect(201, 'POST', PREFIX, { body: { name } });
    const first = await expect(200, 'GET', `${PREFIX}?limit=2`);
    // Five made here, and `introspect`, which migration 0010 registers (README "API gateways").
    assert.equal(first.json.total, 6);
    const items = [...first.json.items];
    let cursor = first.json.next_cursor as string | null;
    while (cursor) {
      const next = await expect(200, 'GET', `${PREFIX}?limit=2&cursor=${cursor}`);
      items.push(...next.json.items);
      cursor = next.json.next_cursor;
    }
    assert.deepEqual(items.map((s) => s.name), ['a', 'b', 'c', 'introspect', 'payroll:read', 'profile']);
    assert.deepEqual(items[3].roles, ['introspector']);
    assert.deepEqual(items[4].roles, ['finance', 'staff']);
    await expect(400, 'GET', `${PREFIX}?limit=0`);
    await expect(400, 'GET', `${PREFIX}?cursor=AA`);
  });

  it('shows a scope; unknown or impossible names are 404', async () => {
    assert.deepEqual((await expect(200, 'GET', `${PREFIX}/payroll%3Aread`)).json, { name: 'payroll:read', description: 'read the payroll', roles: ['finance', 'staff'] });
    await expect(404, 'GET', `${PREFIX}/nope`);
    await expect(404, 'GET', `${PREFIX}/a%00b`);
    await expect(404, 'GET', `${PREFIX}/two%20words`);
  });

  it('updates the description and replaces the role bindings (API and keymgr scope update); bad changes are 400 and change nothing', async () => {
    const bindings = async () => (await database.db.selectFrom('scope_roles').select('role_name').where('scope_name', '=', 'profile').orderBy('role_name').execute()).map((r) => r.role_name);
    assert.deepEqual((await expect(200, 'PATCH', `${PREFIX}/profile`, { body: { description: 'your profile' } })).json, { name: 'profile', description: 'your profile', roles: [] });
    assert.deepEqual((await expect(200, 'PATCH', `${PREFIX}/profile`, { body: { roles: ['staff', 'finance', 'staff'] } })).json, { name: 'profile', description: 'your profile', roles: ['finance', 'staff'] });
    for (const [body, reason] of [
      [{}, /^body: give description and\/or roles$/],
      [{ roles: ['nope'] }, /^roles: no role "nope"/],
      [{ roles: ['bad role'] }, /^roles\.0: /],
      [{ description: 'a\u0000b' }, /^description: /],
      [{ name: 'renamed' }, /name/],
    ] as const) {
      assert.match((await expect(400, 'PATCH', `${PREFIX}/profile`, { body })).json.error_description, reason, JSON.stringify(body));
    }
    assert.deepEqual(await bindings(), ['finance', 'staff']);
    await expect(404, 'PATCH', `${PREFIX}/nope`, { body: { description: 'x' } });
    await expect(403, 'PATCH', `${PREFIX}/profile`, { authorization: auditor, body: { roles: [] } });
    assert.deepEqual(await bindings(), ['finance', 'staff']);

    const env = { DATABASE_URL: database.url, KM_KEYS_DIR: server.keysDir, KM_LOG_LEVEL: 'silent' };
    const cli = await runKeymgr(['scope', 'update', 'profile', '--roles', '', '--json'], env);
    assert.equal(cli.code, 0, cli.stderr);
    assert.deepEqual(cli.json, { name: 'profile', description: 'your profile', roles: [] });
    assert.deepEqual(await bindings(), []);
    const refused = await runKeymgr(['scope', 'update', 'profile', '--json'], env);
    assert.equal(refused.code, 1);
    assert.deepEqual(JSON.parse(refused.stderr), { error: 'give --description and/or --roles' });
  });

  it('deletes a scope (its role bindings go with it); unknown is 404', async () => {
    assert.deepEqual((await expect(200, 'DELETE', `${PREFIX}/payroll:read`)).json, { name: 'payroll:read', deleted: true });
    const bindings = await database.db.selectFrom('scope_roles').select('role_name').where('scope_name', '=', 'payroll:read').execute();
    assert.equal(bindings.length, 0);
    await expect(404, 'GET', `${PREFIX}/payroll:read`);
    await expect(404, 'DELETE', `${PREFIX}/payroll:read`);
    await expect(404, 'DELETE', `${PREFIX}/a%00b`);
    // The role it was bound to can go now.
    assert.deepEqual((await expect(200, 'DELETE', '/management/roles/finance')).json, { name: 'finance', deleted: true });
  });

  it('an auditor reads, never writes', async () => {
    await expect(200, 'GET', PREFIX, { authorization: auditor });
    await expect(200, 'GET', `${PREFIX}/profile`, { authorization: auditor });
    await expect(403, 'POST', PREFIX, { authorization: auditor, body: { name: 'mallory' } });
    await expect(403, 'DELETE', `${PREFIX}/profile`, { authorization: auditor });
    await expect(200, 'GET', `${PREFIX}/profile`);
    await expect(401, 'GET', PREFIX, { authorization: 'Bearer nope' });
  });

  it('every documented scopes operation was exercised above', () => {
    assert.deepEqual(conformance.unexercised((op) => op.split(' ')[1]!.startsWith(PREFIX)), []);
  });
});
