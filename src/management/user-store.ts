// The management user store: [[management.users]] in keymanager.toml, resolved once at start.
// A password comes as an argon2id hash, from a file or an environment variable (so that no
// secret sits in the TOML), or — outside production only — in plain text. A fresh development
// start with no user gets an `admin` whose random password is written once to a file.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/index.ts';
import { hashPassword, passwordParams } from '../store/passwords.ts';

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

export async function loadManagementUsers(config: Config, logger: Logger, env: NodeJS.ProcessEnv = process.env): Promise<Map<string, ManagementUser>> {
  const params = passwordParams(config);
  const users = new Map<string, ManagementUser>();
  for (const entry of config.managementUsers) {
    if (users.has(entry.username)) throw new ManagementUserStoreError(`management.users: "${entry.username}" is listed twice`);
    let passwordHash = entry.password_hash;
    if (entry.password_file) passwordHash = await hashPassword(readSecretFile(entry.password_file, entry.username), params);
    if (entry.password_env) {
      const value = env[entry.password_env];
      if (!value) throw new ManagementUserStoreError(`management.users: environment variable ${entry.password_env} of "${entry.username}" is not set`);
      passwordHash = await hashPassword(value, params);
    }
    if (entry.password !== undefined) {
      logger.warn({ username: entry.username }, 'management user with a plain password in the configuration: use password_hash (keymgr management hash-password), password_file or password_env');
      passwordHash = await hashPassword(entry.password, params);
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
  users.set('admin', { username: 'admin', passwordHash: await hashPassword(password, params), roles: ['admin'] });
  logger.info({ username: 'admin', password_file: path, created }, 'management user "admin" (no [[management.users]] configured); its password is in the file');
  return users;
}
