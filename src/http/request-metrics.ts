// Per-request metrics of a surface: the duration histogram, labelled by the route that matched
// (never the raw path: the label set must stay bounded whatever URLs callers invent), and the
// client authentications our own endpoints refused.
import type { Context, Middleware } from 'koa';
import { ClientAuthFailed } from '../oauth/client-auth.ts';
import type { Metrics } from './metrics.ts';

/** What a request reached, as a template: `/interaction/:uid`, `/token`; `unmatched` for nothing. */
export function matchedRoute(ctx: Context): string {
  const routed = ctx as Context & { matched?: { path: unknown; methods: string[] }[]; _matchedRoute?: unknown };
  // @koa/router lists every layer whose path matched; its middleware layers have no methods and
  // would name a prefix (`/management(.*)`) when they refuse before the route runs.
  const layer = routed.matched?.findLast((l) => l.methods.length > 0 && typeof l.path === 'string');
  // The protocol engine's own router sets only this, to the template of the endpoint it served.
  const route = layer?.path ?? routed._matchedRoute;
  return typeof route === 'string' ? route : 'unmatched';
}

/** Outermost middleware: times each request until its answer is decided. */
export function measureRequests({ httpDuration }: Pick<Metrics, 'httpDuration'>): Middleware {
  return async function measureRequestsMiddleware(ctx, next) {
    // Not httpDuration.startTimer(): it allocates two hrtime arrays and a merged label object per request.
    const started = performance.now();
    try {
      await next();
    } finally {
      httpDuration.observe({ route: matchedRoute(ctx), status: String(ctx.status) }, (performance.now() - started) / 1000);
    }
  };
}

/**
 * Inside the error mapper: counts the refused client authentications of our own endpoints
 * (/introspect, /revoke, /revocations, and malformed Basic credentials anywhere); the engine's
 * are counted from its events (engine-metrics.ts).
 */
export function countClientAuthFailures({ clientAuthFailures }: Pick<Metrics, 'clientAuthFailures'>): Middleware {
  return async function countClientAuthFailuresMiddleware(_ctx, next) {
    try {
      await next();
    } catch (err) {
      if (err instanceof ClientAuthFailed) clientAuthFailures.inc({ method: err.method });
      throw err;
    }
  };
}
