// Scenario s: the token table at scale (issue 13). Rows are written straight into the bench
// database with INSERT … SELECT FROM generate_series — never through HTTP, which would take
// hours for ten million — modelled on rows the server itself wrote earlier in the same run, so
// that their payloads have the size and shape of real ones.
import pg from 'pg';
import { sql } from 'kysely';
import type { BenchDatabase } from './database.ts';
import type { Scenario, Target } from './load.ts';
import { latenciesBetween, quantile, runPaced, type PacedRun } from './paced.ts';
import { processCpuMicros } from './processes.ts';

/** Of every ten rows: five client-credentials tokens, two access tokens, two refresh tokens, one grant. */
const KINDS = ['ClientCredentials', 'AccessToken', 'RefreshToken', 'Grant'] as const;
type Kind = (typeof KINDS)[number];

interface Template {
  client_id: string;
  format: string;
  scope: string | null;
  has_account: boolean;
  has_grant: boolean;
  has_uid: boolean;
  account_id: string | null;
  /** Seconds from issue to expiry of the real row. */
  lifetime: number;
  payload: Record<string, unknown>;
}

export interface LoadedRows {
  rows: number;
  seconds: number;
  /** VACUUM ANALYZE and CHECKPOINT after the load. */
  vacuumSeconds: number;
  tableBytes: number;
  /** Average size of a stored payload, per kind, as PostgreSQL stores it. */
  payloadBytes: Record<string, number>;
}

export interface Loader {
  /** Live rows: issued within the last ten minutes, expiring at least three hours later. */
  loadLive(rows: number): Promise<LoadedRows>;
  /** Rows already expired (for the purge): expired between a minute and a day ago. */
  loadExpired(rows: number): Promise<LoadedRows>;
  /** The oid of tokens, for matching pg_locks. */
  tokensOid(): Promise<string>;
  close(): Promise<void>;
}

const CHUNK = 1_000_000;

