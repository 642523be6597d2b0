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

/** The work owner of each request (src/db/work-owner.ts), marked abandoned if the stop cuts it off. */
const OWNER = Symbol('database work owner');
type Owned = ServerResponse & { [OWNER]?: { abandoned: boolean } };

/** Runs each request as its own database work owner: wrap the listener's handler with it. */
export function ownedRequests(handler: RequestListener): RequestListener {
  return (req, res) => {
    const owner = { abandoned: false };
    (res as Owned)[OWNER] = owner;
    workOwners.run(owner satisfies WorkOwner, () => handler(req, res));
  };
}

export function drainable(server: Server): ListenerDrain {
  // Runs on every request: the URL as it came is kept (koa may rewrite req.url later) and
  // reduced to its path only for a request that is cut off.
  const inFlight = new Map<ServerResponse, { method: string | undefined; url: string | undefined; since: number }>();
  let draining = false;
  let closing = false;
  function onResponseClosed(this: ServerResponse) {
    inFlight.delete(this);
    // A response whose headers went before the drain (a revocation stream) leaves its
    // connection open and idle. Not before the listener closes: until then a client may
    // send on an idle connection at any moment, and is answered (Connection: close).
    if (closing) setImmediate(() => server.closeIdleConnections());
  }
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (draining) res.shouldKeepAlive = false;
    inFlight.set(res, { method: req.method, url: req.url, since: performance.now() });
    res.on('close', onResponseClosed); // emitted once; `once` would wrap the listener per request
  });
  return {
    begin() {
      draining = true;
      for (const res of inFlight.keys()) if (!res.headersSent) res.shouldKeepAlive = false;
    },
    close(timeoutMs) {
      this.begin();
      closing = true;
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          // What their database work has not committed is rolled back (src/db/pool.ts).
          for (const res of inFlight.keys()) {
            const owner = (res as Owned)[OWNER];
            if (owner) owner.abandoned = true;
          }
          const cut = [...inFlight.values()].map(({ method, url, since }) => ({
            method: method ?? '', path: (url ?? '').split('?')[0]!, seconds: Math.round(performance.now() - since) / 1000,
          }));
          server.closeAllConnections();
          resolve(cut);
        }, timeoutMs);
        server.close(() => {
          clearTimeout(timer);
          resolve([]);
        });
        server.closeIdleConnections();
      });
    },
  };
}
