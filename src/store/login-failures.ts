// Failed password checks, counted per account and per source address over a sliding window,
// for brute-force protection. Rows out of the window stop counting and are purged.
//
// An attempt reserves its place before the password is checked: under a transaction-scoped
// advisory lock per account and per address (held by PostgreSQL, so it covers every
// instance), the window is counted and, if there is room, a failure row is inserted at once.
// A password that turns out right (for a usable account) clears the account's rows again. However many guesses arrive together, no
// more than the limit are ever checked within a window.
import { sql } from 'kysely';
import type { Db } from '../db/database.ts';

export interface LockoutPolicy {
  maxFailures: number;
  maxFailuresPerAddress: number;
  windowSeconds: number;
}

export type LockReason = 'account' | 'address';

export type AttemptReservation =
  /** The attempt may check a password; `id` is its provisional failure row. */
  | { id: string; locked: null; lockedIfFails: LockReason | null }
  | { id: null; locked: LockReason; lockedIfFails: null };

export async function reserveLoginAttempt(db: Db, usernameLower: string, sourceAddress: string, policy: LockoutPolicy): Promise<AttemptReservation> {
  return db.transaction().execute(async (trx) => {
    // Always the account's lock first, then the address's: no two attempts wait on each other
    // in opposite orders.
    await sql`select pg_advisory_xact_lock(hashtextextended(${`km.login.account:${usernameLower}`}, 0)),
                     pg_advisory_xact_lock(hashtextextended(${`km.login.address:${sourceAddress}`}, 0))`.execute(trx);
    const since = sql`clock_timestamp() - make_interval(secs => ${policy.windowSeconds})`;
    const { rows } = await sql<{ account: string; address: string; id: string | null }>`
      with counts as (
        select (select count(*) from login_failures where username_lower = ${usernameLower} and failed_at > ${since}) as account,
               (select count(*) from login_failures where source_address = ${sourceAddress} and failed_at > ${since}) as address
      ), reserved as (
        insert into login_failures (username_lower, source_address, failed_at)
        select ${usernameLower}, ${sourceAddress}, clock_timestamp() from counts
        where account < ${policy.maxFailures} and address < ${policy.maxFailuresPerAddress}
        returning id
      )
      select account, address, (select id from reserved) as id from counts`.execute(trx);
    const { account, address, id } = rows[0]!;
    const accountCount = Number(account);
    const addressCount = Number(address);
    if (id === null) return { id: null, locked: accountCount >= policy.maxFailures ? 'account' : 'address', lockedIfFails: null };
    const lockedIfFails = accountCount + 1 >= policy.maxFailures ? 'account'
      : addressCount + 1 >= policy.maxFailuresPerAddress ? 'address' : null;
    return { id: String(id), locked: null, lockedIfFails };
  });
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
