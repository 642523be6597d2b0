// Every oidc-provider model instance (tokens, codes, grants, sessions, interactions) and the
// JWT access tokens the server issues. Rows are keyed by the SHA-256 digest of the id, which
// for tokens and codes is the token value itself: the value is never written anywhere.
import { createHash } from 'node:crypto';
import { sql, type ExpressionBuilder } from 'kysely';
import { runPrepared, type Db, type PreparedStatement } from '../db/database.ts';
import { isDatabaseUnreachable } from '../db/errors.ts';
import type { Database, TokenRow } from '../db/types.ts';

export function tokenDigest(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex');
}

export interface StoredModel {
  kind: string;
  format?: 'opaque' | 'jwt';
  clientId?: string | null;
  accountId?: string | null;
  grantId?: string | null;
  uid?: string | null;
  scope?: string | null;
  expiresAt?: Date | null;
  /** Must not contain the token value. */
  payload: Record<string, unknown>;
  /**
   * When the request that made it arrived (its owner was checked after that): what the owner
   * checks compare with. Unset: now. Kept when an existing row is written again.
   */
  issuedAt?: Date;
}

function rowOf(id: string, model: StoredModel) {
  return {
    id_sha256: tokenDigest(id),
    kind: model.kind,
    format: model.format ?? 'opaque',
    client_id: model.clientId ?? null,
    account_id: model.accountId ?? null,
    grant_id: model.grantId ?? null,
    uid: model.uid ?? null,
    scope: model.scope ?? null,
    expires_at: model.expiresAt ?? null,
    payload: JSON.stringify(model.payload),
    issued_at: model.issuedAt ?? null,
  };
}

type Row = ReturnType<typeof rowOf>;
const COLUMNS = ['id_sha256', 'kind', 'format', 'client_id', 'account_id', 'grant_id', 'uid', 'scope', 'expires_at', 'payload', 'issued_at'] as const;
/** What a row written again may change: not its kind, format or issue time. */
const REWRITTEN = ['client_id', 'account_id', 'grant_id', 'uid', 'scope', 'expires_at', 'payload'] as const;

/**
 * The placeholder of a column's value in the statements below, typed: in a SELECT, unlike in
 * the VALUES of an INSERT, a parameter gets no type from the target column. issued_at: when the
 * request arrived, or now (the column's default) when not known.
 */
function placeholder(column: (typeof COLUMNS)[number], p: string): string {
  if (column === 'expires_at') return `${p}::timestamptz`;
  if (column === 'payload') return `${p}::jsonb`;
  if (column === 'issued_at') return `coalesce(${p}::timestamptz, now())`;
  return `${p}::text`;
}

/** The parameters of rows, in the order of COLUMNS. */
const valuesOf = (rows: Row[]) => rows.flatMap((row) => COLUMNS.map((c) => row[c]));

/**
 * The upsert of n rows, prepared (src/db/database.ts) once per n and connection. Every token
 * issued runs it; building it with kysely each time cost about as much client CPU as the rest
 * of the insert (measured: 190 µs against 100 µs per single-row insert).
 */
const upserts = new Map<number, PreparedStatement>();
function upsertOf(n: number): PreparedStatement {
  let statement = upserts.get(n);
  if (!statement) {
    const values = Array.from({ length: n }, (_, r) => `(${COLUMNS.map((c, i) => placeholder(c, `$${1 + r * COLUMNS.length + i}`)).join(', ')})`);
    statement = {
      name: `km_upsert_tokens_${n}`,
      text: `insert into tokens (${COLUMNS.join(', ')}) values ${values.join(', ')}
        on conflict (id_sha256) do update set ${REWRITTEN.map((c) => `${c} = excluded.${c}`).join(', ')}`,
    };
    upserts.set(n, statement);
  }
  return statement;
}

/** Writes rows, a row written again replacing what changes (one statement for all of them). */
async function upsertRows(db: Db, rows: Row[]): Promise<void> {
  await runPrepared(db, upsertOf(rows.length), valuesOf(rows));
}

