// SAML 2.0 bearer assertion grant (RFC 7522 §2.1, §3). The assertion is checked in
// src/saml/; here the rules of the profile: a registered and enabled issuer that allows this
// client, audience and recipient naming this server, time limits with the configured skew,
// a bounded validity window, each assertion used once, and a user to act for.
import { randomBytes } from 'node:crypto';
import { errors } from 'oidc-provider';
import { AssertionMalformed, AssertionRejected, decodeAssertionParameter, unverifiedIssuer, verifySignedAssertion, type SignedAssertion } from '../../saml/assertion.ts';
import { findIdp, recordAssertionId } from '../../store/idps.ts';
import { createUser, findUserByUsername, UserInputError } from '../../store/users.ts';
import { hashPassword, passwordParams } from '../../store/passwords.ts';
import type { Config } from '../../config/index.ts';
import type { IdpRow, UserRow } from '../../db/types.ts';
import type { Db } from '../../db/database.ts';
import { accountOf } from '../accounts.ts';
import { issueUserTokens } from '../user-tokens.ts';
import type { ExtensionGrant } from './index.ts';

export const SAML2_BEARER = 'urn:ietf:params:oauth:grant-type:saml2-bearer';

function refuse(reason: string): never {
  throw new AssertionRejected(reason);
}

function checkProfile(config: Config, a: SignedAssertion, now = Date.now()): Date {
  const skew = config.clockSkew * 1000;
  const issuer = config.issuer.replace(/\/$/, '');
  const tokenEndpoint = `${issuer}/token`;
  if (!a.audiences.some((aud) => aud === issuer || aud === `${issuer}/` || aud === tokenEndpoint)) refuse('no AudienceRestriction names this server');
  if (a.recipient !== tokenEndpoint) refuse(`Recipient ${a.recipient ?? '(none)'} is not the token endpoint`);
  if (!a.confirmationNotOnOrAfter) refuse('SubjectConfirmationData has no NotOnOrAfter');
  if (a.issueInstant.getTime() > now + skew) refuse('IssueInstant is in the future');
  if (a.notBefore && a.notBefore.getTime() > now + skew) refuse('the assertion is not yet valid (NotBefore)');
  const expiry = Math.min(a.confirmationNotOnOrAfter.getTime(), a.notOnOrAfter?.getTime() ?? Infinity);
  if (expiry <= now - skew) refuse('the assertion has expired');
  const start = a.notBefore?.getTime() ?? a.issueInstant.getTime();
  if (expiry - start > config.samlMaxAssertionLifetime * 1000) refuse('the assertion is valid for longer than this server accepts');
  return new Date(expiry + skew);
}

async function userFor(db: Db, config: Config, idp: IdpRow, nameId: string): Promise<UserRow> {
  const existing = await findUserByUsername(db, nameId);
  if (existing) return existing;
  if (!idp.jit_provisioning) refuse('NameID is not a known user and the identity provider does not provision users');
  // A user who signs in through the IdP only: the password is random and never handed out.
  const unusable = await hashPassword(randomBytes(32).toString('base64url'), passwordParams(config));
  try {
    return await createUser(db, nameId, unusable, idp.jit_default_roles);
  } catch (err) {
    if (err instanceof UserInputError) {
      const raced = await findUserByUsername(db, nameId); // created meanwhile by another request
      if (raced) return raced;
      refuse(`cannot provision user: ${err.message}`);
    }
    throw err;
  }
}

export const saml2BearerGrant: ExtensionGrant = {
  grantType: SAML2_BEARER,
  parameters: ['assertion', 'scope'],
  handler: (deps) => async (ctx) => {
    const { db, config, logger } = deps;
    const client = ctx.oidc.client;
    if (!client) throw new errors.InvalidClient();
    if (client.clientAuthMethod === 'none') throw new errors.UnauthorizedClient('the SAML bearer grant requires client authentication');
    try {
      const xml = decodeAssertionParameter(ctx.oidc.params?.assertion);
      const idp = await findIdp(db, unverifiedIssuer(xml));
      if (!idp || !idp.enabled) refuse('the issuer is not a registered, enabled identity provider');
      if (idp.allowed_clients && !idp.allowed_clients.includes(client.clientId)) refuse('this client may not use this identity provider');
      const assertion = verifySignedAssertion(xml, idp.certificates);
      if (assertion.issuer !== idp.entity_id) refuse('the signed Issuer differs from the one the assertion was read with');
      const expiresAt = checkProfile(config, assertion);
      if (!(await recordAssertionId(db, idp.entity_id, assertion.id, expiresAt))) refuse('the assertion was used before (replay)');
      const user = await userFor(db, config, idp, assertion.nameId);
      if (user.disabled) refuse('the user is disabled');
      const account = accountOf(user);
      ctx.oidc.entity('Account', account);
      ctx.body = await issueUserTokens(deps, ctx, account, { gty: SAML2_BEARER, requestedScope: ctx.oidc.params?.scope });
      logger.info({ event: 'saml.accepted', client_id: client.clientId, idp: idp.entity_id, user_id: user.id }, 'SAML bearer assertion accepted');
    } catch (err) {
      if (err instanceof AssertionMalformed) throw new errors.InvalidRequest(err.message);
      if (err instanceof AssertionRejected) {
        logger.info({ event: 'saml.rejected', client_id: client.clientId, reason: err.message }, 'SAML bearer assertion refused');
        throw new errors.InvalidGrant(err.message);
      }
      throw err;
    }
  },
};
