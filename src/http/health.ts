// /healthz: the process answers. /readyz: it is not stopping and can reach the database (503
// otherwise), which is what a load balancer should route on.
import type Router from '@koa/router';
import type { Db } from '../db/database.ts';
import { isDatabaseReachable } from '../db/database.ts';

export interface Readiness {
  /** Set when the server begins to stop (SIGTERM): /readyz answers 503 from then on. */
  stopping: boolean;
}

export function addHealthRoutes(router: Router, db: Db, readiness: Readiness): void {
  router.get('/healthz', (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { status: 'ok' };
  });
  router.get('/readyz', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    if (readiness.stopping) {
      ctx.status = 503;
      ctx.body = { status: 'stopping' };
      return;
    }
    const ready = await isDatabaseReachable(db);
    ctx.status = ready ? 200 : 503;
    ctx.body = { status: ready ? 'ready' : 'database unreachable' };
  });
}
