// The PostgreSQL the bench runs against: BENCH_DATABASE_URL, or else an embedded cluster of the
// bench's own (own data directory, own port), so that a developer's server and the tests are
// never disturbed. Each run gets a fresh database that is dropped at the end.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { sql } from 'kysely';
import { loadConfig } from '../src/config/index.ts';
import { createDatabase } from '../src/db/database.ts';
import { ensureEmbeddedPostgres } from '../src/db/embedded.ts';

/** A connection that may create and drop databases: the external URL, or the embedded cluster's superuser. */
interface DatabaseHandle {
  db: ReturnType<typeof createDatabase>;
  url: string;
  close(): Promise<void>;
}

async function connectAsAdmin(external: string | undefined, dataDir: string, port: number): Promise<DatabaseHandle> {
  const embedded = external ? undefined : await ensureEmbeddedPostgres({ dataDir, port });
  const url = external ?? embedded!.adminUrl;
  const db = createDatabase({ url, poolSize: 2, applicationName: 'keymanager-bench' });
  return { db, url, async close() { await db.destroy(); await embedded?.stop(); } };
}

export interface BenchDatabase {
  /** URL of the fresh database the server under test uses. */
  url: string;
  name: string;
  /** True when backends run on this machine, so that their CPU can be read from /proc. */
  local: boolean;
  /** Process ids of the keymanager sessions on the bench database right now. */
  serverBackendPids(): Promise<number[]>;
  /** Drops the database and stops the embedded cluster if this run started it. */
  close(): Promise<void>;
}

export const BENCH_EMBEDDED_PORT = 54339;

export async function openBenchDatabase(benchDir: string): Promise<BenchDatabase> {
  const external = process.env.BENCH_DATABASE_URL || undefined;
  // Only what is set here counts: neither DATABASE_URL nor KM_* of the caller's shell.
  const config = loadConfig({
    env: {},
    overrides: {
      databasePoolSize: 2,
      ...(external ? { databaseUrl: external } : { dataDir: join(benchDir, '.data'), embeddedPostgresPort: BENCH_EMBEDDED_PORT }),
    },
  });
  if (!external && config.databaseUrl) {
    throw new Error('keymanager.toml sets database_url; set BENCH_DATABASE_URL to bench against an external PostgreSQL');
  }
  // PostgreSQL's own start-up chatter is not shown; a failure to start still throws with the reason.
  const admin = await connectAsAdmin(external, config.dataDir, config.embeddedPostgresPort);
  try {
    if (!external) await dropLeftovers(admin);
    const name = `km_bench_${randomBytes(6).toString('hex')}`;
    await sql`create database ${sql.id(name)}`.execute(admin.db);
    const url = new URL(admin.url);
    url.pathname = `/${name}`;
    return {
      url: url.href,
      name,
      local: !external,
      async serverBackendPids() {
        const { rows } = await sql<{ pid: number }>`
          select pid from pg_stat_activity where datname = ${name} and application_name = 'keymanager'`.execute(admin.db);
        return rows.map((r) => r.pid);
      },
      async close() {
        try {
          await sql`drop database if exists ${sql.id(name)} with (force)`.execute(admin.db);
        } finally {
          await admin.close();
        }
      },
    };
  } catch (err) {
    await admin.close().catch(() => {});
    throw err;
  }
}

// An interrupted run (Ctrl-C stops the embedded cluster before the drop) leaves its database
// behind in the bench's own cluster; drop those nobody is connected to.
async function dropLeftovers(admin: DatabaseHandle): Promise<void> {
  const { rows } = await sql<{ datname: string }>`
    select datname from pg_database d where datname like 'km\_bench\_%'
      and not exists (select 1 from pg_stat_activity a where a.datname = d.datname)`.execute(admin.db);
  for (const { datname } of rows) {
    await sql`drop database if exists ${sql.id(datname)}`.execute(admin.db).catch(() => {});
  }
}
