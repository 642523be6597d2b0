// Checking a user's password, shared by the password grant and the login page: brute-force
// counting per account and per address, the same argon2 work whether the user exists or not,
// and one answer ("refused") for every failure, so nothing is learnt from it.
import type { Logger } from 'pino';
import type { Config } from '../config/index.ts';
import type { Db } from '../db/database.ts';
import type { UserRow } from '../db/types.ts';
import { findUserByUsername, isPossibleUsername, MAX_USERNAME_LENGTH, upgradePasswordHash } from '../store/users.ts';
import { dummyHash, hashNeedsUpgrade, hashPassword, MAX_PASSWORD_BYTES, passwordParams, verifyPassword } from '../store/passwords.ts';
import { clearLoginFailures, IMPOSSIBLE_NAME_ACCOUNT, recordLoginFailure, releaseLoginAttempt, reserveLoginAttemptWhenFree } from '../store/login-failures.ts';
import { recordAuditEvent } from '../store/audit.ts';
import type { Metrics } from '../http/metrics.ts';

/** Limits on what is typed into a username or password field (the store's own limits). */
export const CREDENTIAL_MAX_BYTES = { username: MAX_USERNAME_LENGTH * 4, password: MAX_PASSWORD_BYTES } as const;

/** Why a typed credential cannot be checked at all, or undefined when it can. */
export function credentialProblem(value: string, field: keyof typeof CREDENTIAL_MAX_BYTES): string | undefined {
  if (Buffer.byteLength(value, 'utf8') > CREDENTIAL_MAX_BYTES[field]) return `'${field}' is too long`;
  // The body parser turns invalid UTF-8 into U+FFFD; NUL never belongs in a credential.
  if (value.includes('\uFFFD') || value.includes('\0')) return `'${field}' is not valid text`;
  return undefined;
}

export interface SignInDeps {
  config: Config;
  db: Db;
  logger: Logger;
  metrics: Pick<Metrics, 'logins' | 'lockouts' | 'passwordVerifications'>;
}

export interface SignInAttempt {
  username: string;
  password: string;
  source: string;
  /** For the logs: which client the user was signing in to. */
  clientId?: string;
}

/**
 * Every argon2 verification goes through here and is counted, so that "the same argon2 work
 * whether the user exists or not" can be watched from outside (km_password_verifications_total).
 */
async function verifyCounted(metrics: SignInDeps['metrics'], hash: string, password: string): Promise<boolean> {
  metrics.passwordVerifications.inc();
  return verifyPassword(hash, password);
}

/** The user when the password is right and the account usable; undefined for any refusal. */
export async function signIn({ config, db, logger, metrics }: SignInDeps, { username: typed, password, source, clientId }: SignInAttempt): Promise<UserRow | undefined> {
  const params = passwordParams(config);
  const username = isPossibleUsername(typed) ? typed : IMPOSSIBLE_NAME_ACCOUNT;
  const policy = { maxFailures: config.lockoutMaxFailures, maxFailuresPerAddress: config.lockoutMaxFailuresPerAddress, windowSeconds: config.lockoutWindow };

  // The attempt takes its place in the window before any password is checked (see
  // src/store/login-failures.ts), so a burst of guesses cannot outrun the count.
  const attempt = await reserveLoginAttemptWhenFree(db, username, source, policy);
  if (attempt.outcome !== 'reserved') {
    const reason = attempt.outcome === 'locked' ? attempt.reason : 'busy';
    logger.warn({ event: 'login.locked', reason, client_id: clientId, source }, 'sign-in refused: too many failed attempts');
    metrics.logins.inc({ result: 'locked' });
    return undefined;
  }

  let user: UserRow | undefined;
  let passwordOk: boolean;
  try {
    user = await findUserByUsername(db, username);
    passwordOk = await verifyCounted(metrics, user?.password_hash ?? (await dummyHash(params)), password);
  } catch (err) {
    // Undecided, the reserved row would stay in flight, a place taken in the window for a
    // while (src/store/login-failures.ts). The request fails all the same.
    releaseLoginAttempt(db, attempt.id).catch((releaseErr: unknown) => logger.warn({ error: (releaseErr as Error).message }, 'sign-in attempt not released'));
    throw err;
  }
  /** Refused whatever the password: its row gave up its place before the outcome was written, so others may have been checked in its stead. */
  const overdue = () => {
    logger.warn({ event: 'login.overdue', client_id: clientId, source }, 'sign-in refused: the password check took too long to be told');
    metrics.logins.inc({ result: 'overdue' });
    return undefined;
  };
  // A disabled user's right password counts like a wrong one: the lock state must not tell
  // them apart (a locked account answers faster).
  if (!user || !passwordOk || user.disabled) {
    const failure = await recordLoginFailure(db, attempt);
    if (!failure.written) return overdue();
    metrics.logins.inc({ result: 'failure' });
    if (user && passwordOk) logger.info({ event: 'login.disabled', client_id: clientId, user_id: user.id }, 'sign-in refused: user disabled');
    else logger.info({ event: 'login.failed', client_id: clientId, source, known_user: Boolean(user) }, 'password sign-in failed');
    if (failure.locked) {
      logger.warn({ event: 'login.lockout', reason: failure.locked, source }, 'account or address locked after repeated failures');
      metrics.lockouts.inc({ reason: failure.locked });
      await recordAuditEvent(db, {
        actorType: 'system', actor: 'keymanager', action: 'login.lockout', outcome: 'success', source,
        resourceType: failure.locked, resourceId: failure.locked === 'account' ? username : source,
      }).catch((err) => logger.error({ error: (err as Error).message }, 'audit event not recorded'));
    }
    return undefined;
  }
  if (!(await clearLoginFailures(db, username, attempt))) return overdue();
  metrics.logins.inc({ result: 'success' });
  if (hashNeedsUpgrade(user.password_hash, params)) {
    await upgradePasswordHash(db, user.id, user.password_hash, await hashPassword(password, params));
    logger.info({ event: 'password.rehashed', user_id: user.id }, 'password hash upgraded to current parameters');
  }
  return user;
}
