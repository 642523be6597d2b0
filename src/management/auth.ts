// Who is calling the management API. Exactly one handler is engaged (management.auth):
// - jwt: GET /management/login takes Basic credentials and returns {"AccessToken": JWT}; every
//   other route takes that token as a bearer. A bearer counts only while its row in the shared
//   token store is live (logout revokes it on every instance) and its user is still configured.
// - basic: every route takes Basic credentials; there is no login or logout.
// Failed credentials count towards the same lockout as user sign-ins.
import { createHash, randomUUID } from 'node:crypto';
import type { Context } from 'koa';
import { jwtVerify, SignJWT } from 'jose';
import type { Logger } from 'pino';
import type { Config } from '../config/index.ts';
import type { Db } from '../db/database.ts';
import type { ManagementKey } from '../keys/management-key.ts';
import { MANAGEMENT_TOKEN_ALG } from '../keys/management-key.ts';
import { clearLoginFailures, IMPOSSIBLE_NAME_ACCOUNT, managementAccountKey, managementAddressKey, recordLoginFailure, reserveLoginAttemptWhenFree } from '../store/login-failures.ts';
import { dummyHash, passwordParams, verifyPassword } from '../store/passwords.ts';
import { revokeManagementTokensIssuedOnOtherCredentials, useManagementToken } from '../store/management-tokens.ts';
import { recordAuditEvent } from '../store/audit.ts';
import { MAX_USERNAME_LENGTH } from '../store/users.ts';
import type { RefusalAudit } from './refusal-audit.ts';
import type { SignInLimiters } from './sign-in-limit.ts';
import { unauthorized } from './errors.ts';
import type { ManagementRole, ManagementUser } from './user-store.ts';

/** `typ` of management tokens: no OAuth access token (`at+jwt`) can be taken for one. */
export const MANAGEMENT_TOKEN_TYPE = 'km-management+jwt';
const AUDIENCE = 'keymanager-management';

export interface ManagementPrincipal {
  username: string;
  roles: ManagementRole[];
  credentialSha256: string;
}

export interface ManagementAuthDeps {
  config: Config;
  db: Db;
  logger: Logger;
  users: Map<string, ManagementUser>;
  key: ManagementKey;
  /** Records refused, unauthenticated attempts, rate-limited (src/management/refusal-audit.ts). */
  auditRefusal: RefusalAudit;
  /** Waits until every instance has handled the changes committed so far (caches dropped). */
  syncInstances: () => Promise<boolean>;
  /** Makes this instance sign with the key set on disk now (the others follow the notice). */
  reloadSigningKeys: () => Promise<void>;
  /** How many sign-ins check a password at once (src/management/sign-in-limit.ts). */
  signIns: SignInLimiters;
}

/** RFC 7617 credentials (UTF-8), or undefined when the header is not a readable Basic one. */
export function basicCredentials(header: string): { username: string; password: string } | undefined {
  const match = /^Basic ([A-Za-z0-9+/]+={0,2})$/i.exec(header.trim());
  if (!match) return undefined;
  let decoded: string;
  try {
    decoded = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(match[1]!, 'base64'));
  } catch {
    return undefined;
  }
  const colon = decoded.indexOf(':');
  if (colon <= 0 || decoded.includes('\0')) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** The user when the credentials are right and the lockout allows a check; undefined otherwise. */
function checkCredentials(deps: ManagementAuthDeps, ctx: Context, username: string, password: string): Promise<ManagementUser | undefined> {
  const limiter = deps.users.has(username) ? deps.signIns.operators : deps.signIns.unknownNames;
  return limiter.run(() => checkCredentialsNow(deps, username, password, ctx.ip), () => ctx.req.socket.destroyed);
}

async function checkCredentialsNow(deps: ManagementAuthDeps, username: string, password: string, source: string): Promise<ManagementUser | undefined> {
  const { config, db, logger, users } = deps;
  // Per account only: operators share a few addresses (a bastion, 127.0.0.1), and a limit per
  // address would let anyone who reaches the port lock every operator out at once.
  const policy = { maxFailures: config.lockoutMaxFailures, maxFailuresPerAddress: 1_000_000_000, windowSeconds: config.lockoutWindow };
  // A name no operator can have (config: at most 255 characters): the store cannot index an
  // account key of any length (a 500 before any check, found by a review).
  const account = managementAccountKey(username.length <= MAX_USERNAME_LENGTH ? username : IMPOSSIBLE_NAME_ACCOUNT);
  const attempt = await reserveLoginAttemptWhenFree(db, account, managementAddressKey(source), policy);
  const known = users.has(username);
  const audit = (action: string) => deps.auditRefusal({
    actorType: 'management_user', actor: known ? username : '(unknown user)', action, source, outcome: 'failure',
    account: known ? username : undefined,
  });
  if (attempt.outcome !== 'reserved') {
    logger.warn({ event: 'management.login.locked', reason: attempt.outcome === 'locked' ? attempt.reason : 'busy', source }, 'management sign-in refused: too many failed attempts');
    await audit('management.login.locked');
    return undefined;
  }
  const user = users.get(username);
  // The same argon2 work whether the user exists or not.
  const ok = await verifyPassword(user?.passwordHash ?? (await dummyHash(passwordParams(config))), password);
  // Refused whatever the password when its row gave up its place before the outcome was
  // written (src/store/login-failures.ts): others may have been checked in its stead.
  const overdue = () => {
    logger.warn({ event: 'management.login.overdue', source }, 'management sign-in refused: the password check took too long to be told');
    return undefined;
  };
  if (!user || !ok) {
    if (!(await recordLoginFailure(db, attempt)).written) return overdue();
    logger.warn({ event: 'management.login.failed', source, known_user: Boolean(user) }, 'management sign-in failed');
    await audit('management.login.failed');
    return undefined;
  }
  if (!(await clearLoginFailures(db, account, attempt))) return overdue();
  return user;
}

