// What one client may hold of a listener. Node's own defaults suit a server behind a proxy that
// already enforces them: a request may take 300 s to arrive and connections are not capped, so
// a few thousand slow senders would hold the process's file descriptors — which its database
// connections need too — and the management listener would be unreachable with the public one.
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';

export interface ListenerLimits {
  /** Longest time to receive a whole request, headers and body, seconds: slower ones get 408. */
  requestTimeout: number;
  /** How long an idle keep-alive connection stays open, seconds. */
  keepAliveTimeout: number;
  /** Connections open at once on this listener; further ones are closed as they arrive. */
  maxConnections: number;
}

/** How often Node looks for requests past their time: the timeout is honoured to within this. */
export const TIMEOUT_CHECK_INTERVAL_MS = 1000;

/** One warning per this many seconds while connections are being dropped: a flood is not logged line by line. */
const DROP_WARNING_INTERVAL_MS = 60_000;

/** Server options that exist only at construction (createServer). */
export const listenerServerOptions = { connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS } as const;

export function limitListener(server: Server, name: 'public' | 'management', limits: ListenerLimits,
  { logger, dropped }: { logger: Logger; dropped: Counter<'listener'> }): void {
  server.requestTimeout = limits.requestTimeout * 1000;
  // Headers are part of the request: one deadline for both (Node's must not be the longer).
  server.headersTimeout = limits.requestTimeout * 1000;
  server.keepAliveTimeout = limits.keepAliveTimeout * 1000;
  server.maxConnections = limits.maxConnections;
  let droppedSinceWarning = 0;
  let warnedAt = -Infinity;
  server.on('drop', () => {
    dropped.inc({ listener: name });
    droppedSinceWarning++;
    const now = performance.now();
    if (now - warnedAt < DROP_WARNING_INTERVAL_MS) return;
    logger.warn({ listener: name, max_connections: limits.maxConnections, dropped: droppedSinceWarning },
      'max_connections reached: new connections are closed as they arrive');
    warnedAt = now;
    droppedSinceWarning = 0;
  });
}
