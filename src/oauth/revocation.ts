// Token revocation (RFC 7009). Revoking marks the row, so every instance reports the token
// inactive from the next request on; a refresh token takes its whole grant with it (§2.1).
import { errors } from 'oidc-provider';
import type { Db } from '../db/database.ts';
import type { ClientRow } from '../db/types.ts';
import { findIssuedTokenByValue, revokeIssuedToken } from '../store/tokens.ts';

/** What was revoked; nothing, for a token that is unknown or already revoked. */
export interface RevocationOutcome {
  revoked?: 'access_token' | 'refresh_token';
}

export async function revoke(db: Db, caller: ClientRow, form: URLSearchParams): Promise<RevocationOutcome> {
  const token = form.get('token');
  if (!token) throw new errors.InvalidRequest("missing required parameter 'token'");
  const row = await findIssuedTokenByValue(db, token);
  // §2.2: an invalid, expired or already revoked token is not an error.
  if (!row || row.revoked_at) return {};
  if (row.client_id !== caller.client_id) {
    // §2.1 refuses it; RFC 6749 §5.2 names the error for a grant "issued to another client".
    throw new errors.InvalidGrant('the token was issued to another client');
  }
  await revokeIssuedToken(db, row);
  return { revoked: row.kind === 'RefreshToken' ? 'refresh_token' : 'access_token' };
}