/** Digest of what a token was issued on: the user's name, password hash and roles. */
export function credentialDigest(user: ManagementUser): string {
  return createHash('sha256').update([user.username, user.passwordHash, [...user.roles].sort().join(',')].join('\0')).digest('hex');
}

/**
 * At start: the tokens of users removed from the configuration, or whose password or roles
 * changed, are revoked for good, so that putting the old configuration back (or adding a
 * removed user again with the same password) does not make them count again.
 */
export async function revokeTokensOfChangedUsers(db: Db, users: Map<string, ManagementUser>, logger: Logger): Promise<void> {
  const current = [...users.values()].map((user) => ({ username: user.username, credentialSha256: credentialDigest(user) }));
  for (const [username, revoked] of await revokeManagementTokensIssuedOnOtherCredentials(db, current)) {
    logger.info({ username, revoked }, 'revoked the management tokens of a user removed or changed in the configuration');
    await recordAuditEvent(db, {
      actorType: 'system', actor: 'keymanager', action: 'management_user.tokens_revoked', resourceType: 'management_user', resourceId: username, outcome: 'success',
    });
  }
}

/** Basic credentials of a management user, or a 401 with a Basic challenge. */
export async function principalFromBasic(deps: ManagementAuthDeps, ctx: Context): Promise<ManagementPrincipal> {
  if (deps.users.size === 0) throw unauthorized('no management users are configured', 'Basic');
  const credentials = basicCredentials(ctx.get('authorization'));
  if (!credentials) throw unauthorized('management user credentials are required (HTTP Basic)', 'Basic');
  const user = await checkCredentials(deps, ctx, credentials.username, credentials.password);
  if (!user) throw unauthorized('invalid username or password', 'Basic');
  return { username: user.username, roles: user.roles, credentialSha256: credentialDigest(user) };
}

export async function signManagementToken(deps: ManagementAuthDeps, user: ManagementPrincipal): Promise<{ token: string; expiresAt: Date }> {
  const now = Math.floor(Date.now() / 1000);
  const exp = now + deps.config.managementTokenExpiry;
  const token = await new SignJWT({ roles: user.roles })
    .setProtectedHeader({ alg: MANAGEMENT_TOKEN_ALG, kid: deps.key.kid, typ: MANAGEMENT_TOKEN_TYPE })
    .setIssuer(deps.config.issuer)
    .setAudience(AUDIENCE)
    .setSubject(user.username)
    .setJti(randomUUID())
    .setIssuedAt(now)
    .setExpirationTime(exp)
    .sign(deps.key.privateKey);
  return { token, expiresAt: new Date(exp * 1000) };
}

export function bearerToken(ctx: Context): string | undefined {
  const match = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i.exec(ctx.get('authorization').trim());
  return match?.[1];
}

/** A bearer that verifies with the management key, is live in the token store, and whose user is still configured. */
export async function principalFromBearer(deps: ManagementAuthDeps, ctx: Context): Promise<ManagementPrincipal> {
  const token = bearerToken(ctx);
  if (!token) throw unauthorized('a management token is required: GET /management/login with Basic credentials', 'Bearer');
  try {
    await jwtVerify(token, deps.key.publicKey, {
      algorithms: [MANAGEMENT_TOKEN_ALG], issuer: deps.config.issuer, audience: AUDIENCE, typ: MANAGEMENT_TOKEN_TYPE,
    });
  } catch {
    throw unauthorized('the management token is not valid', 'Bearer');
  }
  const stored = await useManagementToken(deps.db, token);
  const user = stored && deps.users.get(stored.username);
  // Issued on other credentials or roles (changed, or the user removed and added again): void.
  if (!user || stored.credentialSha256 !== credentialDigest(user)) throw unauthorized('the management token is not valid', 'Bearer');
  return { username: user.username, roles: user.roles, credentialSha256: stored.credentialSha256 };
}
