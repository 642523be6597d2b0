// Applies db/migrations/NNNN_name.sql in order, once each, under an advisory lock so that
// several instances starting together do not race. Applied files are frozen: a changed
// checksum stops the start instead of silently diverging from what is deployed.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import type { Db } from './database.ts';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../db/migrations/', import.meta.url));
const LOCK_KEY = 0x6b6d6772; // "kmgr"

export interface Migration {
  version: string;
  name: string;
  sql: string;
  checksum: string;
}

export function readMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((file) => {
      const text = readFileSync(`${dir}/${file}`, 'utf8');
      return {
        version: file.slice(0, 4),
        name: file.slice(5, -4),
        sql: text,
        checksum: createHash('sha256').update(text).digest('hex'),
      };
    });
}

export class MigrationError extends Error {}

/** Returns the migrations applied by this call. */
export async function migrate(db: Db, migrations = readMigrations()): Promise<Migration[]> {
  return db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(${LOCK_KEY})`.execute(trx);
    await sql`create table if not exists schema_migrations (
      version text primary key,
      name text not null,
      checksum text not null,
      applied_at timestamptz not null default now()
    )`.execute(trx);
    const applied = await trx.selectFrom('schema_migrations').selectAll().execute();
    const byVersion = new Map(applied.map((m) => [m.version, m]));
    const done: Migration[] = [];
    for (const m of migrations) {
      const previous = byVersion.get(m.version);
      if (previous) {
        if (previous.checksum !== m.checksum) {
          throw new MigrationError(`migration ${m.version}_${m.name} was changed after it was applied; add a new migration instead`);
        }
        continue;
      }
      await sql.raw(m.sql).execute(trx);
      await trx.insertInto('schema_migrations')
        .values({ version: m.version, name: m.name, checksum: m.checksum })
        .execute();
      done.push(m);
    }
    return done;
  });
}
