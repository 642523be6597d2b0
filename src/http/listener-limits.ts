// What one client may hold of a listener. Node's own defaults suit a server behind a proxy that
// already enforces them: a request may take 300 s to arrive, a TLS handshake 120 s, and
// connections are not capped, so a few thousand slow senders would hold the process's file
// descriptors — which its database connections need too — and the management listener would
// be unreachable with the public one.
import type { Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';

export interface ListenerLimits {
  /** Longest time to receive a whole request, headers and body (and the TLS handshake before them), seconds: slower ones get 408. */
  requestTimeout: number;
  /** How long an idle keep-alive connection stays open, seconds. */
  keepAliveTimeout: number;
  /** Connections open at once on this listener in this process; further ones are closed as they arrive. */
  maxConnections: number;
}

/** How often Node looks for requests past their time: the timeout is honoured to within this. */
const TIMEOUT_CHECK_INTERVAL_MS = 1000;

/**
 * Requests one connection may have waiting for their answers. Node reads every request of a
 * chunk at once, and a client that sends a few kilobytes of pipelined requests and never reads
 * would have each answer built and held in memory (megabytes per connection).
 */
export const MAX_PIPELINED_REQUESTS = 32;

/** One warning per this many milliseconds while connections are being dropped: a flood is not logged line by line. */
const DROP_WARNING_INTERVAL_MS = 60_000;

/** Options that exist only at construction (createServer). */
export function listenerServerOptions(limits: ListenerLimits) {
  return {
    connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
    // TLS servers only (https.createServer): a handshake is part of receiving the request.
    handshakeTimeout: limits.requestTimeout * 1000,
  };
}

export function limitListener(server: Server, name: 'public' | 'management', limits: ListenerLimits,
  { logger, dropped }: { logger: Logger; dropped: Counter<'listener'> }): void {
  server.requestTimeout = limits.requestTimeout * 1000;
  // Headers are part of the request: one deadline for both (Node's must not be the longer).
  server.headersTimeout = limits.requestTimeout * 1000;
  server.keepAliveTimeout = limits.keepAliveTimeout * 1000;

  // Counted here rather than with server.maxConnections: with node:cluster a worker at that
  // limit hands the connection back, and the supervisor queues it until some worker has room,
  // outside every timeout, uncounted.
  let open = 0;
  let droppedSinceWarning = 0;
  let warnedAt = -Infinity;
  server.on('connection', (socket: Socket) => {
    if (open >= limits.maxConnections) {
      socket.destroy();
      dropped.inc({ listener: name });
      droppedSinceWarning++;
      const now = performance.now();
      if (now - warnedAt >= DROP_WARNING_INTERVAL_MS) {
        logger.warn({ listener: name, max_connections: limits.maxConnections, dropped: droppedSinceWarning },
          'max_connections reached: new connections are closed as they arrive');
        warnedAt = now;
        droppedSinceWarning = 0;
      }
      return;
    }
    open++;
    socket.once('close', () => { open--; });
  });

  server.on('request', (req, res) => {
    const socket = req.socket as Counted;
    const n = (socket[WAITING] ?? 0) + 1;
    socket[WAITING] = n;
    if (n > MAX_PIPELINED_REQUESTS) {
      socket.destroy();
      return;
    }
    res.on('close', answered); // emitted once; `once` would wrap the listener per request
  });
}

/** On each connection: its requests not yet answered. */
const WAITING = Symbol('requests waiting for their answers');
type Counted = Socket & { [WAITING]?: number };

function answered(this: ServerResponse) {
  (this.req.socket as Counted)[WAITING]!--;
}
