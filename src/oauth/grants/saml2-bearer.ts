// SAML 2.0 bearer assertion grant (RFC 7522 §2.1, §3). The assertion is checked in
// src/saml/; here the rules of the profile: a registered and enabled issuer that allows this
// client, audience and recipient naming this server, time limits with the configured skew,
// a bounded validity window, each assertion used once, and a user to act for — only a user
// federated from that same IdP under that exact NameID (a user belongs to their source).
//
// Nothing read from the request reaches a query before the signature has been checked: the
// registered IdPs are loaded with an input-independent query and the unsigned Issuer only
// picks one of them in memory; the signed Issuer must then be that IdP's entity id.
import { errors } from 'oidc-provider';
import type { SignedAssertion } from '../../saml/assertion.ts';
import { AssertionMalformed, AssertionRejected, TRANSIENT_NAME_ID, decodeAssertionParameter } from '../../saml/parameter.ts';
import { isIdpStillTrusted, listIdps, recordAssertionId } from '../../store/idps.ts';
import { revokeTokensOfGrant } from '../../store/tokens.ts';
import { checkNameId, findFederatedUser, provisionFederatedUser, UserInputError, UsernameTakenError, type Federation } from '../../store/users.ts';
import { dummyHash, passwordParams } from '../../store/passwords.ts';
import type { Config } from '../../config/index.ts';
import type { IdpRow, UserRow } from '../../db/types.ts';
import type { Db } from '../../db/database.ts';
import { accountOf } from '../accounts.ts';
import { issueUserTokens } from '../user-tokens.ts';
import { checkRequestedResource } from '../resource-server.ts';
import type { ExtensionGrant } from './index.ts';

export const SAML2_BEARER = 'urn:ietf:params:oauth:grant-type:saml2-bearer';

/** The XML parser and signature libraries load at the first assertion: a server that never sees one does not hold them (~7 MB). */
const samlReader = () => import('../../saml/assertion.ts');

function refuse(reason: string): never {
  throw new AssertionRejected(reason);
}

/** For the log only: an unsigned value, bounded (pino escapes what it holds). */
const quoted = (value: string) => JSON.stringify(value.length > 200 ? `${value.slice(0, 200)}…` : value);

function checkProfile(config: Config, a: SignedAssertion, now = Date.now()): Date {
  const skew = config.clockSkew * 1000;
  const issuer = config.issuer.replace(/\/$/, '');
  const tokenEndpoint = `${issuer}/token`;
  const namesUs = (aud: string) => aud === issuer || aud === `${issuer}/` || aud === tokenEndpoint;
  const restrictions = a.audienceRestrictions;
  if (!restrictions.some((audiences) => audiences.some(namesUs))) refuse('no AudienceRestriction names this server');
  // Several restrictions must all hold: one naming another party limits the assertion to it.
  if (!restrictions.every((audiences) => audiences.some(namesUs))) refuse('an AudienceRestriction does not name this server (each must)');
  if (a.recipient !== tokenEndpoint) refuse(`Recipient ${a.recipient ?? '(none)'} is not the token endpoint`);
  if (a.responseDestination !== undefined && a.responseDestination !== tokenEndpoint) refuse(`the Response's Destination ${a.responseDestination} is not the token endpoint`);
  if (!a.confirmationNotOnOrAfter) refuse('SubjectConfirmationData has no NotOnOrAfter');
  if (a.issueInstant.getTime() > now + skew) refuse('IssueInstant is in the future');
  if (a.notBefore && a.notOnOrAfter && a.notBefore.getTime() >= a.notOnOrAfter.getTime()) refuse('Conditions NotBefore is not before NotOnOrAfter');
  if (a.notBefore && a.notBefore.getTime() > now + skew) refuse('the assertion is not yet valid (NotBefore)');
  if (a.confirmationNotBefore && a.confirmationNotBefore.getTime() > now + skew) refuse('the assertion is not yet valid (SubjectConfirmationData NotBefore)');
  const expiry = Math.min(a.confirmationNotOnOrAfter.getTime(), a.notOnOrAfter?.getTime() ?? Infinity);
  if (expiry <= now - skew) refuse('the assertion has expired');
  const start = a.notBefore?.getTime() ?? a.issueInstant.getTime();
  if (expiry - start > config.samlMaxAssertionLifetime * 1000) refuse('the assertion is valid for longer than this server accepts');
  return new Date(expiry + skew);
}

/** The subject, as this IdP identifies it: a NameID it may use, compared exactly. */
function subjectOf(idp: IdpRow, a: SignedAssertion): Federation {
  if (a.nameIdFormat === TRANSIENT_NAME_ID && !idp.allow_transient) {
    refuse('transient NameID, and this identity provider is not configured to allow them (keymgr idp add … --allow-transient)');
  }
  try {
    checkNameId(a.nameId);
  } catch (err) {
    if (err instanceof UserInputError) refuse(err.message);
    throw err;
  }
  return { idp: idp.entity_id, nameId: a.nameId };
}

