// The revocation feed's outbox (revocation_events, 0010): written by triggers whenever a live
// access token is revoked or deleted, read by every instance's feed in id order. Ids are
// handed out in commit order, so "after id N" never skips an event that commits later.
import { sql } from 'kysely';
import type { Db } from '../db/database.ts';
import type { RevocationEventsTable } from '../db/types.ts';
import type { Selectable } from 'kysely';

export type RevocationEvent = Selectable<RevocationEventsTable>;

/** The id of the newest event (0 when there is none): where a new subscriber starts. */
export async function latestRevocationEventId(db: Db): Promise<string> {
  const row = await db.selectFrom('revocation_events').select((eb) => eb.fn.max('id').as('id')).executeTakeFirst();
  return String(row?.id ?? '0');
}

/** Events after `afterId` whose token has not expired yet, oldest first. */
export async function revocationEventsAfter(db: Db, afterId: string, limit: number): Promise<RevocationEvent[]> {
  return db.selectFrom('revocation_events').selectAll()
    .where('id', '>', afterId).where('expires_at', '>', sql<Date>`now()`)
    .orderBy('id').limit(limit).execute();
}

/** Events of tokens that have expired anyway: no gateway needs them any more. */
export async function purgeExpiredRevocationEvents(db: Db): Promise<number> {
  const r = await db.deleteFrom('revocation_events').where('expires_at', '<=', sql<Date>`now()`).executeTakeFirst();
  return Number(r.numDeletedRows);
}
