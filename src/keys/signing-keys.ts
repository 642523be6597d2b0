// The signing key set, kept as a private JWKS file under keys/. The newest key signs; older
// keys stay published in /jwks until everything they signed has expired, then drop out.
import { randomUUID } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { exportJWK, generateKeyPair, type JWK } from 'jose';

export const SIGNING_ALG = 'RS256';

/** Lifetime of ID tokens, the other thing these keys sign besides JWT access tokens. */
export const ID_TOKEN_TTL = 3600;

/** How long a replaced key stays published: the longest lifetime of anything it signed. */
export function retirementDelaySeconds(accessTokenTtl: number, clockSkew: number): number {
  return Math.max(accessTokenTtl, ID_TOKEN_TTL) + clockSkew;
}

interface StoredKey {
  jwk: JWK;
  created_at: string;
  /** Set when a newer key took over: the key is published, not used, until this time. */
  retire_at: string | null;
}

interface KeyFile {
  keys: StoredKey[];
}

export function signingKeysPath(keysDir: string): string {
  return join(keysDir, 'signing-keys.json');
}

async function newKey(): Promise<StoredKey> {
  const { privateKey } = await generateKeyPair(SIGNING_ALG, { modulusLength: 2048, extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: randomUUID(), alg: SIGNING_ALG, use: 'sig' };
  return { jwk, created_at: new Date().toISOString(), retire_at: null };
}

function read(path: string): KeyFile {
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as KeyFile;
  if (!Array.isArray(parsed.keys) || parsed.keys.length === 0) throw new Error(`${path}: no keys`);
  return parsed;
}

function write(path: string, file: KeyFile, { onlyIfAbsent = false } = {}): boolean {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  // Write a temporary file first, so that a server starting meanwhile never reads half a file.
  // Unique per writer: containers sharing the directory often have the same pid.
  const tmp = `${path}.${randomUUID()}.tmp`;
  writeFileSync(tmp, JSON.stringify(file, null, 2), { mode: 0o600 });
  if (!onlyIfAbsent) {
    renameSync(tmp, path);
    return true;
  }
  // link() fails if the file exists: of two instances starting together, one key set wins.
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    unlinkSync(tmp);
  }
}

function live(file: KeyFile, now = Date.now()): StoredKey[] {
  return file.keys.filter((k) => !k.retire_at || Date.parse(k.retire_at) > now);
}

/** A published key as operators see it: never the private parts. */
export interface PublishedKey {
  kid: string;
  alg: string;
  created_at: string;
  /** When it leaves /jwks; null for the key that signs. */
  retire_at: string | null;
  signing: boolean;
}

function describe(keys: StoredKey[]): PublishedKey[] {
  return keys.map((k) => ({
    kid: k.jwk.kid as string, alg: (k.jwk.alg as string | undefined) ?? SIGNING_ALG, created_at: k.created_at, retire_at: k.retire_at, signing: k.retire_at === null,
  }));
}

/** The private JWKS for oidc-provider: the signing key first, then keys still being retired. */
export async function loadOrCreateSigningKeys(keysDir: string): Promise<{ keys: JWK[]; created: boolean }> {
  const path = signingKeysPath(keysDir);
  if (!existsSync(path)) {
    const file = { keys: [await newKey()] };
    if (write(path, file, { onlyIfAbsent: true })) return { keys: file.keys.map((k) => k.jwk), created: true };
  }
  return { keys: readSigningKeys(keysDir).keys, created: false };
}

/** The key set as it is now on disk (a rotation elsewhere shows here), and what is published. */
export function readSigningKeys(keysDir: string): { keys: JWK[]; published: PublishedKey[] } {
  const keys = live(read(signingKeysPath(keysDir)));
  return { keys: keys.map((k) => k.jwk), published: describe(keys) };
}

/**
 * Adds a new signing key. The previous one stays published for `retireAfterSeconds` (the
 * longest lifetime of anything it signed), after which it is dropped from the file. Callers
 * serialise rotations (src/store/signing-key-changes.ts).
 */
export async function rotateSigningKeys(keysDir: string, retireAfterSeconds: number) {
  const path = signingKeysPath(keysDir);
  const file = existsSync(path) ? read(path) : { keys: [] };
  const retireAt = new Date(Date.now() + retireAfterSeconds * 1000).toISOString();
  const kept = live(file).map((k) => (k.retire_at ? k : { ...k, retire_at: retireAt }));
  const added = await newKey();
  write(path, { keys: [added, ...kept] });
  return { kid: added.jwk.kid as string, published: describe([added, ...kept]) };
}
