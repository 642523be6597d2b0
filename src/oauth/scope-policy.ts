// Which of the requested scopes a token may carry. Scopes the client is not allowed are
// dropped (the token response's `scope` shows what was granted, RFC 6749 §3.3); if scopes
// were asked for and none survive, the request fails with invalid_scope.
import { errors } from 'oidc-provider';

export function splitScope(scope: unknown): string[] {
  return typeof scope === 'string' ? scope.split(' ').filter(Boolean) : [];
}

export function grantableScopes(allowedScope: string, requestedScope: unknown): string[] {
  const allowed = new Set(splitScope(allowedScope));
  const requested = splitScope(requestedScope);
  const granted = requested.filter((s) => allowed.has(s));
  if (requested.length > 0 && granted.length === 0) {
    throw new errors.InvalidScope('requested scope is not allowed for this client', requested.join(' '));
  }
  return granted;
}
