// Secrets that sign oidc-provider's cookies (login sessions, interactions). They live beside
// the signing keys so that every instance sharing keys/ accepts the others' cookies.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KeyFileError, readKeyFile } from './key-file.ts';

export function loadOrCreateCookieKeys(keysDir: string): string[] {
  const path = join(keysDir, 'cookie-keys.json');
  if (existsSync(path)) {
    const keys = readKeyFile(path);
    if (Array.isArray(keys) && keys.length > 0 && keys.every((k) => typeof k === 'string' && k.length >= 32)) return keys;
    throw new KeyFileError(`${path}: expected a JSON array of secrets of at least 32 characters`);
  }
  mkdirSync(keysDir, { recursive: true, mode: 0o700 });
  const keys = [randomBytes(32).toString('base64url')];
  try {
    writeFileSync(path, JSON.stringify(keys), { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // Another instance starting at the same moment wrote it first: use theirs.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return loadOrCreateCookieKeys(keysDir);
    throw err;
  }
  return keys;
}
