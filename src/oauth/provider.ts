// Config → oidc-provider. The only file that knows oidc-provider's configuration options.
import Provider, { errors, type Client, type ClientAuthMethod, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import type { JWK } from 'jose';
import type { Logger } from 'pino';
import type { Config } from '../config/index.ts';
import type { Db } from '../db/database.ts';
import { clientSecretMatches } from '../store/clients.ts';
import { createAdapterClass } from './adapter.ts';
import type { ClientDirectory } from './client-directory.ts';
import type { RefreshTokenReader, TokenWriter } from '../store/tokens.ts';
import { EXTRA_CLIENT_METADATA } from './client-metadata.ts';
import { grantableOf, grantScopes, noScopeGrantable, splitScope } from './scope-policy.ts';
import { recordAuditEvent } from '../store/audit.ts';
import type { ScopeLookup } from './scope-registry.ts';
import { audienceOf, resourceServerFor } from './resource-server.ts';
import { recordJwtAccessTokensWhenSaved } from './jwt-access-tokens.ts';
import { createTokenRows } from './token-rows.ts';
import { registerGrants } from './grants/index.ts';
import { guardStorage } from './errors.ts';
import { findActiveAccount, rolesOfAccount, userTokenClaims } from './accounts.ts';
import { ID_TOKEN_TTL, signingAlgorithmOf } from '../keys/signing-keys.ts';
import { loadExistingGrant } from './interactions/consent.ts';
import { interactionPolicyWithLiveAccounts } from './interactions/policy.ts';
import { engineSigningKeys } from './signing-key.ts';
import type { mtlsFeature } from './mtls.ts';
import { protocolErrorPage } from './interactions/pages.ts';
import type { Metrics } from '../http/metrics.ts';

export const ROUTES = {
  authorization: '/authorize',
  token: '/token',
  jwks: '/jwks',
  introspection: '/introspect',
  revocation: '/revoke',
  /** The gateways' revocation feed (src/gateway/revocation-feed.ts). */
  revocations: '/revocations',
  /**
   * Only `<end_session>/confirm` is served: the engine's own step that ends a signed-in user's
   * session when another user signs in on the same browser (posted by the page it shows then).
   * RP-initiated logout itself is not enabled.
   */
  endSession: '/session/end',
} as const;

const REUSE_DETAILS = new Set(['refresh token already used', 'authorization code already consumed']);

/** The engine's routes a browser is sent through, whose errors are pages (renderError). */
const BROWSER_ROUTES = new Set(['authorization', 'resume', 'end_session', 'end_session_confirm', 'end_session_success']);

/** Absolute lifetime from the first refresh token of the grant, and an optional idle limit. */
function refreshTokenTtl(config: Config, token: { iiat?: number; iat?: number }): number {
  const now = Math.floor(Date.now() / 1000);
  const firstIssued = token.iiat ?? token.iat ?? now;
  const absoluteLeft = firstIssued + config.refreshTokenTtl - now;
  return Math.max(1, Math.min(absoluteLeft, config.refreshTokenIdleTtl ?? absoluteLeft));
}

export const SECRET_CLIENT_AUTH_METHODS: ClientAuthMethod[] = ['client_secret_basic', 'client_secret_post'];

export interface ProviderDeps {
  config: Config;
  db: Db;
  signingKeys: JWK[];
  cookieKeys: string[];
  scopes: ScopeLookup;
  /** Client-certificate checks (src/oauth/mtls.ts). */
  certificates: ReturnType<typeof mtlsFeature>;
  /** Client rows as the engine reads them (cached, src/oauth/client-directory.ts). */
  clients: ClientDirectory;
  /** Writes token rows, group-committed (src/store/tokens.ts). */
  writer: TokenWriter;
  /** Reads refresh tokens with their context, batched (src/store/tokens.ts). */
  readRefreshToken: RefreshTokenReader;
  /** Waits until every instance has dropped what it cached of a change just committed. */
  syncInstances: () => Promise<unknown>;
  /** What the engine's own steps count: sign-ins of the password grant, token reuse. */
  metrics: Pick<Metrics, 'logins' | 'lockouts' | 'passwordVerifications' | 'tokenReuse'>;
  logger: Logger;
}

export function buildProvider({ config, db, signingKeys, cookieKeys, scopes, certificates, clients, writer, readRefreshToken, syncInstances, metrics, logger }: ProviderDeps): Provider {
  const audience = audienceOf(config);
  const tokenRows = createTokenRows(db, writer, readRefreshToken);
  const endpoint = (path: string) => new URL(path, `${config.issuer.replace(/\/$/, '')}/`).href.replace(/\/$/, '');
  // Everything is signed with the algorithm of the key that signs now (the first), whatever the
  // setting says: a provider is built per key set (src/oauth/engine.ts), so this follows rotations.
  const signingAlg = signingAlgorithmOf(signingKeys[0]!);

  const configuration: Configuration = {
    adapter: createAdapterClass(db, clients, tokenRows, syncInstances),
    clients: [],
    // Signed in this process with node:crypto (src/oauth/signing-key.ts).
    jwks: { keys: engineSigningKeys(signingKeys) },
    routes: {
      authorization: ROUTES.authorization,
      token: ROUTES.token,
      jwks: ROUTES.jwks,
      end_session: ROUTES.endSession,
    },
    // RFC 6749 §4.1.3: a code redeems only with the redirect_uri its request named, even for a
    // client with a single registered URI (the engine would fill it in at /token otherwise). So
    // /authorize requires it too: there it is what the code is bound to.
    allowOmittingSingleRegisteredRedirectUri: false,
    clientAuthMethods: [...SECRET_CLIENT_AUTH_METHODS, 'none', 'tls_client_auth', 'self_signed_tls_client_auth'],
    clockTolerance: config.clockSkew,
    // ID tokens and JWT access tokens (src/oauth/resource-server.ts) use this default; no client
    // row names its own. Only this algorithm is advertised, even while a retiring key of another
    // one is still published in /jwks.
    clientDefaults: { id_token_signed_response_alg: signingAlg },
    enabledJWA: { idTokenSigningAlgValues: [signingAlg] },
    cookies: { keys: cookieKeys },
    ttl: {
      AccessToken: config.accessTokenTtl,
      ClientCredentials: config.accessTokenTtl,
      RefreshToken: (_ctx, token) => refreshTokenTtl(config, token),
      AuthorizationCode: config.authorizationCodeTtl,
      IdToken: ID_TOKEN_TTL,
      // A login in progress; a sign-in page left open longer starts again.
      Interaction: 600,
      Session: config.refreshTokenTtl,
      Grant: config.refreshTokenTtl,
    },
    responseTypes: ['code'],
    // RFC 9700 §4.14.2: a new refresh token on every use, so that reuse can be detected.
    rotateRefreshToken: true,
    // RFC 9700 §2.1.1: PKCE (S256 only) is required of public clients and accepted from others.
    pkce: { required: (_ctx, client) => client.clientAuthMethod === 'none' },
    interactions: { url: async (_ctx, interaction) => `/interaction/${interaction.uid}`, policy: interactionPolicyWithLiveAccounts() },
    loadExistingGrant: loadExistingGrant({ config, db, scopes }),
    // A refresh token for every client that has the refresh_token grant, not only on
    // offline_access, and not tied to the browser session that signed the user in.
    issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    expiresWithSession: () => false,
    findAccount: async (_ctx, sub) => guardStorage(() => findActiveAccount(db, sub)),
    extraTokenClaims: (ctx, token) => {
      const accountId = 'accountId' in token ? token.accountId : undefined;
      // A client's own token (client credentials) has no user, so no claims: nothing to wait for.
      return accountId ? guardStorage(() => userTokenClaims(db, ctx, accountId)) : undefined;
    },
    extraClientMetadata: {
      properties: [...EXTRA_CLIENT_METADATA],
    },
    features: {
      devInteractions: { enabled: false },
      // What lets the engine take the keys of src/oauth/signing-key.ts. Experimental in the
      // engine: a release that changes it stops the start here, with the engine's message.
      externalSigningSupport: { enabled: true, ack: 'experimental-01' },
      // Not offered, so neither served nor advertised: an endpoint in the metadata is a
      // promise. (/userinfo would need OIDC claims we do not keep; logout would be the engine's
      // stock page; PAR and DPoP are not wired into our grants, introspection and revocation.)
      userinfo: { enabled: false },
      rpInitiatedLogout: { enabled: false },
      pushedAuthorizationRequests: { enabled: false },
      dPoP: { enabled: false },
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        tlsClientAuth: true,
        selfSignedTlsClientAuth: true,
        ...certificates,
      },
      clientCredentials: { enabled: true },
      // Served by our own routes (src/oauth/introspection.ts, revocation.ts): they must also
      // answer for JWT access tokens, which oidc-provider refuses to look up.
      introspection: { enabled: false },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => audience,
        useGrantedResource: () => true,
        getResourceServerInfo: async (ctx, resourceIndicator, client) => {
          if (resourceIndicator !== audience) throw new errors.InvalidTarget();
          const allowed = String(client.km_allowed_scope ?? '');
          if (ctx.oidc.params?.grant_type === 'client_credentials' && client.clientAuthMethod === 'none') {
            // RFC 6749 §4.4: only confidential clients (a row edited by hand could say otherwise).
            throw new errors.UnauthorizedClient('client credentials require a confidential client');
          }
          const accountId = ctx.oidc.account?.accountId;
          if (accountId) {
            // Every token that acts for a user (code redemption, refresh) re-applies the
            // policy when it is issued: a scope whose role the user lost, or that was
            // unregistered, is not carried by it, whatever the grant or consent held.
            const stillGrantable = await grantableOf(scopes, allowed, splitScope(allowed), await guardStorage(() => rolesOfAccount(db, accountId)));
            // As at sign-in (scope-policy.ts): asking for scopes and getting none is invalid_scope.
            const requested = splitScope(ctx.oidc.params?.scope);
            if (requested.length > 0 && !requested.some((s) => stillGrantable.includes(s))) throw noScopeGrantable(requested);
            return resourceServerFor(config, client, stillGrantable.join(' '));
          }
          if (ctx.oidc.params?.grant_type !== 'client_credentials') {
            // No user (the engine narrows this to what the grant holds).
            return resourceServerFor(config, client, allowed);
          }
          const granted = await grantScopes(scopes, allowed, ctx.oidc.params?.scope, null);
          return resourceServerFor(config, client, granted.join(' '));
        },
      },
    },
    discovery: {
      introspection_endpoint: endpoint(ROUTES.introspection),
      introspection_endpoint_auth_methods_supported: [...SECRET_CLIENT_AUTH_METHODS, 'tls_client_auth', 'self_signed_tls_client_auth'],
      // RFC 9701 §7: JWT introspection responses (Accept: application/token-introspection+jwt).
      introspection_signing_alg_values_supported: [signingAlg],
      revocation_endpoint: endpoint(ROUTES.revocation),
      // RFC 7009 §2.1: a public client revokes its own tokens with its client_id alone.
      revocation_endpoint_auth_methods_supported: [...SECRET_CLIENT_AUTH_METHODS, 'tls_client_auth', 'self_signed_tls_client_auth', 'none'],
      // One listener serves both: it asks every client for a certificate (RFC 8705 §5).
      mtls_endpoint_aliases: {
        token_endpoint: endpoint(ROUTES.token),
        introspection_endpoint: endpoint(ROUTES.introspection),
        revocation_endpoint: endpoint(ROUTES.revocation),
      },
    },
    // The engine renders a page whenever the caller prefers HTML, at every endpoint. Pages are
    // for the browser's steps only; a client at /token and the other endpoints gets RFC 6749
    // §5.2's JSON whatever it accepts (Java's default Accept prefers text/html).
    renderError: async (ctx, out) => {
      if (!BROWSER_ROUTES.has(ctx.oidc?.route ?? '')) {
        ctx.type = 'json';
        ctx.body = out;
        return;
      }
      ctx.type = 'html';
      ctx.body = protocolErrorPage(out.error, out.error_description);
    },
  };

  const provider = new Provider(config.issuer, configuration);

  // Only digests are stored: hash what the client presents, then compare in constant time.
  provider.Client.prototype.compareClientSecret = async function compare(this: { clientSecret?: string }, actual: string) {
    return clientSecretMatches(actual, this.clientSecret ?? null);
  };
  // RFC 6749 §4.1.2.1: a client not registered for the code flow is unauthorized_client at its
  // redirect URI. The engine asks this only at /authorize and would answer invalid_request,
  // in a redirect it builds before any event or middleware could correct the error.
  const responseTypeAllowed = provider.Client.prototype.responseTypeAllowed;
  provider.Client.prototype.responseTypeAllowed = function allowed(this: Client, type: Parameters<Client['responseTypeAllowed']>[0]) {
    if (responseTypeAllowed.call(this, type)) return true;
    throw new errors.UnauthorizedClient('the client is not registered for the authorization_code grant');
  };

  registerGrants(provider, { config, db, scopes, certificates, logger, metrics });

  recordJwtAccessTokensWhenSaved(provider, tokenRows);
  provider.on('server_error', (ctx: KoaContextWithOIDC, err: Error) => {
    logger.error({ err, path: ctx.path, method: ctx.method }, 'server error in protocol engine');
  });
  for (const event of ['grant.error', 'authorization.error'] as const) {
    provider.on(event as 'server_error', (ctx: KoaContextWithOIDC, err: Error & { error_detail?: string }) => {
      const fields = { event, client_id: ctx.oidc?.client?.clientId, error: err.message, detail: err.error_detail };
      // A used refresh token or code coming back means it leaked: oidc-provider has just
      // revoked the whole grant. Operators need to see that (RFC 9700 §4.14.2, §4.5).
      if (err.error_detail && REUSE_DETAILS.has(err.error_detail)) {
        logger.warn({ ...fields, security: 'token_reuse' }, 'reuse detected; grant revoked');
        metrics.tokenReuse.inc();
        recordAuditEvent(db, {
          actorType: 'client', actor: ctx.oidc?.client?.clientId ?? '(unknown client)', action: 'token.reuse_detected', outcome: 'success',
          resourceType: err.error_detail.startsWith('refresh') ? 'refresh_token' : 'authorization_code', source: ctx.ip,
        }).catch((e) => logger.error({ error: (e as Error).message }, 'audit event not recorded'));
      }
      else logger.info(fields, 'request refused');
    });
  }
  return provider;
}