export async function upsertModel(db: Db, id: string, model: StoredModel): Promise<void> {
  await upsertRows(db, [rowOf(id, model)]);
}

/** Most rows one statement of the writer below carries. */
const MAX_BATCH = 256;

export interface TokenWriter {
  /** Resolves once the row is committed (or rejects with why it is not). */
  upsert(id: string, model: StoredModel): Promise<void>;
}

/**
 * Group commit for new tokens: rows written while a statement is in flight wait and then go
 * together, as one multi-row INSERT — one round trip and one commit instead of one each. No
 * delay is added when nothing is in flight. Each caller's promise settles only after its row
 * is committed. When a statement fails because the database is unreachable (its commit
 * included), every caller of the batch gets that failure (a 503: nothing of it is handed out);
 * when it fails otherwise, its rows are retried one by one, so that each caller gets its own
 * outcome (one client deleted meanwhile does not fail the others).
 */
export function createTokenWriter(db: Db): TokenWriter {
  let queue: { row: Row; settle: (err?: unknown) => void }[] = [];
  let writing = false;

  const flush = async () => {
    writing = true;
    while (queue.length) {
      // A key twice in one statement is refused by PostgreSQL: a second write of it waits.
      const seen = new Set<string>();
      const batch: typeof queue = [];
      const rest: typeof queue = [];
      for (const item of queue) {
        if (batch.length < MAX_BATCH && !seen.has(item.row.id_sha256)) {
          seen.add(item.row.id_sha256);
          batch.push(item);
        } else rest.push(item);
      }
      queue = rest;
      try {
        await upsertRows(db, batch.map((b) => b.row));
        for (const b of batch) b.settle();
      } catch (err) {
        // Without the database, retrying row by row would only make each caller wait longer.
        if (batch.length === 1 || isDatabaseUnreachable(err)) for (const b of batch) b.settle(err);
        else {
          await Promise.all(batch.map((b) => upsertRows(db, [b.row]).then(() => b.settle(), (e: unknown) => b.settle(e))));
        }
      }
    }
    writing = false;
  };

  return {
    upsert(id, model) {
      return new Promise<void>((resolve, reject) => {
        queue.push({ row: rowOf(id, model), settle: (err) => (err === undefined ? resolve() : reject(err)) });
        if (!writing) void flush();
      });
    },
  };
}

/**
 * tokens.account_id as the users.id it names. The column is text (an admin script may write
 * anything there): a value that is no UUID names no user, rather than failing the statement.
 */
function accountUuid(t: string): string {
  return `(case when ${t}.account_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then ${t}.account_id::uuid end)`;
}

/**
 * Whether the user and the client a row was issued for still stand behind it: both exist, are
 * enabled, and were not disabled or re-enabled after the request that made the row arrived
 * (0005; `issued_at` is when that request arrived, see upsertModel). The triggers revoke what
 * exists when a user or client is disabled or deleted; this also covers a row written by a
 * request that checked its owner before the change, however long it took.
 */
function ownersStandBehindOf(t: string): string {
  return `(
  not exists (select 1 from clients c where c.client_id = ${t}.client_id
                and (c.disabled or ${t}.issued_at < c.tokens_valid_after))
  and (${t}.account_id is null or exists (select 1 from users u where u.id = ${accountUuid(t)}
                and not u.disabled and (u.tokens_valid_after is null or ${t}.issued_at >= u.tokens_valid_after))))`;
}

/** Not revoked, not expired, its owners behind it: what "live" means for every row. */
function liveOf(t: string): string {
  return `(${t}.revoked_at is null and (${t}.expires_at is null or ${t}.expires_at > now()) and ${ownersStandBehindOf(t)})`;
}

/** Every column of a token row, spelled out for prepared statements (see PreparedStatement). */
const rowColumnsOf = (t: string) => ['id_sha256', 'kind', 'format', 'client_id', 'account_id', 'grant_id', 'uid', 'scope', 'issued_at',
  'expires_at', 'consumed_at', 'revoked_at', 'payload'].map((c) => `${t}.${c}`).join(', ');

