// Which of the requested scopes a token may carry. A scope is granted when it is registered,
// the client is allowed it, and — for a token that acts for a user — it has no role binding
// or the user holds one of its roles (client-credentials tokens act for no user, so role
// bindings do not apply to them). Scopes that fail are dropped (the response's `scope`
// shows what was granted, RFC 6749 §3.3); if scopes were asked for and none survive, the
// request fails with invalid_scope.
import { LRUCache } from 'lru-cache';
import { errors } from 'oidc-provider';
import type { ScopeLookup } from './scope-registry.ts';

/**
 * Scope strings split before, by their text, bounded: a token request splits the client's
 * allowed scopes and the requested ones, nearly always the same few strings. Long strings are
 * not kept (the bound is on the number of entries, not their size).
 */
const splitBefore = new LRUCache<string, readonly string[]>({ max: 256 });
const SPLIT_KEPT_MAX_LENGTH = 512;
const NONE: readonly string[] = Object.freeze([]);

/** The distinct scopes of a space-separated scope string, in order; anything else has none. */
export function splitScope(scope: unknown): readonly string[] {
  if (typeof scope !== 'string') return NONE;
  const known = splitBefore.get(scope);
  if (known) return known;
  const split = Object.freeze([...new Set(scope.split(' ').filter(Boolean))]);
  if (scope.length <= SPLIT_KEPT_MAX_LENGTH) splitBefore.set(scope, split);
  return split;
}

/** The distinct scopes of a scope string, as a set (memoized with splitScope). */
const setsBefore = new WeakMap<readonly string[], ReadonlySet<string>>();
function scopeSetOf(scope: string): ReadonlySet<string> {
  const split = splitScope(scope);
  let set = setsBefore.get(split);
  if (!set) {
    set = new Set(split);
    setsBefore.set(split, set);
  }
  return set;
}

/** The requested scopes that may be granted; `userRoles` null: the token acts for the client itself. */
export async function grantableOf(
  registry: ScopeLookup,
  allowedScope: string,
  requested: readonly string[],
  userRoles: string[] | null,
): Promise<string[]> {
  const allowed = scopeSetOf(allowedScope);
  const wanted = requested.filter((s) => allowed.has(s));
  const registered = registry.cached(wanted) ?? await registry.find(wanted);
  const roles = userRoles === null ? null : new Set(userRoles);
  // From `wanted`, not the registry's map: that may hold scopes the client is not allowed.
  return wanted.filter((s) => {
    const scope = registered.get(s);
    if (!scope) return false;
    return roles === null || scope.roles.length === 0 || scope.roles.some((r) => roles.has(r));
  });
}

/** invalid_scope: scopes were asked for and none of them can be granted. */
export function noScopeGrantable(requested: readonly string[]): InstanceType<typeof errors.InvalidScope> {
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
