// Signing key rotations are serialised across every instance and the CLI (the key file is
// read, changed and written whole: two rotations at once would lose one new key, and with
// it whatever that key had already signed), and announced so that every instance reloads.
import { sql } from 'kysely';
import type { JWK } from 'jose';
import type { Db } from '../db/database.ts';
import { CHANGES_CHANNEL } from '../db/notifications.ts';
import {
  loadOrCreateSigningKeys, readSigningKeys, retirementDelaySeconds, rotateSigningKeys, signingAlgorithmOf, type PublishedKey, type SigningAlgorithm,
} from '../keys/signing-keys.ts';

/** The notice every instance's engine reloads its signing keys on. */
export const SIGNING_KEYS_TOPIC = 'signing_keys';

async function underRotationLock<T>(db: Db, change: () => Promise<{ result: T; changed: boolean }>): Promise<T> {
  return db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(hashtextextended('km.signing_keys', 0))`.execute(trx);
    const { result, changed } = await change();
    // Delivered when the transaction commits, after the file is in place.
    if (changed) await sql`select pg_notify(${CHANGES_CHANNEL}, ${SIGNING_KEYS_TOPIC})`.execute(trx);
    return result;
  });
}

export async function changeSigningKeys<T>(db: Db, change: () => Promise<T>): Promise<T> {
  return underRotationLock(db, async () => ({ result: await change(), changed: true }));
}

export interface PreparedSigningKeys {
  /** The private JWKS to serve with, the signing key first. */
  keys: JWK[];
  /** No key set existed: one was made, of the configured algorithm. */
  created: boolean;
  /** The key that signed until now, when it was of another algorithm and a new key replaced it. */
  replaced: PublishedKey | null;
  /** What is published now (after a replacement: the new key, and the replaced one until its retire_at). */
  published: PublishedKey[];
}

/**
 * The key set an instance starts with. Absent, it is made with the configured algorithm. If the
 * key that signs is of another algorithm (the setting changed, or a one-off rotation chose
 * another), a new key of the configured one takes over, exactly as a rotation: the old key
 * stays published until what it signed has expired, and running instances are told.
 *
 * The check is repeated under the rotation lock, so instances starting together with the same
 * setting make one new key between them: the first replaces the key, the others find it done.
 * When the signing key already matches — every start but the first after a change — no
 * statement is sent.
 */
export async function prepareSigningKeys(
  db: Db,
  config: { keysDir: string; signingAlgorithm: SigningAlgorithm; accessTokenTtl: number; clockSkew: number },
): Promise<PreparedSigningKeys> {
  const { keysDir, signingAlgorithm: algorithm } = config;
  const first = await loadOrCreateSigningKeys(keysDir, algorithm);
  const matches = (keys: JWK[]) => keys.length > 0 && signingAlgorithmOf(keys[0]!) === algorithm;
  if (matches(first.keys)) return { ...first, replaced: null, published: readSigningKeys(keysDir).published };

  return underRotationLock(db, async () => {
    const current = readSigningKeys(keysDir);
    if (matches(current.keys)) return { result: { keys: current.keys, created: first.created, replaced: null, published: current.published }, changed: false };
    const retireAfter = retirementDelaySeconds(config.accessTokenTtl, config.clockSkew);
    const { published } = await rotateSigningKeys(keysDir, retireAfter, algorithm);
    const replaced = published.find((k) => k.kid === current.keys[0]?.kid) ?? null;
    return { result: { keys: readSigningKeys(keysDir).keys, created: first.created, replaced, published }, changed: true };
  });
}