/** A live row: not revoked, not expired, its owners still behind it. Consumed rows are returned; callers decide. */
export async function findLiveModel(db: Db, kind: string, id: string): Promise<TokenRow | undefined> {
  const { rows: [row] } = await runPrepared<TokenRow>(db, FIND_LIVE_MODEL, [tokenDigest(id), kind]);
  return row;
}

const FIND_LIVE_MODEL: PreparedStatement = {
  name: 'km_find_live_model',
  text: `select ${rowColumnsOf('tokens')} from tokens where id_sha256 = $1 and kind = $2 and ${liveOf('tokens')}`,
};

/** What the refresh grant reads besides the refresh token, read with it in one statement. */
export interface RefreshTokenContext {
  token: TokenRow;
  /** The token's Grant row if it is live (as findLiveModel would find it), else null. */
  grant: Pick<TokenRow, 'payload' | 'consumed_at'> | null;
  /** The token's user, null when it has none or it was deleted. */
  user: { id: string; username: string; disabled: boolean } | null;
  roles: string[];
}

/**
 * A live refresh token (as findLiveModel finds it) together with its grant, its user and the
 * user's roles: the refresh grant needs all four, and one round trip instead of four is most
 * of what a refresh costs (DESIGN.md §5).
 */
export async function findLiveRefreshTokenWithContext(db: Db, id: string): Promise<RefreshTokenContext | undefined> {
  const { rows: [row] } = await runPrepared<TokenRow & {
    grant_sha256: string | null; grant_payload: Record<string, unknown> | null; grant_consumed_at: Date | null;
    user_id: string | null; user_username: string | null; user_disabled: boolean | null; user_roles: string[];
  }>(db, FIND_REFRESH_TOKEN_WITH_CONTEXT, [tokenDigest(id)]);
  if (!row) return undefined;
  const { grant_sha256, grant_payload, grant_consumed_at, user_id, user_username, user_disabled, user_roles, ...token } = row;
  return {
    token,
    grant: grant_sha256 ? { payload: grant_payload ?? {}, consumed_at: grant_consumed_at } : null,
    user: user_id ? { id: user_id, username: user_username ?? '', disabled: user_disabled ?? true } : null,
    roles: user_roles,
  };
}

const FIND_REFRESH_TOKEN_WITH_CONTEXT: PreparedStatement = {
  name: 'km_find_refresh_token_with_context',
  text: `select ${rowColumnsOf('t')},
      g.id_sha256 as grant_sha256, g.payload as grant_payload, g.consumed_at as grant_consumed_at,
      u.id as user_id, u.username as user_username, u.disabled as user_disabled,
      coalesce((select array_agg(r.role_name order by r.role_name) from user_roles r where r.user_id = u.id), '{}') as user_roles
    from tokens t
    left join tokens g on g.id_sha256 = encode(sha256(convert_to(t.grant_id, 'UTF8')), 'hex') and g.kind = 'Grant' and ${liveOf('g')}
    left join users u on u.id = ${accountUuid('t')}
    where t.id_sha256 = $1 and t.kind = 'RefreshToken' and ${liveOf('t')}`,
};

/**
 * Refresh token rotation in one statement: marks the presented refresh token consumed and
 * writes the new rows (its successor, and the access token issued with it), only if the
 * presented one was not consumed already. Returns false when it was (of two concurrent
 * refreshes with one token, exactly one wins), and then writes nothing.
 */
export async function rotateRefreshToken(db: Db, presentedId: string, grantId: string, rows: { id: string; model: StoredModel }[]): Promise<boolean> {
  const values = valuesOf(rows.map(({ id, model }) => rowOf(id, model)));
  const result = await runPrepared(db, rotationOf(rows.length), [tokenDigest(presentedId), tokenDigest(grantId), ...values]);
  return result.rowCount === rows.length;
}

