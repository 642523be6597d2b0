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

/** Stores a new token; 'full' when the store is full and eviction is off. */
export async function storeManagementToken(
  db: Db,
  token: string,
  { username, roles, credentialSha256, expiresAt }: StoredManagementToken & { expiresAt: Date },
  policy: TokenStorePolicy,
): Promise<'stored' | 'full'> {
  return db.transaction().execute(async (trx) => {
    // One login at a time decides what the store holds, across instances.
    await sql`select pg_advisory_xact_lock(hashtextextended('km.management.token_store', 0))`.execute(trx);
    const live = (eb: typeof trx) => eb.selectFrom('management_tokens')
      .where('revoked_at', 'is', null).where('expires_at', '>', sql<Date>`now()`);
    const { n } = await live(trx).select((e) => e.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
    const overflow = Number(n) - policy.maxSize + 1;
    if (overflow > 0) {
      if (!policy.removeOldestOnOverflow) return 'full';
      // The user's own least recently used tokens go first, so that one user's logins (an
      // auditor's, say) cannot push everybody else out; then everybody's.
      const oldest = await live(trx).select('id_sha256')
        .orderBy(sql`username = ${username}`, 'desc').orderBy('last_used_at').limit(overflow).execute();
      await trx.updateTable('management_tokens').set({ revoked_at: sql`now()` })
        .where('id_sha256', 'in', oldest.map((o) => o.id_sha256)).execute();
    }
    await trx.insertInto('management_tokens')
      .values({ id_sha256: tokenDigest(token), username, roles, credential_sha256: credentialSha256, expires_at: expiresAt }).execute();
    return 'stored';
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
