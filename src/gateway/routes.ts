// The public routes gateways use: POST /introspect (client credentials or an introspect-scoped
// bearer; JSON or an RFC 9701 JWT; with a cache hint) and GET /revocations (the event feed).
import type Router from '@koa/router';
import type { Context } from 'koa';
import { errors } from 'oidc-provider';
import type { Config } from '../config/index.ts';
import { readForm } from '../http/form-body.ts';
import { authenticateGateway, type GatewayCallerDeps } from './caller.ts';
import { introspect } from './introspection.ts';
import { cacheHint, INTROSPECTION_JWT_MEDIA_TYPE, signIntrospection, wantsJwt, type IntrospectionSigner } from './introspection-response.ts';
import type { RevocationFeed } from './revocation-feed.ts';
import type { Metrics } from '../http/metrics.ts';

export interface GatewayRouteDeps extends GatewayCallerDeps {
  config: Config;
  signer: IntrospectionSigner;
  feed: RevocationFeed;
  metrics: Pick<Metrics, 'introspections'>;
}

/** km_introspections_total's result of a request that got no answer: the caller's fault (4xx), or ours. */
function unansweredResult(err: unknown): 'refused' | 'error' {
  const e = err as { statusCode?: number; status?: number; expose?: boolean };
  const status = e?.statusCode ?? e?.status ?? 500;
  return e?.expose && status < 500 ? 'refused' : 'error';
}

/** 403 for an authenticated client that is no gateway (RFC 6749 §5.2's unauthorized_client). */
class NotAGateway extends errors.UnauthorizedClient {
  constructor() {
    super('only gateways may follow the revocation feed: a client with introspect_any, or a bearer token with the introspect scope');
    this.status = 403;
    this.statusCode = 403;
  }
}

/** 406: a JWT answer asked for by a caller that is no gateway. */
class JwtAnswerRefused extends errors.InvalidRequest {
  constructor() {
    super('JWT introspection responses are for gateways: a client with introspect_any, or a bearer token with the introspect scope');
    this.status = 406;
    this.statusCode = 406;
  }
}

export function addGatewayRoutes(router: Router, paths: { introspection: string; revocations: string }, deps: GatewayRouteDeps): void {
  const { config, db } = deps;
  const answerIntrospection = async (ctx: Context) => {
    const form = await readForm(ctx, config.maxBodyBytes);
    const { caller } = await authenticateGateway(deps, ctx, form);
    const jwt = wantsJwt(ctx);
    // A signed statement by the server is for resource servers that need one, not for any
    // client about its own token: the fewer such JWTs exist, the less a careless verifier (one
    // that checks neither typ nor aud) can be shown.
    if (jwt && !caller.anyToken) throw new JwtAnswerRefused();
    const result = await introspect(db, deps.tokens, config.issuer, caller, form);
    ctx.set('Cache-Control', cacheHint(result, config.introspectionCacheMaxAge));
    ctx.vary('Accept');
    if (jwt) {
      ctx.type = INTROSPECTION_JWT_MEDIA_TYPE;
      ctx.body = signIntrospection(deps.signer, config.issuer, caller.client.client_id, result);
    } else {
      ctx.body = result;
    }
    deps.metrics.introspections.inc({ result: result.active ? 'active' : 'inactive' });
  };
  router.post(paths.introspection, async (ctx) => {
    try {
      await answerIntrospection(ctx);
    } catch (err) {
      deps.metrics.introspections.inc({ result: unansweredResult(err) });
      throw err;
    }
  });
  router.get(paths.revocations, async (ctx) => {
    // A GET has no body: a client authenticating by certificate names itself in the query. A
    // secret never goes in a URL (logs keep them), so only client_id is taken from there.
    const form = new URLSearchParams();
    if (typeof ctx.query.client_id === 'string') form.set('client_id', ctx.query.client_id);
    const gateway = await authenticateGateway(deps, ctx, form);
    if (!gateway.caller.anyToken) throw new NotAGateway();
    await deps.feed.subscribe(ctx, gateway);
  });
}
