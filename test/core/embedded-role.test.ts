// The embedded PostgreSQL: the role the server uses owns its database and nothing more — not
// a superuser, cannot create databases or roles. A cluster made by an older version (whose
// server role was the superuser) hands its database over to a role of the server's own.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { ensureEmbeddedPostgres, type EmbeddedPostgresHandle } from '../../src/db/embedded.ts';
import { createDatabase } from '../../src/db/database.ts';
import { migrate } from '../../src/db/migrator.ts';
import { freePort, tempDir } from '../support/server.ts';

async function query<T>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text)).rows as T[];
  } finally {
    await client.end();
  }
}

async function sqlState(url: string, text: string): Promise<string | undefined> {
  try {
    await query(url, text);
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
}

/** What the server's role may do, as PostgreSQL reports it. */
async function assertOwnsOnlyItsDatabase(url: string, expectedRole: string): Promise<void> {
  const [me] = await query<{ role: string; rolsuper: boolean; rolcreatedb: boolean; rolcreaterole: boolean; owns: boolean }>(url,
    `select current_user as role, r.rolsuper, r.rolcreatedb, r.rolcreaterole,
            (select pg_get_userbyid(datdba) = current_user from pg_database where datname = current_database()) as owns
       from pg_roles r where r.rolname = current_user`);
  assert.deepEqual(me, { role: expectedRole, rolsuper: false, rolcreatedb: false, rolcreaterole: false, owns: true });
  assert.equal(await sqlState(url, 'create database km_should_not_exist'), '42501', 'cannot create databases');
  assert.equal(await sqlState(url, 'create role km_should_not_exist'), '42501', 'cannot create roles');
  assert.equal(await sqlState(url, 'select * from pg_authid'), '42501', 'cannot read password hashes');
}

describe('embedded PostgreSQL role', () => {
  const handles: EmbeddedPostgresHandle[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const h of handles) await h.stop().catch(() => {});
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('a new cluster: the server role is not a superuser, owns its database and runs the migrations', async () => {
    const dataDir = tempDir('km-embedded-');
    dirs.push(dataDir);
    const handle = await ensureEmbeddedPostgres({ dataDir, port: await freePort() });
    handles.push(handle);
    await assertOwnsOnlyItsDatabase(handle.url, 'keymanager');
    const db = createDatabase({ url: handle.url, poolSize: 1, applicationName: 'keymanager-test' });
    try {
      assert.ok((await migrate(db)).length > 0, 'the migrations ran as the server role');
    } finally {
      await db.destroy();
    }
    const stored = JSON.parse(readFileSync(join(dataDir, 'embedded-postgres.json'), 'utf8'));
    assert.equal(stored.user, 'keymanager');
    assert.equal(stored.admin_user, 'postgres');
    assert.notEqual(stored.password, stored.admin_password);
  });

  it('a cluster of an older version is handed over to a role of its own', async () => {
    const dataDir = tempDir('km-embedded-old-');
    dirs.push(dataDir);
    const port = await freePort();
    // An older version's credentials: the server used the cluster's superuser.
    writeFileSync(join(dataDir, 'embedded-postgres.json'), JSON.stringify({ user: 'keymanager', password: 'old-superuser-secret', database: 'keymanager' }));
    const first = await ensureEmbeddedPostgres({ dataDir, port });
    handles.push(first);
    // Make it look as the older version left it: database and tables owned by the superuser.
    await query(first.adminUrl, 'alter database keymanager owner to keymanager');
    const asSuperuser = new URL(first.adminUrl);
    asSuperuser.pathname = '/keymanager';
    const old = createDatabase({ url: asSuperuser.href, poolSize: 1, applicationName: 'keymanager-test' });
    await migrate(old);
    await old.destroy();
    await query(asSuperuser.href, "insert into scopes (name) values ('kept')");

    const again = await ensureEmbeddedPostgres({ dataDir, port });
    handles.push(again);
    assert.equal(again.started, false, 'found running');
    await assertOwnsOnlyItsDatabase(again.url, 'keymanager_app');
    const db = createDatabase({ url: again.url, poolSize: 1, applicationName: 'keymanager-test' });
    try {
      assert.deepEqual(await migrate(db), [], 'nothing pending, and the migration table is readable');
      await db.insertInto('scopes').values({ name: 'added' }).execute();
      const names = (await db.selectFrom('scopes').select('name').orderBy('name').execute()).map((r) => r.name);
      // `introspect` is registered by migration 0010.
      assert.deepEqual(names, ['added', 'introspect', 'kept']);
      // Triggers (functions now owned by the role) still fire.
      await db.deleteFrom('scopes').where('name', '=', 'added').execute();
    } finally {
      await db.destroy();
    }
  });
});
