// The Kysely instance over a pg pool. Built by the caller (main.ts or the CLI), never a singleton.
import { CompiledQuery, Kysely, PostgresDialect, sql, type LogEvent } from 'kysely';
import type { Database } from './types.ts';
import { createGuardedPool, type GuardedPool } from './pool.ts';

export type Db = Kysely<Database>;

/** The pool under each Kysely instance made here (for the prepared statements below), and who times its statements. */
const pools = new WeakMap<Db, { pool: GuardedPool; onQuery?: (seconds: number) => void }>();

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
  const client = await handle.pool.connect().catch((err: unknown) => {
    handle.onQuery?.((performance.now() - started) / 1000);
    throw err;
  });
  try {
    const result = await client.query({ name: statement.name, text: statement.text, values });
    return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
  } catch (err) {
    // A column type changed under a prepared statement (an administrator's ALTER TABLE): this
    // connection's copy no longer fits. Answer this request with the statement run afresh.
    if ((err as { code?: string }).code !== CACHED_PLAN_CHANGED) throw err;
    const result = await client.query(statement.text, values);
    return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
  } finally {
    client.release();
    handle.onQuery?.((performance.now() - started) / 1000);
  }
}

/** Connections of the pool under a Kysely instance made by createDatabase, or undefined for any other. */
export function poolConnections(db: Db): { total: number; idle: number; waiting: number } | undefined {
  return pools.get(db)?.pool.stats;
}

/**
 * Something other than a statement found the database gone (the change listener's ping): no
 * connection of the pool under `db` opened before now is used again (src/db/pool.ts).
 */
export function presumeConnectionsLost(db: Db): void {
  pools.get(db)?.pool.presumeLost();
}

/**
 * At a stop, once the requests still running are cut off: PostgreSQL ends the connections of
 * the pool under `db` still at work, rolling back what they had not committed, and no statement
 * starts on it again (src/db/pool.ts). Resolves with how many connections were ended.
 */
export function abandonWorkInFlight(db: Db): Promise<number> {
  return pools.get(db)?.pool.abandonWorkInFlight() ?? Promise.resolve(0);
}

/** feature_not_supported, raised as "cached plan must not change result type". */
const CACHED_PLAN_CHANGED = '0A000';

export interface DatabaseOptions {
  url: string;
  poolSize: number;
  applicationName: string;
  /**
   * The server's database_request_timeout, in milliseconds: the longest wait for a connection
   * and the longest statement. Unset (keymgr, migrations): only connecting is bounded.
   */
  requestTimeoutMs?: number;
  onPoolError?: (err: Error) => void;
  /** Called with the duration of every statement, failed ones included, in seconds. */
  onQuery?: (seconds: number) => void;
}

export function createDatabase({ url, poolSize, applicationName, requestTimeoutMs, onPoolError, onQuery }: DatabaseOptions): Db {
  const pool = createGuardedPool({ url, size: poolSize, applicationName, requestTimeoutMs, onError: onPoolError });
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