const rotations = new Map<number, PreparedStatement>();
function rotationOf(n: number): PreparedStatement {
  let statement = rotations.get(n);
  if (!statement) {
    const selects = Array.from({ length: n }, (_, r) => `select ${COLUMNS.map((c, i) => placeholder(c, `$${3 + r * COLUMNS.length + i}`)).join(', ')} from consumed`);
    statement = {
      name: `km_rotate_refresh_token_${n}`,
      // The Grant row share-locked and live, then the token neither used nor revoked: a
      // revocation that got there first makes this write nothing (see revokeGrantRow).
      text: `with live_grant as (
          select 1 from tokens where id_sha256 = $2 and kind = 'Grant' and revoked_at is null for share),
        consumed as (
          update tokens set consumed_at = now()
          where id_sha256 = $1 and kind = 'RefreshToken' and consumed_at is null and revoked_at is null
            and exists (select 1 from live_grant)
          returning 1)
        insert into tokens (${COLUMNS.join(', ')})
        ${selects.join('\n        union all ')}`,
    };
    rotations.set(n, statement);
  }
  return statement;
}

export async function findLiveModelByUid(db: Db, kind: string, uid: string): Promise<TokenRow | undefined> {
  return db.selectFrom('tokens')
    .selectAll()
    .where('kind', '=', kind)
    .where('uid', '=', uid)
    .where('revoked_at', 'is', null)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', sql<Date>`now()`)]))
    .executeTakeFirst();
}

/**
 * Marks the row consumed. Returns false when it was consumed already, so that of two
 * concurrent redemptions of one code or refresh token exactly one wins.
 */
