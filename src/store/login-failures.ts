// Failed password checks, counted per account and per source address over a sliding window,
// for brute-force protection. Rows out of the window stop counting and are purged.
//
// An attempt reserves its place before the password is checked: under a transaction-scoped
// advisory lock per account and per address (held by PostgreSQL, so it covers every
// instance), the window is counted and, if there is room, a row is inserted at once, in
// flight until the check is decided (0007). However many guesses arrive together, no more
// than the limit are ever checked within a window.
//
// A check's outcome is told (its answer sent) only if it was written while its row still held
// its place: the write is conditional on it, under the same advisory locks as a reservation,
// so no reservation can have counted the row as given up before the outcome landed. A check
// whose outcome was never written (its process died, its connection was lost) or was written
// too late revealed nothing: it was no guess. Its row, left in flight, holds its place for
// HOLDS_PLACE_SECONDS and then counts for nothing. The time is the same for every instance
// and every setting: two instances that disagreed on it could each act on its own.
import { randomUUID } from 'node:crypto';
import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/database.ts';
import { isDatabaseUnreachable } from '../db/errors.ts';

export interface LockoutPolicy {
  maxFailures: number;
  maxFailuresPerAddress: number;
  windowSeconds: number;
}

/** How long a row in flight holds its place: far longer than any check takes to be decided and written. */
const HOLDS_PLACE_SECONDS = 30;

/** The instant that many seconds before now, by the database's clock. */
const secondsAgo = (seconds: number) => sql<Date>`clock_timestamp() - make_interval(secs => ${seconds})`;

/** A row of a check in flight that still holds its place: counted by reservations, and the condition of its outcome's write. */
const HOLDING_PLACE = sql<boolean>`in_flight and failed_at > ${secondsAgo(HOLDS_PLACE_SECONDS)}`;

/**
 * Set (for the transaction only) with the statement that takes the account's and address's
 * locks: if this instance goes quiet between that statement and its COMMIT (a network that
 * fails, a process that freezes), PostgreSQL ends the session and frees the locks after a few
 * seconds, rather than after this instance's database_request_timeout (up to 10 minutes),
 * during which every instance would refuse the account and the address as busy. The
 * statements of these transactions follow each other at once; 5 s is never waited normally.
 */
const LOCKS_FREED_IF_QUIET = sql`set_config('idle_in_transaction_session_timeout', '5s', true)`;

/** A row that counts as a failure now. */
const failureInWindow = (policy: LockoutPolicy) =>
  sql<boolean>`not in_flight and failed_at > ${secondsAgo(policy.windowSeconds)}`;

export type LockReason = 'account' | 'address';

export type AttemptReservation =
  /** The attempt may check a password; `id` is its row, in flight until decided; the locks and policy it was reserved under. */
  | { outcome: 'reserved'; id: string; locks: AttemptLocks; policy: LockoutPolicy }
  /** Failures have used up the window. */
  | { outcome: 'locked'; reason: LockReason }
  /** Another attempt holds the count, or the room left is taken by checks still running: try again in a moment. */
  | { outcome: 'busy' };

export async function reserveLoginAttempt(db: Db, username: string, sourceAddress: string, policy: LockoutPolicy): Promise<AttemptReservation> {
  // Named before it is sent: if the connection is lost, the reservation may have committed
  // with no answer, and its id unknown; it is then deleted by this key (0018).
  const attemptKey = randomUUID();
  try {
    return await reserve(db, username, sourceAddress, policy, attemptKey);
  } catch (err) {
    if (isDatabaseUnreachable(err)) releaseInFlight(db, 'attempt_key', attemptKey).catch(() => {});
    throw err;
  }
}

/** What an attempt's advisory locks are keyed by: the account and the address. */
interface AttemptLocks {
  username: string;
  sourceAddress: string;
}

function accountLockKey(username: string) {
  // The account's key is folded by PostgreSQL's lower(), the very function that finds the
  // user (users_username_lower_uq): two spellings that reach one user share one count.
  return sql`hashtextextended('km.login.account:' || lower(${username}), 0)`;
}

function addressLockKey(sourceAddress: string) {
  return sql`hashtextextended(${`km.login.address:${sourceAddress}`}, 0)`;
}

