// Trusted SAML identity providers and the assertion replay cache.
import { sql } from 'kysely';
import type { Db } from '../db/database.ts';
import type { IdpRow } from '../db/types.ts';

export class IdpInputError extends Error {}
/** An identity provider with this entity ID is already registered. */
export class IdpConflictError extends IdpInputError {}

export interface NewIdp {
  entityId: string;
  certificates: string[];
  jit?: boolean;
  defaultRoles?: string[];
  allowedClients?: string[];
  /** Accept transient NameIDs (refused by default: they identify nobody across sessions). */
  allowTransient?: boolean;
}

export async function addIdp(db: Db, idp: NewIdp): Promise<IdpRow> {
  if (!idp.entityId || idp.entityId.length > 1024) throw new IdpInputError('entity ID must be 1 to 1024 characters');
  if (idp.certificates.length === 0) throw new IdpInputError('at least one signing certificate is required');
  for (const role of idp.defaultRoles ?? []) {
    const known = await db.selectFrom('roles').select('name').where('name', '=', role).executeTakeFirst();
    if (!known) throw new IdpInputError(`no role "${role}" (create it with: keymgr role create ${role})`);
  }
  try {
    return await db.insertInto('saml_identity_providers').values({
      entity_id: idp.entityId,
      certificates: idp.certificates,
      jit_provisioning: idp.jit ?? false,
      jit_default_roles: idp.defaultRoles ?? [],
      allowed_clients: idp.allowedClients?.length ? idp.allowedClients : null,
      allow_transient: idp.allowTransient ?? false,
    }).returningAll().executeTakeFirstOrThrow();
  } catch (err) {
    if ((err as { code?: string }).code === '23505') throw new IdpConflictError(`identity provider "${idp.entityId}" is already registered`);
    throw err;
  }
}

export async function findIdp(db: Db, entityId: string): Promise<IdpRow | undefined> {
  return db.selectFrom('saml_identity_providers').selectAll().where('entity_id', '=', entityId).executeTakeFirst();
}

/**
 * Whether this registration of the IdP (told by when it was added: removing and adding it again
 * is a new one) is still there and enabled. Share-locks the row, so that a disable or removal
 * not yet committed is waited for and then seen.
 */
export async function isIdpStillTrusted(db: Db, entityId: string, addedAt: Date): Promise<boolean> {
  const row = await db.selectFrom('saml_identity_providers').select(['enabled', 'created_at'])
    .where('entity_id', '=', entityId).forShare().executeTakeFirst();
  return row !== undefined && row.enabled && row.created_at.getTime() === addedAt.getTime();
}

/** Every registered IdP, enabled or not: an input-independent query, so the SAML grant can pick one before trusting anything it was sent. */
export async function listIdps(db: Db): Promise<IdpRow[]> {
  return db.selectFrom('saml_identity_providers').selectAll().orderBy('entity_id').execute();
}

export async function setIdpEnabled(db: Db, entityId: string, enabled: boolean): Promise<boolean> {
  const r = await db.updateTable('saml_identity_providers').set({ enabled, updated_at: new Date() }).where('entity_id', '=', entityId).executeTakeFirst();
  return r.numUpdatedRows > 0n;
}

/**
 * Stops trusting the IdP. Users federated from it are kept, links included (no foreign key,
 * see 0006_federated_users.sql): registering the same entity id again gives them back.
 */
export async function removeIdp(db: Db, entityId: string): Promise<boolean> {
  const r = await db.deleteFrom('saml_identity_providers').where('entity_id', '=', entityId).executeTakeFirst();
  return r.numDeletedRows > 0n;
}

/** Records the assertion ID; false when it was seen before (a replay). */
export async function recordAssertionId(db: Db, idpEntityId: string, assertionId: string, expiresAt: Date): Promise<boolean> {
  const inserted = await db.insertInto('saml_assertion_ids')
    .values({ idp_entity_id: idpEntityId, assertion_id: assertionId, expires_at: expiresAt })
    .onConflict((oc) => oc.columns(['idp_entity_id', 'assertion_id']).doNothing())
    .returning('assertion_id')
    .executeTakeFirst();
  return inserted !== undefined;
}

/**
 * Kept this long past their expiry: an instance whose clock runs behind the database's still
 * takes an assertion for unexpired a while after the database's clock says it has expired,
 * and must still find it used.
 */
const ASSERTION_IDS_KEPT_PAST_EXPIRY = sql`interval '1 hour'`;

export async function purgeExpiredAssertionIds(db: Db): Promise<number> {
  const r = await db.deleteFrom('saml_assertion_ids').where('expires_at', '<', sql<Date>`now() - ${ASSERTION_IDS_KEPT_PAST_EXPIRY}`).executeTakeFirst();
  return Number(r.numDeletedRows);
}

export function describeIdp(row: IdpRow) {
  return {
    entity_id: row.entity_id,
    enabled: row.enabled,
    certificates: row.certificates.length,
    jit_provisioning: row.jit_provisioning,
    jit_default_roles: row.jit_default_roles,
    allowed_clients: row.allowed_clients,
    allow_transient: row.allow_transient,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

/** One page of the registered IdPs in entity_id order, starting after the given one; with the total. */
export async function listIdpsPage(db: Db, { limit, after }: { limit: number; after?: string }): Promise<{ rows: IdpRow[]; total: number; more: boolean }> {
  let page = db.selectFrom('saml_identity_providers').selectAll().orderBy('entity_id').limit(limit + 1);
  if (after !== undefined) page = page.where('entity_id', '>', after);
  const [rows, count] = await Promise.all([
    page.execute(),
    db.selectFrom('saml_identity_providers').select((e) => e.fn.countAll<string>().as('n')).executeTakeFirstOrThrow(),
  ]);
  return { rows: rows.slice(0, limit), total: Number(count.n), more: rows.length > limit };
}
