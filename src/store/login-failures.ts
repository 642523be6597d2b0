// Failed password checks, counted per account and per source address over a sliding window,
// for brute-force protection. Rows out of the window stop counting and are purged.
//
// An attempt reserves its place before the password is checked: under a transaction-scoped
// advisory lock per account and per address (held by PostgreSQL, so it covers every
// instance), the window is counted and, if there is room, a row is inserted at once, in
// flight until the check is decided (0007). However many guesses arrive together, no more
// than the limit are ever checked within a window.
//
// A check's outcome is told (its answer sent) only once it is written, and only if it was
// decided within decideWithinSeconds of its reservation. So a check whose outcome was never
// written — its process died, its connection was lost — or that was decided too late revealed
// nothing: it was no guess. Its row, left in flight, holds its place until no told check can
// still be running behind it (abandonedAfterSeconds), and then counts for nothing.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { sql } from 'kysely';
import type { Db } from '../db/database.ts';
import { isDatabaseUnreachable } from '../db/errors.ts';

export interface LockoutPolicy {
  maxFailures: number;
  maxFailuresPerAddress: number;
  windowSeconds: number;
  /** database_request_timeout: the longest wait for a connection, and the longest statement. */
  statementTimeoutSeconds: number;
}

/**
 * How long a check may take from its reservation to its decision and still be told: reading
 * the user (a connection and a statement) and the password's hash, with room for a queue of
 * hashes on a busy server.
 */
function decideWithinSeconds(policy: LockoutPolicy): number {
  return 2 * policy.statementTimeoutSeconds + 10;
}

/**
 * When a row still in flight stops holding its place: past the latest moment a check decided
 * in time can have its outcome written (a connection and a statement after its decision), with
 * a margin.
 */
export function abandonedAfterSeconds(policy: LockoutPolicy): number {
  return decideWithinSeconds(policy) + 2 * policy.statementTimeoutSeconds + 5;
}

export type LockReason = 'account' | 'address';

export type AttemptReservation =
  /**
   * The attempt may check a password; `id` is its row, in flight until decided. `decideBy`
   * (performance.now() milliseconds): a decision after it must not be told (decidedInTime).
   */
  | { outcome: 'reserved'; id: string; lockedIfFails: LockReason | null; decideBy: number; holdsPlaceSeconds: number }
  /** Failures have used up the window. */
  | { outcome: 'locked'; reason: LockReason }
  /** Another attempt holds the count, or the room left is taken by checks still running: try again in a moment. */
  | { outcome: 'busy' };

export async function reserveLoginAttempt(db: Db, username: string, sourceAddress: string, policy: LockoutPolicy): Promise<AttemptReservation> {
  // Named before it is sent: if the connection is lost, the reservation may have committed
  // with no answer, and its id unknown; it is then deleted by this key (0018).
  const attemptKey = randomUUID();
  // Taken before the reservation is sent: its row's age, counted by PostgreSQL from when the
  // row was written, is never more than the time since.
  const decideBy = performance.now() + decideWithinSeconds(policy) * 1000;
  try {
    return await reserve(db, username, sourceAddress, policy, attemptKey, decideBy);
  } catch (err) {
    if (isDatabaseUnreachable(err)) releaseInFlight(db, 'attempt_key', attemptKey).catch(() => {});
    throw err;
  }
}

