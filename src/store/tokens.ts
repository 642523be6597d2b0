// Every oidc-provider model instance (tokens, codes, grants, sessions, interactions) and the
// JWT access tokens the server issues. Rows are keyed by the SHA-256 digest of the id, which
// for tokens and codes is the token value itself: the value is never written anywhere.
import { hash } from 'node:crypto';
import { sql, type ExpressionBuilder } from 'kysely';
import { runPrepared, type Db, type PreparedStatement } from '../db/database.ts';
import { isDatabaseUnreachable } from '../db/errors.ts';
import { ownerOfAll, workOwners, type WorkOwner } from '../db/work-owner.ts';
import type { Database, TokenRow } from '../db/types.ts';

export function tokenDigest(value: string): string {
  return hash('sha256', value, 'hex');
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
 * Each column's type, for the parameters of the statements below: in a SELECT or an unnest,
 * unlike in the VALUES of an INSERT, a parameter gets no type from the target column.
 */
const COLUMN_TYPES: Record<(typeof COLUMNS)[number], string> = {
  id_sha256: 'text', kind: 'text', format: 'text', client_id: 'text', account_id: 'text', grant_id: 'text', uid: 'text',
  scope: 'text', expires_at: 'timestamptz', payload: 'jsonb', issued_at: 'timestamptz',
};

/**
 * The placeholder of a column's value, typed. issued_at: when the request arrived, or now (the
 * column's default) when not known.
 */
function placeholder(column: (typeof COLUMNS)[number], p: string): string {
  const typed = `${p}::${COLUMN_TYPES[column]}`;
  return column === 'issued_at' ? `coalesce(${typed}, now())` : typed;
}

/**
 * Array parameter n, hidden from the planner behind a scalar subquery. Planning for the values
 * given, PostgreSQL sees an array's length and costs that plan below the generic one made for
 * any length, so it plans a statement that takes arrays anew on every execution (seen in
 * pg_prepared_statements: custom plans only). Hidden, both plans cost the same and it keeps
 * the generic one after five executions: planning these statements, with their joins, costs
 * PostgreSQL more than running them.
 */
const arrayParameter = (n: number, type: string) => `(select $${n}::${type}[])::${type}[]`;

/** The parameters of rows, in the order of COLUMNS. */
function valuesOf(rows: Row[]): unknown[] {
  const values: unknown[] = [];
  for (const row of rows) for (const c of COLUMNS) values.push(row[c]);
  return values;
}

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

/** Most items one statement of a group commit carries. */
const MAX_BATCH = 256;

/**
 * Batching (for writes: group commit): items submitted while a statement is in flight wait and
 * then go together, as one statement — one round trip and one commit instead of one each. No
 * delay is added when nothing is in flight. Each caller's promise settles only after its
 * item's statement has completed (a write: is committed). When a statement fails because the
 * database is unreachable (its commit included), every caller of the batch gets that failure
 * (a 503: nothing of it is handed out); when it fails otherwise, its items are retried one by
 * one, so that each caller gets its own outcome (one client deleted meanwhile does not fail
 * the others).
 */
function createBatcher<I, R>({ keyOf, runBatch, runOne }: {
  /** Two items with one key never share a statement (PostgreSQL refuses a key twice in one INSERT … ON CONFLICT). */
  keyOf: (item: I) => string;
  /** The outcome of each item, in order. */
  runBatch: (items: I[]) => Promise<R[]>;
  runOne: (item: I) => Promise<R>;
}): (item: I) => Promise<R> {
  let queue: { item: I; owner: WorkOwner | undefined; resolve: (r: R) => void; reject: (err: unknown) => void }[] = [];
  let writing = false;

  const flush = async () => {
    writing = true;
    while (queue.length) {
      const seen = new Set<string>();
      const batch: typeof queue = [];
      const rest: typeof queue = [];
      for (const entry of queue) {
        const key = keyOf(entry.item);
        if (batch.length < MAX_BATCH && !seen.has(key)) {
          seen.add(key);
          batch.push(entry);
        } else rest.push(entry);
      }
      queue = rest;
      try {
        // The statement is the work of every request in it (a stop ends it if one was cut off).
        const owner = ownerOfAll(batch.map((b) => b.owner));
        const outcomes = await workOwners.run(owner, () => runBatch(batch.map((b) => b.item)));
        batch.forEach((b, i) => b.resolve(outcomes[i]!));
      } catch (err) {
        // Without the database, retrying one by one would only make each caller wait longer.
        if (batch.length === 1 || isDatabaseUnreachable(err)) for (const b of batch) b.reject(err);
        else await Promise.all(batch.map((b) => (b.owner ? workOwners.run(b.owner, () => runOne(b.item)) : workOwners.exit(() => runOne(b.item))).then(b.resolve, b.reject)));
      }
    }
    writing = false;
  };

  return (item) => new Promise<R>((resolve, reject) => {
    queue.push({ item, owner: workOwners.getStore(), resolve, reject });
    if (!writing) void flush();
  });
}

export interface TokenWriter {
  /** Resolves once the row is committed (or rejects with why it is not). */
  upsert(id: string, model: StoredModel): Promise<void>;
  /**
   * Refresh token rotation (see rotateOne), group-committed with the other rotations
   * under way. Resolves true once the new rows are committed, false when the presented token
   * was consumed already (then nothing is written).
   */
  rotate(presentedId: string, grantId: string, rows: { id: string; model: StoredModel }[]): Promise<boolean>;
}

interface Rotation {
  presentedSha256: string;
  grantSha256: string;
  rows: Row[];
}

/** Group commit for new tokens and for refresh token rotations (createBatcher): one writer per instance. */
export function createTokenWriter(db: Db): TokenWriter {
  const upsert = createBatcher<Row, void>({
    keyOf: (row) => row.id_sha256,
    runBatch: async (rows) => {
      await upsertRows(db, rows);
      return rows.map(() => undefined);
    },
    runOne: (row) => upsertRows(db, [row]),
  });
  const rotate = createBatcher<Rotation, boolean>({
    // Of two rotations of one token, the second waits for the first's statement (and loses).
    keyOf: (rotation) => rotation.presentedSha256,
    runBatch: (rotations) => rotateRefreshTokens(db, rotations),
    runOne: (rotation) => rotateOne(db, rotation),
  });
  return {
    upsert: (id, model) => upsert(rowOf(id, model)),
    rotate: (presentedId, grantId, rows) => rotate({
      presentedSha256: tokenDigest(presentedId),
      grantSha256: tokenDigest(grantId),
      rows: rows.map(({ id, model }) => rowOf(id, model)),
    }),
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

/** What the refresh grant reads of the refresh token's own row. */
export type RefreshTokenRow = Pick<TokenRow, 'id_sha256' | 'grant_id' | 'account_id' | 'payload' | 'consumed_at'>;

/** What the refresh grant reads besides the refresh token, read with it in one statement. */
export interface RefreshTokenContext {
  /** Only the columns the refresh grant uses: each column more is parsed on every refresh. */
  token: RefreshTokenRow;
  /** The token's Grant row if it is live (as findLiveModel would find it), else null. */
  grant: Pick<TokenRow, 'payload' | 'consumed_at'> | null;
  /** The token's user, null when it has none or it was deleted. */
  user: { id: string; username: string; disabled: boolean } | null;
  roles: string[];
}

/**
 * Live refresh tokens (as findLiveModel finds them) together with their grant, user and the
 * user's roles, by digest: the refresh grant needs all four, and one round trip instead of
 * four is most of what a refresh costs (DESIGN.md §5). One statement for any number of tokens
 * (createRefreshTokenReader batches the lookups of concurrent refreshes); a digest that names
 * no live refresh token has no entry.
 */
export async function findLiveRefreshTokensWithContext(db: Db, digests: string[]): Promise<Map<string, RefreshTokenContext>> {
  const { rows } = await runPrepared<RefreshTokenRow & {
    grant_sha256: string | null; grant_payload: Record<string, unknown> | null; grant_consumed_at: Date | null;
    user_id: string | null; user_username: string | null; user_disabled: boolean | null; user_roles: string[];
  }>(db, FIND_REFRESH_TOKENS_WITH_CONTEXT, [digests]);
  const found = new Map<string, RefreshTokenContext>();
  for (const { grant_sha256, grant_payload, grant_consumed_at, user_id, user_username, user_disabled, user_roles, ...token } of rows) {
    found.set(token.id_sha256, {
      token,
      grant: grant_sha256 ? { payload: grant_payload ?? {}, consumed_at: grant_consumed_at } : null,
      user: user_id ? { id: user_id, username: user_username ?? '', disabled: user_disabled ?? true } : null,
      roles: user_roles,
    });
  }
  return found;
}

const FIND_REFRESH_TOKENS_WITH_CONTEXT: PreparedStatement = {
  name: 'km_find_refresh_tokens_with_context',
  text: `select t.id_sha256, t.grant_id, t.account_id, t.payload, t.consumed_at,
      g.id_sha256 as grant_sha256, g.payload as grant_payload, g.consumed_at as grant_consumed_at,
      u.id as user_id, u.username as user_username, u.disabled as user_disabled,
      coalesce((select array_agg(r.role_name order by r.role_name) from user_roles r where r.user_id = u.id), '{}') as user_roles
    from tokens t
    left join tokens g on g.id_sha256 = encode(sha256(convert_to(t.grant_id, 'UTF8')), 'hex') and g.kind = 'Grant' and ${liveOf('g')}
    left join users u on u.id = ${accountUuid('t')}
    where t.id_sha256 = any(${arrayParameter(1, 'text')}) and t.kind = 'RefreshToken' and ${liveOf('t')}`,
};

/** A live refresh token with its context (findLiveRefreshTokensWithContext), by the token's value. */
export type RefreshTokenReader = (id: string) => Promise<RefreshTokenContext | undefined>;

/**
 * Refresh token lookups batched like the writes (createBatcher): the lookups of refreshes that
 * arrive while one statement is in flight go together in the next. Each statement starts after
 * every lookup in it was asked for, so it sees every change committed before that (a
 * revocation answered, a token consumed). One reader per instance.
 */
export function createRefreshTokenReader(db: Db): RefreshTokenReader {
  const lookUp = async (digests: string[]) => {
    const found = await findLiveRefreshTokensWithContext(db, digests);
    return digests.map((digest) => found.get(digest));
  };
  const find = createBatcher<string, RefreshTokenContext | undefined>({
    keyOf: (digest) => digest,
    runBatch: lookUp,
    runOne: async (digest) => (await lookUp([digest]))[0],
  });
  return (id) => find(tokenDigest(id));
}

/**
 * Refresh token rotation in one statement: marks the presented refresh token consumed and
 * writes the new rows (its successor, and the access token issued with it), only if the
 * presented one was not consumed already. Returns false when it was (of two concurrent
 * refreshes with one token, exactly one wins), and then writes nothing.
 */
async function rotateOne(db: Db, rotation: Rotation): Promise<boolean> {
  const result = await runPrepared(db, rotationOf(rotation.rows.length), [rotation.presentedSha256, rotation.grantSha256, ...valuesOf(rotation.rows)]);
  return result.rowCount === rotation.rows.length;
}

/**
 * The Grant row whose digest is parameter `param`, if live, share-locked for the statement: a
 * write under it and a revocation of it (revokeGrantRow) cannot pass each other.
 */
function liveGrantShareLocked(param: string): string {
  return `select 1 from tokens where id_sha256 = ${param} and kind = 'Grant' and revoked_at is null for share`;
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
      text: `with live_grant as (${liveGrantShareLocked('$2')}),
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

/**
 * Several rotations (each as rotateOne) in one statement: the rotations as arrays, their new
 * rows as arrays of columns tagged with the rotation they belong to. Returns, for each, whether
 * it won. Grant rows are locked in digest order, so that two such statements of two instances
 * cannot each hold one the other waits for.
 */
async function rotateRefreshTokens(db: Db, batch: Rotation[]): Promise<boolean[]> {
  const rows = batch.flatMap((rotation, i) => rotation.rows.map((row) => ({ n: i + 1, row })));
  const column = (c: (typeof COLUMNS)[number]) => rows.map(({ row }) => {
    const value = row[c];
    return value instanceof Date ? value.toISOString() : value;
  });
  const { rows: won } = await runPrepared<{ n: number }>(db, ROTATE_REFRESH_TOKENS, [
    batch.map((r) => r.presentedSha256), batch.map((r) => r.grantSha256), rows.map((r) => r.n), ...COLUMNS.map(column),
  ]);
  const winners = new Set(won.map((w) => Number(w.n)));
  return batch.map((_, i) => winners.has(i + 1));
}

const ROTATE_REFRESH_TOKENS: PreparedStatement = {
  name: 'km_rotate_refresh_tokens',
  text: `with rotation as (
      select * from unnest(${arrayParameter(1, 'text')}, ${arrayParameter(2, 'text')}) with ordinality as r(presented, grant_sha256, n)),
    live_grant as (
      select id_sha256 from tokens where id_sha256 = any(${arrayParameter(2, 'text')}) and kind = 'Grant' and revoked_at is null
       order by id_sha256 for share),
    consumed as (
      update tokens t set consumed_at = now() from rotation r
       where t.id_sha256 = r.presented and t.kind = 'RefreshToken' and t.consumed_at is null and t.revoked_at is null
         and r.grant_sha256 in (select id_sha256 from live_grant)
       returning r.n),
    written as (
      insert into tokens (${COLUMNS.join(', ')})
      select ${COLUMNS.map((c) => (c === 'issued_at' ? `coalesce(w.${c}, now())` : `w.${c}`)).join(', ')}
        from unnest(${arrayParameter(3, 'bigint')}, ${COLUMNS.map((c, i) => arrayParameter(4 + i, COLUMN_TYPES[c])).join(', ')}) as w(n, ${COLUMNS.join(', ')})
       where w.n in (select n from consumed)
       returning 1)
    select n::int as n from consumed`,
};

/**
 * Writes a row issued under a grant only while the grant's row is live, share-locked for the
 * statement as a rotation does (rotationOf): of this write and a revocation of the grant
 * (revokeGrantRow), whichever comes second sees the first. Returns false, writing nothing, when
 * the grant was revoked. For the tokens of a redeemed code, whose second redemption revokes the
 * grant while the first may still be writing.
 */
export async function insertUnderLiveGrant(db: Db, grantId: string, id: string, model: StoredModel): Promise<boolean> {
  const result = await runPrepared(db, INSERT_UNDER_LIVE_GRANT, [tokenDigest(grantId), ...valuesOf([rowOf(id, model)])]);
  return result.rowCount === 1;
}

const INSERT_UNDER_LIVE_GRANT: PreparedStatement = {
  name: 'km_insert_under_live_grant',
  text: `with live_grant as (${liveGrantShareLocked('$1')})
    insert into tokens (${COLUMNS.join(', ')})
    select ${COLUMNS.map((c, i) => placeholder(c, `$${2 + i}`)).join(', ')} where exists (select 1 from live_grant)`,
};

/** The grant a code or token row was issued under (null: none, or no such row). */
export async function grantIdOfModel(db: Db, kind: string, id: string): Promise<string | null> {
  const row = await db.selectFrom('tokens').select('grant_id').where('id_sha256', '=', tokenDigest(id)).where('kind', '=', kind).executeTakeFirst();
  return row?.grant_id ?? null;
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
/** Expired rows looked up per pass, then deleted in the order of their place in the table. */
const PURGE_PASS_ROWS = 500_000;
/** Rows one look-up statement of a pass aims at: each stays short. */
const PURGE_LOOKUP_ROWS = 10_000;

/**
 * The most WAL the purge writes per second, about: its batches rest accordingly. Requests'
 * commits flush the WAL written before them, the purge's included. Bench s (1 million expired
 * rows, a at 70 % of its peak, 2-core machine): resting only as long as each batch took, the
 * purge ran 13 s and the requests' p50 went from 1.6 to 6.8 ms; at this rate it runs about
 * 90 s and p50 stays at 2.0 ms. Their p99 still rises several times, at the checkpoints that
 * fall inside the longer run (bench/README.md).
 */
const PURGE_WAL_BYTES_PER_SECOND = 8 * 1024 * 1024;

/**
 * After each of its statements the purge rests this many times as long as the statement took:
 * it keeps at most a quarter of one backend busy. Resting only as long (half a backend), the
 * passes whose pages were already written whole since the checkpoint — little WAL, so no WAL
 * rest — and the look-ups, which did not rest at all, raised the requests' p99 on a 2-core
 * machine at 70 % load from 21 to 60–75 ms in the seconds they ran (bench s).
 */
const PURGE_REST_FACTOR = 3;

/** The rest after a statement that took `tookMs` and wrote `walBytes` of WAL. */
const purgeRest = (tookMs: number, walBytes = 0) => new Promise((resolve) =>
  setTimeout(resolve, Math.max(PURGE_REST_FACTOR * tookMs, (walBytes / PURGE_WAL_BYTES_PER_SECOND) * 1000 - tookMs)));

/** A WAL position ('16/B374D848') as a byte count. */
const walPosition = (lsn: string) => {
  const [high, low] = lsn.split('/');
  return parseInt(high!, 16) * 2 ** 32 + parseInt(low!, 16);
};

/** A row's place in the heap (its ctid), as one number that sorts as the table is laid out. */
const placeOf = (ctid: string) => {
  const [block, offset] = ctid.slice(1, -1).split(',');
  return Number(block) * 65_536 + Number(offset);
};
const ctidOf = (place: number) => `(${Math.floor(place / 65_536)},${place % 65_536})`;

/**
 * Microseconds since the epoch as a timestamptz, exactly: a bigint times an interval goes
 * through a double, so whole seconds and the microseconds left over go separately.
 */
const instantOf = (micros: bigint) => sql`('epoch'::timestamptz + ${String(micros / 1_000_000n)}::bigint * interval '1 second'
  + ${String(micros % 1_000_000n)}::bigint * interval '1 microsecond')`;

/**
 * Deletes rows past their expiry (and revoked or consumed ones once expired), a batch at a
 * time: one DELETE of millions of rows would hold its locks and bloat the WAL for minutes,
 * while requests wait behind it.
 *
 * - What it costs the requests is WAL: their commits flush it along with their own. The first
 *   change to a page after a checkpoint writes the whole page to the WAL (8 KiB; with data
 *   checksums, PostgreSQL 18's default, a hint bit is such a change too). Deleting in expiry
 *   order jumps between pages, so each page was changed, and written whole, again and again:
 *   1 million expired rows made 5.4 GB of WAL and 824,000 page images (bench s), and that
 *   volume forced checkpoints, after which the requests' own writes became page images too.
 *   So each pass first looks up where up to PURGE_PASS_ROWS expired rows are (short reads of
 *   consecutive windows of expiry on the expiry index, no row locks), then deletes them in
 *   the order of their place in the table: each page is changed once per pass.
 * - A place looked up may hold another version of the row, or another row, by the time it is
 *   deleted: every delete checks the expiry again, so only expired rows go; a row that moved is
 *   left for the next run.
 * - Rows a request holds locked are skipped (SKIP LOCKED) and left for the next run, so the
 *   purge never waits for a request nor makes one wait long.
 * - Commits do not wait for the WAL flush: a deletion lost in a crash is redone by the next
 *   run, and the batch's locks are released sooner.
 * - The pages it dirties and must write out itself go to the disk at once, 256 kB at a time
 *   (backend_flush_after), instead of piling up in the kernel's cache until a writeback burst
 *   makes the requests' WAL flushes wait: bench s, p99 while purging 48 → 32 ms, slowest
 *   request 192 → 59 ms.
 * - After each statement it rests three times as long as the statement took (PURGE_REST_FACTOR),
 *   and longer when a batch wrote much WAL (PURGE_WAL_BYTES_PER_SECOND): it takes at most about
 *   a quarter of one backend, and its WAL comes in doses the requests' commits can absorb.
 */
export async function purgeExpiredTokens(db: Db, graceSeconds = 0, batchSize = PURGE_BATCH_SIZE): Promise<number> {
  // Microseconds since the epoch, as PostgreSQL keeps them, in bigints: a double is exact only
  // from about 1685 to 2255, and a window narrowed to one microsecond there would not move.
  // The first finite expiry: -infinity has no such number, the first window takes it in.
  const { rows: [bound] } = await sql<{ cutoff: string; first: string | null }>`
    select (extract(epoch from now() - make_interval(secs => ${graceSeconds})) * 1000000)::bigint::text as cutoff,
           (select (extract(epoch from min(expires_at)) * 1000000)::bigint::text from tokens where isfinite(expires_at)) as first`.execute(db);
  const cutoff = BigInt(bound!.cutoff);
  // One window at least, for rows at -infinity when no finite expiry is past the cutoff.
  let from = bound!.first === null || BigInt(bound!.first) >= cutoff ? cutoff - 1n : BigInt(bound!.first);
  let openBelow = true;
  let width = 60_000_000n;
  let total = 0;
  while (from < cutoff) {
    // A pass: the places of the expired rows in consecutive windows of expiry, each window
    // widened or narrowed so that its statement reads about PURGE_LOOKUP_ROWS rows.
    const places: number[] = [];
    while (from < cutoff && places.length < PURGE_PASS_ROWS) {
      const to = from + width < cutoff ? from + width : cutoff;
      // Narrowed to a single microsecond, a window is read whole, however many rows share it.
      const limit = to - from > 1n ? PURGE_LOOKUP_ROWS * 4 : null;
      const lookupStarted = performance.now();
      const rows = await db.transaction().execute(async (trx) => {
        // A walk down the expiry index, never a parallel scan: parallel workers would take the
        // cores the requests need.
        await sql`set local max_parallel_workers_per_gather = 0`.execute(trx);
        return (await sql<{ ctid: string }>`
          select ctid::text as ctid from tokens
           where ${openBelow ? sql`true` : sql`expires_at >= ${instantOf(from)}`} and expires_at < ${instantOf(to)}
           ${limit === null ? sql`` : sql`limit ${limit}`}`.execute(trx)).rows;
      });
      await purgeRest(performance.now() - lookupStarted);
      if (limit !== null && rows.length === limit) {
        width = (to - from) / 8n > 1n ? (to - from) / 8n : 1n;
        continue;
      }
      for (const row of rows) places.push(placeOf(row.ctid));
      from = to;
      openBelow = false;
      if (rows.length < PURGE_LOOKUP_ROWS / 2) width *= 2n;
      else if (rows.length > PURGE_LOOKUP_ROWS * 2 && width > 1n) width /= 2n;
    }
    places.sort((x, y) => x - y);
    for (let i = 0; i < places.length; i += batchSize) {
      const started = performance.now();
      const ctids = places.slice(i, i + batchSize).map(ctidOf);
      const batch = await db.transaction().execute(async (trx) => {
        const { rows: [before] } = await sql<{ lsn: string }>`
          select set_config('synchronous_commit', 'off', true), set_config('backend_flush_after', '256kB', true),
                 pg_current_wal_insert_lsn()::text as lsn`.execute(trx);
        const { rows: [row] } = await sql<{ deleted: string }>`
          with batch as (
            select ctid from tokens
             where ctid = any(${ctids}::tid[]) and expires_at < ${instantOf(cutoff)}
             for update skip locked
          ), gone as (
            delete from tokens where ctid = any(array(select ctid from batch)) returning 1
          )
          select count(*)::text as deleted from gone`.execute(trx);
        const { rows: [after] } = await sql<{ lsn: string }>`select pg_current_wal_insert_lsn()::text as lsn`.execute(trx);
        return { deleted: Number(row!.deleted), walBytes: walPosition(after!.lsn) - walPosition(before!.lsn) };
      });
      total += batch.deleted;
      await purgeRest(performance.now() - started, batch.walBytes);
    }
  }
  return total;
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
  // Grant rows first, in a statement of their own (see revokeGrantRow), then everything. Locked
  // in digest order, the order a batch of rotations locks them in (rotateRefreshTokens): in
  // the order found, this and such a batch could each hold a grant the other waits for.
  await trx.updateTable('tokens').set({ revoked_at: sql`now()` })
    .where('id_sha256', 'in', (eb) => eb.selectFrom('tokens').select('id_sha256')
      .where(column, '=', value).where('kind', '=', 'Grant').where('revoked_at', 'is', null).orderBy('id_sha256').forUpdate())
    .where(liveRow)
    .execute();
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
