// A server on the embedded PostgreSQL starts it again when it dies (killed, out of memory):
// without this, every request would answer 503 until someone restarted the server, since
// nothing else brings the cluster back. Meanwhile /readyz answers 503 on its own.
import { ensureEmbeddedPostgres, isEmbeddedPostgresRunning, type EmbeddedPostgresHandle, type EmbeddedPostgresOptions } from './embedded.ts';

export interface WatchdogLogger {
  info(detail: object, message: string): void;
  error(detail: object, message: string): void;
}

export interface EmbeddedPostgresWatchdog {
  /** Stops watching, waits for a restart under way, then stops the cluster if this process owns it. */
  stop(): Promise<void>;
}

const CHECK_EVERY_MS = 1000;
const MAX_RETRY_DELAY_MS = 5000;

export function watchEmbeddedPostgres(
  first: EmbeddedPostgresHandle,
  options: EmbeddedPostgresOptions,
  logger: WatchdogLogger,
): EmbeddedPostgresWatchdog {
  let current = first;
  let stopped = false;
  let restarting: Promise<void> | undefined;

  const restart = async () => {
    const since = Date.now();
    logger.error({ data_dir: options.dataDir, port: options.port }, 'the embedded PostgreSQL stopped under the running server; starting it again');
    for (let attempt = 1; !stopped; attempt++) {
      try {
        // Also finds it already started again by another instance on the same data directory,
        // which then owns it.
        current = await ensureEmbeddedPostgres(options);
        logger.info({ seconds: (Date.now() - since) / 1000, attempts: attempt, started_here: current.started }, 'the embedded PostgreSQL is running again');
        return;
      } catch (err) {
        // Typically its old server processes still hold the shared memory for a moment.
        logger.error({ attempt, error: err instanceof Error ? err.message : String(err) }, 'the embedded PostgreSQL did not start again; retrying');
        await new Promise((r) => setTimeout(r, Math.min(attempt * 500, MAX_RETRY_DELAY_MS)));
      }
    }
  };

  const timer = setInterval(() => {
    if (stopped || restarting || isEmbeddedPostgresRunning(options.dataDir)) return;
    restarting = restart().finally(() => { restarting = undefined; });
  }, CHECK_EVERY_MS);
  timer.unref();

  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await restarting;
      await current.stop();
    },
  };
}