export async function consumeModel(db: Db, kind: string, id: string): Promise<boolean> {
  const result = await db.updateTable('tokens')
    .set({ consumed_at: sql`now()` })
    .where('id_sha256', '=', tokenDigest(id))
    .where('kind', '=', kind)
    .where('consumed_at', 'is', null)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

export async function revokeModel(db: Db, kind: string, id: string): Promise<void> {
  await db.updateTable('tokens')
    .set({ revoked_at: sql`now()` })
    .where('id_sha256', '=', tokenDigest(id))
    .where('kind', '=', kind)
    .where('revoked_at', 'is', null)
    .execute();
}

export async function revokeByGrantId(db: Db, grantId: string): Promise<void> {
  await db.transaction().execute((trx) => revokeGrant(trx, grantId));
}

/** In the caller's transaction: the Grant row, then every row issued under it (see revokeGrantRow). */
async function revokeGrant(trx: Db, grantId: string): Promise<void> {
  await revokeGrantRow(trx, grantId);
  await trx.updateTable('tokens')
    .set({ revoked_at: sql`now()` })
    .where('grant_id', '=', grantId)
    .where('revoked_at', 'is', null)
    .execute();
}

/**
 * Revoking a grant's tokens races with refreshes under it: a rotation that read the refresh
 * token before the revocation would write live successors after it. Rotation holds the Grant
 * row share-locked while it writes (rotationOf), and every revocation of a grant's tokens first
 * revokes the Grant row, in a statement of its own: that waits for rotations under way to commit,
 * so that the next statement, with a new snapshot, sees and revokes what they wrote, and makes
 * every later rotation fail. (Grant rows first, always: the same lock order as rotation.)
 */
async function revokeGrantRow(trx: Db, grantId: string): Promise<void> {
  await trx.updateTable('tokens')
    .set({ revoked_at: sql`now()` })
    .where('id_sha256', '=', tokenDigest(grantId))
    .where('kind', '=', 'Grant')
    .where('revoked_at', 'is', null)
    .execute();
}

/** `account_username`: the name of the row's user (null without one), read with the row. */
export type IssuedTokenRow = TokenRow & { owners_stand_behind: boolean; account_username: string | null };

export const INTROSPECTABLE_KINDS = ['AccessToken', 'ClientCredentials', 'RefreshToken'] as const;

/**
 * The token a caller presents to /introspect or /revoke, whatever its kind or format: one
 * indexed lookup by digest. Returns revoked, consumed and expired rows too; the caller
 * decides what they mean.
 */
export async function findIssuedTokenByValue(db: Db, value: string): Promise<IssuedTokenRow | undefined> {
  const { rows: [row] } = await runPrepared<IssuedTokenRow>(db, FIND_ISSUED_TOKEN, [tokenDigest(value)]);
  return row;
}

const FIND_ISSUED_TOKEN: PreparedStatement = {
  name: 'km_find_issued_token',
  // The username too: an access token carries it in its payload, a refresh token does not.
  text: `select ${rowColumnsOf('tokens')}, ${ownersStandBehindOf('tokens')} as owners_stand_behind,
      (select u.username from users u where u.id = ${accountUuid('tokens')}) as account_username
    from tokens where id_sha256 = $1 and kind in (${INTROSPECTABLE_KINDS.map((k) => `'${k}'`).join(', ')})`,
};

/** Revokes one token and, for a refresh token, its whole grant (RFC 7009 §2.1). */
export async function revokeIssuedToken(db: Db, row: TokenRow): Promise<void> {
  // A refresh token is a row of its grant: revoking the grant revokes it too.
  if (row.kind === 'RefreshToken' && row.grant_id) {
    const grantId = row.grant_id;
    await db.transaction().execute((trx) => revokeGrant(trx, grantId));
    return;
  }
  await db.updateTable('tokens')
    .set({ revoked_at: sql`now()` })
    .where('id_sha256', '=', row.id_sha256)
    .where('revoked_at', 'is', null)
    .execute();
}

/** Rows one purge statement deletes at most: each batch is its own short transaction. */
export const PURGE_BATCH_SIZE = 1000;

/**
 * Deletes rows past their expiry (and revoked or consumed ones once expired), a batch at a
 * time: one DELETE of millions of rows would hold its locks and bloat the WAL for minutes,
 * while requests wait behind it.
 *
 * - Keyset order (expires_at, id_sha256): each batch starts where the last one ended, so it
 *   never walks again over the index entries of the rows already deleted (not yet vacuumed),
 *   which made every batch slower than the one before.
 * - Rows a request holds locked are skipped (SKIP LOCKED) and left for the next run, so the
 *   purge never waits for a request nor makes one wait long.
 * - Commits do not wait for the WAL flush: a deletion lost in a crash is redone by the next
 *   run, and the batch's locks are released sooner.
 * - After each batch it rests three times as long as the batch took: it takes at most about a
 *   quarter of one backend, and its WAL (which the requests' commits must flush with their
 *   own) comes in small doses. It does not make the purge free: with 10 million rows under
 *   load (bench s) the requests' p99 still rises several times while it runs, their commits
 *   waiting on WAL sync behind the deleted pages' writes (bench/README.md).
 */
export async function purgeExpiredTokens(db: Db, graceSeconds = 0, batchSize = PURGE_BATCH_SIZE): Promise<number> {
  const { rows: [bound] } = await sql<{ cutoff: Date }>`select now() - make_interval(secs => ${graceSeconds}) as cutoff`.execute(db);
  // The last row's expiry travels as text: a Date would drop its microseconds.
  let after: { expiresAt: string; id: string } | undefined;
  let total = 0;
  for (;;) {
    const started = performance.now();
    const batch = await db.transaction().execute(async (trx) => {
      await sql`set local synchronous_commit = off`.execute(trx);
      const { rows } = await sql<{ deleted: string; last_expires_at: string | null; last_id: string | null }>`
        with batch as (
          select id_sha256, expires_at from tokens
           where expires_at < ${bound!.cutoff}
             ${after ? sql`and expires_at >= ${after.expiresAt}::timestamptz and (expires_at, id_sha256) > (${after.expiresAt}::timestamptz, ${after.id})` : sql``}
           order by expires_at, id_sha256
           limit ${batchSize}
           for update skip locked
        ), gone as (
          delete from tokens where id_sha256 in (select id_sha256 from batch) returning 1
        ), last as (
          select expires_at, id_sha256 from batch order by expires_at desc, id_sha256 desc limit 1
        )
        select (select count(*) from gone)::text as deleted,
               (select expires_at::text from last) as last_expires_at, (select id_sha256 from last) as last_id`.execute(trx);
      return rows[0]!;
    });
    total += Number(batch.deleted);
    if (!batch.last_expires_at || !batch.last_id) return total;
    after = { expiresAt: batch.last_expires_at, id: batch.last_id };
    await new Promise((resolve) => setTimeout(resolve, 3 * (performance.now() - started)));
  }
}

/** Administrative revocation by value (keymgr token revoke): no client check. */
export async function revokeTokenByValue(db: Db, value: string): Promise<IssuedTokenRow | undefined> {
  const row = await findIssuedTokenByValue(db, value);
  if (row && !row.revoked_at) await revokeIssuedToken(db, row);
  return row;
}

/** Rows that still count: not revoked, not expired (consumed ones too: their grant may live on). */
const liveRow = sql<boolean>`(tokens.revoked_at is null and (tokens.expires_at is null or tokens.expires_at > now()))`;

/** Kinds that are tokens to whoever holds them; the count an operator is told about. */
const COUNTED_KINDS: ReadonlySet<string> = new Set([...INTROSPECTABLE_KINDS, 'AuthorizationCode']);

/** In the caller's transaction: the Grant rows' locks must be held until the end. */
async function revokeLiveRowsWhere(trx: Db, column: 'client_id' | 'account_id', value: string): Promise<number> {
  // Grant rows first, in a statement of their own (see revokeGrantRow), then everything.
  await trx.updateTable('tokens').set({ revoked_at: sql`now()` }).where(column, '=', value).where('kind', '=', 'Grant').where(liveRow).execute();
  const rows = await trx.updateTable('tokens')
    .set({ revoked_at: sql`now()` })
    .where(column, '=', value)
    .where(liveRow)
    .returning('kind')
    .execute();
  return rows.filter((r) => COUNTED_KINDS.has(r.kind)).length;
}

/**
 * Revokes every live token, code and grant issued to the client; undefined when there is no
 * such client. Returns how many tokens and codes were revoked.
 */
export async function revokeTokensOfClient(db: Db, clientId: string): Promise<number | undefined> {
  return db.transaction().execute(async (trx) => {
    const client = await trx.selectFrom('clients').select('client_id').where('client_id', '=', clientId).forShare().executeTakeFirst();
    if (!client) return undefined;
    return revokeLiveRowsWhere(trx, 'client_id', clientId);
  });
}

/** Revokes every live token, code and grant issued for the user (tokens.account_id is the user's id). */
export async function revokeTokensOfAccount(db: Db, userId: string): Promise<number> {
  return db.transaction().execute((trx) => revokeLiveRowsWhere(trx, 'account_id', userId));
}

/**
 * Revokes the grant (oidc-provider's Grant row, keyed by the grant id) and every live row
 * issued under it; undefined when no row ever belonged to it (an unknown grant, or one purged
 * since). Returns how many tokens and codes were revoked.
 */
export async function revokeTokensOfGrant(db: Db, grantId: string): Promise<number | undefined> {
  const ofGrant = (eb: ExpressionBuilder<Database, 'tokens'>) => eb.or([
    eb('grant_id', '=', grantId),
    eb.and([eb('kind', '=', 'Grant'), eb('id_sha256', '=', tokenDigest(grantId))]),
  ]);
  return db.transaction().execute(async (trx) => {
    const known = await trx.selectFrom('tokens').select('kind').where(ofGrant).limit(1).executeTakeFirst();
    if (!known) return undefined;
    await revokeGrantRow(trx, grantId);
    const rows = await trx.updateTable('tokens').set({ revoked_at: sql`now()` }).where(ofGrant).where(liveRow).returning('kind').execute();
    return rows.filter((r) => COUNTED_KINDS.has(r.kind)).length;
  });
}
