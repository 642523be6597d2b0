// The one error-mapping middleware of each surface. OAuth errors keep their RFC shape and
// status; an unreachable database — and only that — is a 503; a value the database refused
// to store is the caller's 400; anything else is a 500 with no detail. The detail (and any
// stack) goes to the log, never to the client.
import type { Context, Middleware } from 'koa';
import type { Logger } from 'pino';
import { isDatabaseUnreachable, isUnstorableInput } from '../db/errors.ts';

interface ExposedError {
  expose?: boolean;
  status?: number;
  statusCode?: number;
  error?: string;
  message: string;
  error_description?: string;
  error_detail?: string;
  challenge?: string;
  /** RFC 6750 §3: the scope an insufficient_scope challenge names. */
  challenge_scope?: string;
  /** A 503 because this instance is at capacity (not because the database is unreachable). */
  overload?: boolean;
}

/** RFC 6749 §5.2 / RFC 7235: the challenge of a refused client authentication. */
export function authChallenge(scheme: string, realm: string, error: string, description: string | undefined, scope?: string): string {
  // RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E (no quote, backslash or non-ASCII).
  const quoted = (v: string) => `"${v.replace(/[^\x20\x21\x23-\x5b\x5d-\x7e]/g, '')}"`;
  return `${scheme} realm=${quoted(realm)}, error=${quoted(error)}${description ? `, error_description=${quoted(description)}` : ''}${scope ? `, scope=${quoted(scope)}` : ''}`;
}

export function errorMapper(logger: Logger, { realm }: { realm: string }): Middleware {
  return async function mapErrors(ctx, next) {
    try {
      await next();
    } catch (thrown) {
      const err = thrown as ExposedError;
      ctx.set('Cache-Control', 'no-store');
      if (err.overload && err.error && err.error_description) {
        logger.warn({ path: ctx.path, detail: err.error_description }, 'refused: at capacity');
        ctx.status = 503;
        ctx.set('Retry-After', '5');
        ctx.body = { error: err.error, error_description: err.error_description };
        return;
      }
      if (ctx.req.destroyed && !ctx.req.complete) {
        // The client closed the connection, or request_timeout did, before its body arrived: its
        // ECONNRESET says nothing about the database.
        logger.info({ path: ctx.path }, 'request cut off before its body arrived');
        ctx.status = 400;
        ctx.body = { error: 'invalid_request', error_description: 'the request body did not arrive whole' };
        return;
      }
      if (isDatabaseUnreachable(thrown) || err.error === 'temporarily_unavailable') {
        logger.error({ err: thrown, path: ctx.path }, 'database unreachable');
        ctx.status = 503;
        ctx.body = { error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable' };
        return;
      }
      if (isUnstorableInput(thrown)) {
        // The edge (input-guard.ts) should have refused this: worth a warning, not a 500.
        logger.warn({ path: ctx.path, code: (thrown as { code?: string }).code }, 'input refused by the database');
        ctx.status = 400;
        ctx.body = { error: 'invalid_request', error_description: 'a parameter contains characters that cannot be processed' };
        return;
      }
      const status = err.statusCode ?? err.status ?? 500;
      if (err.expose && status < 500 && err.error) {
        logger.info({ path: ctx.path, error: err.error, detail: err.error_detail }, 'request refused');
        ctx.status = status;
        if (err.challenge) {
          // RFC 6750 §3.1: a Bearer challenge also comes with 400 (invalid_request) and 403
          // (insufficient_scope); every other challenge is a 401.
          if (status !== 400 && status !== 403) ctx.status = 401;
          ctx.set('WWW-Authenticate', authChallenge(err.challenge, realm, err.error, err.error_description, err.challenge_scope));
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

interface Correction {
  /** oidc-provider's error_description of the answer to correct. */
  description: string;
  error: string;
  status?: number;
  /** Only where the engine authenticates clients (its route names, not URLs): the same text
   * answers a malformed Bearer header at /userinfo, which is not a client's failure. */
  clientAuthOnly?: boolean;
}

// Engine routes that authenticate the client (oidc-provider's names, lib/shared/client_auth.js).
const CLIENT_AUTH_ROUTES = new Set(['token', 'pushed_authorization_request', 'device_authorization', 'backchannel_authentication', 'introspection', 'revocation']);

// oidc-provider answers a few cases with a different error than RFC 6749 §5.2 names; the
// response is corrected here, in one table, rather than at each call site.
const PROVIDER_ERROR_CORRECTIONS: Correction[] = [
  // §5.2: "The authenticated client is not authorized to use this authorization grant type."
  { description: 'requested grant type is not allowed for this client', error: 'unauthorized_client' },
  // §5.2: invalid_client (401) is "Client authentication failed (e.g., unknown client, no
  // client authentication included, or unsupported authentication method)".
  { description: 'no client authentication mechanism provided', error: 'invalid_client', status: 401, clientAuthOnly: true },
  { description: 'invalid authorization header value format', error: 'invalid_client', status: 401, clientAuthOnly: true },
  { description: 'client_secret must be provided in the Authorization header', error: 'invalid_client', status: 401, clientAuthOnly: true },
  { description: 'client_id and client_secret in the authorization header are not properly encoded', error: 'invalid_client', status: 401, clientAuthOnly: true },
];

function engineRoute(ctx: Context): { route?: string; issuer?: string } {
  const oidc = (ctx as { oidc?: { route?: string; provider?: { issuer?: string } } }).oidc;
  return { route: oidc?.route, issuer: oidc?.provider?.issuer };
}

function correctionOf(route: string | undefined, status: number, description: unknown): Correction | undefined {
  if (status !== 400) return undefined;
  const correction = PROVIDER_ERROR_CORRECTIONS.find((c) => c.description === description);
  if (correction?.clientAuthOnly && !(route && CLIENT_AUTH_ROUTES.has(route))) return undefined;
  return correction;
}

/** The error a client is finally told for what the engine refused at `route` (its route name). */
export function correctedProviderError(route: string | undefined, status: number, error: string, description: unknown): string {
  return correctionOf(route, status, description)?.error ?? error;
}

export function correctProviderErrors(): Middleware {
  return async function correctProviderErrorsMiddleware(ctx, next) {
    await next();
    const body = ctx.body as { error?: unknown; error_description?: unknown } | undefined;
    if (!body || typeof body !== 'object' || typeof body.error !== 'string') return;
    const { route, issuer } = engineRoute(ctx);
    const correction = correctionOf(route, ctx.status, body.error_description);
    if (!correction) return;
    body.error = correction.error;
    if (correction.status === 401) {
      ctx.status = 401;
      // RFC 7235 §3.1: a 401 carries a challenge; RFC 6749 §2.3.1: the scheme is Basic.
      ctx.set('WWW-Authenticate', authChallenge('Basic', issuer ?? ctx.origin, correction.error, correction.description));
    }
  };
}
