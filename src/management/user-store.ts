// The management user store: [[management.users]] in keymanager.toml, resolved once at start.
// A password comes as an argon2id hash, from a file or an environment variable (so that no
// secret sits in the TOML), or — outside production only — in plain text. A fresh development
// start with no user gets an `admin` whose random password is written once to a file.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/index.ts';
import { hashPasswordWithSalt, passwordParams, type PasswordParams } from '../store/passwords.ts';

export type ManagementRole = 'admin' | 'auditor';

export interface ManagementUser {
  username: string;
  passwordHash: string;
  roles: ManagementRole[];
}

export class ManagementUserStoreError extends Error {}

export function bootstrapPasswordPath(config: Pick<Config, 'dataDir'>): string {
  return join(config.dataDir, 'management-admin.txt');
}

function readSecretFile(path: string, username: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new ManagementUserStoreError(`management.users: cannot read password_file ${path} of "${username}"`);
  }
  const password = text.replace(/\r?\n$/, '');
  if (!password) throw new ManagementUserStoreError(`management.users: password_file ${path} of "${username}" is empty`);
  return password;
}

/** The development admin's password: created once (mode 0600), then read on every start. */
function bootstrapPassword(path: string): { password: string; created: boolean } {
  if (!existsSync(path)) {
    const password = randomBytes(24).toString('base64url');
    mkdirSync(join(path, '..'), { recursive: true });
    try {
      writeFileSync(path, `${password}\n`, { mode: 0o600, flag: 'wx' });
      return { password, created: true };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  return { password: readSecretFile(path, 'admin'), created: false };
}

/**
 * Every instance hashes a password it is given in clear (file, environment, plain, the
 * development admin's file) to the same string: the salt comes from the username. A token's
 * credential digest covers the hash (src/management/auth.ts), so all instances — and the next
 * start — must agree on it.
 */
function hashForEveryInstance(username: string, password: string, params: PasswordParams): Promise<string> {
  const salt = createHash('sha256').update(`keymanager management user\0${username}`).digest().subarray(0, 16);
  return hashPasswordWithSalt(password, params, salt);
}

export async function loadManagementUsers(config: Config, logger: Logger, env: NodeJS.ProcessEnv = process.env): Promise<Map<string, ManagementUser>> {
  const params = passwordParams(config);
  const users = new Map<string, ManagementUser>();
  const folded = new Set<string>();
  for (const entry of config.managementUsers) {
    // Failed sign-ins are counted per name regardless of case (as PostgreSQL's lower() folds
    // it): `ops` and `Ops` would share one count, and one could unlock or guess for the other.
    const key = entry.username.toLowerCase();
    if (folded.has(key)) throw new ManagementUserStoreError(`management.users: "${entry.username}" is listed twice (names differ only in case count as one)`);
    folded.add(key);
    let passwordHash = entry.password_hash;
    if (entry.password_file) passwordHash = await hashForEveryInstance(entry.username, readSecretFile(entry.password_file, entry.username), params);
    if (entry.password_env) {
      const value = env[entry.password_env];
      if (!value) throw new ManagementUserStoreError(`management.users: environment variable ${entry.password_env} of "${entry.username}" is not set`);
      passwordHash = await hashForEveryInstance(entry.username, value, params);
    }
    if (entry.password !== undefined) {
      logger.warn({ username: entry.username }, 'management user with a plain password in the configuration: use password_hash (keymgr management hash-password), password_file or password_env');
      passwordHash = await hashForEveryInstance(entry.username, entry.password, params);
    }
    users.set(entry.username, { username: entry.username, passwordHash: passwordHash!, roles: [...new Set(entry.roles)] });
  }
  if (users.size > 0) return users;
  if (config.env === 'production') {
    logger.error('management API: no management users are configured ([[management.users]] in keymanager.toml); it refuses every request');
    return users;
  }
  const path = bootstrapPasswordPath(config);
  const { password, created } = bootstrapPassword(path);
  users.set('admin', { username: 'admin', passwordHash: await hashForEveryInstance('admin', password, params), roles: ['admin'] });
  logger.info({ username: 'admin', password_file: path, created }, 'management user "admin" (no [[management.users]] configured); its password is in the file');
  return users;
}
