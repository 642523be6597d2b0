// The token endpoint's outcomes, counted from the protocol engine's events (DESIGN rule 9):
// every access token passes through its model's save, and every token request ends in
// grant.success, grant.error or server_error, whatever grant or code path led there.
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { ClientAuthMethodTried } from '../oauth/client-auth.ts';
import { GRANT_TYPES } from '../store/clients.ts';
import { correctedProviderError } from './errors.ts';
import { rememberForRequest, takeFromRequest } from '../oauth/request-memo.ts';
import type { Metrics } from './metrics.ts';

/** Under which the format of the access token a request issued is kept until it succeeds (request-memo.ts). */
const ISSUED_FORMAT = 'km:metrics:issuedFormat';

const KNOWN_GRANT_TYPES = new Set<string>(GRANT_TYPES);

/** The error codes the token endpoint answers with (RFC 6749 §5.2, 8707, 9449, and 503/500). */
const TOKEN_ERRORS = new Set([
  'invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope',
  'invalid_target', 'invalid_dpop_proof', 'use_dpop_nonce', 'invalid_authorization_details', 'temporarily_unavailable', 'server_error',
]);

type EngineMetrics = Pick<Metrics, 'tokensIssued' | 'tokenRequestsFailed' | 'clientAuthFailures'>;

/** A grant_type parameter as a label: only the grant types the server knows, never a caller's string. */
function grantTypeLabel(ctx: KoaContextWithOIDC): string {
  const value = (ctx.oidc?.params as { grant_type?: unknown } | undefined)?.grant_type;
  if (value === undefined) return 'none';
  return typeof value === 'string' && KNOWN_GRANT_TYPES.has(value) ? value : 'other';
}

/** How the refused caller tried to authenticate, as the engine reads a token request. */
function methodTried(ctx: KoaContextWithOIDC): ClientAuthMethodTried {
  if (ctx.headers.authorization !== undefined) return 'client_secret_basic';
  if ((ctx.oidc?.params as { client_secret?: unknown } | undefined)?.client_secret) return 'client_secret_post';
  const registered = ctx.oidc?.client?.clientAuthMethod;
  return registered === 'tls_client_auth' || registered === 'self_signed_tls_client_auth' ? registered : 'none';
}

/** Counts the token endpoint's outcomes of this provider; returns it, for use in a build step. */
export function observeEngine(provider: Provider, { tokensIssued, tokenRequestsFailed, clientAuthFailures }: EngineMetrics): Provider {
  // saved: an opaque token's row was written; issued: a JWT was made (its record follows, in
  // src/oauth/jwt-access-tokens.ts). Either may still be followed by a failure, so the count
  // waits for grant.success.
  const remember = (token: { format?: string }) => {
    rememberForRequest(ISSUED_FORMAT, token.format === 'jwt' ? 'jwt' : 'opaque');
  };
  provider.on('access_token.saved', remember);
  provider.on('access_token.issued', remember);
  provider.on('client_credentials.saved', remember);
  provider.on('client_credentials.issued', remember);

  provider.on('grant.success', (ctx) => {
    const clientId = ctx.oidc.client?.clientId;
    const format = takeFromRequest<string>(ISSUED_FORMAT);
    // A token response carries an access token, and only an authenticated client gets one.
    if (!clientId || typeof format !== 'string') return;
    tokensIssued.inc({ grant_type: grantTypeLabel(ctx), client_id: clientId, format });
  });

  const failed = (ctx: KoaContextWithOIDC, error: string) => {
    tokenRequestsFailed.inc({ grant_type: grantTypeLabel(ctx), error: TOKEN_ERRORS.has(error) ? error : 'other' });
    if (error === 'invalid_client') clientAuthFailures.inc({ method: methodTried(ctx) });
  };
  provider.on('grant.error', (ctx, err) => {
    const e = err as { error?: string; message: string; error_description?: string; statusCode?: number };
    // As the client is told it: a few engine answers are corrected on the way out (errors.ts).
    failed(ctx, correctedProviderError(ctx.oidc?.route, e.statusCode ?? 400, e.error ?? e.message, e.error_description));
  });
  provider.on('server_error', (ctx) => {
    if (ctx.oidc?.route === 'token') failed(ctx, 'server_error');
  });
  return provider;
}