function reserve(db: Db, username: string, sourceAddress: string, policy: LockoutPolicy, attemptKey: string): Promise<AttemptReservation> {
  return db.transaction().execute(async (trx) => {
    const usernameLower = sql`lower(${username})`;
    // Try, never wait, for the locks: a waiting attempt would hold a pooled connection while
    // it waits. Whoever does not get them is told to try again in a moment (busy).
    const { rows: locked } = await sql<{ ok: boolean }>`
      select ${LOCKS_FREED_IF_QUIET} as timeout, pg_try_advisory_xact_lock(${accountLockKey(username)}) and pg_try_advisory_xact_lock(${addressLockKey(sourceAddress)}) as ok`.execute(trx);
    if (!locked[0]?.ok) return { outcome: 'busy' } as const;
    const failed = sql`count(*) filter (where ${failureInWindow(policy)})`;
    // Failures, and checks in flight that may still be told — whatever the window: a window
    // shorter than a row's hold would let an outcome be written for a row no longer counted.
    const placesTaken = sql`count(*) filter (where ${failureInWindow(policy)} or ${HOLDING_PLACE})`;
    const scanned = sql`failed_at > ${secondsAgo(Math.max(policy.windowSeconds, HOLDS_PLACE_SECONDS))}`;
    const { rows } = await sql<{ account_failed: string; account_all: string; address_failed: string; address_all: string; id: string | null }>`
      with account as (
        select ${failed} as failed, ${placesTaken} as all_rows from login_failures where username_lower = ${usernameLower} and ${scanned}
      ), address as (
        select ${failed} as failed, ${placesTaken} as all_rows from login_failures where source_address = ${sourceAddress} and ${scanned}
      ), reserved as (
        insert into login_failures (username_lower, source_address, failed_at, in_flight, attempt_key)
        select ${usernameLower}, ${sourceAddress}, clock_timestamp(), true, ${attemptKey}::uuid from account, address
        where account.all_rows < ${policy.maxFailures} and address.all_rows < ${policy.maxFailuresPerAddress}
        returning id
      )
      select account.failed as account_failed, account.all_rows as account_all, address.failed as address_failed,
             address.all_rows as address_all, (select id from reserved) as id
      from account, address`.execute(trx);
    const r = rows[0]!;
    const [accountFailed, addressFailed] = [Number(r.account_failed), Number(r.address_failed)];
    if (r.id !== null) return { outcome: 'reserved', id: String(r.id), locks: { username, sourceAddress }, policy };
    if (accountFailed >= policy.maxFailures) return { outcome: 'locked', reason: 'account' };
    if (addressFailed >= policy.maxFailuresPerAddress) return { outcome: 'locked', reason: 'address' };
    return { outcome: 'busy' };
  });
}

/** How long an attempt waits for other checks of the same account or address to finish. */
const BUSY_WAIT_MS = 5000;

/** A place in the window, waiting (without holding a connection) while it is taken by checks still running. */
export async function reserveLoginAttemptWhenFree(db: Db, username: string, sourceAddress: string, policy: LockoutPolicy): Promise<AttemptReservation> {
  const deadline = Date.now() + BUSY_WAIT_MS;
  for (;;) {
    const attempt = await reserveLoginAttempt(db, username, sourceAddress, policy);
    if (attempt.outcome !== 'busy' || Date.now() > deadline) return attempt;
    // A password check takes tens of milliseconds; jitter keeps waiters from moving in step.
    await new Promise((resolve) => setTimeout(resolve, 10 + Math.random() * 20));
  }
}

type Reserved = Extract<AttemptReservation, { outcome: 'reserved' }>;

/**
 * The outcome's statement, run only while the attempt's row still holds its place, as
 * PostgreSQL sees it when the outcome arrives, and under the reservation's locks (waited for:
 * a reservation holds them for one short statement), so that no reservation decides between
 * the check and the write. Whether it ran: an outcome that did not may not be told. One
 * arriving late — a retry after a lost connection, a statement PostgreSQL received after the
 * client gave up — changes nothing.
 */
function writeWhileHoldingPlace<R>(db: Db, attempt: Reserved, outcome: (holdsPlace: RawBuilder<boolean>) => RawBuilder<R>): Promise<R | undefined> {
  return settleAttempt(() => db.transaction().execute(async (trx) => {
    await sql`select ${LOCKS_FREED_IF_QUIET}, pg_advisory_xact_lock(${accountLockKey(attempt.locks.username)}), pg_advisory_xact_lock(${addressLockKey(attempt.locks.sourceAddress)})`.execute(trx);
    const { rows } = await outcome(sql<boolean>`id = ${attempt.id} and ${HOLDING_PLACE}`).execute(trx);
    return rows[0];
  }));
}

/** What a failure's write did: nothing (too late), or counted it, locking the account or address when it was the failure that reached the limit. */
export type RecordedFailure = { written: false } | { written: true; locked: LockReason | null };

/**
 * The password was wrong: the attempt's row becomes a failure. Whether it is the one that locks
 * is decided here, not at the reservation: failures written one after another under the locks,
 * each counting those written before it, so that exactly one of several guesses sent together
 * is the one that locks (and is logged, audited and counted as such).
 */
