// LISTEN on the channel the change triggers notify (see km_notify_change in the migrations).
// Caches built on it must not be trusted while `listening` is false: a notice sent while the
// connection was down is lost, so they drop everything on every (re)connect.
import pg from 'pg';

export const CHANGES_CHANNEL = 'km_changes';

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
  close(): Promise<void>;
}

export function listenForChanges(url: string, log: (message: string, err?: unknown) => void): ChangeListener {
  let client: pg.Client | undefined;
  let listening = false;
  let generation = 0;
  let closed = false;
  let retryDelay = 500;
  let retryTimer: NodeJS.Timeout | undefined;
  const listeners: ((payload: string | undefined) => void)[] = [];

  const changed = (payload?: string) => {
    generation++;
    for (const listener of listeners) listener(payload);
  };

  const connect = async () => {
    if (closed) return;
    const c = new pg.Client({ connectionString: url, application_name: 'keymanager-listener', connectionTimeoutMillis: 3000 });
    c.on('notification', (n) => changed(n.payload));
    c.on('error', (err) => drop(c, err));
    c.on('end', () => drop(c));
    try {
      await c.connect();
      await c.query(`LISTEN ${CHANGES_CHANNEL}`);
      client = c;
      listening = true;
      retryDelay = 500;
      changed(); // whatever happened while we were not listening is unknown
    } catch (err) {
      drop(c, err);
    }
  };

  const drop = (c: pg.Client, err?: unknown) => {
    if (client === c || !listening) {
      if (listening) log('change listener disconnected', err);
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
      retryDelay = Math.min(retryDelay * 2, 30_000);
    }
  };

  void connect();

  return {
    get listening() {
      return listening;
    },
    get generation() {
      return generation;
    },
    onNotice(listener) {
      listeners.push(listener);
    },
    async close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      listening = false;
      await client?.end().catch(() => {});
    },
  };
}
