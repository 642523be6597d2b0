// Who calls /introspect and /revocations: a client authenticating itself (Basic, body, mutual
// TLS), or — RFC 7662 §2.1 — a bearer access token carrying the `introspect` scope, as the
// WSO2 document secures introspection "with Basic or OAuth2". A bearer must be active, not a
// refresh token, come with the certificate it is bound to, and carry the scope; a user's token
// counts only while the user holds a role bound to `introspect`. Refusals are RFC 6750 §3:
// 401 invalid_token, 403 insufficient_scope, 400 invalid_request, each with its challenge.
import type { Context } from 'koa';
import type { Db } from '../db/database.ts';
import { authenticateClient, ClientAuthFailed, type CertificateCheck } from '../oauth/client-auth.ts';
import type { ScopeLookup } from '../oauth/scope-registry.ts';
import type { ClientDirectory } from '../oauth/client-directory.ts';
import type { TokenLookup } from './token-cache.ts';
import { certificateThumbprint } from '../store/certificates.ts';
import { rolesOfUser } from '../store/users.ts';
import { splitScope } from '../oauth/scope-policy.ts';
import { isTokenActive, type IntrospectionCaller } from './introspection.ts';

/** The scope a gateway's bearer token must carry (registered by migration 0010). */
export const INTROSPECT_SCOPE = 'introspect';

/** RFC 6750 §3.1 errors, mapped with their Bearer challenge by the surface's error mapper. */
export class BearerTokenError extends Error {
  readonly expose = true;
  readonly challenge = 'Bearer';
  readonly status: number;
  readonly error: string;
  readonly error_description: string;
  readonly challenge_scope?: string;

  constructor(status: 400 | 401 | 403, error: 'invalid_request' | 'invalid_token' | 'insufficient_scope', description: string, scope?: string) {
    super(description);
    this.status = status;
    this.error = error;
    this.error_description = description;
    this.challenge_scope = scope;
  }
}

const invalidToken = (description: string) => new BearerTokenError(401, 'invalid_token', description);

/** RFC 6750 §2.1 b64token. */
const BEARER = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i;

export interface GatewayCallerDeps {
  db: Db;
  clients: ClientDirectory;
  /** Token rows (cached, src/gateway/token-cache.ts): a gateway's bearer is read like any token. */
  tokens: TokenLookup;
  certificates: CertificateCheck;
  scopes: ScopeLookup;
}

export interface AuthenticatedGateway {
  caller: IntrospectionCaller;
  /**
   * Whether the credentials would still be accepted now, with the same rights: a long-lived
   * connection (the revocation feed) asks this again and again, and ends when the answer is
   * no — the bearer revoked or expired, the client disabled, its secret rotated, its
   * certificate removed, its gateway flag removed or its audiences changed.
   */
  stillAuthorized(): Promise<boolean>;
  /** A bearer's token row (tokens.id_sha256): the feed ends its stream when it is revoked. */
  bearerSha256?: string;
}

const sameAudiences = (a: string[] | null, b: string[] | null) =>
  a === b || (a !== null && b !== null && a.length === b.length && a.every((x, i) => x === b[i]));

export async function authenticateGateway(deps: GatewayCallerDeps, ctx: Context, form: URLSearchParams): Promise<AuthenticatedGateway> {
  const { certificates, clients } = deps;
  const authorization = ctx.get('authorization');
  if (!/^Bearer(\s|$)/i.test(authorization)) {
    const client = await authenticateClient(clients, certificates, ctx, form);
    return {
      caller: { client, anyToken: client.introspect_any, audiences: client.introspect_audiences },
      // The same credentials, on the same connection (its certificate too), checked again.
      async stillAuthorized() {
        try {
          const now = await authenticateClient(clients, certificates, ctx, form);
          return now.introspect_any === client.introspect_any && sameAudiences(now.introspect_audiences, client.introspect_audiences);
        } catch (err) {
          if (err instanceof ClientAuthFailed) return false;
          throw err;
        }
      },
    };
  }
  // RFC 6749 §2.3: one way of authenticating per request.
  if (form.has('client_id') || form.has('client_secret')) {
    throw new BearerTokenError(400, 'invalid_request', 'authenticate with a bearer token or client credentials, not both');
  }
  const value = BEARER.exec(authorization.trim())?.[1];
  if (!value) throw new BearerTokenError(400, 'invalid_request', 'malformed Authorization header (RFC 6750 section 2.1)');
  const presented = certificates.getCertificate(ctx);
  const thumbprint = presented ? certificateThumbprint(presented) : undefined;
  const { caller, bearerSha256 } = await bearerCaller(deps, value, thumbprint);
  return {
    caller,
    bearerSha256,
    async stillAuthorized() {
      try {
        const now = await bearerCaller(deps, value, thumbprint);
        return sameAudiences(now.caller.audiences, caller.audiences);
      } catch (err) {
        if (err instanceof BearerTokenError) return false;
        throw err;
      }
    },
  };
}

/** The checks of a bearer: active access token, its certificate, the scope, the user's role. */
async function bearerCaller({ db, scopes, tokens, clients }: GatewayCallerDeps, value: string, presentedThumbprint: string | undefined): Promise<{ caller: IntrospectionCaller; bearerSha256: string }> {
  const row = await tokens.find(value);
  if (!isTokenActive(row) || row.kind === 'RefreshToken') throw invalidToken('the access token is not active');
  const payload = row.payload as Record<string, unknown>;
  // RFC 8705 §3: a certificate-bound token counts only with its certificate.
  const bound = payload['x5t#S256'];
  if (typeof bound === 'string' && presentedThumbprint !== bound) {
    throw invalidToken('the access token is bound to a client certificate that was not presented');
  }
  if (typeof payload.jkt === 'string') throw invalidToken('DPoP-bound access tokens are not accepted here');

  if (!splitScope(row.scope).includes(INTROSPECT_SCOPE)) {
    throw new BearerTokenError(403, 'insufficient_scope', `the access token lacks the ${INTROSPECT_SCOPE} scope`, INTROSPECT_SCOPE);
  }
  const client = row.client_id ? await clients.find(row.client_id) : undefined;
  if (!client || client.row.disabled) throw invalidToken('the access token is not active');
  // The scope counts only while it would still be granted, as at /token: registered and in the
  // client's allow-list. An operator who takes it away ends a gateway's rights at once, not
  // when its token (`keymgr token issue --ttl`: up to ten years) expires.
  const registered = (scopes.cached([INTROSPECT_SCOPE]) ?? await scopes.find([INTROSPECT_SCOPE])).get(INTROSPECT_SCOPE);
  if (!registered || !splitScope(client.row.scope).includes(INTROSPECT_SCOPE)) {
    throw new BearerTokenError(403, 'insufficient_scope', `the ${INTROSPECT_SCOPE} scope is no longer granted to the token's client`, INTROSPECT_SCOPE);
  }
  if (row.account_id) {
    // A user's token speaks for the user: only while they hold a role bound to the scope.
    const held = await rolesOfUser(db, row.account_id);
    if (!registered.roles.some((r) => held.includes(r))) {
      throw new BearerTokenError(403, 'insufficient_scope', `the user no longer holds a role bound to the ${INTROSPECT_SCOPE} scope`, INTROSPECT_SCOPE);
    }
  }
  return { caller: { client: { client_id: client.row.client_id }, anyToken: true, audiences: client.row.introspect_audiences }, bearerSha256: row.id_sha256 };
}
