// Token introspection (RFC 7662). One indexed lookup by digest answers for opaque and JWT
// access tokens and for refresh tokens alike. A client sees its own tokens; a gateway (a
// client flagged introspect_any, or a bearer token with the introspect scope) sees every
// access token, or only those of its audiences when it is limited to some. Anything else, and any
// token that is unknown, expired, revoked or already used, is exactly {"active": false}.
import { errors } from 'oidc-provider';
import type { Db } from '../db/database.ts';
import type { ClientRow } from '../db/types.ts';
import type { IssuedTokenRow } from '../store/tokens.ts';
import type { TokenLookup } from './token-cache.ts';
import { findActiveCertificateByThumbprint } from '../store/certificates.ts';

export type IntrospectionResponse = { active: false } | ({ active: true } & Record<string, unknown>);

export function isTokenActive(row: IssuedTokenRow | undefined, now = Date.now()): row is IssuedTokenRow {
  // RFC 7662 §2.2: a token of a deleted or disabled user or client is not active.
  if (!row || row.revoked_at || row.consumed_at || !row.owners_stand_behind) return false;
  return row.expires_at !== null && row.expires_at.getTime() > now;
}

/** Who asks: the client (its own, or the bearer token's), and what it may see. */
export interface IntrospectionCaller {
  client: Pick<ClientRow, 'client_id'>;
  /** Every client's tokens (introspect_any, or a bearer with the introspect scope). */
  anyToken: boolean;
  /** Only tokens for these audiences; null: any. */
  audiences: string[] | null;
}

function audiencesOf(payload: Record<string, unknown>): string[] {
  const aud = payload.aud;
  return typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : [];
}

export async function introspect(
  db: Db, tokens: TokenLookup, issuer: string, caller: IntrospectionCaller, form: URLSearchParams,
): Promise<IntrospectionResponse> {
  const token = form.get('token');
  if (!token) throw new errors.InvalidRequest("missing required parameter 'token'");
  const row = await tokens.find(token);
  if (!isTokenActive(row)) return { active: false };
  const own = row.client_id === caller.client.client_id;
  if (!own && !caller.anyToken) return { active: false };
  // RFC 6749 §1.5: a refresh token is never sent to a resource server. One that reaches a
  // gateway was stolen or misused, and a gateway that checks only `active` would let it act as
  // a day-long access token; only the client it was issued to learns that it is live.
  if (row.kind === 'RefreshToken' && !own) return { active: false };
  const limit = caller.audiences;
  if (limit && !audiencesOf(row.payload as Record<string, unknown>).some((a) => limit.includes(a))) return { active: false };

  const p = row.payload as Record<string, unknown> & { extra?: Record<string, unknown> };
  const iat = typeof p.iat === 'number' ? p.iat : Math.floor(row.issued_at.getTime() / 1000);
  const exp = Math.floor((row.expires_at as Date).getTime() / 1000);
  // An access token names its user in its payload (extraTokenClaims); a refresh token only by id.
  const username = typeof p.extra?.username === 'string' ? p.extra.username : (row.account_username ?? undefined);
  // The gateway's throttling tier of the certificate the token is bound to, when it has one.
  const bound = typeof p['x5t#S256'] === 'string' ? await findActiveCertificateByThumbprint(db, p['x5t#S256']) : undefined;
  const cnf = p['x5t#S256'] || p.jkt
    ? { ...(p['x5t#S256'] ? { 'x5t#S256': p['x5t#S256'] } : {}), ...(p.jkt ? { jkt: p.jkt } : {}) }
    : undefined;
  return dropUndefined({
    active: true as const,
    scope: row.scope || undefined,
    client_id: row.client_id ?? undefined,
    username,
    token_type: row.kind === 'RefreshToken' ? 'refresh_token' : (p.jkt ? 'DPoP' : 'Bearer'),
    exp,
    iat,
    nbf: typeof p.nbf === 'number' ? p.nbf : iat,
    // A client-credentials token acts for the client itself (RFC 9068 §2.2 uses the same rule).
    sub: row.account_id ?? row.client_id ?? undefined,
    aud: p.aud ?? undefined,
    iss: issuer,
    // An opaque token's identifier is its value, which the caller already holds.
    jti: row.format === 'jwt' ? p.jti : undefined,
    cnf,
    tier: bound?.tier ?? undefined,
  });
}

function dropUndefined<T extends Record<string, unknown>>(o: T): T {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}
