// The Kysely instance over a pg pool. Built by the caller (main.ts or the CLI), never a singleton.
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { Database } from './types.ts';

export type Db = Kysely<Database>;

export interface DatabaseOptions {
  url: string;
  poolSize: number;
  applicationName: string;
  onPoolError?: (err: Error) => void;
}

export function createDatabase({ url, poolSize, applicationName, onPoolError }: DatabaseOptions): Db {
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
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

export async function isDatabaseReachable(db: Db): Promise<boolean> {
  try {
    await sql`select 1`.execute(db);
    return true;
  } catch {
    return false;
  }
}
