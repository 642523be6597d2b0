// Users as oidc-provider accounts. A disabled or deleted user resolves to nothing, so their
// refresh tokens stop working at once; `username` rides along into introspection.
import type { Account, KoaContextWithOIDC } from 'oidc-provider';
import type { Db } from '../db/database.ts';
import type { UserRow } from '../db/types.ts';
import { findUserById } from '../store/users.ts';

export interface UserAccount extends Account {
  username: string;
}

export function accountOf(user: UserRow): UserAccount {
  return {
    accountId: user.id,
    username: user.username,
    claims: async () => ({ sub: user.id, preferred_username: user.username }),
  };
}

export async function findActiveAccount(db: Db, accountId: string): Promise<UserAccount | undefined> {
  const user = await findUserById(db, accountId);
  return user && !user.disabled ? accountOf(user) : undefined;
}

/** Claims added to every access token that acts for a user (RFC 7662 `username`). */
export async function userTokenClaims(db: Db, ctx: KoaContextWithOIDC | undefined, accountId: string | undefined) {
  if (!accountId) return undefined;
  const known = ctx?.oidc?.account as UserAccount | undefined;
  const username = known?.accountId === accountId ? known.username : (await findUserById(db, accountId))?.username;
  return username ? { username } : undefined;
}
