// Resource owner password credentials grant (RFC 6749 §4.3), for confidential clients that
// list `password` in their grant types. Every failure — unknown user, wrong password,
// disabled or locked account — is the same invalid_grant, and takes the same argon2 time.
import { errors, type KoaContextWithOIDC } from 'oidc-provider';
import type { Logger } from 'pino';
import { findUserByUsername, MAX_USERNAME_LENGTH, upgradePasswordHash } from '../../store/users.ts';
import {
  dummyHash, hashNeedsUpgrade, hashPassword, MAX_PASSWORD_BYTES, passwordParams, verifyPassword,
} from '../../store/passwords.ts';
import { clearLoginFailures, lockoutState, recordLoginFailure } from '../../store/login-failures.ts';
import { accountOf } from '../accounts.ts';
import { issueUserTokens } from '../user-tokens.ts';
import type { ExtensionGrant, GrantDeps } from './index.ts';

const REFUSED = 'invalid username or password';

function credential(ctx: KoaContextWithOIDC, name: 'username' | 'password', maxBytes: number): string {
  const value = ctx.oidc.params?.[name];
  if (typeof value !== 'string' || value === '') throw new errors.InvalidRequest(`missing required parameter '${name}'`);
  if (Buffer.byteLength(value, 'utf8') > maxBytes) throw new errors.InvalidRequest(`'${name}' is too long`);
  // The body parser turns invalid UTF-8 into U+FFFD; NUL never belongs in a credential.
  if (value.includes('\uFFFD') || value.includes('\0')) throw new errors.InvalidRequest(`'${name}' is not valid text`);
  return value;
}

async function signIn(deps: GrantDeps & { logger: Logger }, ctx: KoaContextWithOIDC, username: string, password: string) {
  const { db, config, logger } = deps;
  const params = passwordParams(config);
  const usernameLower = username.toLowerCase();
  const source = ctx.ip;
  const policy = { maxFailures: config.lockoutMaxFailures, maxFailuresPerAddress: config.lockoutMaxFailuresPerAddress, windowSeconds: config.lockoutWindow };

  const locked = await lockoutState(db, usernameLower, source, policy);
  if (locked) {
    logger.warn({ event: 'login.locked', reason: locked, client_id: ctx.oidc.client?.clientId, source }, 'sign-in refused: too many failed attempts');
    throw new errors.InvalidGrant(REFUSED);
  }

  const user = await findUserByUsername(db, username);
  const passwordOk = await verifyPassword(user?.password_hash ?? (await dummyHash(params)), password);
  if (!user || !passwordOk) {
    await recordLoginFailure(db, usernameLower, source);
    const nowLocked = await lockoutState(db, usernameLower, source, policy);
    logger.info({ event: 'login.failed', client_id: ctx.oidc.client?.clientId, source, known_user: Boolean(user) }, 'password sign-in failed');
    if (nowLocked) logger.warn({ event: 'login.lockout', reason: nowLocked, source }, 'account or address locked after repeated failures');
    throw new errors.InvalidGrant(REFUSED);
  }
  if (user.disabled) {
    logger.info({ event: 'login.disabled', client_id: ctx.oidc.client?.clientId, user_id: user.id }, 'sign-in refused: user disabled');
    throw new errors.InvalidGrant(REFUSED);
  }
  await clearLoginFailures(db, usernameLower);
  if (hashNeedsUpgrade(user.password_hash, params)) {
    await upgradePasswordHash(db, user.id, user.password_hash, await hashPassword(password, params));
    logger.info({ event: 'password.rehashed', user_id: user.id }, 'password hash upgraded to current parameters');
  }
  return user;
}

export const passwordGrant: ExtensionGrant = {
  grantType: 'password',
  parameters: ['username', 'password', 'scope'],
  handler: (deps) => async (ctx) => {
    const { client } = ctx.oidc;
    if (!client) throw new errors.InvalidClient();
    // §4.3.2: the client authenticates; a public client cannot keep a user's password safe.
    if (client.clientAuthMethod === 'none') throw new errors.UnauthorizedClient('the password grant requires a confidential client');
    const username = credential(ctx, 'username', MAX_USERNAME_LENGTH * 4);
    const password = credential(ctx, 'password', MAX_PASSWORD_BYTES);
    const user = await signIn(deps, ctx, username, password);
    const account = accountOf(user);
    ctx.oidc.entity('Account', account);
    ctx.body = await issueUserTokens(deps, ctx, account, { gty: 'password', requestedScope: ctx.oidc.params?.scope });
  },
};
