// The management token store: one row per token issued by GET /management/login, by digest,
// shared by every instance. Its size is bounded; a full store evicts the least recently used
// token or refuses the login, as configured.
import { sql } from 'kysely';
import type { Db } from '../db/database.ts';
import { tokenDigest } from './tokens.ts';

export interface StoredManagementToken {
  username: string;
  roles: string[];
  /** Digest of the user's credentials and roles at issue (see 0008). */
  credentialSha256: string;
}

export interface TokenStorePolicy {
  maxSize: number;
  removeOldestOnOverflow: boolean;
}

/** What a login did to the store: stored its token (evicting others' to make room), or found it full. */
export type StoreOutcome = { outcome: 'stored'; evicted: string[] } | { outcome: 'full' };

/** Stores a new token; 'full' when the store is full and eviction is off. `evicted`: whose tokens made room. */
export async function storeManagementToken(
  db: Db,
  token: string,
  { username, roles, credentialSha256, expiresAt }: StoredManagementToken & { expiresAt: Date },
  policy: TokenStorePolicy,
): Promise<StoreOutcome> {
  return db.transaction().execute(async (trx) => {
    // One login at a time decides what the store holds, across instances.
    await sql`select pg_advisory_xact_lock(hashtextextended('km.management.token_store', 0))`.execute(trx);
    const live = (eb: typeof trx) => eb.selectFrom('management_tokens')
      .where('revoked_at', 'is', null).where('expires_at', '>', sql<Date>`now()`);
    const { n } = await live(trx).select((e) => e.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
    const overflow = Number(n) - policy.maxSize + 1;
    let evicted: string[] = [];
    if (overflow > 0) {
      if (!policy.removeOldestOnOverflow) return { outcome: 'full' };
      // The user's own least recently used tokens go first; then those of whoever holds the
      // most. So neither one user's logins nor several users' together (two auditors, say) can
      // push out an operator who holds few: only when every user holds as few.
      const oldest = await live(trx).select(['id_sha256', 'username'])
        .orderBy(sql`username = ${username}`, 'desc')
        .orderBy(sql`count(*) over (partition by username)`, 'desc')
        .orderBy('last_used_at').limit(overflow).execute();
      await trx.updateTable('management_tokens').set({ revoked_at: sql`now()` })
        .where('id_sha256', 'in', oldest.map((o) => o.id_sha256)).execute();
      evicted = oldest.map((o) => o.username).filter((name) => name !== username);
    }
    await trx.insertInto('management_tokens')
      .values({ id_sha256: tokenDigest(token), username, roles, credential_sha256: credentialSha256, expires_at: expiresAt }).execute();
    return { outcome: 'stored', evicted };
  });
}

/** The live token's holder, marking it used (for least-recently-used eviction); undefined otherwise. */
export async function useManagementToken(db: Db, token: string): Promise<StoredManagementToken | undefined> {
  return db.updateTable('management_tokens')
    .set({ last_used_at: sql`now()` })
    .where('id_sha256', '=', tokenDigest(token))
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', sql<Date>`now()`)
    .returning(['username', 'roles', 'credential_sha256 as credentialSha256'])
    .executeTakeFirst();
}

export async function revokeManagementToken(db: Db, token: string): Promise<boolean> {
  const r = await db.updateTable('management_tokens').set({ revoked_at: sql`now()` })
    .where('id_sha256', '=', tokenDigest(token)).where('revoked_at', 'is', null).executeTakeFirst();
  return r.numUpdatedRows > 0n;
}

/** Revokes every live token of a management user (an operator who left, a leaked token); how many. */
export async function revokeManagementTokensOfUser(db: Db, username: string): Promise<number> {
  const r = await db.updateTable('management_tokens').set({ revoked_at: sql`now()` })
    .where('username', '=', username).where('revoked_at', 'is', null).where('expires_at', '>', sql<Date>`now()`).executeTakeFirst();
  return Number(r.numUpdatedRows);
}

/**
 * Revokes every live token not issued on the credentials given (each user's name and the
 * digest of its password hash and roles, as now configured): those of users removed from the
 * configuration or changed in it. A bearer of such a token is refused already; revoking it
 * keeps it refused when the configuration is put back, or a removed user is added again with
 * the same password, whose hash can be the same as before. How many were revoked, per user.
 */
export async function revokeManagementTokensIssuedOnOtherCredentials(
  db: Db, current: { username: string; credentialSha256: string }[],
): Promise<Map<string, number>> {
  const { rows } = await sql<{ username: string; n: string }>`
    with revoked as (
      update management_tokens t set revoked_at = now()
       where t.revoked_at is null and t.expires_at > now()
         and not exists (
           select 1 from unnest(${current.map((c) => c.username)}::text[], ${current.map((c) => c.credentialSha256)}::text[]) as c(username, digest)
            where c.username = t.username and c.digest = t.credential_sha256)
      returning t.username)
    select username, count(*) as n from revoked group by username`.execute(db);
  return new Map(rows.map((r) => [r.username, Number(r.n)]));
}

/** Live tokens per management user. */
export async function countLiveManagementTokens(db: Db): Promise<Map<string, number>> {
  const rows = await db.selectFrom('management_tokens').select(['username', (eb) => eb.fn.countAll<string>().as('n')])
    .where('revoked_at', 'is', null).where('expires_at', '>', sql<Date>`now()`).groupBy('username').execute();
  return new Map(rows.map((r) => [r.username, Number(r.n)]));
}

/** The cleanup task: deletes expired and revoked tokens. */
export async function purgeManagementTokens(db: Db): Promise<number> {
  const r = await db.deleteFrom('management_tokens')
    .where((eb) => eb.or([eb('revoked_at', 'is not', null), eb('expires_at', '<=', sql<Date>`now()`)])).executeTakeFirst();
  return Number(r.numDeletedRows);
}
