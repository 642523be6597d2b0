// Users as oidc-provider accounts. A disabled or deleted user resolves to nothing, so their
// refresh tokens stop working at once; `username` rides along into introspection.
import type { Account, KoaContextWithOIDC } from 'oidc-provider';
import type { Db } from '../db/database.ts';
import type { UserRow } from '../db/types.ts';
import { findUserById, rolesOfUser } from '../store/users.ts';
import { takeFromRequest } from './request-memo.ts';

/** Keys under which a refresh reads its user and the user's roles ahead (src/oauth/adapter.ts). */
export const ACCOUNT_READ_AHEAD = 'Account:';
export const ROLES_READ_AHEAD = 'Roles:';

export interface UserAccount extends Account {
  username: string;
}

export function accountOf(user: Pick<UserRow, 'id' | 'username'>): UserAccount {
  return {
    accountId: user.id,
    username: user.username,
    claims: async () => ({ sub: user.id, preferred_username: user.username }),
  };
}

export async function findActiveAccount(db: Db, accountId: string): Promise<UserAccount | undefined> {
  const readAhead = takeFromRequest<Pick<UserRow, 'id' | 'username' | 'disabled'> | null>(ACCOUNT_READ_AHEAD + accountId);
  const user = readAhead !== undefined ? readAhead : await findUserById(db, accountId);
  return user && !user.disabled ? accountOf(user) : undefined;
}

/** Claims added to every access token that acts for a user (RFC 7662 `username`). */
export async function userTokenClaims(db: Db, ctx: KoaContextWithOIDC | undefined, accountId: string | undefined) {
  if (!accountId) return undefined;
  const known = ctx?.oidc?.account as UserAccount | undefined;
  const username = known?.accountId === accountId ? known.username : (await findUserById(db, accountId))?.username;
  return username ? { username } : undefined;
}

/** The user's roles: read ahead with the refresh token when there is one, else now. */
export async function rolesOfAccount(db: Db, accountId: string): Promise<string[]> {
  return takeFromRequest<string[]>(ROLES_READ_AHEAD + accountId) ?? rolesOfUser(db, accountId);
}
