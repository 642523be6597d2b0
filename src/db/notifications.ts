// LISTEN on the channel the change triggers notify (see km_notify_change in the migrations).
// Caches built on it must not be trusted while `listening` is false: a notice sent while the
// connection was down is lost, so they drop everything on every (re)connect. The connection is
// pinged every second; one that does not answer within two is taken for lost, so that an
// instance cut off from PostgreSQL never goes on answering from its caches.
//
// sync() is how a change is made visible everywhere before its request answers: it asks every
// instance's listener (they are the `keymanager-listener` sessions of this database) to
// acknowledge a notice sent after the change committed. Notices reach each listener in commit
// order and are handled in order, so an acknowledgement means the change's own notice has been
// handled — its caches dropped — on that instance. While this instance's own listener is down
// (cut, or reconnecting), sync() still waits for the others, through a connection of its own
// that listens for their acknowledgements: their caches are trusted whether or not ours are.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { LRUCache } from 'lru-cache';

export const CHANGES_CHANNEL = 'km_changes';
const ACKS_CHANNEL = 'km_acks';
const LISTENER_APPLICATION_NAME = 'keymanager-listener';
/** The connection sync() opens while the listener is down: not a listener, not waited for. */
const SYNC_APPLICATION_NAME = 'keymanager-sync';
const SYNC_PREFIX = 'sync:';
const PING_EVERY_MS = 500;
const PING_TIMEOUT_MS = 1000;
/**
 * Caches are trusted only while the last answered ping was sent this recently: an instance
 * silently cut off from PostgreSQL stops answering from them within this time, which is shorter
 * than the wait of sync(), so an instance that did not confirm a change no longer trusts its
 * caches. Counted from when the ping was sent, not when its answer came: sync() stops waiting
 * for a listener that PostgreSQL last saw this long ago, and PostgreSQL saw the ping after it
 * was sent, so the listener stops trusting no later than sync() stops waiting for it, however
 * slow the answer's way back.
 */
const TRUST_FOR_MS = 1500;
const SYNC_TIMEOUT_MS = 2000;
const MAX_RETRY_DELAY_MS = 2000;

