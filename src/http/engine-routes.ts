// Which requests reach oidc-provider: the documented paths exactly, byte for byte. The
// engine's router folds case and ignores a trailing slash, so without this `/TOKEN` and
// `/token/` would be second, undocumented token endpoints. Anything else is a 404 here.
import type { Middleware } from 'koa';

export interface EngineRoutes {
  /** Paths served as they are (`/token`, `/jwks`, discovery, …). */
  exact: string[];
  /** The authorization endpoint: `/authorize/<uid>` resumes a flow after the sign-in pages. */
  authorization: string;
}

const INTERACTION_UID = /^[A-Za-z0-9_-]{1,64}$/;

export function onlyDocumentedEngineRoutes({ exact, authorization }: EngineRoutes): Middleware {
  const paths = new Set(exact);
  const resumePrefix = `${authorization}/`;
  // Plain, not async: nothing to do after the engine (a layer fewer to wait through).
  return function onlyDocumentedEngineRoutesMiddleware(ctx, next) {
    const path = ctx.path;
    const resumes = path.startsWith(resumePrefix) && INTERACTION_UID.test(path.slice(resumePrefix.length));
    if (!paths.has(path) && !resumes) {
      ctx.status = 404;
      ctx.set('Cache-Control', 'no-store');
      ctx.body = { error: 'invalid_request', error_description: 'no such endpoint' };
      return undefined;
    }
    return next();
  };
}
