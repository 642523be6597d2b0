// oidc-provider does not store JWT access tokens (they are self-contained). We record each
// one as part of creating it, so that it can be introspected and revoked like an opaque
// token; if the record cannot be written, creating the token fails and nothing is handed out.
//
// The record is tied to the engine's own "save" of the token model — the one step every
// access token passes through, whichever grant, endpoint or path variant led there — never
// to the URL of the request.
import type Provider from 'oidc-provider';
import type { TokenRows } from './token-rows.ts';
import { requestReceivedAt } from './request-time.ts';

/** What the engine's token model carries besides the signed claims. */
interface SavedToken {
  kind: string;
  format?: string;
  clientId?: string;
  accountId?: string;
  grantId?: string;
  extra?: Record<string, unknown>;
  'x5t#S256'?: string;
  jkt?: string;
}

interface SignedClaims {
  jti?: string;
  iat?: number;
  exp?: number;
  nbf?: number;
  scope?: string;
  aud?: string | string[];
}

/** The payload of a JWT the engine has just signed: trusted, so only decoded, not checked
 * (node's native base64url, not jose's decodeJwt, which decodes in JavaScript: ~3 µs a JWT). */
function signedClaims(jwt: string): SignedClaims {
  const start = jwt.indexOf('.') + 1;
  return JSON.parse(Buffer.from(jwt.slice(start, jwt.indexOf('.', start)), 'base64url').toString('utf8')) as SignedClaims;
}

function recordJwtAccessToken(rows: TokenRows, value: string, token: SavedToken): Promise<void> {
  // The claims as signed are the record; the model adds what the JWT leaves out.
  const claims = signedClaims(value);
  // Storage failures come back as the engine's errors (503 when the database is unreachable).
  return rows.write(value, {
    kind: token.kind,
    format: 'jwt',
    clientId: token.clientId ?? null,
    accountId: token.accountId ?? null,
    grantId: token.grantId ?? null,
    uid: null,
    scope: claims.scope ?? null,
    expiresAt: claims.exp ? new Date(claims.exp * 1000) : null,
    payload: {
      kind: token.kind,
      jti: claims.jti,
      iat: claims.iat,
      exp: claims.exp,
      nbf: claims.nbf,
      clientId: token.clientId,
      accountId: token.accountId,
      grantId: token.grantId,
      scope: claims.scope,
      aud: claims.aud,
      extra: token.extra,
      'x5t#S256': token['x5t#S256'],
      jkt: token.jkt,
    },
    issuedAt: requestReceivedAt(),
  });
}

/** Makes the save of every access-token model (user and client-credentials) record JWTs. */
export function recordJwtAccessTokensWhenSaved(provider: Provider, rows: TokenRows): void {
  for (const Model of [provider.AccessToken, provider.ClientCredentials]) {
    const save = Model.prototype.save as (this: SavedToken) => Promise<string>;
    // Not async: every access token, opaque ones too, passes here; a frame less to wait through.
    Model.prototype.save = function saveAndRecord(this: SavedToken): Promise<string> {
      return save.call(this).then((value) => {
        // The engine decides the format while saving (from the resource server).
        if (this.format !== 'jwt') return value;
        return recordJwtAccessToken(rows, value, this).then(() => value);
      });
    };
  }
}