export interface ChangeListener {
  /** True while a LISTEN connection is up; false means "do not trust any cache". */
  readonly listening: boolean;
  /** Increases on every notice and every reconnect: a cache built at another generation is stale. */
  readonly generation: number;
  /**
   * Calls `listener` with each notice's payload (the changed table, or a topic such as
   * `signing_keys`), and with undefined on every (re)connect: what was missed is unknown.
   */
  onNotice(listener: (payload: string | undefined) => void): void;
  /**
   * Waits until every instance listening on this database has handled the notices of what
   * committed before the call (up to `timeoutMs`), also while this instance's own listener is
   * down. False when some did not confirm in time (they are either gone or not trusting their
   * caches), or the database could not be asked.
   */
  sync(timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * A bounded read-through cache that never lies across instances: used only while `changes`
 * is listening, emptied by every notice about one of `topics` (and every reconnect), and a
 * read that spans such a notice is not kept. `keepFor` says how long a value may stay, in
 * milliseconds, or undefined to not keep it (unknown ids, inactive tokens).
 */
export function noticeDroppedCache<V extends {}>(
  changes: ChangeListener | undefined,
  { topics, max, read, keepFor }: {
    topics: ReadonlySet<string>;
    max: number;
    read: (key: string) => Promise<V | undefined>;
    keepFor: (value: V) => number | undefined;
  },
): (key: string, cacheKey?: string) => Promise<V | undefined> {
  // Bounded by maxSize (each entry counts 1) rather than max: with max, lru-cache allocates and
  // on every clear() refills arrays of that length (100,000 slots for tokens), whether the
  // cache holds anything or not.
  const cache = new LRUCache<string, V>({ maxSize: max, sizeCalculation: () => 1, ttlAutopurge: false });
  // Reads under way, by key, all started since the last notice (it empties the map). Requests
  // that miss while one is under way share it instead of each sending the same statement: a
  // hot entry that expires (or a cache just emptied) under thousands of requests a second
  // would otherwise send a burst of identical reads, and those requests would all wait behind it.
  // A shared read began before the requests that join it: its answer is theirs only if it is
  // one the cache keeps, because only those are covered by the notices that empty this map.
  // What is not kept (an unknown key, a refresh token, a token already inactive) may change
  // with no notice at all (a rotation, a revoked grant), so a request that joined such a read
  // reads again itself: it arrived after the read began, perhaps after the change committed.
  const reading = new Map<string, Promise<{ row: V | undefined; kept: boolean }>>();
  let generation = 0;
  changes?.onNotice((topic) => {
    if (topic === undefined || topics.has(topic)) {
      generation++;
      cache.clear();
      // A read started before the notice may have read what the notice changed: requests that
      // arrive from now on start their own.
      reading.clear();
    }
  });
  const readThrough = async (key: string, cacheKey: string) => {
    const startedAt = generation;
    const row = await read(key);
    const ttl = row === undefined ? undefined : keepFor(row);
    const kept = row !== undefined && ttl !== undefined && changes!.listening && startedAt === generation;
    if (kept) cache.set(cacheKey, row, { ttl: Math.max(1, ttl!) });
    return { row, kept };
  };
  return async (key, cacheKey = key) => {
    if (!changes?.listening) return read(key);
    const hit = cache.get(cacheKey);
    if (hit) return hit;
    const underway = reading.get(cacheKey);
    if (underway) {
      const shared = await underway;
      return shared.kept ? shared.row : read(key);
    }
    const own = readThrough(key, cacheKey);
    reading.set(cacheKey, own);
    try {
      return (await own).row;
    } finally {
      if (reading.get(cacheKey) === own) reading.delete(cacheKey);
    }
  };
}

interface SyncWaiter {
  expected: Set<number>;
  done: () => void;
}

/**
 * `onLost` is told each time the connection is found lost: the pool's connections went to the
 * same database and are presumed lost with it (src/db/pool.ts).
 */
export function listenForChanges(url: string, log: (message: string, err?: unknown) => void, onLost: () => void = () => {}): ChangeListener {
  let client: pg.Client | undefined;
  let ownPid: number | undefined;
  let listening = false;
  /** When the last answered ping was sent (see TRUST_FOR_MS). */
  let lastAnswerAt = 0;
  let generation = 0;
  let closed = false;
  let retryDelay = 500;
  let retryTimer: NodeJS.Timeout | undefined;
  let pingTimer: NodeJS.Timeout | undefined;
  const listeners: ((payload: string | undefined) => void)[] = [];
  const waiters = new Map<string, SyncWaiter>();

  const changed = (payload?: string) => {
    generation++;
    for (const listener of listeners) listener(payload);
  };

  // The listener's connection runs one statement at a time: pings, acknowledgements and the
  // syncs of concurrent revocations would otherwise overlap, which pg queues only with a
  // deprecation warning (and pg 9 refuses). A failed statement does not stop the ones after it.
  const queues = new WeakMap<pg.Client, Promise<unknown>>();
  const inTurn = <R extends pg.QueryResultRow = pg.QueryResultRow>(c: pg.Client, text: string, values?: unknown[]): Promise<pg.QueryResult<R>> => {
    const result = (queues.get(c) ?? Promise.resolve()).then(() => c.query<R>(text, values));
    queues.set(c, result.catch(() => {}));
    return result;
  };

  const acknowledged = (payload: string | undefined) => {
    const [nonce, pid] = (payload ?? '').split(':');
    const waiter = waiters.get(nonce ?? '');
    if (waiter && waiter.expected.delete(Number(pid)) && waiter.expected.size === 0) waiter.done();
  };

  const onNotification = (c: pg.Client, n: pg.Notification) => {
    if (n.channel === ACKS_CHANNEL) {
      acknowledged(n.payload);
      return;
    }
    if (n.payload?.startsWith(SYNC_PREFIX)) {
      // Everything notified before this has been handled above (notices arrive in order).
      inTurn(c, 'select pg_notify($1, $2)', [ACKS_CHANNEL, `${n.payload.slice(SYNC_PREFIX.length)}:${ownPid}`]).catch(() => {});
      return;
    }
    changed(n.payload);
  };

  /** A connection of this listener's (`name`: see sync()), every statement bounded. */
  const newClient = (name: string) => {
    // Its name is how sync() finds the listeners: one in the URL must not replace it.
    const namedUrl = new URL(url);
    namedUrl.searchParams.delete('application_name');
    // Every statement bounded too: one left unanswered (a network gone silent while LISTEN was
    // on its way) would otherwise keep this listener from ever reconnecting.
    return new pg.Client({ connectionString: namedUrl.href, application_name: name, connectionTimeoutMillis: 3000, query_timeout: 3000 });
  };

  /**
   * Sends a sync notice through `c` and waits for the listeners named in pg_stat_activity (and
   * `ownPid`, this instance's listener, when it is up) to acknowledge it; `c` must be listening
   * on ACKS_CHANNEL.
   */
  const confirmThrough = async (c: pg.Client, ownPid: number | undefined, timeoutMs: number): Promise<boolean> => {
    const nonce = randomUUID();
    let timer: NodeJS.Timeout | undefined;
    try {
      // Live listeners ping every half second: a session of that name idle for longer (an
      // instance that crashed but whose session lingers, a stray client) is not waited for.
      const { rows } = await inTurn<{ pid: number }>(c,
        `select pid from pg_stat_activity where application_name = $1 and datname = current_database()
           and (state = 'active' or (state = 'idle' and state_change > now() - make_interval(secs => $2)))`, [LISTENER_APPLICATION_NAME, TRUST_FOR_MS / 1000]);
      const expected = new Set(rows.map((r) => r.pid));
      if (ownPid !== undefined) expected.add(ownPid);
      if (expected.size === 0) return true;
      const confirmed = new Promise<boolean>((resolve) => {
        waiters.set(nonce, { expected, done: () => resolve(true) });
        timer = setTimeout(() => resolve(false), timeoutMs);
      });
      await inTurn(c, 'select pg_notify($1, $2)', [CHANGES_CHANNEL, `${SYNC_PREFIX}${nonce}`]);
      const ok = await confirmed;
      if (!ok) log(`not every instance confirmed a change within ${timeoutMs} ms (still waiting for listener pid ${[...expected].join(', ')})`);
      return ok;
    } catch (err) {
      log('could not confirm a change with the other instances', err);
      return false;
    } finally {
      clearTimeout(timer);
      waiters.delete(nonce);
    }
  };

  /** sync() while this instance's listener is down: the others are waited for all the same. */
  const confirmWithoutListener = async (timeoutMs: number): Promise<boolean> => {
    const c = newClient(SYNC_APPLICATION_NAME);
    c.on('error', () => {}); // a failure shows in the statement that meets it
    c.on('notification', (n) => {
      if (n.channel === ACKS_CHANNEL) acknowledged(n.payload);
    });
    try {
      await c.connect();
      await inTurn(c, `LISTEN ${ACKS_CHANNEL}`);
      return await confirmThrough(c, undefined, timeoutMs);
    } catch (err) {
      log('could not confirm a change with the other instances', err);
      return false;
    } finally {
      c.end().catch(() => {});
    }
  };

  const connect = async () => {
    if (closed) return;
    const c = newClient(LISTENER_APPLICATION_NAME);
    c.on('notification', (n) => onNotification(c, n));
    c.on('error', (err) => drop(c, err));
    c.on('end', () => drop(c));
    try {
      await c.connect();
      await inTurn(c, `LISTEN ${CHANGES_CHANNEL}`);
      await inTurn(c, `LISTEN ${ACKS_CHANNEL}`);
      const askedAt = Date.now();
      ownPid = (await inTurn<{ pid: number }>(c, 'select pg_backend_pid() as pid')).rows[0]!.pid;
      client = c;
      listening = true;
      lastAnswerAt = askedAt;
      retryDelay = 500;
      changed(); // whatever happened while we were not listening is unknown
      ping(c);
    } catch (err) {
      drop(c, err);
    }
  };

  /** A connection that stops answering (a network cut the kernel has not noticed) is dropped. */
  const ping = (c: pg.Client) => {
    pingTimer = setTimeout(() => {
      if (client !== c) return;
      const timeout = setTimeout(() => drop(c, new Error(`no answer to a ping within ${PING_TIMEOUT_MS} ms`)), PING_TIMEOUT_MS);
      const sentAt = Date.now();
      inTurn(c, 'select 1').then(() => {
        clearTimeout(timeout);
        lastAnswerAt = sentAt;
        ping(c);
      }, (err: unknown) => {
        clearTimeout(timeout);
        drop(c, err);
      });
    }, PING_EVERY_MS);
    pingTimer.unref();
  };

  const drop = (c: pg.Client, err?: unknown) => {
    if (client === c || !listening) {
      if (listening) {
        log('change listener disconnected', err);
        if (!closed) onLost();
      }
      listening = false;
      client = undefined;
      changed();
    }
    c.end().catch(() => {});
    if (!closed && !retryTimer) {
      retryTimer = setTimeout(() => {
        retryTimer = undefined;
        void connect();
      }, retryDelay);
      retryTimer.unref();
      // A failed attempt costs little; the caches are back within seconds of the database.
      retryDelay = Math.min(retryDelay * 2, MAX_RETRY_DELAY_MS);
    }
  };

  void connect();

  return {
    get listening() {
      return listening && Date.now() - lastAnswerAt < TRUST_FOR_MS;
    },
    get generation() {
      return generation;
    },
    onNotice(listener) {
      listeners.push(listener);
    },
    async sync(timeoutMs = SYNC_TIMEOUT_MS) {
      if (closed) return false;
      const c = client;
      return c && listening ? confirmThrough(c, ownPid, timeoutMs) : confirmWithoutListener(timeoutMs);
    },
    async close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      if (pingTimer) clearTimeout(pingTimer);
      listening = false;
      for (const w of waiters.values()) w.done();
      await client?.end().catch(() => {});
    },
  };
}