function reserve(db: Db, username: string, sourceAddress: string, policy: LockoutPolicy, attemptKey: string, decideBy: number): Promise<AttemptReservation> {
  return db.transaction().execute(async (trx) => {
    // The account's key is folded by PostgreSQL's lower(), the very function that finds the
    // user (users_username_lower_uq): two spellings that reach one user share one count.
    const usernameLower = sql`lower(${username})`;
    // Try, never wait, for the locks: a waiting attempt would hold a pooled connection while
    // it waits. Whoever does not get them is told to try again in a moment (busy).
    const { rows: locked } = await sql<{ ok: boolean }>`
      select pg_try_advisory_xact_lock(hashtextextended('km.login.account:' || ${usernameLower}, 0))
         and pg_try_advisory_xact_lock(hashtextextended(${`km.login.address:${sourceAddress}`}, 0)) as ok`.execute(trx);
    if (!locked[0]?.ok) return { outcome: 'busy' } as const;
    const since = sql`clock_timestamp() - make_interval(secs => ${policy.windowSeconds})`;
    const failed = sql`count(*) filter (where not in_flight)`;
    // Failures, and checks in flight that may still be told.
    const placesTaken = sql`count(*) filter (where not in_flight or failed_at > clock_timestamp() - make_interval(secs => ${abandonedAfterSeconds(policy)}))`;
    const { rows } = await sql<{ account_failed: string; account_all: string; address_failed: string; address_all: string; id: string | null }>`
      with account as (
        select ${failed} as failed, ${placesTaken} as all_rows from login_failures where username_lower = ${usernameLower} and failed_at > ${since}
      ), address as (
        select ${failed} as failed, ${placesTaken} as all_rows from login_failures where source_address = ${sourceAddress} and failed_at > ${since}
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
    if (r.id !== null) {
      const lockedIfFails = accountFailed + 1 >= policy.maxFailures ? 'account'
        : addressFailed + 1 >= policy.maxFailuresPerAddress ? 'address' : null;
      return { outcome: 'reserved', id: String(r.id), lockedIfFails, decideBy, holdsPlaceSeconds: abandonedAfterSeconds(policy) };
    }
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

/**
 * Whether a decided check may be told. If not, its row may already have stopped holding its
 * place (others may have been checked in its stead), so its outcome is not written either:
 * the row is released and the caller refuses as for any other refusal, whatever the password.
 */
export function decidedInTime(attempt: { decideBy: number }): boolean {
  return performance.now() <= attempt.decideBy;
}

type Reserved = Extract<AttemptReservation, { outcome: 'reserved' }>;

/**
 * Whether the attempt's row still holds its place, as PostgreSQL sees it when the outcome
 * arrives. An outcome written later — a retry after a lost connection, a statement PostgreSQL
 * received late — would change what the account's lock state tells about a check that was
 * never told, after another was checked in its place: it changes nothing.
 */
function holdsPlace(attempt: Reserved) {
  return sql<boolean>`id = ${attempt.id} and in_flight and failed_at > clock_timestamp() - make_interval(secs => ${attempt.holdsPlaceSeconds})`;
}

/** The password was wrong: the attempt's row becomes a failure. */
export function recordLoginFailure(db: Db, attempt: Reserved): Promise<void> {
  return settleAttempt(() => sql`update login_failures set in_flight = false, failed_at = clock_timestamp() where ${holdsPlace(attempt)}`.execute(db));
}

/**
 * A successful sign-in clears the account's failures and its own row (the address's other
 * rows still count), in one statement, and only while its row still holds its place. Other
 * checks of the account still in flight keep their rows.
 */
export function clearLoginFailures(db: Db, username: string, attempt: Reserved): Promise<void> {
  return settleAttempt(() => sql`
    with own as (delete from login_failures where ${holdsPlace(attempt)} returning id)
    delete from login_failures where username_lower = lower(${username}) and not in_flight and exists (select from own)`.execute(db));
}

/**
 * The attempt ended before its password was checked (the user could not be read): it was no
 * guess, so its row leaves the window instead of staying in flight.
 */
export function releaseLoginAttempt(db: Db, id: string): Promise<void> {
  return releaseInFlight(db, 'id', id);
}

/** Deletes a reserved row still in flight, found by its id or (its id unknown) its attempt key. */
function releaseInFlight(db: Db, by: 'id' | 'attempt_key', value: string): Promise<void> {
  return settleAttempt(() => db.deleteFrom('login_failures').where(by, '=', value).where('in_flight', '=', true).execute());
}

const SETTLE_RETRY_DELAYS_MS = [200, 1000, 5000, 20_000];

/**
 * An attempt's outcome must reach its row: a row left in flight takes a place in the window
 * at once and, after ABANDONED_AFTER_SECONDS, counts as a failure, so a few sign-ins whose
 * connections were lost (PostgreSQL restarting, sessions terminated) would lock an account.
 * A write lost that way is tried again in the background; the caller still gets the error
 * (its request fails with a 503, as any other whose database went away).
 */
async function settleAttempt(write: () => Promise<unknown>): Promise<void> {
  try {
    await write();
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
 * The lockout account of a management user: counted apart from OAuth users, whose names
 * cannot hold a control character (checkUsername), so neither can lock out the other.
 */
export function managementAccountKey(username: string): string {
  return `\u0001management:${username}`;
}

/** Failed sign-ins counted against an account within the window. */
export async function countLoginFailures(db: Db, username: string, windowSeconds: number): Promise<number> {
  const { n } = await db.selectFrom('login_failures').select((eb) => eb.fn.countAll<string>().as('n'))
    .where('username_lower', '=', sql<string>`lower(${username})`).where('in_flight', '=', false)
    .where('failed_at', '>', sql<Date>`clock_timestamp() - make_interval(secs => ${windowSeconds})`).executeTakeFirstOrThrow();
  return Number(n);
}

/** Unlocks an account: every row of the username goes, in flight or not. */
export async function deleteAllLoginFailures(db: Db, username: string): Promise<number> {
  const r = await db.deleteFrom('login_failures').where('username_lower', '=', sql<string>`lower(${username})`).executeTakeFirst();
  return Number(r.numDeletedRows);
}

export async function purgeOldLoginFailures(db: Db, windowSeconds: number): Promise<number> {
  const r = await db.deleteFrom('login_failures')
    .where('failed_at', '<', sql<Date>`now() - make_interval(secs => ${windowSeconds})`).executeTakeFirst();
  return Number(r.numDeletedRows);
}
