// The project root: where keymanager.toml is read from and what relative paths of the
// configuration (data_dir, keys_dir, …) mean. The server and keymgr find it the same way,
// so a command typed in a subdirectory reaches the database the server uses instead of
// making a second one there.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/**
 * The nearest directory, from `start` upwards, that holds keymanager.toml or the package.json
 * of keymanager; undefined when there is none up to the filesystem root.
 */
export function findProjectRoot(start: string): string | undefined {
  for (let dir = resolve(start); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'keymanager.toml')) || isKeymanagerPackage(join(dir, 'package.json'))) return dir;
    if (dir === dirname(dir)) return undefined;
  }
}

function isKeymanagerPackage(file: string): boolean {
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown }).name === 'keymanager';
  } catch {
    // Absent, unreadable or not JSON: some other directory, not ours.
    return false;
  }
}
