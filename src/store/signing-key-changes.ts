// Signing key rotations are serialised across every instance and the CLI (the key file is
// read, changed and written whole: two rotations at once would lose one new key, and with
// it whatever that key had already signed), and announced so that every instance reloads.
import { sql } from 'kysely';
import type { Db } from '../db/database.ts';
import { CHANGES_CHANNEL } from '../db/notifications.ts';

/** The notice every instance's engine reloads its signing keys on. */
export const SIGNING_KEYS_TOPIC = 'signing_keys';

export async function changeSigningKeys<T>(db: Db, change: () => Promise<T>): Promise<T> {
  return db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(hashtextextended('km.signing_keys', 0))`.execute(trx);
    const result = await change();
    // Delivered when the transaction commits, after the file is in place.
    await sql`select pg_notify(${CHANGES_CHANNEL}, ${SIGNING_KEYS_TOPIC})`.execute(trx);
    return result;
  });
}
