// The one resource server this key manager issues for today: the configured audience. Every
// access token names it in `aud`; the client's token format decides opaque or JWT.
import { errors, type Client, type ResourceServer } from 'oidc-provider';
import { tokenAudience, type Config } from '../config/index.ts';
import { splitScope } from './scope-policy.ts';

/**
 * Scopes oidc-provider handles itself (ID token, offline access): the authorization server's,
 * never a resource server's. A consent holds them as OIDC scopes; were they also resource
 * scopes, the engine would find them missing from every grant and ask for consent forever.
 */
export const OIDC_SCOPES = new Set(['openid', 'offline_access']);

export function audienceOf(config: Config): string {
  return tokenAudience(config);
}

/**
 * RFC 8707 §2 for our own grants (password, SAML bearer): the engine checks `resource` only on
 * its grants, through provider.ts. A resource naming anything but our audience is invalid_target,
 * checked before any work, so that a refused request costs no password check and uses up no
 * assertion.
 */
export function checkRequestedResource(config: Config, requested: unknown): void {
  if (requested !== undefined && requested !== audienceOf(config)) throw new errors.InvalidTarget();
}

export function resourceServerFor(config: Config, client: Client, scope: string): ResourceServer {
  return {
    scope: splitScope(scope).filter((s) => !OIDC_SCOPES.has(s)).join(' '),
    audience: audienceOf(config),
    accessTokenTTL: config.accessTokenTtl,
    accessTokenFormat: client.km_access_token_format === 'jwt' ? 'jwt' : 'opaque',
    // No `jwt.sign`: oidc-provider then signs with its default algorithm
    // (clientDefaults.id_token_signed_response_alg), which provider.ts sets to that of the key
    // that signs now. So JWT access tokens and ID tokens always share the key's algorithm, and
    // a provider built on a rotated key set never asks for an algorithm it has no key for.
  };
}
