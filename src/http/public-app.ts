// The public (protocol) surface: health, our introspection and revocation endpoints, RFC 8414
// metadata, and everything else handed to oidc-provider.
import Koa from 'koa';
import Router from '@koa/router';
import type { Logger } from 'pino';
import type { Config } from '../config/index.ts';
import type { Db } from '../db/database.ts';
import { addHealthRoutes, type Readiness } from './health.ts';
import { authenticateClient, type CertificateCheck } from '../oauth/client-auth.ts';
import { addGatewayRoutes } from '../gateway/routes.ts';
import { introspectionSigner } from '../gateway/introspection-response.ts';
import type { RevocationFeed } from '../gateway/revocation-feed.ts';
import { revoke } from '../oauth/revocation.ts';
import { ROUTES } from '../oauth/provider.ts';
import type { Engine } from '../oauth/engine.ts';
import type { ClientDirectory } from '../oauth/client-directory.ts';
import type { TokenLookup } from '../gateway/token-cache.ts';
import { showStep, submitConsent, submitLogin, type InteractionDeps } from '../oauth/interactions/handlers.ts';
import type { ScopeLookup } from '../oauth/scope-registry.ts';
import { authChallenge, correctProviderErrors, errorMapper } from './errors.ts';
import { onlyDocumentedEngineRoutes } from './engine-routes.ts';
import { clientAddress, isLoopbackHost } from './client-address.ts';
import { stampRequestReceived } from '../oauth/request-time.ts';
import { recordAuditEvent } from '../store/audit.ts';
import { readForm } from './form-body.ts';
import { inputGuard } from './input-guard.ts';
import type { Metrics } from './metrics.ts';
import { countClientAuthFailures, measureRequests } from './request-metrics.ts';

const DISCOVERY_PATH = '/.well-known/openid-configuration';
const POST = ['POST'];
const GET = ['GET', 'HEAD'];
/**
 * The methods each endpoint answers (discovery under its RFC 8414 name is rewritten to
 * DISCOVERY_PATH first). Another method of HTTP's own is 405 with Allow, as JSON; OPTIONS goes
 * on (CORS preflight), and a method the server does not implement at all is 501 further on.
 */
const ENDPOINT_METHODS = new Map<string, string[]>([
  [ROUTES.token, POST], [ROUTES.introspection, POST], [ROUTES.revocation, POST], [`${ROUTES.endSession}/confirm`, POST],
  [ROUTES.authorization, GET], [ROUTES.jwks, GET], [DISCOVERY_PATH, GET],
]);
const REFUSED_WITH_405 = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH']);

/** A path's first segment: `/interaction/abc/login` → `/interaction`. */
function firstSegment(path: string): string {
  const end = path.indexOf('/', 1);
  return end < 0 ? path : path.slice(0, end);
}

/**
 * The router's routes() and allowedMethods(), run only for a path whose first segment one of
 * its routes begins with, or a method the router does not implement. Matching walks every route
 * and costs each request that none serves, /token above all, for nothing: such a path can match
 * no route, and allowedMethods answers it only for such a method (501, RFC 9110 §9.1, on any
 * path the layers below leave 404). Routes whose first segment is a pattern would defeat this:
 * then every request goes through the router.
 */
