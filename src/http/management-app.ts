// The management surface, on its own listener with its own authentication: health checks and
// the management API (src/management/).
import Koa from 'koa';
import Router from '@koa/router';
import type { Logger } from 'pino';
import type { Db } from '../db/database.ts';
import { addHealthRoutes } from './health.ts';
import { errorMapper } from './errors.ts';
import { managementRouters } from '../management/router.ts';
import type { ManagementAuthDeps } from '../management/auth.ts';

export function buildManagementApp({ db, logger, management }: { db: Db; logger: Logger; management: ManagementAuthDeps }): Koa {
  const app = new Koa();
  app.silent = true;
  const router = new Router({ strict: true, sensitive: true });
  addHealthRoutes(router, db);
  app.use(errorMapper(logger, { realm: 'keymanager management' }));
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
