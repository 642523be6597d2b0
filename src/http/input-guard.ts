// The edge check of every request on the public listener, before our routes and before
// oidc-provider (DESIGN §2 rule 10): what PostgreSQL cannot store — NUL, bytes that are not
// UTF-8, UTF-8-encoded surrogates — is refused with the protocol's error wherever it appears,
// so no lookup ever sees it. It is keyed on what a request carries (method, media type,
// Authorization scheme), never on its URL, so every spelling of every endpoint is covered.
//
// Sizes: a body is limited to max_body_bytes (413, declared or chunked). The request line and
// headers are limited by Node's HTTP parser (16 KiB, answered 431 before any of this runs), so
// an oversized query value or Basic credential never arrives; the values that remain are judged
// by the endpoint that reads them (a 30 kB client_id is simply an unknown client).
import type { Middleware } from 'koa';
import { errors } from 'oidc-provider';
import { basicCredentials } from '../oauth/client-auth.ts';
import { declaresFormBody, PayloadTooLarge, parseFormStrict, readFormText } from './form-body.ts';

/** A query string with a parameter PostgreSQL cannot hold (NUL, not UTF-8): 400 invalid_request naming it. */
export function refuseUnstorableQuery(query: string): void {
  if (!query) return;
  // Node's parser already refuses raw bytes outside ASCII in the request line; should it ever
  // be made lenient, node:querystring (ctx.query, the engine's) would misread them.
  if (/[^\x20-\x7e]/.test(query)) throw new errors.InvalidRequest('the query string must be percent-encoded ASCII');
  parseFormStrict(query);
}

/**
 * How many times a header came in the request. Node keeps only the first Authorization (and
 * joins others with ", "): a proxy that adds its own header after the caller's would leave the
 * caller's to be believed.
 */
export function timesSent(rawHeaders: readonly string[], lowerCaseName: string): number {
  let n = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === lowerCaseName.length && name.toLowerCase() === lowerCaseName) n++;
  }
  return n;
}

export function inputGuard({ maxBodyBytes }: { maxBodyBytes: number }): Middleware {
  // Plain, not async (public-app.ts): a request without a form body goes on at once.
  return function guardInput(ctx, next) {
    // Answered on the declared length whatever the media type: spares reading the body.
    const declared = ctx.request.length;
    if (declared !== undefined && declared > maxBodyBytes) throw new PayloadTooLarge();

    // Without a `%` a path decodes to itself: the decoder is needed only for escapes.
    let path = ctx.path;
    if (path.includes('%')) {
      try {
        path = decodeURIComponent(path);
      } catch {
        throw new errors.InvalidRequest('the request path is not valid percent-encoded UTF-8');
      }
    }
    if (path.includes('\0')) throw new errors.InvalidRequest('the request path must not contain NUL');
    refuseUnstorableQuery(ctx.querystring);

    // RFC 6749 §5.2: more than one set of credentials is invalid_request.
    if (timesSent(ctx.req.rawHeaders, 'authorization') > 1) throw new errors.InvalidRequest('the request has more than one Authorization header');
    // Client credentials: RFC 6749 §5.2 makes an unreadable one invalid_client (401, challenge).
    const authorization = ctx.get('authorization');
    if (/^\s*basic\b/i.test(authorization)) basicCredentials(authorization);

    // Read here, checked, and left on ctx.request.body for our routes and for oidc-provider,
    // which takes it from there once the request stream has been consumed.
    if (ctx.method === 'POST' && declaresFormBody(ctx)) return readFormText(ctx, maxBodyBytes).then(() => next());
    return next();
  };
}
