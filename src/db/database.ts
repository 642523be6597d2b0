// The Kysely instance over a pg pool. Built by the caller (main.ts or the CLI), never a singleton.
import { CompiledQuery, Kysely, PostgresDialect, sql, type LogEvent } from 'kysely';
import pg from 'pg';
import type { Database } from './types.ts';

export type Db = Kysely<Database>;

/** The pool under each Kysely instance made here (for the prepared statements below), and who times its statements. */
const pools = new WeakMap<Db, { pool: pg.Pool; onQuery?: (seconds: number) => void }>();

/**
 * A statement of the hot paths, prepared once per connection under its name: PostgreSQL then
 * neither parses nor plans it again, and only its parameters cross the wire, not its text.
 * The name must be unique to the text. Select explicit columns, never `*`: a column added by
 * a later migration while this instance runs would change a prepared `*` statement's result.
 */
export interface PreparedStatement {
  name: string;
  text: string;
}

/**
 * Runs a prepared statement on its own (no transaction). Inside a transaction, or on a Kysely
 * instance not made by createDatabase, it runs as a plain statement through Kysely.
 */
export async function runPrepared<R>(db: Db, statement: PreparedStatement, values: unknown[]): Promise<{ rows: R[]; rowCount: number }> {
  const handle = pools.get(db);
  if (!handle) {
    const result = await db.executeQuery<R>(CompiledQuery.raw(statement.text, values));
    return { rows: result.rows, rowCount: Number(result.numAffectedRows ?? BigInt(result.rows.length)) };
  }
  // Past Kysely, so its log (which times every other statement) does not see these.
  const started = performance.now();
  try {
    const result = await handle.pool.query({ name: statement.name, text: statement.text, values });
    return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
  } catch (err) {
    // A column type changed under a prepared statement (an administrator's ALTER TABLE): this
    // connection's copy no longer fits. Answer this request with the statement run afresh.
    if ((err as { code?: string }).code !== CACHED_PLAN_CHANGED) throw err;
    const result = await handle.pool.query(statement.text, values);
    return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
  } finally {
    handle.onQuery?.((performance.now() - started) / 1000);
  }
}

/** Connections of the pool under a Kysely instance made by createDatabase, or undefined for any other. */
export function poolConnections(db: Db): { total: number; idle: number; waiting: number } | undefined {
  const pool = pools.get(db)?.pool;
  return pool && { total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount };
}

/** feature_not_supported, raised as "cached plan must not change result type". */
const CACHED_PLAN_CHANGED = '0A000';

export interface DatabaseOptions {
  url: string;
  poolSize: number;
  applicationName: string;
  onPoolError?: (err: Error) => void;
  /** Called with the duration of every statement, failed ones included, in seconds. */
  onQuery?: (seconds: number) => void;
}

export function createDatabase({ url, poolSize, applicationName, onPoolError, onQuery }: DatabaseOptions): Db {
  const pool = new pg.Pool({
    connectionString: url,
    max: poolSize,
    application_name: applicationName,
    // Fail fast when the database is unreachable: requests answer 503 instead of hanging.
    connectionTimeoutMillis: 3000,
    idleTimeoutMillis: 30_000,
  });
  // An idle client losing its connection must not crash the process; the next query reconnects.
  pool.on('error', (err) => onPoolError?.(err));
  // Nor may a client that is checked out when its connection ends (PostgreSQL restarting, an
  // administrator terminating the session): pg emits 'error' on it, which unhandled would end
  // the process. The query in flight fails on its own (a 503), and the pool drops the client.
  pool.on('connect', (client) => {
    client.on('error', (err) => onPoolError?.(err));
  });
  const db = new Kysely<Database>({
    dialect: new PostgresDialect({ pool }),
    ...(onQuery ? { log: (event: LogEvent) => onQuery(event.queryDurationMillis / 1000) } : {}),
  });
  pools.set(db, { pool, onQuery });
  return db;
}

export async function isDatabaseReachable(db: Db): Promise<boolean> {
  try {
    await sql`select 1`.execute(db);
    return true;
  } catch {
    return false;
  }
}
