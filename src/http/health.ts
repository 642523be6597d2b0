// /healthz: the process answers. /readyz: it can reach the database (503 otherwise), which is
// what a load balancer should route on.
import type Router from '@koa/router';
import type { Db } from '../db/database.ts';
import { isDatabaseReachable } from '../db/database.ts';

export function addHealthRoutes(router: Router, db: Db): void {
  router.get('/healthz', (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { status: 'ok' };
  });
  router.get('/readyz', async (ctx) => {
    const ready = await isDatabaseReachable(db);
    ctx.set('Cache-Control', 'no-store');
    ctx.status = ready ? 200 : 503;
    ctx.body = { status: ready ? 'ready' : 'database unreachable' };
  });
}
