// Remembered consent: the scopes a user let a client have.
import { sql } from 'kysely';
import type { Db } from '../db/database.ts';

export async function findConsent(db: Db, userId: string, clientId: string): Promise<string[] | undefined> {
  const row = await db.selectFrom('consents').select('scopes')
    .where('user_id', '=', userId).where('client_id', '=', clientId).executeTakeFirst();
  return row?.scopes;
}

/** Adds scopes to what the user already agreed to for this client. */
export async function rememberConsent(db: Db, userId: string, clientId: string, scopes: string[]): Promise<void> {
  await db.insertInto('consents').values({ user_id: userId, client_id: clientId, scopes })
    .onConflict((oc) => oc.columns(['user_id', 'client_id']).doUpdateSet({
      scopes: sql<string[]>`array(select distinct unnest(consents.scopes || excluded.scopes) order by 1)`,
      updated_at: new Date(),
    }))
    .execute();
}

export async function forgetConsent(db: Db, userId: string, clientId: string): Promise<boolean> {
  const r = await db.deleteFrom('consents').where('user_id', '=', userId).where('client_id', '=', clientId).executeTakeFirst();
  return r.numDeletedRows > 0n;
}
