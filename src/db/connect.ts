// Finds the database the configuration names: DATABASE_URL, or else the embedded PostgreSQL
// under the data directory (started if it is not running). Server and CLI both come here,
// so they always reach the same database.
import type { Config } from '../config/index.ts';
import { createDatabase, type Db } from './database.ts';
import { ensureEmbeddedPostgres } from './embedded.ts';

export interface DatabaseHandle {
  db: Db;
  url: string;
  embedded: boolean;
  close(): Promise<void>;
}

export async function connectDatabase(
  config: Config,
  { applicationName, log = () => {}, warn, onPoolError, onQuery }: {
    applicationName: string; log?: (m: string) => void; warn?: (m: string) => void; onPoolError?: (err: Error) => void; onQuery?: (seconds: number) => void;
  },
): Promise<DatabaseHandle> {
  const embedded = config.databaseUrl
    ? undefined
    : await ensureEmbeddedPostgres({ dataDir: config.dataDir, port: config.embeddedPostgresPort, log, warn });
  const url = config.databaseUrl ?? embedded!.url;
  const db = createDatabase({ url, poolSize: config.databasePoolSize, applicationName, onPoolError, onQuery });
  return {
    db,
    url,
    embedded: embedded !== undefined,
    async close() {
      await db.destroy();
      await embedded?.stop();
    },
  };
}