const linkHint = (f: Federation, username = 'USERNAME') =>
  `keymgr user link --idp ${quoted(f.idp)} --name-id ${quoted(f.nameId)} ${quoted(username)}`;

/**
 * Records the assertion as used and returns the user it acts for: the user federated from
 * this IdP under this NameID, or — with JIT provisioning — a new one. An existing user of
 * another source (a local user, or another IdP's) is never taken over, even when the NameID
 * equals their username: that is refused, and the log tells the operator how to link them
 * if they are the same person. A refused assertion leaves no row behind.
 */
async function consumeFor(db: Db, config: Config, idp: IdpRow, subject: Federation, assertionId: string, expiresAt: Date): Promise<UserRow> {
  const existing = await findFederatedUser(db, subject);
  if (existing) {
    if (existing.disabled) refuse('the user is disabled');
    if (!(await recordAssertionId(db, idp.entity_id, assertionId, expiresAt))) refuse('the assertion was used before (replay)');
    return existing;
  }
  if (!idp.jit_provisioning) {
    refuse(`NameID ${quoted(subject.nameId)} is not linked to a user of this identity provider, which does not provision users; to link a user: ${linkHint(subject)}`);
  }
  // A user who signs in through the IdP only: the hash of a random password nobody has, made
  // once per instance (an argon2 hash per assertion would make every refused one cost it).
  const unusable = await dummyHash(passwordParams(config));
  const user = await db.transaction().execute(async (trx) => {
    if (!(await recordAssertionId(trx, idp.entity_id, assertionId, expiresAt))) refuse('the assertion was used before (replay)');
    try {
      return await provisionFederatedUser(trx, subject.nameId, unusable, idp.jit_default_roles, subject);
    } catch (err) {
      if (err instanceof UsernameTakenError) {
        refuse(`JIT provisioning refused: the username ${quoted(subject.nameId)} belongs to an existing user who is not federated from this identity provider, and is not taken over; if they are the same person, link them: ${linkHint(subject, subject.nameId)}`);
      }
      if (err instanceof UserInputError) refuse(`cannot provision user: ${err.message}`);
      throw err;
    }
  });
  if (user.disabled) refuse('the user is disabled');
  return user;
}

export const saml2BearerGrant: ExtensionGrant = {
  grantType: SAML2_BEARER,
  parameters: ['assertion', 'scope', 'resource'],
  handler: (deps) => async (ctx) => {
    const { db, config, logger } = deps;
    const client = ctx.oidc.client;
    if (!client) throw new errors.InvalidClient();
    if (client.clientAuthMethod === 'none') throw new errors.UnauthorizedClient('the SAML bearer grant requires client authentication');
    checkRequestedResource(config, ctx.oidc.params?.resource);
    const { parseAssertion, verifySignedAssertion } = await samlReader();
    let idp: IdpRow | undefined;
    try {
      const unverified = parseAssertion(decodeAssertionParameter(ctx.oidc.params?.assertion));
      idp = (await listIdps(db)).find((candidate) => candidate.entity_id === unverified.claimedIssuer);
      if (!idp) refuse(`the Issuer ${quoted(unverified.claimedIssuer)} is not a registered identity provider`);
      if (!idp.enabled) refuse('the identity provider is disabled');
      if (idp.allowed_clients && !idp.allowed_clients.includes(client.clientId)) refuse('this client may not use this identity provider');
      const assertion = verifySignedAssertion(unverified, idp.certificates);
      if (assertion.issuer !== idp.entity_id) refuse('the signed Issuer differs from the one the assertion was read with');
      const expiresAt = checkProfile(config, assertion);
      const user = await consumeFor(db, config, idp, subjectOf(idp, assertion), assertion.id, expiresAt);
      const account = accountOf(user);
      ctx.oidc.entity('Account', account);
      const body = await issueUserTokens(deps, ctx, account, { gty: SAML2_BEARER, requestedScope: ctx.oidc.params?.scope });
      // Disabling or removing the IdP revokes what its assertions got (migration 0020), but not
      // tokens written after that ran: asked again once they are written, it catches those —
      // also a disable not yet committed (waited for), and a removal followed by adding it
      // again with other certificates (a new registration).
      if (!(await isIdpStillTrusted(db, idp.entity_id, idp.created_at))) {
        const grantId = ctx.oidc.entities.AccessToken?.grantId;
        if (grantId) await revokeTokensOfGrant(db, grantId);
        refuse('the identity provider was disabled, removed or replaced while the tokens were issued');
      }
      ctx.body = body;
      logger.info({ event: 'saml.accepted', client_id: client.clientId, idp: idp.entity_id, user_id: user.id }, 'SAML bearer assertion accepted');
    } catch (err) {
      if (err instanceof AssertionMalformed) throw new errors.InvalidRequest(err.message);
      if (err instanceof AssertionRejected) {
        logger.info({ event: 'saml.rejected', client_id: client.clientId, ...(idp ? { idp: idp.entity_id } : {}), reason: err.message }, 'SAML bearer assertion refused');
        throw new errors.InvalidGrant(err.message);
      }
      throw err;
    }
  },
};
