// Stopping a listener without cutting anyone off. server.close() alone refuses new connections
// but leaves keep-alive ones open, serving further requests until they idle out; here every
// response from the start of the drain closes its connection, and each connection goes as
// soon as it has nothing in flight.
import type { Server, ServerResponse } from 'node:http';

export interface ListenerDrain {
  /** From now on every response, those under way included, closes its connection after it. */
  begin(): void;
  /**
   * Refuses new connections and waits for the requests in flight, `timeoutMs` at most; then
   * closes the connections still open. True when every request finished in time.
   */
  close(timeoutMs: number): Promise<boolean>;
}

export function drainable(server: Server): ListenerDrain {
  const inFlight = new Set<ServerResponse>();
  let draining = false;
  server.on('request', (_req, res: ServerResponse) => {
    if (draining) res.shouldKeepAlive = false;
    inFlight.add(res);
    res.once('close', () => {
      inFlight.delete(res);
      // A response whose headers went before the drain (a revocation stream) leaves its
      // connection open and idle.
      if (draining) setImmediate(() => server.closeIdleConnections());
    });
  });
  return {
    begin() {
      draining = true;
      for (const res of inFlight) if (!res.headersSent) res.shouldKeepAlive = false;
    },
    close(timeoutMs) {
      this.begin();
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          server.closeAllConnections();
          resolve(false);
        }, timeoutMs);
        server.close(() => {
          clearTimeout(timer);
          resolve(true);
        });
        server.closeIdleConnections();
      });
    },
  };
}
