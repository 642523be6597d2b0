// Which of the requested scopes a token may carry. A scope is granted when it is registered,
// the client is allowed it, and — for a token that acts for a user — it has no role binding
// or the user holds one of its roles (client-credentials tokens act for no user, so role
// bindings do not apply to them). Scopes that fail are dropped (the response's `scope`
// shows what was granted, RFC 6749 §3.3); if scopes were asked for and none survive, the
// request fails with invalid_scope.
import { errors } from 'oidc-provider';
import type { ScopeLookup } from './scope-registry.ts';

export function splitScope(scope: unknown): string[] {
  return typeof scope === 'string' ? [...new Set(scope.split(' ').filter(Boolean))] : [];
}

/** The requested scopes that may be granted; `userRoles` null: the token acts for the client itself. */
export async function grantableOf(
  registry: ScopeLookup,
  allowedScope: string,
  requested: string[],
  userRoles: string[] | null,
): Promise<string[]> {
  const allowed = new Set(splitScope(allowedScope));
  const registered = await registry.find(requested.filter((s) => allowed.has(s)));
  const roles = new Set(userRoles ?? []);
  return requested.filter((s) => {
    const scope = registered.get(s);
    if (!scope) return false;
    return userRoles === null || scope.roles.length === 0 || scope.roles.some((r) => roles.has(r));
  });
}

/** invalid_scope: scopes were asked for and none of them can be granted. */
export function noScopeGrantable(requested: string[]): InstanceType<typeof errors.InvalidScope> {
  return new errors.InvalidScope('requested scope is not allowed', requested.join(' '));
}

/** As grantableOf, but asking for scopes and getting none is invalid_scope. */
export async function grantScopes(
  registry: ScopeLookup,
  allowedScope: string,
  requestedScope: unknown,
  userRoles: string[] | null,
): Promise<string[]> {
  const requested = splitScope(requestedScope);
  const granted = await grantableOf(registry, allowedScope, requested, userRoles);
  if (requested.length > 0 && granted.length === 0) throw noScopeGrantable(requested);
  return granted;
}