function onlyWhereRouted(router: Router): Koa.Middleware {
  // As app.use takes them: the router's own context type is what koa hands every middleware.
  const routes = router.routes() as Koa.Middleware;
  const allowedMethods = router.allowedMethods() as Koa.Middleware;
  const run: Koa.Middleware = (ctx, next) => routes(ctx, () => allowedMethods(ctx, next));
  const firsts = router.stack.map((layer) => (typeof layer.path === 'string' ? firstSegment(layer.path) : undefined));
  if (firsts.some((first) => first === undefined || /[:(*?]/.test(first))) return run;
  const routed = new Set(firsts);
  const implemented = new Set(router.methods);
  return (ctx, next) => (routed.has(firstSegment(ctx.path)) || !implemented.has(ctx.method) ? run(ctx, next) : next());
}

export interface PublicAppDeps {
  config: Config;
  db: Db;
  /** The protocol engine, rebuilt when the signing keys change (src/oauth/engine.ts). */
  engine: Engine;
  scopes: ScopeLookup;
  /** Cookie-signing keys, shared with oidc-provider; the first also keys the forms' tokens. */
  cookieKeys: string[];
  /** Client-certificate checks, the same oidc-provider uses at /token. */
  certificates: CertificateCheck;
  /** The revocation feed of this instance (GET /revocations). */
  feed: RevocationFeed;
  /** Client rows, cached while changes are announced. */
  clients: ClientDirectory;
  /** Token rows for introspection, cached while changes are announced. */
  tokens: TokenLookup;
  /** Waits until every instance has handled the changes committed so far (caches dropped). */
  syncInstances: () => Promise<boolean>;
  metrics: Metrics;
  logger: Logger;
  /** Whether the server is stopping (/readyz). */
  readiness: Readiness;
}

export function buildPublicApp({ config, db, engine, scopes, cookieKeys, certificates, feed, clients, tokens, syncInstances, metrics, logger, readiness }: PublicAppDeps): Koa {
  const app = new Koa();
  // Koa reads the origin and the client address from X-Forwarded-* only with proxy on; the
  // first middleware below decides what those headers say, so it is safe to turn on here.
  app.proxy = true;
  app.silent = true; // errors are logged by errorMapper, not printed by koa
  // oidc-provider runs on this app's context when mounted: its signed cookies need our keys.
  app.keys = cookieKeys;
  const issuer = new URL(config.issuer);
  const trustedProxies = new Set(config.trustedProxies);
  // A browser that once reached the issuer over HTTPS keeps to HTTPS for it (RFC 6797). Not for
  // a development issuer on this machine: the browser would keep it for every local port.
  const strictTransport = issuer.protocol === 'https:' && !isLoopbackHost(issuer.hostname);

  // Our routes match exactly, as the engine's are made to below: one spelling per endpoint.
  const router = new Router({ strict: true, sensitive: true });
  addHealthRoutes(router, db, readiness);
  addGatewayRoutes(router, { introspection: ROUTES.introspection, revocations: ROUTES.revocations }, {
    config, db, clients, tokens, certificates, scopes, feed, signer: introspectionSigner(() => engine.signingKey), metrics,
  });
  const interactions: InteractionDeps = {
    config, db, scopes, logger, metrics, formKey: cookieKeys[0]!,
    get provider() {
      return engine.provider;
    },
  };
  router.get('/interaction/:uid', (ctx) => showStep(interactions, ctx));
  router.post('/interaction/:uid/login', async (ctx) => submitLogin(interactions, ctx, await readForm(ctx, config.maxBodyBytes)));
  router.post('/interaction/:uid/consent', async (ctx) => submitConsent(interactions, ctx, await readForm(ctx, config.maxBodyBytes)));
  router.post(ROUTES.revocation, async (ctx) => {
    const form = await readForm(ctx, config.maxBodyBytes);
    const caller = await authenticateClient(clients, certificates, ctx, form, { allowPublic: true });
    const outcome = await revoke(db, caller, form);
    metrics.revocations.inc({ kind: outcome.revoked ?? 'unknown' });
    if (outcome.revoked) {
      // Answered only once every instance has dropped what it cached of the token: from the
      // next request on, none of them reports it active (src/db/notifications.ts, sync).
      await syncInstances();
      logger.info({ client_id: caller.client_id }, 'token revoked');
      await recordAuditEvent(db, { actorType: 'client', actor: caller.client_id, action: 'token.revoke', resourceType: 'token', outcome: 'success', source: ctx.ip })
        .catch((err) => logger.error({ error: (err as Error).message }, 'audit event not recorded'));
    }
    ctx.set('Cache-Control', 'no-store');
    ctx.status = 200;
    ctx.body = '';
  });

  app.use(measureRequests(metrics));
  // One middleware for what every request gets before anything can refuse it: each layer of
  // koa middleware costs every request a promise and a closure. Those with nothing to do after
  // the layers below are plain functions that hand on next()'s promise, not async ones that
  // wait for it (koa-compose turns what they throw into a rejection alike).
  app.use(function receiveRequest(ctx, next) {
    stampRequestReceived(ctx);
    // oidc-provider builds endpoint URLs (discovery, audiences) from the request's origin. A
    // Host header chosen by the caller must never put another origin into our metadata.
    const headers = ctx.request.headers;
    headers['x-forwarded-host'] = issuer.host;
    headers['x-forwarded-proto'] = issuer.protocol.slice(0, -1);
    // The client address (brute-force counting, ctx.ip) is decided once, here: the socket's
    // peer, or what our own proxies in front say (src/http/client-address.ts).
    const forwardedFor = config.trustProxy ? ctx.get('x-forwarded-for') : undefined;
    headers['x-forwarded-for'] = clientAddress(ctx.req.socket.remoteAddress, forwardedFor, trustedProxies);
    // On every answer, errors included (errorMapper keeps the headers set before it). No page
    // of ours or of the engine (its error pages, the form_post page that carries a code) may
    // be framed by another site; our own pages set a stricter policy of their own.
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    ctx.set('X-Frame-Options', 'DENY');
    ctx.set('Content-Security-Policy', "frame-ancestors 'none'");
    if (strictTransport) ctx.set('Strict-Transport-Security', 'max-age=31536000');
    return next();
  });
  app.use(async function answerRules(ctx, next) {
    // Rules of HTTP every answer follows, whoever made it (the engine, our routes, the error
    // mapper below): so above them all.
    await next();
    // RFC 6749 §5.1: with no-store, Pragma: no-cache too (for HTTP/1.0 caches).
    if (ctx.response.get('Cache-Control') === 'no-store') ctx.set('Pragma', 'no-cache');
    // RFC 9110 §15.5.2: a 401 carries a challenge, also when the client authenticated in the
    // body or by certificate (RFC 6749 §2.3.1: the scheme is Basic).
    if (ctx.status === 401 && !ctx.response.get('WWW-Authenticate')) {
      const body = ctx.body as { error?: unknown; error_description?: unknown } | undefined;
      if (body?.error === 'invalid_client') {
        const description = typeof body.error_description === 'string' ? body.error_description : undefined;
        ctx.set('WWW-Authenticate', authChallenge('Basic', config.issuer, 'invalid_client', description));
      }
    }
  });
  app.use(errorMapper(logger, { realm: config.issuer }));
  app.use(countClientAuthFailures(metrics));
  app.use(inputGuard({ maxBodyBytes: config.maxBodyBytes }));
  app.use(async function authorizationServerMetadata(ctx, next) {
    // RFC 8414 metadata is the same document as OpenID discovery, under its own name.
    if (ctx.path === '/.well-known/oauth-authorization-server') ctx.path = DISCOVERY_PATH;
    await next();
    // The engine knows only its static OpenID scopes; the rest are in our registry. A copy:
    // the engine may hand out the same object every time.
    const body = ctx.body as { scopes_supported?: string[] } | undefined;
    if ((ctx as { oidc?: { route?: string } }).oidc?.route === 'discovery' && ctx.status === 200 && body && typeof body === 'object') {
      ctx.body = { ...body, scopes_supported: [...new Set([...(body.scopes_supported ?? []), ...(await scopes.all())])] };
    }
  });
  app.use(function endpointMethods(ctx, next) {
    const allowed = ENDPOINT_METHODS.get(ctx.path);
    if (allowed && !allowed.includes(ctx.method) && REFUSED_WITH_405.has(ctx.method)) {
      ctx.set('Allow', allowed.join(', '));
      ctx.status = 405;
      ctx.body = { error: 'invalid_request', error_description: `this endpoint accepts only ${allowed[0]}` };
      return undefined;
    }
    return next();
  });
  app.use(onlyWhereRouted(router));
  app.use(correctProviderErrors());
  app.use(onlyDocumentedEngineRoutes({
    exact: [ROUTES.authorization, ROUTES.token, ROUTES.jwks, DISCOVERY_PATH, `${ROUTES.endSession}/confirm`],
    authorization: ROUTES.authorization,
  }));
  app.use(engine.middleware);
  return app;
}
