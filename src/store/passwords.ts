// User passwords: argon2id with configurable parameters (OWASP: m=19 MiB, t=2, p=1). A hash
// made with other parameters still verifies, and is replaced on the next successful sign-in
// when the current ones are stronger.
import argon2 from 'argon2';
import type { Config } from '../config/index.ts';

export interface PasswordParams {
  memoryCost: number;
  timeCost: number;
  parallelism: number;
}

export const MAX_PASSWORD_BYTES = 1024;

export function passwordParams(config: Pick<Config, 'passwordHashMemoryKib' | 'passwordHashIterations' | 'passwordHashParallelism'>): PasswordParams {
  return { memoryCost: config.passwordHashMemoryKib, timeCost: config.passwordHashIterations, parallelism: config.passwordHashParallelism };
}

/**
 * node-argon2 writes the parameters m,p,t; the PHC string format and libargon2's decoder want
 * m,t,p. Writing them in that order lets any argon2 tool verify our hashes (admin scripts).
 */
function inPhcOrder(hash: string): string {
  return hash.replace(/\$m=(\d+),p=(\d+),t=(\d+)\$/, (_all, m, p, t) => `$m=${m},t=${t},p=${p}$`);
}

export async function hashPassword(password: string, params: PasswordParams): Promise<string> {
  return inPhcOrder(await argon2.hash(password, { type: argon2.argon2id, ...params }));
}

/**
 * A hash whose salt is given rather than random, for a secret that several processes hash
 * independently and must agree on (a management user's password read from a file or the
 * environment: every instance must derive the same hash, or a token one issued would look
 * issued on other credentials to the next).
 */
export async function hashPasswordWithSalt(password: string, params: PasswordParams, salt: Buffer): Promise<string> {
  return inPhcOrder(await argon2.hash(password, { type: argon2.argon2id, ...params, salt }));
}

export async function verifyPassword(hash: string, password: string): Promise<boolean> {
  try {
    return await argon2.verify(hash, password);
  } catch {
    return false; // a malformed stored hash never matches
  }
}

/**
 * Whether a stored hash should be replaced by one with `params`: when it is not argon2id, or
 * when `params` cost more and nothing less (memory, iterations). Never for weaker parameters:
 * an instance started with lower settings by mistake (or during a change) must not weaken
 * the hashes of everyone who signs in through it.
 */
export function hashNeedsUpgrade(hash: string, params: PasswordParams): boolean {
  if (!hash.startsWith('$argon2id$')) return true;
  const stored = storedParams(hash);
  if (!stored) return argon2.needsRehash(hash, params);
  if (stored.version < ARGON2_VERSION) return true;
  const notWeaker = params.memoryCost >= stored.memoryCost && params.timeCost >= stored.timeCost;
  return notWeaker && (params.memoryCost > stored.memoryCost || params.timeCost > stored.timeCost);
}

/** argon2 1.3, the version every hash made here has. */
const ARGON2_VERSION = 0x13;

/** The version, memory and iterations of a PHC argon2 string, in whatever order m, t and p are written. */
function storedParams(hash: string): { version: number; memoryCost: number; timeCost: number } | undefined {
  const [, , version, params] = hash.split('$');
  const v = /^v=(\d+)$/.exec(version ?? '');
  const m = /(?:^|,)m=(\d+)(?:,|$)/.exec(params ?? '');
  const t = /(?:^|,)t=(\d+)(?:,|$)/.exec(params ?? '');
  if (!v || !m || !t) return undefined;
  return { version: Number(v[1]), memoryCost: Number(m[1]), timeCost: Number(t[1]) };
}

const dummyHashes = new Map<string, Promise<string>>();

/**
 * A hash of a random password with the current parameters. Checking a password against it
 * when the username does not exist takes as long as a real check, so timing reveals nothing.
 */
export function dummyHash(params: PasswordParams): Promise<string> {
  const key = `${params.memoryCost}/${params.timeCost}/${params.parallelism}`;
  let hash = dummyHashes.get(key);
  if (!hash) {
    hash = hashPassword(crypto.randomUUID(), params);
    dummyHashes.set(key, hash);
  }
  return hash;
}

export class PasswordPolicyError extends Error {}

/** What any stored password must satisfy: not empty, not absurdly long, no NUL bytes. */
export function checkPasswordAcceptable(password: string): void {
  if ([...password].length < 8) throw new PasswordPolicyError('password must be at least 8 characters');
  if (password.includes('\uFFFD')) throw new PasswordPolicyError('password is not valid UTF-8 text');
  if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) throw new PasswordPolicyError(`password must be at most ${MAX_PASSWORD_BYTES} bytes`);
  if (password.includes('\0')) throw new PasswordPolicyError('password must not contain NUL bytes');
}