export async function recordLoginFailure(db: Db, attempt: Reserved): Promise<RecordedFailure> {
  const { policy } = attempt;
  // The counts are of the failures before this one (the statement's snapshot), under the locks.
  const before = await writeWhileHoldingPlace(db, attempt, (holdsPlace) => sql<{ account: string; address: string }>`
    with failed as (update login_failures set in_flight = false, failed_at = clock_timestamp() where ${holdsPlace} returning username_lower, source_address)
    select
      (select count(*) from login_failures l where l.username_lower = f.username_lower and ${failureInWindow(policy)}) as account,
      (select count(*) from login_failures l where l.source_address = f.source_address and ${failureInWindow(policy)}) as address
    from failed f`);
  if (!before) return { written: false };
  const reaches = (count: string, limit: number) => Number(count) < limit && Number(count) + 1 >= limit;
  const locked = reaches(before.account, policy.maxFailures) ? 'account'
    : reaches(before.address, policy.maxFailuresPerAddress) ? 'address' : null;
  return { written: true, locked };
}

/**
 * A successful sign-in clears the account's failures and its own row (the address's other
 * rows still count). Other checks of the account still in flight keep their rows. False: too
 * late, nothing written.
 */
export async function clearLoginFailures(db: Db, username: string, attempt: Reserved): Promise<boolean> {
  const own = await writeWhileHoldingPlace(db, attempt, (holdsPlace) => sql<{ id: string }>`
    with own as (delete from login_failures where ${holdsPlace} returning id),
      failures as (delete from login_failures where username_lower = lower(${username}) and not in_flight and exists (select from own))
    select id from own`);
  return own !== undefined;
}

/**
 * The attempt ended before its password was checked (the user could not be read): it was no
 * guess, so its row leaves the window instead of staying in flight.
 */
export function releaseLoginAttempt(db: Db, id: string): Promise<void> {
  return releaseInFlight(db, 'id', id);
}

/** Deletes a reserved row still in flight, found by its id or (its id unknown) its attempt key. */
async function releaseInFlight(db: Db, by: 'id' | 'attempt_key', value: string): Promise<void> {
  await settleAttempt(() => db.deleteFrom('login_failures').where(by, '=', value).where('in_flight', '=', true).execute());
}

const SETTLE_RETRY_DELAYS_MS = [200, 1000, 5000, 20_000];

/**
 * An attempt's outcome should reach its row: a row left in flight takes a place in the window
 * for HOLDS_PLACE_SECONDS, so a few sign-ins whose connections were lost (PostgreSQL
 * restarting, sessions terminated) would leave an account no room for that long. A write lost
 * that way is tried again in the background (it changes nothing once the row has given up its
 * place); the caller still gets the error (its request fails with a 503, as any other whose
 * database went away).
 */
async function settleAttempt<T>(write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (err) {
    if (isDatabaseUnreachable(err)) retrySettling(write, 0);
    throw err;
  }
}

function retrySettling(write: () => Promise<unknown>, attempt: number): void {
  const delay = SETTLE_RETRY_DELAYS_MS[attempt];
  if (delay === undefined) return;
  setTimeout(() => {
    write().catch((err: unknown) => {
      if (isDatabaseUnreachable(err)) retrySettling(write, attempt + 1);
    });
  }, delay).unref();
}

/**
 * The lockout account of every name no user (or operator) can have: the lockout is keyed by
 * what was typed, and such a name could otherwise reach accounts it must never touch (one
 * with control characters) or not be storable at all (one too long for the index). Such names
 * share one count of their own, which locks nobody out; the per-address count applies as usual.
 */
export const IMPOSSIBLE_NAME_ACCOUNT = '\u0002impossible-username';

/**
 * The lockout account of a management user: counted apart from OAuth users, whose names
 * cannot hold a control character (checkUsername), so neither can lock out the other.
 */
export function managementAccountKey(username: string): string {
  return `\u0001management:${username}`;
}

/**
 * The source address of a management sign-in, as counted: apart from the public listener's,
 * so that failed management sign-ins (an operator's typos, a scraper's stale password) never
 * count towards, or lock, the OAuth sign-ins of users behind the same address.
 */
export function managementAddressKey(address: string): string {
  return `\u0001management:${address}`;
}

/** Failed sign-ins counted against an account within the window. */
export async function countLoginFailures(db: Db, username: string, windowSeconds: number): Promise<number> {
  const { n } = await db.selectFrom('login_failures').select((eb) => eb.fn.countAll<string>().as('n'))
    .where('username_lower', '=', sql<string>`lower(${username})`).where('in_flight', '=', false)
    .where('failed_at', '>', secondsAgo(windowSeconds)).executeTakeFirstOrThrow();
  return Number(n);
}

/** Unlocks an account: every row of the username goes, in flight or not. */
export async function deleteAllLoginFailures(db: Db, username: string): Promise<number> {
  const r = await db.deleteFrom('login_failures').where('username_lower', '=', sql<string>`lower(${username})`).executeTakeFirst();
  return Number(r.numDeletedRows);
}

export async function purgeOldLoginFailures(db: Db, windowSeconds: number): Promise<number> {
  // Never a row that still holds its place, however short the window.
  const r = await db.deleteFrom('login_failures')
    .where('failed_at', '<', sql<Date>`now() - make_interval(secs => ${Math.max(windowSeconds, HOLDS_PLACE_SECONDS)})`).executeTakeFirst();
  return Number(r.numDeletedRows);
}
