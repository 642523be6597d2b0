// The signing key set, kept as a private JWKS file under keys/. The newest key signs; older
// keys stay published in /jwks until everything they signed has expired, then drop out.
//
// Each key carries its own algorithm (`alg`), and whatever a key signs is signed with that
// algorithm: JWT access tokens, ID tokens and JWT introspection answers follow the key that
// signs, never the setting. The setting (signing_algorithm) decides only which algorithm a new
// key gets, so a key set may mix algorithms while an old key is being retired.
import { randomUUID } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { exportJWK, generateKeyPair, type GenerateKeyPairOptions, type JWK } from 'jose';
import { SIGNING_ALGORITHMS, type SigningAlgorithm } from '../config/index.ts';
import { KeyFileError, readKeyFile } from './key-file.ts';
import { jwkThumbprint, signingKeyLabel, signingKeyMaterial } from './signing-key-material.ts';

export { SIGNING_ALGORITHMS, type SigningAlgorithm };

export const DEFAULT_SIGNING_ALGORITHM: SigningAlgorithm = 'RS256';

const KEY_PARAMETERS: Record<SigningAlgorithm, GenerateKeyPairOptions> = {
  RS256: { modulusLength: 2048 },
  PS256: { modulusLength: 2048 },
  ES256: {},
  // jose also knows EdDSA over Ed448; verifiers broadly support only Ed25519.
  EdDSA: { crv: 'Ed25519' },
};

export function isSigningAlgorithm(value: unknown): value is SigningAlgorithm {
  return (SIGNING_ALGORITHMS as readonly unknown[]).includes(value);
}

/**
 * The algorithm a key signs with. Keys written before keys carried `alg` (or edited by hand
 * without it) are RSA keys of the time, which signed RS256.
 */
export function signingAlgorithmOf(jwk: JWK, label = signingKeyLabel(jwk.kid, 0)): SigningAlgorithm {
  const alg = jwk.alg ?? DEFAULT_SIGNING_ALGORITHM;
  if (!isSigningAlgorithm(alg)) throw new KeyFileError(`${label}: unsupported alg ${String(alg).slice(0, 40)} (expected one of ${SIGNING_ALGORITHMS.join(', ')})`);
  return alg;
}

/** A new private signing JWK (kid, alg, use set), as the key set stores it. */
export async function generateSigningKey(alg: SigningAlgorithm): Promise<JWK> {
  const { privateKey } = await generateKeyPair(alg, { ...KEY_PARAMETERS[alg], extractable: true });
  return { ...(await exportJWK(privateKey)), kid: randomUUID(), alg, use: 'sig' };
}

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

async function newKey(alg: SigningAlgorithm): Promise<StoredKey> {
  return { jwk: await generateSigningKey(alg), created_at: new Date().toISOString(), retire_at: null };
}

function read(path: string): KeyFile {
  const parsed = readKeyFile(path) as KeyFile;
  if (!Array.isArray(parsed?.keys) || parsed.keys.length === 0) throw new KeyFileError(`${path}: no keys`);
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

/**
 * The keys still published, each checked to sign its alg verifiably (a key without kid gets its
 * RFC 7638 thumbprint, as oidc-provider would name it, so that everything that names the key
 * agrees). Whatever reads the file — start, reload, rotation, listing — refuses a file that
 * cannot be used, rather than serve, keep or write around a key that would not sign.
 */
function live(file: KeyFile, now = Date.now()): StoredKey[] {
  const kids = new Set<string>();
  return file.keys.flatMap((k, position) => {
    const label = signingKeyLabel(k?.jwk?.kid, position);
    if (typeof k?.jwk !== 'object' || k.jwk === null || Array.isArray(k.jwk)) throw new KeyFileError(`${label}: "jwk" is not a JWK object`);
    if (k.retire_at && !(Date.parse(k.retire_at) > now)) return [];
    if (k.jwk.kid !== undefined && (typeof k.jwk.kid !== 'string' || !k.jwk.kid)) throw new KeyFileError(`${label}: kid is not a non-empty string`);
    const { publicKey } = signingKeyMaterial(k.jwk, signingAlgorithmOf(k.jwk, label), label);
    const kid = k.jwk.kid ?? jwkThumbprint(publicKey);
    if (kids.has(kid)) throw new KeyFileError(`${label}: another published key has the same kid`);
    kids.add(kid);
    return [{ ...k, jwk: { ...k.jwk, kid } }];
  });
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
    kid: k.jwk.kid as string, alg: k.jwk.alg ?? DEFAULT_SIGNING_ALGORITHM, created_at: k.created_at, retire_at: k.retire_at, signing: k.retire_at === null,
  }));
}

/**
 * The private JWKS for oidc-provider: the signing key first, then keys still being retired.
 * `algorithm` is that of the first key, when there is none yet; an existing set is returned
 * as it is (prepareSigningKeys, src/store/signing-key-changes.ts, also replaces a signing key
 * of another algorithm).
 */
export async function loadOrCreateSigningKeys(keysDir: string, algorithm: SigningAlgorithm = DEFAULT_SIGNING_ALGORITHM): Promise<{ keys: JWK[]; created: boolean }> {
  const path = signingKeysPath(keysDir);
  if (!existsSync(path)) {
    const file = { keys: [await newKey(algorithm)] };
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
 * Adds a new signing key of `algorithm` (unset: that of the key it replaces), whatever the
 * algorithm of the others. The previous one stays published for `retireAfterSeconds` (the
 * longest lifetime of anything it signed), after which it is dropped from the file. Callers
 * serialise rotations (src/store/signing-key-changes.ts).
 */
export async function rotateSigningKeys(keysDir: string, retireAfterSeconds: number, algorithm?: SigningAlgorithm) {
  const path = signingKeysPath(keysDir);
  const file = existsSync(path) ? read(path) : { keys: [] };
  const retireAt = new Date(Date.now() + retireAfterSeconds * 1000).toISOString();
  const current = live(file);
  const kept = current.map((k) => (k.retire_at ? k : { ...k, retire_at: retireAt }));
  const added = await newKey(algorithm ?? (current[0] ? signingAlgorithmOf(current[0].jwk) : DEFAULT_SIGNING_ALGORITHM));
  write(path, { keys: [added, ...kept] });
  return { kid: added.jwk.kid as string, published: describe([added, ...kept]) };
}
