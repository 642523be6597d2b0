// GET /metrics on the management listener, in the Prometheus text format. With
// management.metrics_auth, the scraper signs in as a management user of either role: with
// Basic credentials, which Prometheus sends by itself (basic_auth), whatever management.auth
// says — a bearer token that expires would need a login step no scraper makes — or, under
// management.auth = "jwt", with a management token as bearer.
import type Router from '@koa/router';
import type { Logger } from 'pino';
import { principalFromBasic, principalFromBearer, type ManagementAuthDeps } from '../management/auth.ts';
import type { MetricsExposition } from './cluster-metrics.ts';

export function addMetricsRoute(router: Router, { exposition, management, logger }: { exposition: MetricsExposition; management: ManagementAuthDeps; logger: Logger }): void {
  router.get('/metrics', async (ctx) => {
    if (management.config.managementMetricsAuth) {
      const bearer = /^Bearer\s/i.test(ctx.get('authorization'));
      if (bearer && management.config.managementAuth === 'jwt') await principalFromBearer(management, ctx);
      else await principalFromBasic(management, ctx);
    }
    ctx.set('Cache-Control', 'no-store');
    let text: string;
    try {
      text = await exposition.text();
    } catch (err) {
      logger.warn({ error: err instanceof Error ? err.message : String(err) }, 'metrics not collected');
      ctx.status = 503;
      ctx.body = { error: 'temporarily_unavailable', error_description: 'the metrics could not be collected; try again' };
      return;
    }
    ctx.type = exposition.contentType;
    ctx.body = text;
  });
}
