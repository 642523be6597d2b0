// The PostgreSQL the bench runs against: BENCH_DATABASE_URL, or else an embedded cluster of the
// bench's own (own data directory, own port), so that a developer's server and the tests are
// never disturbed. Each run gets a fresh database that is dropped at the end.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { loadConfig } from '../src/config/index.ts';
import { createDatabase } from '../src/db/database.ts';
import { ensureEmbeddedPostgres, isEmbeddedPostgresRunning } from '../src/db/embedded.ts';

/** A connection that may create and drop databases: the external URL, or the embedded cluster's superuser. */
interface DatabaseHandle {
  db: ReturnType<typeof createDatabase>;
  url: string;
  /** This run started the embedded cluster (and so may restart it). */
  started: boolean;
  /** PostgreSQL itself, when this run started it: see BenchDatabase.cluster. */
  cluster: Cluster | undefined;
  close(): Promise<void>;
}

export interface Cluster {
  /** A fast shutdown, as `pg_ctl stop` does: every session ended, new connections refused. */
  stop(): Promise<void>;
  /** Resolves once PostgreSQL accepts connections again. */
  start(): Promise<void>;
}

async function connectAsAdmin(external: string | undefined, dataDir: string, port: number): Promise<DatabaseHandle> {
  let embedded = external ? undefined : await ensureEmbeddedPostgres({ dataDir, port });
  const url = external ?? embedded!.adminUrl;
  const db = createDatabase({ url, poolSize: 2, applicationName: 'keymanager-bench' });
  const cluster: Cluster | undefined = embedded?.started ? {
    async stop() {
      const postmaster = Number(readFileSync(join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
      process.kill(postmaster, 'SIGINT');
      while (isEmbeddedPostgresRunning(dataDir)) await sleep(20);
    },
    async start() {
      // The new handle is the one that stops it at the end.
      embedded = await ensureEmbeddedPostgres({ dataDir, port });
    },
  } : undefined;
  return { db, url, started: embedded?.started ?? false, cluster, async close() { await db.destroy(); await embedded?.stop(); } };
}

/**
 * Statements the server sent to its database, counted by pg_stat_statements (top-level
 * statements only, BEGIN and COMMIT included: each is a round trip).
 */
export interface StatementCounter {
  reset(): Promise<void>;
  /** Statements executed in the bench database since the last reset. */
  count(): Promise<number>;
  /** The DELETEs on tokens since the last reset (the purge's): how many, the longest, the sum. */
  tokenDeletes(): Promise<{ calls: number; maxMs: number; totalMs: number }>;
}

const PRELOAD = 'pg_stat_statements';

/**
 * pg_stat_statements must be preloaded, which takes a restart: done once, in the bench's own
 * cluster only (ALTER SYSTEM persists it under bench/.data), and only when this run started the
 * cluster, so that nobody else's sessions are cut. False when it is not available this run.
 */
async function enableStatementStats(admin: DatabaseHandle, reconnect: () => Promise<DatabaseHandle>): Promise<{ admin: DatabaseHandle; enabled: boolean }> {
  const { rows } = await sql<{ libs: string }>`select current_setting('shared_preload_libraries') as libs`.execute(admin.db);
  const libs = rows[0]?.libs ?? '';
  if (!libs.split(',').map((l) => l.trim()).includes(PRELOAD)) {
    if (!admin.started) return { admin, enabled: false };
    const wanted = libs.trim() ? `${libs},${PRELOAD}` : PRELOAD;
    await sql.raw(`alter system set shared_preload_libraries = '${wanted.replace(/'/g, "''")}'`).execute(admin.db);
    await admin.close();
    admin = await reconnect();
  }
  // In the cluster's maintenance database, not the bench database: keymanager's schema stays as
  // its migrations make it, and the view lists the statements of every database.
  await sql`create extension if not exists pg_stat_statements`.execute(admin.db);
  return { admin, enabled: true };
}

function statementCounter(admin: DatabaseHandle, oid: string): StatementCounter {
  return {
    async reset() {
      await sql`select pg_stat_statements_reset(0, ${oid}::oid, 0)`.execute(admin.db);
    },
    async count() {
      const { rows } = await sql<{ n: string }>`select coalesce(sum(calls), 0)::text as n from pg_stat_statements where dbid = ${oid}::oid`.execute(admin.db);
      return Number(rows[0]?.n ?? 0);
    },
    async tokenDeletes() {
      // Whatever shape the purge takes (one DELETE, batches, a CTE), it deletes from tokens.
      const { rows } = await sql<{ calls: string; max_ms: number | null; total_ms: number | null }>`
        select coalesce(sum(calls), 0)::text as calls, max(max_exec_time) as max_ms, sum(total_exec_time) as total_ms
          from pg_stat_statements where dbid = ${oid}::oid and query ~* 'delete\\s+from\\s+"?tokens"?([^_a-z0-9]|$)'`.execute(admin.db);
      const r = rows[0];
      return { calls: Number(r?.calls ?? 0), maxMs: r?.max_ms ?? 0, totalMs: r?.total_ms ?? 0 };
    },
  };
}

export interface BenchDatabase {
  /** URL of the fresh database the server under test uses. */
  url: string;
  name: string;
  /** True when backends run on this machine, so that their CPU can be read from /proc. */
  local: boolean;
  /** Process ids of the keymanager sessions on the bench database right now. */
  serverBackendPids(): Promise<number[]>;
  /** Statement counts of the bench database; only in the embedded cluster. */
  statements: StatementCounter | undefined;
  /** A superuser (embedded) or BENCH_DATABASE_URL connection to the cluster, for the bench's own queries. */
  admin: ReturnType<typeof createDatabase>;
  /** PostgreSQL, to stop and start again (scenario o); only in the embedded cluster this run started. */
  cluster: Cluster | undefined;
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
  const connect = () => connectAsAdmin(external, config.dataDir, config.embeddedPostgresPort);
  let admin = await connect();
  try {
    let statementStats = false;
    if (!external) {
      ({ admin, enabled: statementStats } = await enableStatementStats(admin, connect));
      await dropLeftovers(admin);
    }
    const name = `km_bench_${randomBytes(6).toString('hex')}`;
    await sql`create database ${sql.id(name)}`.execute(admin.db);
    const url = new URL(admin.url);
    url.pathname = `/${name}`;
    const { rows: [created] } = await sql<{ oid: string }>`select oid::text as oid from pg_database where datname = ${name}`.execute(admin.db);
    const handle = admin;
    return {
      url: url.href,
      name,
      local: !external,
      statements: statementStats && created ? statementCounter(handle, created.oid) : undefined,
      admin: handle.db,
      cluster: handle.cluster,
      async serverBackendPids() {
        const { rows } = await sql<{ pid: number }>`
          select pid from pg_stat_activity where datname = ${name} and application_name = 'keymanager'`.execute(handle.db);
        return rows.map((r) => r.pid);
      },
      async close() {
        try {
          await sql`drop database if exists ${sql.id(name)} with (force)`.execute(handle.db);
        } finally {
          await handle.close();
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