export async function openLoader(db: BenchDatabase, log: (m: string) => void): Promise<Loader> {
  const client = new pg.Client({ connectionString: db.url, application_name: 'keymanager-bench-loader' });
  await client.connect();
  // Each chunk is sorted by key before it is inserted (work_mem for that sort), so that its
  // primary-key writes sweep the index in order instead of landing on random leaf pages —
  // each a read and a dirty page to evict once the index outgrows shared_buffers.
  await client.query(`set work_mem = '256MB'`);
  await client.query(`set maintenance_work_mem = '512MB'`);

  const templates = async (): Promise<Record<Kind, Template>> => {
    // The server's own most recent row of each kind (scenario a wrote client-credentials tokens;
    // e's logins and refreshes the rest).
    const { rows } = await client.query<Template & { kind: Kind }>(`
      select distinct on (kind) kind, client_id, format, scope,
             account_id is not null as has_account, grant_id is not null as has_grant, uid is not null as has_uid, account_id,
             greatest(1, extract(epoch from expires_at - issued_at))::int as lifetime, payload
        from tokens
       where kind = any($1) and expires_at is not null and revoked_at is null and consumed_at is null
       order by kind, issued_at desc`, [KINDS]);
    const byKind = Object.fromEntries(rows.map((r) => [r.kind, r])) as Partial<Record<Kind, Template>>;
    const missing = KINDS.filter((k) => !byKind[k]);
    if (missing.length) throw new Error(`scale: no row of kind ${missing.join(', ')} to model the loaded rows on (scenarios a and e must run first)`);
    return byKind as Record<Kind, Template>;
  };

  const load = async (rows: number, live: boolean): Promise<LoadedRows> => {
    const byKind = await templates();
    const label = live ? 'live' : 'expired';
    const prefix = `km-bench-${label}-`;
    const started = performance.now();
    for (let from = 1; from <= rows; from += CHUNK) {
      const to = Math.min(rows, from + CHUNK - 1);
      // $1 prefix, $2/$3 the range, $4 the templates by kind, $5 live or expired.
      // A grant and the access and refresh tokens next to it share a grant id (i / 10), as
      // rows issued by one login do; the grant's own key is the digest of that id.
      await client.query(`
        with s as (
          select i,
                 (array['ClientCredentials','ClientCredentials','ClientCredentials','ClientCredentials','AccessToken',
                        'AccessToken','RefreshToken','RefreshToken','Grant','ClientCredentials'])[i % 10 + 1] as kind,
                 $1 || 'grant-' || (i / 10) as grant_id
            from generate_series($2::bigint, $3::bigint) as i
        ), r as (
          select s.i, s.kind, s.grant_id, t.value as t,
                 case when $5 then now() - make_interval(secs => s.i % 600)
                      else now() - make_interval(secs => (t.value->>'lifetime')::int + 60 + s.i % 86400) end as issued_at
            from s join jsonb_each($4::jsonb) as t on t.key = s.kind
        ), x as (
          select r.*, issued_at + make_interval(secs => case when $5 then greatest((t->>'lifetime')::int, 10800) else (t->>'lifetime')::int end) as expires_at
            from r
        )
        insert into tokens (id_sha256, kind, format, client_id, account_id, grant_id, uid, scope, issued_at, expires_at, payload)
        select encode(sha256(convert_to(case when kind = 'Grant' then grant_id else $1 || i end, 'UTF8')), 'hex'),
               kind, t->>'format', t->>'client_id',
               case when (t->>'has_account')::boolean then t->>'account_id' end,
               case when (t->>'has_grant')::boolean then grant_id end,
               case when (t->>'has_uid')::boolean then $1 || 'uid-' || i end,
               t->>'scope', issued_at, expires_at,
               (t->'payload') || jsonb_build_object('iat', extract(epoch from issued_at)::bigint, 'exp', extract(epoch from expires_at)::bigint)
                 || case when (t->>'has_grant')::boolean then jsonb_build_object('grantId', grant_id) else '{}'::jsonb end
                 || case when (t->>'has_uid')::boolean then jsonb_build_object('uid', $1 || 'uid-' || i) else '{}'::jsonb end
          from x
         order by 1`,
      [prefix, from, to, JSON.stringify(byKind), live]);
      const elapsed = (performance.now() - started) / 1000;
      log(`  ${label} rows: ${to.toLocaleString('en')} of ${rows.toLocaleString('en')} (${elapsed.toFixed(0)} s)`);
    }
    const seconds = (performance.now() - started) / 1000;
    const vacuumStarted = performance.now();
    log('  VACUUM ANALYZE tokens, CHECKPOINT');
    await client.query('vacuum (analyze) tokens');
    // The load's dirty pages are written now rather than by the checkpointer and the kernel
    // in the middle of the runs that follow, which would then pay for the load.
    await client.query('checkpoint').catch((err: unknown) => log(`  CHECKPOINT refused (${err instanceof Error ? err.message : String(err)}): the runs may pay for the load's writes`));
    const vacuumSeconds = (performance.now() - vacuumStarted) / 1000;
    const { rows: [size] } = await client.query<{ bytes: string }>(`select pg_total_relation_size('tokens')::text as bytes`);
    const { rows: sizes } = await client.query<{ kind: string; bytes: number }>(`
      select kind, avg(pg_column_size(payload))::int as bytes from tokens where id_sha256 in (
        select encode(sha256(convert_to(case when i % 10 = 8 then $1 || 'grant-' || (i / 10) else $1 || i end, 'UTF8')), 'hex')
          from generate_series(1, least($2::bigint, 1000)) as i)
      group by kind`, [prefix, rows]);
    return { rows, seconds, vacuumSeconds, tableBytes: Number(size?.bytes ?? 0), payloadBytes: Object.fromEntries(sizes.map((r) => [r.kind, r.bytes])) };
  };

  return {
    loadLive: (rows) => load(rows, true),
    loadExpired: (rows) => load(rows, false),
    async tokensOid() {
      const { rows: [r] } = await client.query<{ oid: string }>(`select 'tokens'::regclass::oid::text as oid`);
      return r!.oid;
    },
    close: () => client.end(),
  };
}

