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

export function errorMapper(logger: Logger, { realm }: { realm: string }): Middleware {
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
          const description = err.error_description ? `, error_description="${err.error_description.replace(/["\\]/g, '')}"` : '';
          ctx.set('WWW-Authenticate', `${err.challenge} realm="${realm}", error="${err.error}"${description}`);
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

// oidc-provider answers a few cases with a different error than RFC 6749 §5.2 names; the
// response is corrected here, in one table, rather than at each call site.
const PROVIDER_ERROR_CORRECTIONS: { description: string; error: string }[] = [
  // §5.2: "The authenticated client is not authorized to use this authorization grant type."
  { description: 'requested grant type is not allowed for this client', error: 'unauthorized_client' },
];

export function correctProviderErrors(): Middleware {
  return async function correctProviderErrorsMiddleware(ctx, next) {
    await next();
    const body = ctx.body as { error?: unknown; error_description?: unknown } | undefined;
    if (ctx.status !== 400 || !body || typeof body !== 'object' || typeof body.error !== 'string') return;
    const correction = PROVIDER_ERROR_CORRECTIONS.find((c) => c.description === body.error_description);
    if (correction) body.error = correction.error;
  };
}
