// Stopping a listener without cutting anyone off. server.close() alone refuses new connections
// but leaves keep-alive ones open, serving further requests until they idle out; here every
// response from the start of the drain closes its connection, and each connection goes as
// soon as it has nothing in flight.
import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http';
import { workOwners, type WorkOwner } from '../db/work-owner.ts';

export interface ListenerDrain {
  /** From now on every response, those under way included, closes its connection after it. */
  begin(): void;
  /**
   * Refuses new connections and waits for the requests in flight, `timeoutMs` at most; then
   * closes the connections still open. Resolves with the requests that were still running
   * then (method, path without query, seconds), for the log: none when all finished in time.
   */
  close(timeoutMs: number): Promise<CutRequest[]>;
}

export interface CutRequest {
  method: string;
  path: string;
  seconds: number;
}

/**
 * One request's work: its database work owner (src/db/work-owner.ts), marked abandoned if the
 * stop cuts it off, and whether its handler is still running — which it may be after its
 * client went away, when the response has closed but the database work goes on.
 */
interface RequestWork extends WorkOwner {
  abandoned: boolean;
  running: boolean;
  method?: string;
  url?: string;
  since: number;
  response?: ServerResponse;
  responseClosed: boolean;
  /** Told when the handler has finished. */
  drain?: { settle(work: RequestWork): void };
}

const WORK = Symbol('request work');
type Tracked = ServerResponse & { [WORK]?: RequestWork };

/** Runs each request as its own database work owner, and knows when its handler has finished: wrap the listener's handler with it. */
export function ownedRequests(handler: RequestListener): RequestListener {
  return (req, res) => {
    const work: RequestWork = { abandoned: false, running: true, method: req.method, url: req.url, since: performance.now(), responseClosed: false };
    (res as Tracked)[WORK] = work;
    // koa's handler returns the promise of the whole request.
    const handled = workOwners.run(work, () => handler(req, res)) as unknown;
    const finished = () => {
      work.running = false;
      work.drain?.settle(work);
    };
    if (handled instanceof Promise) handled.then(finished, finished);
    else finished();
  };
}

export function drainable(server: Server): ListenerDrain {
  // A request counts until its response has closed and its handler has finished. The URL as it
  // came is kept (koa may rewrite req.url later), reduced to its path only for a request cut off.
  const inFlight = new Set<RequestWork>();
  let draining = false;
  let closing = false;
  /** Set while closing: resolves the close once the listener has closed and nothing is in flight. */
  let finishIfDone: (() => void) | undefined;
  const drain = {
    settle(work: RequestWork) {
      if (!work.running && work.responseClosed && inFlight.delete(work)) finishIfDone?.();
    },
  };
  function onResponseClosed(this: Tracked) {
    const work = this[WORK];
    if (work) {
      work.responseClosed = true;
      drain.settle(work);
    }
    // A response whose headers went before the drain (a revocation stream) leaves its
    // connection open and idle. Not before the listener closes: until then a client may
    // send on an idle connection at any moment, and is answered (Connection: close).
    if (closing) setImmediate(() => server.closeIdleConnections());
  }
  server.on('request', (_req: IncomingMessage, res: Tracked) => {
    if (draining) res.shouldKeepAlive = false;
    const work = res[WORK];
    if (!work) return;
    work.drain = drain;
    work.response = res;
    if (work.running) inFlight.add(work);
    res.on('close', onResponseClosed); // emitted once; `once` would wrap the listener per request
  });
  return {
    begin() {
      draining = true;
      for (const { response } of inFlight) if (response && !response.headersSent) response.shouldKeepAlive = false;
    },
    close(timeoutMs) {
      this.begin();
      closing = true;
      return new Promise((resolve) => {
        let listenerClosed = false;
        const timer = setTimeout(() => {
          // What their database work has not committed is rolled back (src/db/pool.ts).
          for (const work of inFlight) work.abandoned = true;
          const cut = [...inFlight].map(({ method, url, since }) => ({
            method: method ?? '', path: (url ?? '').split('?')[0]!, seconds: Math.round(performance.now() - since) / 1000,
          }));
          server.closeAllConnections();
          resolve(cut);
        }, timeoutMs);
        // Resolving again after the timer has is a no-op.
        const done = () => {
          if (!listenerClosed || inFlight.size > 0) return;
          clearTimeout(timer);
          resolve([]);
        };
        finishIfDone = done;
        server.close(() => {
          listenerClosed = true;
          done();
        });
        server.closeIdleConnections();
      });
    },
  };
}