export interface LockWatch {
  /** Transactions of keymgr sessions that held a lock on tokens, seen by the sampler. */
  transactions: number;
  /** The longest of them (a lower bound: seen at the last sample before it ended). */
  longestMs: number;
  /** Each of them, in the order they started: whether later batches take longer than early ones. */
  transactionMs: number[];
  /** performance.now() of the first and last samples that saw such a lock; undefined if none did. */
  firstSeenAt: number | undefined;
  lastSeenAt: number | undefined;
  /**
   * Samples taken while the purge held a lock, and how many of those found a keymanager
   * session waiting for a lock: a slow request then waited on the purge, not for a CPU.
   */
  samples: number;
  serverLockWaits: number;
  /**
   * What the purge's sessions and keymanager's busy sessions were doing in those samples
   * (pg_stat_activity wait events; "running" when none): where the time went.
   */
  purgeWaits: Record<string, number>;
  serverWaits: Record<string, number>;
  /** The checkpointer's, background writer's and WAL writer's, when not idle: who else was writing. */
  backgroundWaits: Record<string, number>;
  /** CPU time of the purge's PostgreSQL backends (embedded cluster only), as last seen. */
  purgeCpuMicros: number | null;
  /**
   * What the purge's session was doing (looking up, deleting, resting) and whether autovacuum
   * worked in the database, each time either changed: performance.now() of the sample, to lay
   * beside the requests' latencies.
   */
  phases: { at: number; purge: 'lookup' | 'delete' | 'rest' | 'none'; autovacuum: boolean }[];
  stop(): Promise<void>;
}

/**
 * Samples every `everyMs` which keymgr sessions of the bench database hold a lock on tokens,
 * and since when their transaction runs: every lock a transaction takes is held until it ends,
 * so the age of the transaction is how long the lock has been held.
 */
/** PostgreSQL's own processes that write pages or WAL besides the sessions. */
const BACKGROUND_WRITERS = ['checkpointer', 'background writer', 'walwriter'];

export function watchPurgeLocks(db: BenchDatabase, tokensOid: string, everyMs = 50): LockWatch {
  const seen = new Map<string, number>();
  let firstSeenAt: number | undefined;
  let lastSeenAt: number | undefined;
  let samples = 0;
  let serverLockWaits = 0;
  const purgeWaits: Record<string, number> = {};
  const serverWaits: Record<string, number> = {};
  const backgroundWaits: Record<string, number> = {};
  const backendCpu = new Map<number, number>();
  const phases: LockWatch['phases'] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const { rows: all } = await sql<{ pid: number; app: string; state: string | null; wait: string | null; xact: string | null; ms: number | null; locks_tokens: boolean; query: string; type: string }>`
        select a.pid, a.application_name as app, a.state, a.wait_event_type || ':' || a.wait_event as wait, a.xact_start::text as xact,
               extract(epoch from clock_timestamp() - a.xact_start)::float8 * 1000 as ms,
               exists (select 1 from pg_locks l where l.pid = a.pid and l.granted and l.relation = ${tokensOid}::oid) as locks_tokens,
               left(ltrim(a.query), 40) as query, a.backend_type as type
          from pg_stat_activity a
         where (a.datname = ${db.name} and (a.application_name in ('keymgr', 'keymanager') or a.backend_type = 'autovacuum worker'))
            or a.backend_type = any(${BACKGROUND_WRITERS})`.execute(db.admin);
      const at = performance.now();
      const background = all.filter((r) => BACKGROUND_WRITERS.includes(r.type));
      const vacuuming = all.some((r) => r.type === 'autovacuum worker');
      const rows = all.filter((r) => r.type === 'client backend');
      const purgeSession = rows.find((r) => r.app === 'keymgr' && r.xact !== null);
      const phase = {
        at,
        purge: !purgeSession ? (rows.some((r) => r.app === 'keymgr') ? 'rest' as const : 'none' as const)
          : purgeSession.query.includes('ctid::text') || purgeSession.query.includes('parallel') ? 'lookup' as const : 'delete' as const,
        autovacuum: vacuuming,
      };
      const last = phases[phases.length - 1];
      if (!last || last.purge !== phase.purge || last.autovacuum !== phase.autovacuum) phases.push(phase);
      const purging = rows.filter((r) => r.app === 'keymgr' && r.locks_tokens && r.xact !== null);
      for (const r of purging) {
        const key = `${r.pid}@${r.xact}`;
        seen.set(key, Math.max(seen.get(key) ?? 0, r.ms ?? 0));
        purgeWaits[r.wait ?? 'running'] = (purgeWaits[r.wait ?? 'running'] ?? 0) + 1;
        if (db.local) {
          const cpu = processCpuMicros(r.pid);
          if (cpu !== undefined) backendCpu.set(r.pid, cpu);
        }
      }
      if (purging.length) {
        firstSeenAt ??= at;
        lastSeenAt = at;
        samples++;
        const busy = rows.filter((r) => r.app === 'keymanager' && r.state === 'active');
        for (const r of busy) serverWaits[r.wait ?? 'running'] = (serverWaits[r.wait ?? 'running'] ?? 0) + 1;
        for (const r of background) {
          const key = `${r.type} ${r.wait ?? 'running'}`;
          if (!r.wait?.startsWith('Activity:')) backgroundWaits[key] = (backgroundWaits[key] ?? 0) + 1;
        }
        if (busy.some((r) => r.wait?.startsWith('Lock:'))) serverLockWaits++;
      }
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  })();
  const watch: LockWatch = {
    transactions: 0,
    longestMs: 0,
    transactionMs: [],
    firstSeenAt: undefined,
    lastSeenAt: undefined,
    samples: 0,
    serverLockWaits: 0,
    purgeWaits,
    serverWaits,
    backgroundWaits,
    purgeCpuMicros: null,
    phases,
    async stop() {
      stopped = true;
      await loop;
      watch.transactions = seen.size;
      watch.longestMs = Math.max(0, ...seen.values());
      watch.transactionMs = [...seen.values()].map((ms) => Math.round(ms));
      watch.firstSeenAt = firstSeenAt;
      watch.lastSeenAt = lastSeenAt;
      watch.samples = samples;
      watch.serverLockWaits = serverLockWaits;
      watch.purgeCpuMicros = backendCpu.size ? [...backendCpu.values()].reduce((x, y) => x + y, 0) : null;
    },
  };
  return watch;
}

