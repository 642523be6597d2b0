// Which of the requested scopes a token may carry. A scope is granted when it is registered,
// the client is allowed it, and — for a token that acts for a user — it has no role binding
// or the user holds one of its roles. Scopes that fail are dropped (the response's `scope`
// shows what was granted, RFC 6749 §3.3); if scopes were asked for and none survive, the
// request fails with invalid_scope.
import { errors } from 'oidc-provider';
import type { Db } from '../db/database.ts';
import { findScopes } from '../store/scopes.ts';

export function splitScope(scope: unknown): string[] {
  return typeof scope === 'string' ? [...new Set(scope.split(' ').filter(Boolean))] : [];
}

function refuseIfNothingGranted(requested: string[], granted: string[]): string[] {
  if (requested.length > 0 && granted.length === 0) {
    throw new errors.InvalidScope('requested scope is not allowed', requested.join(' '));
  }
  return granted;
}

/** Client-credentials tokens: the client's allow-list only (no user, so no roles apply). */
export function grantableScopes(allowedScope: string, requestedScope: unknown): string[] {
  const allowed = new Set(splitScope(allowedScope));
  const requested = splitScope(requestedScope);
  return refuseIfNothingGranted(requested, requested.filter((s) => allowed.has(s)));
}

/** Tokens that act for a user: registry, client allow-list and the user's roles. */
export async function grantScopesForUser(db: Db, allowedScope: string, requestedScope: unknown, userRoles: string[]): Promise<string[]> {
  const allowed = new Set(splitScope(allowedScope));
  const requested = splitScope(requestedScope);
  const registered = await findScopes(db, requested.filter((s) => allowed.has(s)));
  const roles = new Set(userRoles);
  const granted = requested.filter((s) => {
    const scope = registered.get(s);
    return scope !== undefined && (scope.roles.length === 0 || scope.roles.some((r) => roles.has(r)));
  });
  return refuseIfNothingGranted(requested, granted);
}
