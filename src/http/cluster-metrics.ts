// Metrics across worker processes (workers > 1). The workers share the management port, so a
// scrape reaches any one of them, which holds only its own counts. That worker asks the
// primary, and the primary collects every worker's registry over IPC with prom-client's
// AggregatorRegistry: counters and histograms are summed, gauges as each one says.
import cluster from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';

const REQUEST = 'km:metrics:request';
const REPLY = 'km:metrics:reply';
/** Longer than the primary's own wait for the workers (5 s in prom-client), so its error arrives first. */
const REPLY_TIMEOUT_MS = 10_000;

interface Reply {
  type: typeof REPLY;
  id: number;
  text?: string;
  error?: string;
}

/** In the primary: answers each worker's request with the sum over all workers. */
export function aggregateWorkerMetrics(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on('message', (worker, message: { type?: unknown; id?: unknown }) => {
    if (message?.type !== REQUEST || typeof message.id !== 'number') return;
    const answer = (reply: Omit<Reply, 'type'>) => {
      // The asking worker may have died meanwhile; nothing is waiting then.
      if (worker.isConnected()) worker.send({ type: REPLY, ...reply } satisfies Reply, undefined, () => {});
    };
    aggregator.clusterMetrics().then(
      (text) => answer({ id: message.id as number, text }),
      (err: unknown) => answer({ id: message.id as number, error: err instanceof Error ? err.message : String(err) }),
    );
  });
}

export interface MetricsExposition {
  contentType: string;
  /** The text a scrape gets: this process's metrics, or every worker's summed. */
  text(): Promise<string>;
  close(): void;
}

export function metricsExposition(registry: Registry): MetricsExposition {
  const contentType = registry.contentType;
  if (!cluster.isWorker || !process.send) return { contentType, text: () => registry.metrics(), close() {} };

  // prom-client answers the primary's collection requests from the registries named here; it
  // starts listening when an AggregatorRegistry is first made in the process. A worker runs
  // one server, so naming this server's registry process-wide is right.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);

  const pending = new Map<number, { resolve: (text: string) => void; reject: (err: Error) => void; timer: NodeJS.Timeout }>();
  let nextId = 0;
  const onMessage = (message: Partial<Reply>) => {
    if (message?.type !== REPLY || typeof message.id !== 'number') return;
    const waiting = pending.get(message.id);
    if (!waiting) return;
    pending.delete(message.id);
    clearTimeout(waiting.timer);
    if (typeof message.text === 'string') waiting.resolve(message.text);
    else waiting.reject(new Error(`the primary could not collect the workers' metrics: ${message.error ?? 'no answer'}`));
  };
  process.on('message', onMessage);
  return {
    contentType,
    text() {
      return new Promise((resolve, reject) => {
        const id = nextId++;
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error('the primary did not answer the request for metrics'));
        }, REPLY_TIMEOUT_MS);
        pending.set(id, { resolve, reject, timer });
        process.send!({ type: REQUEST, id }, undefined, undefined, (err: Error | null) => {
          if (!err) return;
          pending.delete(id);
          clearTimeout(timer);
          reject(err);
        });
      });
    },
    close() {
      process.off('message', onMessage);
      for (const { reject, timer } of pending.values()) {
        clearTimeout(timer);
        reject(new Error('stopping'));
      }
      pending.clear();
    },
  };
}
