// oidc-provider does not store JWT access tokens (they are self-contained). We record each
// one before the token response leaves the server, so that it can be introspected and
// revoked like an opaque token; if the record cannot be written, the token is not handed out.
import type { Middleware } from 'koa';
import { decodeJwt } from 'jose';
import type { Db } from '../db/database.ts';
import { upsertModel } from '../store/tokens.ts';
import { databaseUnavailable } from './errors.ts';

interface IssuedToken {
  kind: string;
  format?: string;
  jti: string;
  clientId?: string;
  accountId?: string;
  grantId?: string;
  extra?: Record<string, unknown>;
  'x5t#S256'?: string;
  jkt?: string;
}

const PENDING = 'km:pendingJwtAccessTokens';

type WithPending = { state: Record<string, unknown> };

/** Called from oidc-provider's `*.issued` events, which fire only for tokens it does not store. */
export function noteIssuedJwtAccessToken(ctx: WithPending | undefined, token: IssuedToken): void {
  if (!ctx || token.format !== 'jwt') return;
  const pending = (ctx.state[PENDING] ??= []) as IssuedToken[];
  pending.push(token);
}

export function persistJwtAccessTokens(db: Db): Middleware {
  return async function persistJwtAccessTokensMiddleware(ctx, next) {
    await next();
    const pending = ctx.state[PENDING] as IssuedToken[] | undefined;
    if (!pending?.length) return;
    const body = ctx.body as { access_token?: unknown } | undefined;
    const value = body?.access_token;
    if (ctx.status !== 200 || typeof value !== 'string') return;
    // The claims as signed are the record; the event's token adds what the JWT leaves out.
    const claims = decodeJwt(value);
    const token = pending.find((t) => t.jti === claims.jti);
    if (!token) throw new Error('issued JWT access token was not seen by the issued event');
    try {
      await upsertModel(db, value, {
        kind: token.kind,
        format: 'jwt',
        clientId: token.clientId ?? null,
        accountId: token.accountId ?? null,
        grantId: token.grantId ?? null,
        uid: null,
        scope: claims.scope as string | undefined ?? null,
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
      });
    } catch (err) {
      throw databaseUnavailable(err);
    }
  };
}