export interface PurgeUnderLoad {
  expired: LoadedRows;
  /** a's full-speed rate with the expired rows in, and the fixed rate of both runs: 70 % of it. */
  peak: number;
  rate: number;
  /** Scenario a at that rate with the expired rows in the table, no purge. */
  baseline: PacedRun;
  /** Scenario a at the same rate while the purge deleted: requests due in that window. */
  during: {
    requests: number; latencyP50Ms: number; latencyP99Ms: number; latencyMaxMs: number;
    /** Each second of that window: its p99 and slowest, so a stall can be told from a trend. */
    perSecond: { p99Ms: number; maxMs: number }[];
  };
  /** The whole paced run around the purge (its failures count like any run's). */
  run: PacedRun;
  /** keymgr purge, from start to exit (a Node start, the schema check, the deletes, the audit). */
  purgeSeconds: number;
  /** From the first to the last sample that saw the purge holding a lock on tokens. */
  deletingSeconds: number | null;
  deleted: number | null;
  locks: {
    transactions: number; longestMs: number; transactionMs: number[];
    samples: number; serverLockWaits: number; purgeWaits: Record<string, number>; serverWaits: Record<string, number>; backgroundWaits: Record<string, number>;
  };
  /** What the purge and autovacuum did, from the sampler: ms after the window's start (negative: before it). */
  phases: { ms: number; purge: string; autovacuum: boolean }[];
  /** PostgreSQL CPU the purge used (embedded cluster only): a whole core's worth is a core the server did not have. */
  purgeCpuSeconds: number | null;
  /** From pg_stat_statements, when loaded: the purge's DELETEs on tokens. */
  deletes: { calls: number; maxMs: number; totalMs: number } | null;
  /**
   * WAL the whole cluster wrote from the purge's start to its end (pg_stat_wal): the purge's
   * and the requests' alike. Full-page images are what a DELETE's first touch of a page after
   * a checkpoint costs; the requests' commits must flush them along with their own records.
   */
  wal: { bytes: number; fullPageImages: number } | null;
}

/** Cluster-wide WAL counters (PostgreSQL 14+); null where the view cannot be read. */
async function walCounters(db: BenchDatabase): Promise<{ bytes: number; fullPageImages: number } | null> {
  try {
    const { rows: [row] } = await sql<{ bytes: string; fpi: string }>`select wal_bytes::text as bytes, wal_fpi::text as fpi from pg_stat_wal`.execute(db.admin);
    return row ? { bytes: Number(row.bytes), fullPageImages: Number(row.fpi) } : null;
  } catch {
    return null;
  }
}

/**
 * Scenario a at a fixed rate, first alone and then while `keymgr purge` deletes `expiredRows`
 * already-expired rows; p99 is compared over the requests that were due while the purge was
 * deleting (the sampler saw it hold a lock on tokens), so that the cost of starting Node for
 * keymgr is not counted as the purge's.
 */
