// How an introspection answer leaves: plain JSON (RFC 7662), or — when the caller asks with
// `Accept: application/token-introspection+jwt` — a JWT signed with the server's signing key
// (RFC 9701 §5: iss, aud = the caller's client_id, iat, and the RFC 7662 object in
// token_introspection; no top-level sub or exp, so it cannot pass for an access token). Both
// carry a cache hint: a gateway may keep an active answer for the token's remaining lifetime,
// at most introspection_cache_max_age seconds; an inactive one never.
import type { Context } from 'koa';
import { importJWK, SignJWT, type JWK } from 'jose';
import { SIGNING_ALG } from '../keys/signing-keys.ts';
import type { IntrospectionResponse } from './introspection.ts';

export const INTROSPECTION_JWT_MEDIA_TYPE = 'application/token-introspection+jwt';
const INTROSPECTION_JWT_TYP = 'token-introspection+jwt';
export const INTROSPECTION_SIGNING_ALG = SIGNING_ALG;

/** The key that signs now (it changes on rotation, src/oauth/engine.ts), imported once per key. */
export function introspectionSigner(currentKey: () => JWK) {
  let cached: { kid: string; key: Promise<CryptoKey | Uint8Array> } | undefined;
  return (): { kid: string; key: Promise<CryptoKey | Uint8Array> } => {
    const jwk = currentKey();
    if (!cached || cached.kid !== jwk.kid) cached = { kid: String(jwk.kid), key: importJWK(jwk, INTROSPECTION_SIGNING_ALG) };
    return cached;
  };
}

export type IntrospectionSigner = ReturnType<typeof introspectionSigner>;

/** Cache-Control of an answer: `private, max-age=N` while active (N > 0), `no-store` otherwise. */
export function cacheHint(result: IntrospectionResponse, maxAge: number, now = Date.now()): string {
  if (!result.active || maxAge <= 0) return 'no-store';
  const left = typeof result.exp === 'number' ? result.exp - Math.ceil(now / 1000) : 0;
  const seconds = Math.min(maxAge, left);
  return seconds > 0 ? `private, max-age=${seconds}` : 'no-store';
}

export function wantsJwt(ctx: Context): boolean {
  // q-values decide; without an Accept header (or with */*) JSON stays the default.
  return ctx.accepts('application/json', INTROSPECTION_JWT_MEDIA_TYPE) === INTROSPECTION_JWT_MEDIA_TYPE;
}

export async function signIntrospection(signer: IntrospectionSigner, issuer: string, clientId: string, result: IntrospectionResponse): Promise<string> {
  const { kid, key } = signer();
  return new SignJWT({ token_introspection: result })
    .setProtectedHeader({ alg: INTROSPECTION_SIGNING_ALG, kid, typ: INTROSPECTION_JWT_TYP })
    .setIssuer(issuer)
    .setAudience(clientId)
    .setIssuedAt()
    .sign(await key);
}
