// Finds the database the configuration names: DATABASE_URL, or else the embedded PostgreSQL
// under the data directory (started if it is not running). Server and CLI both come here,
// so they always reach the same database.
import { sql } from 'kysely';
import type { Config } from '../config/index.ts';
import { createDatabase, type Db } from './database.ts';
import { ensureEmbeddedPostgres, type EmbeddedPostgresOptions } from './embedded.ts';
import { watchEmbeddedPostgres, type WatchdogLogger } from './embedded-watchdog.ts';
import { DatabaseUnreachableError } from './connection-failure.ts';
import { migrate, type Migration } from './migrator.ts';

export interface DatabaseHandle {
  db: Db;
  url: string;
  embedded: boolean;
  /**
   * Applies the migrations on a connection of their own: a migration may run for longer than
   * the request timeout of `db`.
   */
  migrate(): Promise<Migration[]>;
  close(): Promise<void>;
}

export interface ConnectOptions {
  applicationName: string;
  /** The server's database_request_timeout (milliseconds) for the pool of `db`; unset for keymgr. */
  requestTimeoutMs?: number;
  log?: (m: string) => void;
  warn?: (m: string) => void;
  onPoolError?: (err: Error) => void;
  /** Called with the duration of every statement, in seconds (the metrics). */
  onQuery?: (seconds: number) => void;
  /** False for keymgr: only the server creates the embedded cluster (src/db/embedded.ts). */
  createEmbedded?: boolean;
  /** A server's: start the embedded PostgreSQL again should it die, and log it here. */
  keepEmbeddedRunning?: WatchdogLogger;
}

export async function connectDatabase(
  config: Config,
  { applicationName, requestTimeoutMs, log = () => {}, warn, onPoolError, onQuery, createEmbedded = true, keepEmbeddedRunning }: ConnectOptions,
): Promise<DatabaseHandle> {
  const embeddedOptions: EmbeddedPostgresOptions = { dataDir: config.dataDir, port: config.embeddedPostgresPort, log, warn, create: createEmbedded };
  const embedded = config.databaseUrl ? undefined : await ensureEmbeddedPostgres(embeddedOptions);
  const url = config.databaseUrl ?? embedded!.url;
  const db = createDatabase({ url, poolSize: config.databasePoolSize, applicationName, requestTimeoutMs, onPoolError, onQuery });
  if (config.databaseUrl) {
    // Here, rather than in whichever query comes first, so that the failure names DATABASE_URL.
    try {
      await sql`select 1`.execute(db);
    } catch (err) {
      await db.destroy();
      throw new DatabaseUnreachableError(config.databaseUrl, err);
    }
  }
  const watchdog = embedded && keepEmbeddedRunning ? watchEmbeddedPostgres(embedded, embeddedOptions, keepEmbeddedRunning) : undefined;
  return {
    db,
    url,
    embedded: embedded !== undefined,
    async migrate() {
      const untimed = createDatabase({ url, poolSize: 1, applicationName });
      try {
        return await migrate(untimed);
      } finally {
        await untimed.destroy();
      }
    },
    async close() {
      await db.destroy();
      await (watchdog ?? embedded)?.stop();
    },
  };
}
