// The connection pool under every Kysely instance createDatabase makes, with what pg's pool
// lacks for outliving a database restart:
//
// - Nothing waits for ever. With a request timeout, a connection (new or from the pool) is
//   waited for that long at most, a statement runs that long at most (PostgreSQL cancels it),
//   and a connection that does not answer for a second more is taken for dead: a host that
//   crashed, or a network that dropped, says nothing, and pg would wait for TCP to give up.
// - A dead connection is never used twice. A statement that finds its connection lost throws
//   that connection away, and with it every connection opened before: they went to the same
//   database and are most likely dead too, but an idle one says so only when used — each
//   would fail one more request once the database is back. presumeLost() does the same when
//   something else (the change listener's ping) notices first.
import pg from 'pg';
import { isConnectionLost } from './errors.ts';
import { workOwners, type WorkOwner } from './work-owner.ts';

export interface PoolOptions {
  url: string;
  size: number;
  applicationName: string;
  /** Milliseconds; unset (keymgr, migrations): only connecting is bounded. */
  requestTimeoutMs?: number;
  onError?: (err: Error) => void;
}

/** What a query through the pool looks like to its callers (Kysely, runPrepared). */
export interface PooledClient {
  query: pg.PoolClient['query'];
  /** Back to the pool, or closed if its connection was lost or predates a loss. */
  release(): void;
}

export interface GuardedPool {
  connect(): Promise<PooledClient>;
  /** Takes every connection opened so far for lost: none of them is handed out again. */
  presumeLost(): void;
  /**
   * For a stop whose requests ran past their time: PostgreSQL ends the connections at work for
   * an abandoned owner (src/db/work-owner.ts; pg_terminate_backend), rolling back what they had
   * not committed — a request whose answer was cut off must not leave its writes behind — and
   * no statement starts for such an owner again. Other work (background jobs, an audit write a
   * finished request left) goes on. Resolves with how many connections were ended; rejects
   * when they could not be (the database refused another connection).
   */
  abandonWorkInFlight(): Promise<number>;
  readonly stats: { total: number; idle: number; waiting: number };
  end(): Promise<void>;
}

/** How much longer than PostgreSQL's own statement timeout a silent connection is given. */
const SILENCE_GRACE_MS = 1000;
/** admin_shutdown: what PostgreSQL itself says of a connection it ends (a 503, were anyone listening). */
const stopping = () => Object.assign(new Error('the server is stopping'), { code: '57P01' });

/** How long ending the connections still at work may take, at a stop. */
const TERMINATE_TIMEOUT_MS = 3000;
/** Without a request timeout: how long connecting may take. */
const DEFAULT_CONNECT_TIMEOUT_MS = 3000;

export function createGuardedPool({ url, size, applicationName, requestTimeoutMs, onError }: PoolOptions): GuardedPool {
  const pool = new pg.Pool({
    connectionString: url,
    max: size,
    application_name: applicationName,
    connectionTimeoutMillis: requestTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    idleTimeoutMillis: 30_000,
    // Idle connections to a host that restarted are reset by its answer to a keep-alive probe.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    ...(requestTimeoutMs ? {
      statement_timeout: requestTimeoutMs,
      // A transaction left open by a client that vanished must not hold its locks for long.
      idle_in_transaction_session_timeout: requestTimeoutMs,
      query_timeout: requestTimeoutMs + SILENCE_GRACE_MS,
    } : {}),
  });
  /** Each loss bumps the epoch; a connection opened at an older epoch is not handed out again. */
  let epoch = 0;
  /** The clients handed out and not yet released: whose work each does, and how to fail its further statements. */
  const checkedOut = new Map<pg.PoolClient, { owner: WorkOwner | undefined; fail: (err: Error) => void }>();
  const epochOf = new WeakMap<pg.Client, number>();
  // An idle client losing its connection must not crash the process; the pool drops it.
  pool.on('error', (err) => onError?.(err));
  pool.on('connect', (client) => {
    epochOf.set(client, epoch);
    // Nor may a client that is checked out when its connection ends: pg emits 'error' on it,
    // which unhandled would end the process. The query in flight fails on its own.
    client.on('error', (err) => onError?.(err));
  });

  const guard = (client: pg.PoolClient): PooledClient => {
    /** Why the connection was found lost: what every later statement on it fails with at once. */
    let lost: unknown;
    checkedOut.set(client, { owner: workOwners.getStore(), fail: (err) => { lost = err; } });
    const query = ((...args: Parameters<pg.PoolClient['query']>) => {
      // A transaction's ROLLBACK after a silent connection would otherwise wait as long again.
      if (lost !== undefined) return Promise.reject(lost);
      const result = (client.query as (...a: unknown[]) => unknown)(...args);
      if (!(result instanceof Promise)) return result;
      return result.catch((err: unknown) => {
        if (isConnectionLost(err)) {
          lost = err;
          if (epochOf.get(client) === epoch) epoch++;
        }
        throw err;
      });
    }) as pg.PoolClient['query'];
    return {
      query,
      release() {
        checkedOut.delete(client);
        client.release(lost !== undefined || epochOf.get(client) !== epoch);
      },
    };
  };

  return {
    async connect() {
      // At most every idle connection is stale; after those, the pool opens new ones.
      for (let attempt = 0; ; attempt++) {
        if (workOwners.getStore()?.abandoned) throw stopping();
        const client = await pool.connect();
        if (workOwners.getStore()?.abandoned) {
          client.release();
          throw stopping();
        }
        if (epochOf.get(client) === epoch || attempt > size) return guard(client);
        client.release(true);
      }
    },
    presumeLost() {
      epoch++;
    },
    async abandonWorkInFlight() {
      const pids: number[] = [];
      for (const [client, { owner, fail }] of checkedOut) {
        if (!owner?.abandoned) continue;
        fail(stopping());
        // The backend's process id, which pg keeps from the connection's start (BackendKeyData).
        const pid = (client as unknown as { processID?: number | null }).processID;
        if (typeof pid === 'number') pids.push(pid);
      }
      if (pids.length === 0) return 0;
      const terminator = new pg.Client({
        connectionString: url, application_name: applicationName, connectionTimeoutMillis: TERMINATE_TIMEOUT_MS, query_timeout: TERMINATE_TIMEOUT_MS,
      });
      terminator.on('error', () => {}); // its failure is the query's, below
      try {
        await terminator.connect();
        const { rows } = await terminator.query<{ ended: number }>(
          'select count(*) filter (where pg_terminate_backend(pid))::int as ended from unnest($1::int[]) as pid', [pids]);
        return rows[0]?.ended ?? 0;
      } finally {
        await terminator.end().catch(() => {});
      }
    },
    get stats() {
      return { total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount };
    },
    end: () => pool.end(),
  };
}
