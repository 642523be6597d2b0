// What a user's consent becomes: an oidc-provider Grant holding the scopes the policy allows
// (registered, allowed for the client, and role-bound scopes only with the role) and
// rejecting the rest, so that the flow never asks again for what cannot be granted.
// Consent is remembered per user and client; first-party clients never ask.
import type Provider from 'oidc-provider';
import { errors, type Grant, type KoaContextWithOIDC } from 'oidc-provider';
import type { Config } from '../../config/index.ts';
import type { Db } from '../../db/database.ts';
import { findConsent } from '../../store/consents.ts';
import { rolesOfUser } from '../../store/users.ts';
import { audienceOf, OIDC_SCOPES } from '../resource-server.ts';
import { grantableOf, noScopeGrantable, splitScope } from '../scope-policy.ts';
import type { ScopeLookup } from '../scope-registry.ts';

export interface ConsentDeps {
  config: Config;
  db: Db;
  scopes: ScopeLookup;
}

export interface ScopeDecision {
  granted: string[];
  rejected: string[];
  oidc: string[];
}

/** Splits what the authorization request asks for into what the user may grant and not. */
export async function decideScopes(deps: ConsentDeps, allowedScope: string, accountId: string, requestedScope: unknown): Promise<ScopeDecision> {
  const requested = splitScope(requestedScope);
  const resourceScopes = requested.filter((s) => !OIDC_SCOPES.has(s));
  const roles = await rolesOfUser(deps.db, accountId);
  const granted = await grantableOf(deps.scopes, allowedScope, resourceScopes, roles);
  return {
    granted,
    rejected: resourceScopes.filter((s) => !granted.includes(s)),
    oidc: requested.filter((s) => OIDC_SCOPES.has(s)),
  };
}

/** Saves a Grant for the decision, adding to `existingGrantId` when the flow already has one. */
export async function saveGrant(
  deps: ConsentDeps,
  provider: Provider,
  { accountId, clientId, existingGrantId, decision }: { accountId: string; clientId: string; existingGrantId?: string; decision: ScopeDecision },
): Promise<string> {
  const { Grant } = provider;
  const grant = (existingGrantId && (await Grant.find(existingGrantId))) || new Grant({ accountId, clientId });
  const audience = audienceOf(deps.config);
  if (decision.oidc.length) grant.addOIDCScope(decision.oidc.join(' '));
  if (decision.granted.length) grant.addResourceScope(audience, decision.granted.join(' '));
  if (decision.rejected.length) grant.rejectResourceScope(audience, decision.rejected.join(' '));
  return grant.save();
}

/**
 * A grant of this session holds what was consented then. A code issued now must not carry a
 * scope the user can no longer have (role taken away, scope unregistered, client no longer
 * allowed it): such scopes are rejected for this request. Nothing is saved, so a role given
 * back later counts again.
 */
async function withCurrentPolicy(deps: ConsentDeps, grant: Grant, allowedScope: string): Promise<Grant> {
  const audience = audienceOf(deps.config);
  const held = splitScope(grant.getResourceScope(audience));
  if (held.length === 0 || !grant.accountId) return grant;
  const stillGrantable = new Set(await grantableOf(deps.scopes, allowedScope, held, await rolesOfUser(deps.db, grant.accountId)));
  const lost = held.filter((s) => !stillGrantable.has(s));
  if (lost.length) grant.rejectResourceScope(audience, lost.join(' '));
  return grant;
}

/**
 * oidc-provider's loadExistingGrant: the grant of this flow or session when there is one;
 * otherwise, for a first-party client or a user who already agreed to every scope that can
 * be granted, a new grant without asking. Undefined means: show the consent page.
 */
export function loadExistingGrant(deps: ConsentDeps) {
  return async (ctx: KoaContextWithOIDC) => {
    const { provider, client, session } = ctx.oidc;
    const accountId = session?.accountId;
    // The engine checks the redirect URI at /authorize, not when the flow resumes after the
    // sign-in pages; an operator may have removed it meanwhile. This hook runs on both. Refused
    // as invalid_redirect_uri, which the engine shows as a page and never sends to that URI.
    const redirectUri = ctx.oidc.params?.redirect_uri;
    if (client && typeof redirectUri === 'string' && !client.redirectUriAllowed(redirectUri)) throw new errors.InvalidRedirectUri();
    // Before the sign-in there is no user to judge role-bound scopes by: the engine asks for it.
    if (!client || !accountId) return undefined;
    const decision = await decideScopes(deps, String(client.km_allowed_scope ?? ''), accountId, ctx.oidc.params?.scope);
    // Left to the engine, a grant with nothing in it ends in access_denied, undescribed. The
    // client is told why instead, at its redirect URI: invalid_scope, whether the scopes asked
    // for cannot be granted or none was asked for (RFC 6749 §3.3, §4.1.2.1).
    if (decision.granted.length === 0 && !decision.oidc.includes('openid')) {
      throw decision.rejected.length ? noScopeGrantable(decision.rejected) : new errors.InvalidScope('no scope that can be granted was requested', '');
    }
    const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
    if (grantId) {
      const grant = await provider.Grant.find(grantId);
      if (grant) return withCurrentPolicy(deps, grant, String(client.km_allowed_scope ?? ''));
    }
    if (!client.km_first_party) {
      const remembered = await findConsent(deps.db, accountId, client.clientId);
      if (!remembered) return undefined; // never asked: ask
      const asked = [...decision.granted, ...decision.oidc];
      if (!asked.every((s) => remembered.includes(s))) return undefined;
    }
    const id = await saveGrant(deps, provider, { accountId, clientId: client.clientId, decision });
    return provider.Grant.find(id);
  };
}
