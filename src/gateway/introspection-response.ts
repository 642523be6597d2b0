// How an introspection answer leaves: plain JSON (RFC 7662), or — when the caller asks with
// `Accept: application/token-introspection+jwt` — a JWT signed with the server's signing key
// (RFC 9701 §5: iss, aud = the caller's client_id, iat, and the RFC 7662 object in
// token_introspection; no top-level sub or exp, so it cannot pass for an access token). Both
// carry a cache hint: a gateway may keep an active answer for the token's remaining lifetime,
// at most introspection_cache_max_age seconds; an inactive one never.
//
// Signed as the engine signs its JWTs (src/oauth/signing-key.ts): node:crypto's one-shot sign on
// this thread, not jose's WebCrypto, which queues each signature on the thread pool.
import type { KeyObject } from 'node:crypto';
import type { Context } from 'koa';
import type { JWK } from 'jose';
import { jwsSignature, signingKeyLabel, signingKeyMaterial } from '../keys/signing-key-material.ts';
import { signingAlgorithmOf, type SigningAlgorithm } from '../keys/signing-keys.ts';
import type { IntrospectionResponse } from './introspection.ts';

export const INTROSPECTION_JWT_MEDIA_TYPE = 'application/token-introspection+jwt';
const INTROSPECTION_JWT_TYP = 'token-introspection+jwt';

interface Signer {
  kid: string;
  /** The key's own algorithm, as for everything else it signs (src/keys/signing-keys.ts). */
  alg: SigningAlgorithm;
  privateKey: KeyObject;
}

/** The key that signs now (it changes on rotation, src/oauth/engine.ts), imported once per key. */
export function introspectionSigner(currentKey: () => JWK) {
  let cached: Signer | undefined;
  return (): Signer => {
    const jwk = currentKey();
    if (!cached || cached.kid !== jwk.kid) {
      const label = signingKeyLabel(jwk.kid, 0);
      const alg = signingAlgorithmOf(jwk, label);
      cached = { kid: String(jwk.kid), alg, privateKey: signingKeyMaterial(jwk, alg, label).privateKey };
    }
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

const base64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** The answer as a compact JWS (RFC 7515 §7.1). */
export function signIntrospection(signer: IntrospectionSigner, issuer: string, clientId: string, result: IntrospectionResponse): string {
  const { kid, alg, privateKey } = signer();
  const signingInput = `${base64url({ alg, kid, typ: INTROSPECTION_JWT_TYP })}.${base64url({
    token_introspection: result, iss: issuer, aud: clientId, iat: Math.floor(Date.now() / 1000),
  })}`;
  return `${signingInput}.${jwsSignature(alg, privateKey, Buffer.from(signingInput)).toString('base64url')}`;
}
