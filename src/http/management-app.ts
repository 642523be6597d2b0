// The management surface, on its own listener with its own authentication: health checks,
// the metrics, and the management API (src/management/).
import Koa from 'koa';
import Router from '@koa/router';
import type { Logger } from 'pino';
import type { Db } from '../db/database.ts';
import { addHealthRoutes, type Readiness } from './health.ts';
import { refuseUnstorableQuery, timesSent } from './input-guard.ts';
import { errorMapper } from './errors.ts';
import { managementRouters } from '../management/router.ts';
import { badRequest } from '../management/errors.ts';
import type { ManagementAuthDeps } from '../management/auth.ts';
import type { Metrics } from './metrics.ts';
import type { MetricsExposition } from './cluster-metrics.ts';
import { addMetricsRoute } from './metrics-endpoint.ts';
import { isAllowedHost, misdirected, type ManagementHostPolicy } from './management-hosts.ts';
import { measureRequests } from './request-metrics.ts';

export interface ManagementAppDeps {
  db: Db;
  logger: Logger;
  management: ManagementAuthDeps;
  metrics: Metrics;
  /** What GET /metrics answers (every worker's metrics when there are several). */
  exposition: MetricsExposition;
  /** Whether the server is stopping (/readyz). */
  readiness: Readiness;
  /** The Host names answered (src/http/management-hosts.ts). */
  hosts: ManagementHostPolicy;
}

export function buildManagementApp({ db, logger, management, metrics, exposition, readiness, hosts }: ManagementAppDeps): Koa {
  const app = new Koa();
  app.silent = true;
  const router = new Router({ strict: true, sensitive: true });
  addHealthRoutes(router, db, readiness);
  addMetricsRoute(router, { exposition, management, logger });
  app.use(measureRequests(metrics));
  app.use(errorMapper(logger, { realm: 'keymanager management' }));
  app.use(function refuseOtherHostNames(ctx, next) {
    // Before anything answers, /healthz and /metrics included (DNS rebinding). Node keeps the
    // first of two Host headers; a proxy in front may keep the last.
    if (timesSent(ctx.req.rawHeaders, 'host') > 1) throw badRequest('the request has more than one Host header');
    if (!isAllowedHost(hosts, ctx.req.headers.host)) throw misdirected();
    return next();
  });
  app.use(function refuseUnstorableQueries(ctx, next) {
    // As on the public listener: a NUL or bytes that are not UTF-8 in a query parameter
    // (?client_id=, ?action=) are refused here, not discovered by PostgreSQL or searched for as
    // U+FFFD. Paths are not: a write to any path is audited, whatever bytes it carries.
    refuseUnstorableQuery(ctx.querystring);
    return next();
  });
  app.use(function refuseRepeatedCredentials(ctx, next) {
    // Node believes the first; a proxy in front may believe the last.
    if (timesSent(ctx.req.rawHeaders, 'authorization') > 1) throw badRequest('the request has more than one Authorization header');
    return next();
  });
  app.use(async function refuseBrowsersFromElsewhere(ctx, next) {
    // The management API is for operators' tools (curl, scripts), not for web pages: a request
    // a browser sends on behalf of another site (Sec-Fetch-Site, Origin) could otherwise act
    // with credentials the browser holds (Basic) — cross-site request forgery.
    const site = ctx.get('sec-fetch-site');
    if ((site && site !== 'same-origin' && site !== 'none') || ctx.get('origin')) {
      ctx.status = 403;
      ctx.body = { error: 'forbidden', error_description: 'cross-site requests are not accepted' };
      return;
    }
    await next();
  });
  app.use(router.routes());
  app.use(router.allowedMethods());
  for (const routes of managementRouters(management)) {
    app.use(routes.routes());
    app.use(routes.allowedMethods());
  }
  app.use(async (ctx) => {
    ctx.status = 404;
    ctx.body = { error: 'not_found', error_description: 'no such resource' };
  });
  return app;
}
