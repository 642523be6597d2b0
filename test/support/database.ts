// A fresh database per test file, on the PostgreSQL that test/run.ts provides.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createDatabase, type Db } from '../../src/db/database.ts';
import { migrate } from '../../src/db/migrator.ts';

export interface TestDatabase {
  url: string;
  db: Db;
  /** Every row of every table, as text: for searching for values that must not be stored. */
  dumpAllTables(): Promise<string>;
  drop(): Promise<void>;
}

function adminUrl(): string {
  const url = process.env.TEST_DATABASE_URL;
  if (!url) throw new Error('TEST_DATABASE_URL is not set: run the tests with `npm test`');
  return url;
}

/** A fresh database, migrated unless `migrated: false` (for tests of the migrations themselves). */
export async function createTestDatabase({ migrated = true } = {}): Promise<TestDatabase> {
  const name = `km_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl() });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(adminUrl());
  url.pathname = `/${name}`;
  const db = createDatabase({ url: url.href, poolSize: 4, applicationName: 'keymanager-test' });
  if (migrated) await migrate(db);
  return {
    url: url.href,
    db,
    async dumpAllTables() {
      const client = new pg.Client({ connectionString: url.href });
      await client.connect();
      try {
        const { rows: tables } = await client.query<{ table_name: string }>(
          "select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'",
        );
        const parts: string[] = [];
        for (const { table_name } of tables) {
          const { rows } = await client.query(`select t::text as row from "${table_name}" t`);
          parts.push(...rows.map((r: { row: string }) => `${table_name}: ${r.row}`));
        }
        return parts.join('\n');
      } finally {
        await client.end();
      }
    },
    async drop() {
      await db.destroy();
      const c = new pg.Client({ connectionString: adminUrl() });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}
