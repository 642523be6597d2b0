// Failed password checks, counted per account and per source address over a sliding window,
// for brute-force protection. Rows out of the window stop counting and are purged.
import { sql } from 'kysely';
import type { Db } from '../db/database.ts';

export interface LockoutPolicy {
  maxFailures: number;
  maxFailuresPerAddress: number;
  windowSeconds: number;
}

export type LockReason = 'account' | 'address' | null;

/** Whether the account or the address has used up its failures within the window. */
export async function lockoutState(db: Db, usernameLower: string, sourceAddress: string, policy: LockoutPolicy): Promise<LockReason> {
  const since = sql<Date>`now() - make_interval(secs => ${policy.windowSeconds})`;
  const row = await db.selectNoFrom((eb) => [
    eb.selectFrom('login_failures').select((e) => e.fn.countAll<string>().as('n'))
      .where('username_lower', '=', usernameLower).where('failed_at', '>', since).as('account'),
    eb.selectFrom('login_failures').select((e) => e.fn.countAll<string>().as('n'))
      .where('source_address', '=', sourceAddress).where('failed_at', '>', since).as('address'),
  ]).executeTakeFirstOrThrow();
  if (Number(row.account) >= policy.maxFailures) return 'account';
  if (Number(row.address) >= policy.maxFailuresPerAddress) return 'address';
  return null;
}

export async function recordLoginFailure(db: Db, usernameLower: string, sourceAddress: string): Promise<void> {
  await db.insertInto('login_failures').values({ username_lower: usernameLower, source_address: sourceAddress }).execute();
}

/** A successful sign-in clears the account's failures (the address's still count). */
export async function clearLoginFailures(db: Db, usernameLower: string): Promise<void> {
  await db.deleteFrom('login_failures').where('username_lower', '=', usernameLower).execute();
}

export async function purgeOldLoginFailures(db: Db, windowSeconds: number): Promise<number> {
  const r = await db.deleteFrom('login_failures')
    .where('failed_at', '<', sql<Date>`now() - make_interval(secs => ${windowSeconds})`).executeTakeFirst();
  return Number(r.numDeletedRows);
}
