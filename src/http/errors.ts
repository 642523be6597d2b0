// The one error-mapping middleware of each surface. OAuth errors keep their RFC shape and
// status; an unreachable database is a 503; anything else is a 500 with no detail. The
// detail (and any stack) goes to the log, never to the client.
import type { Middleware } from 'koa';
import type { Logger } from 'pino';
import { isDatabaseUnreachable } from '../db/errors.ts';

interface ExposedError {
  expose?: boolean;
  status?: number;
  statusCode?: number;
  error?: string;
  message: string;
  error_description?: string;
  error_detail?: string;
  challenge?: string;
}

export function errorMapper(logger: Logger): Middleware {
  return async function mapErrors(ctx, next) {
    try {
      await next();
    } catch (thrown) {
      const err = thrown as ExposedError;
      ctx.set('Cache-Control', 'no-store');
      if (isDatabaseUnreachable(thrown) || err.error === 'temporarily_unavailable') {
        logger.error({ err: thrown, path: ctx.path }, 'database unreachable');
        ctx.status = 503;
        ctx.body = { error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable' };
        return;
      }
      const status = err.statusCode ?? err.status ?? 500;
      if (err.expose && status < 500 && err.error) {
        logger.info({ path: ctx.path, error: err.error, detail: err.error_detail }, 'request refused');
        ctx.status = status;
        if (err.challenge) {
          ctx.status = 401;
          ctx.set('WWW-Authenticate', err.challenge);
        }
        ctx.body = { error: err.error, ...(err.error_description ? { error_description: err.error_description } : {}) };
        return;
      }
      logger.error({ err: thrown, path: ctx.path, method: ctx.method }, 'unhandled error');
      ctx.status = 500;
      ctx.body = { error: 'server_error', error_description: 'an unexpected error occurred' };
    }
  };
}