export async function purgeUnderLoad(options: {
  db: BenchDatabase;
  loader: Loader;
  expiredRows: number;
  /** Scenario a at full speed with the expired rows in: the peak the fixed rate is 70 % of. */
  peak: () => Promise<number>;
  share: number;
  seconds: number;
  connections: number;
  scenario: Scenario;
  target: Target;
  purge: () => Promise<string>;
  log: (m: string) => void;
}): Promise<PurgeUnderLoad> {
  const { db, loader, scenario, target, log } = options;
  log(`  loading ${options.expiredRows.toLocaleString('en')} expired rows`);
  const expired = await loader.loadExpired(options.expiredRows);
  // The peak is taken again in this state (a million more rows, pages just written back),
  // which is what the rate must be a share of.
  const peak = await options.peak();
  const rate = options.share * peak;
  const paced = { rate, connections: options.connections };

  log(`  a at ${rate.toFixed(0)} req/s without the purge`);
  const baseline = await runPaced(scenario, target, { ...paced, seconds: options.seconds }, undefined);

  log(`  a at ${rate.toFixed(0)} req/s while keymgr purge runs`);
  await db.statements?.reset();
  const watch = watchPurgeLocks(db, await loader.tokensOid());
  let purgeStartedAt = 0;
  let purgeEndedAt = 0;
  let output = '';
  const wal: { before?: Awaited<ReturnType<typeof walCounters>>; after?: Awaited<ReturnType<typeof walCounters>> } = {};
  const purged = (async () => {
    // A second of load first, so that the window starts in a steady state.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    wal.before = await walCounters(db);
    purgeStartedAt = performance.now();
    try {
      output = await options.purge();
    } finally {
      purgeEndedAt = performance.now();
      wal.after = await walCounters(db);
    }
  })();
  const stopAfter = purged.then(() => new Promise((resolve) => setTimeout(resolve, 500)), () => undefined);
  const { run, samples, startedAt } = await runPaced(scenario, target, { ...paced, seconds: 3600, until: stopAfter }, undefined);
  await watch.stop();
  await purged;
  const deletes = (await db.statements?.tokenDeletes()) ?? null;

  const seen = watch.firstSeenAt !== undefined && watch.lastSeenAt !== undefined;
  const [from, to] = seen ? [watch.firstSeenAt!, watch.lastSeenAt! + 50] : [purgeStartedAt, purgeEndedAt];
  const window = latenciesBetween(samples, from - startedAt, to - startedAt);
  let deleted: number | null = null;
  try {
    deleted = Number((JSON.parse(output) as { deleted?: unknown }).deleted);
  } catch {
    // not the JSON keymgr prints: the figure is shown as unknown
  }
  return {
    expired,
    peak,
    rate,
    baseline: baseline.run,
    during: {
      requests: window.length,
      latencyP50Ms: quantile(window, 0.5),
      latencyP99Ms: quantile(window, 0.99),
      latencyMaxMs: window.length ? window[window.length - 1]! : 0,
      perSecond: Array.from({ length: Math.ceil((to - from) / 1000) }, (_, i) => {
        const second = latenciesBetween(samples, from - startedAt + i * 1000, Math.min(to, from + (i + 1) * 1000) - startedAt);
        return { p99Ms: Math.round(quantile(second, 0.99) * 10) / 10, maxMs: Math.round((second.length ? second[second.length - 1]! : 0) * 10) / 10 };
      }),
    },
    run,
    purgeSeconds: (purgeEndedAt - purgeStartedAt) / 1000,
    deletingSeconds: seen ? (to - from) / 1000 : null,
    deleted: Number.isFinite(deleted) ? deleted : null,
    locks: {
      transactions: watch.transactions, longestMs: watch.longestMs, transactionMs: watch.transactionMs, samples: watch.samples, serverLockWaits: watch.serverLockWaits,
      purgeWaits: watch.purgeWaits, serverWaits: watch.serverWaits, backgroundWaits: watch.backgroundWaits,
    },
    phases: watch.phases.map((p) => ({ ms: Math.round(p.at - from), purge: p.purge, autovacuum: p.autovacuum })),
    purgeCpuSeconds: watch.purgeCpuMicros === null ? null : watch.purgeCpuMicros / 1e6,
    deletes,
    wal: wal.before && wal.after
      ? { bytes: wal.after.bytes - wal.before.bytes, fullPageImages: wal.after.fullPageImages - wal.before.fullPageImages }
      : null,
  };
}
