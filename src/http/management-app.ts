// The management surface, on its own listener. It answers health checks today; the
// management API joins it with its own authentication.
import Koa from 'koa';
import Router from '@koa/router';
import type { Logger } from 'pino';
import type { Db } from '../db/database.ts';
import { addHealthRoutes } from './health.ts';
import { errorMapper } from './errors.ts';

export function buildManagementApp({ db, logger }: { db: Db; logger: Logger }): Koa {
  const app = new Koa();
  app.silent = true;
  const router = new Router();
  addHealthRoutes(router, db);
  app.use(errorMapper(logger, { realm: 'keymanager management' }));
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}
