// Users (resource owners), roles and role membership, and where each user comes from: a
// local user has a password; a federated user belongs to one SAML identity provider, under
// the NameID that IdP gives them (db/migrations/0006_federated_users.sql).
import { sql } from 'kysely';
import type { Db } from '../db/database.ts';
import type { UserRow } from '../db/types.ts';
import { deleteAllLoginFailures } from './login-failures.ts';

export class UserInputError extends Error {}
/** JIT provisioning found the username taken by a user of another source. */
export class UsernameTakenError extends UserInputError {}
/** The user, role or scope to create exists already. */
export class AlreadyExistsError extends UserInputError {}
/** A user named by the input does not exist. */
export class UnknownUserError extends UserInputError {}
/** A role named by the input does not exist. */
export class UnknownRoleError extends UserInputError {}
/** The role cannot be deleted while scopes are bound to it. */
export class RoleInUseError extends UserInputError {}

const ROLE_NAME = /^[A-Za-z0-9_.:-]{1,100}$/;
export const MAX_USERNAME_LENGTH = 255;

export function checkUsername(username: string): void {
  if (!username || username.length > MAX_USERNAME_LENGTH) throw new UserInputError(`username must be 1 to ${MAX_USERNAME_LENGTH} characters`);
  // Control and invisible formatting characters (NUL, zero-width spaces, bidi marks), line
  // separators, surrounding spaces and unnormalised forms make names that look alike: `alice`
  // and `alice\u200b` must not be two users an operator or a resource server can confuse.
  if (/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(username) || username.trim() !== username || username.normalize('NFC') !== username) {
    throw new UserInputError('username must not contain control or invisible characters, surrounding spaces, or unnormalised (non-NFC) text');
  }
}

/**
 * A name for a new user: also stable under compatibility normalisation (NFKC), so that no new
 * user is a look-alike of another — fullwidth `ａｌｉｃｅ`, a ligature, the Kelvin sign — which
 * the lower-case uniqueness of usernames would let through. (Only for new users: a user
 * created before this rule can still sign in under their name.)
 */
export function checkNewUsername(username: string): void {
  checkUsername(username);
  if (username.normalize('NFKC') !== username) {
    throw new UserInputError(`username must be written in its plain form (${JSON.stringify(username.normalize('NFKC'))}): fullwidth letters, ligatures and other compatibility characters make look-alikes of other names`);
  }
}

/** Whether a user could have this name (checkUsername without the error). */
export function isPossibleUsername(username: string): boolean {
  try {
    checkUsername(username);
    return true;
  } catch (err) {
    if (err instanceof UserInputError) return false;
    throw err;
  }
}

export const MAX_NAME_ID_LENGTH = 256;
const MAX_ENTITY_ID_LENGTH = 1024;
// Controls and lone surrogates: nothing to compare exactly, and nothing the database can hold.
const UNSAFE = /[\p{Cc}\p{Cs}]/u;

/** NameIDs are compared exactly (no case folding), so they must be what they look like. */
export function checkNameId(nameId: string): void {
  if (!nameId || nameId.length > MAX_NAME_ID_LENGTH) throw new UserInputError(`NameID must be 1 to ${MAX_NAME_ID_LENGTH} characters`);
  if (UNSAFE.test(nameId) || nameId.trim() !== nameId) {
    throw new UserInputError('NameID must not contain control characters or surrounding spaces');
  }
}

export interface Federation {
  /** The IdP's entity ID. */
  idp: string;
  nameId: string;
}

export function checkRoleName(name: string): void {
  if (!ROLE_NAME.test(name)) throw new UserInputError(`role name "${name}" must be 1-100 of A-Z a-z 0-9 _ . : -`);
}

function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: string }).code === '23505';
}

export async function createUser(db: Db, username: string, passwordHash: string, roles: string[] = []): Promise<UserRow> {
  checkNewUsername(username);
  return db.transaction().execute(async (trx) => {
    let user: UserRow;
    try {
      user = await trx.insertInto('users').values({ username, password_hash: passwordHash }).returningAll().executeTakeFirstOrThrow();
    } catch (err) {
      if (isUniqueViolation(err)) throw new AlreadyExistsError(`user "${username}" already exists`);
      throw err;
    }
    for (const role of roles) await grantRoleTx(trx, user, role);
    return user;
  });
}

/**
 * Usernames are case-insensitive by PostgreSQL's lower() — the fold of the unique index and of
 * the lockout count — on both sides, never JavaScript's (they differ, e.g. on Greek final sigma).
 */
function sameUsername(username: string) {
  return sql<boolean>`lower(username) = lower(${username})`;
}

export async function findUserByUsername(db: Db, username: string): Promise<UserRow | undefined> {
  return db.selectFrom('users').selectAll().where(sameUsername(username)).executeTakeFirst();
}

/** The user a SAML IdP vouches for under this NameID (exact match), if any. */
export async function findFederatedUser(db: Db, federation: Federation): Promise<UserRow | undefined> {
  return db.selectFrom('users').selectAll()
    .where('federated_idp', '=', federation.idp).where('federated_name_id', '=', federation.nameId)
    .executeTakeFirst();
}

/**
 * JIT provisioning: creates the user federated from an IdP, with the IdP's default roles, in
 * the caller's transaction. Never takes over an existing user: when the username belongs to
 * a user of another source it throws UsernameTakenError; when the same (IdP, NameID) was
 * provisioned meanwhile by a concurrent request, it returns that user.
 */
export async function provisionFederatedUser(
  trx: Db, username: string, passwordHash: string, roles: string[], federation: Federation,
): Promise<UserRow> {
  checkNewUsername(username);
  checkNameId(federation.nameId);
  // DO NOTHING on either unique index (username, or IdP and NameID): no error aborts the
  // caller's transaction, and a concurrent insert is waited for, then seen below.
  const user = await trx.insertInto('users')
    .values({ username, password_hash: passwordHash, federated_idp: federation.idp, federated_name_id: federation.nameId })
    .onConflict((oc) => oc.doNothing())
    .returningAll()
    .executeTakeFirst();
  if (!user) {
    const raced = await findFederatedUser(trx, federation);
    if (raced) return raced;
    throw new UsernameTakenError(`user "${username}" already exists and is not federated from "${federation.idp}" under this NameID`);
  }
  for (const role of roles) await grantRoleTx(trx, user, role);
  return user;
}

/**
 * Operator's link: from now on the IdP's NameID maps to this user. Refused for an unknown
 * user or IdP, a user already federated (a user has one source), or a NameID already linked.
 */
export async function linkUser(db: Db, username: string, federation: Federation): Promise<UserRow> {
  const { idp, nameId } = federation;
  checkNameId(nameId);
  if (!idp || idp.length > MAX_ENTITY_ID_LENGTH || UNSAFE.test(idp)) throw new UserInputError(`no identity provider "${idp}"`);
  return db.transaction().execute(async (trx) => {
    const known = await trx.selectFrom('saml_identity_providers').select('entity_id').where('entity_id', '=', idp).executeTakeFirst();
    if (!known) throw new UserInputError(`no identity provider "${idp}"`);
    const user = await trx.selectFrom('users').selectAll()
      .where(sameUsername(username)).forUpdate().executeTakeFirst();
    if (!user) throw new UserInputError(`no user "${username}"`);
    if (user.federated_idp === idp && user.federated_name_id === nameId) {
      throw new UserInputError(`user "${user.username}" is already linked to NameID "${nameId}" of "${idp}"`);
    }
    if (user.federated_idp !== null) {
      throw new UserInputError(`user "${user.username}" is already federated from "${user.federated_idp}" (NameID "${user.federated_name_id}"); a user belongs to one identity provider`);
    }
    const holder = await findFederatedUser(trx, federation);
    if (holder) throw new UserInputError(`NameID "${nameId}" of "${idp}" is already linked to user "${holder.username}"`);
    try {
      return await trx.updateTable('users').set({ federated_idp: idp, federated_name_id: nameId, updated_at: new Date() })
        .where('id', '=', user.id).returningAll().executeTakeFirstOrThrow();
    } catch (err) {
      // Linked meanwhile by a concurrent command.
      if (isUniqueViolation(err)) throw new UserInputError(`NameID "${nameId}" of "${idp}" is already linked to another user`);
      throw err;
    }
  });
}

export async function findUserById(db: Db, id: string): Promise<UserRow | undefined> {
  if (!/^[0-9a-f-]{36}$/i.test(id)) return undefined;
  return db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function listUsers(db: Db): Promise<(UserRow & { roles: string[] })[]> {
  const users = await db.selectFrom('users').selectAll().orderBy(sql`lower(username)`).execute();
  const memberships = await db.selectFrom('user_roles').select(['user_id', 'role_name']).orderBy('role_name').execute();
  return users.map((u) => ({ ...u, roles: memberships.filter((m) => m.user_id === u.id).map((m) => m.role_name) }));
}

export async function rolesOfUser(db: Db, userId: string): Promise<string[]> {
  const rows = await db.selectFrom('user_roles').select('role_name').where('user_id', '=', userId).orderBy('role_name').execute();
  return rows.map((r) => r.role_name);
}

export async function setPasswordHash(db: Db, userId: string, passwordHash: string): Promise<void> {
  await db.updateTable('users').set({ password_hash: passwordHash, updated_at: new Date() }).where('id', '=', userId).execute();
}

/** Replaces the hash only if it is still the one that was checked (a concurrent change wins). */
export async function upgradePasswordHash(db: Db, userId: string, oldHash: string, newHash: string): Promise<void> {
  await db.updateTable('users').set({ password_hash: newHash, updated_at: new Date() })
    .where('id', '=', userId).where('password_hash', '=', oldHash).execute();
}

export async function setUserDisabled(db: Db, username: string, disabled: boolean): Promise<boolean> {
  const r = await db.updateTable('users').set({ disabled, updated_at: new Date() })
    .where(sameUsername(username)).executeTakeFirst();
  return r.numUpdatedRows > 0n;
}

/** Deletes the user; tokens issued for them stop working (their account no longer resolves). */
export async function deleteUser(db: Db, username: string): Promise<UserRow | undefined> {
  return db.deleteFrom('users').where(sameUsername(username)).returningAll().executeTakeFirst();
}

export async function createRole(db: Db, name: string, description = ''): Promise<void> {
  checkRoleName(name);
  try {
    await db.insertInto('roles').values({ name, description }).execute();
  } catch (err) {
    if (isUniqueViolation(err)) throw new AlreadyExistsError(`role "${name}" already exists`);
    throw err;
  }
}

/** Changes a role's description; false for an unknown role. */
export async function setRoleDescription(db: Db, name: string, description: string): Promise<boolean> {
  const r = await db.updateTable('roles').set({ description }).where('name', '=', name).executeTakeFirst();
  return r.numUpdatedRows > 0n;
}

export async function listRoles(db: Db): Promise<{ name: string; description: string; users: number }[]> {
  const rows = await db.selectFrom('roles')
    .leftJoin('user_roles', 'user_roles.role_name', 'roles.name')
    .select(['roles.name', 'roles.description', (eb) => eb.fn.count<string>('user_roles.user_id').as('users')])
    .groupBy(['roles.name', 'roles.description'])
    .orderBy('roles.name')
    .execute();
  return rows.map((r) => ({ name: r.name, description: r.description, users: Number(r.users) }));
}

/**
 * Deletes a role; users lose it. Refused while scopes are bound to it: dropping the binding
 * would leave such a scope bound to nothing, which means granted to every user.
 */
export async function deleteRole(db: Db, name: string): Promise<boolean> {
  const bound = await db.selectFrom('scope_roles').select('scope_name').where('role_name', '=', name).execute();
  if (bound.length > 0) {
    throw new RoleInUseError(`role "${name}" restricts scope(s) ${bound.map((b) => b.scope_name).join(', ')}; delete or re-create those scopes first`);
  }
  try {
    const r = await db.deleteFrom('roles').where('name', '=', name).executeTakeFirst();
    return r.numDeletedRows > 0n;
  } catch (err) {
    // A binding added meanwhile: the foreign key refuses (ON DELETE RESTRICT raises
    // restrict_violation, 23001; a deferred check would raise foreign_key_violation, 23503).
    const code = (err as { code?: string }).code;
    if (code === '23001' || code === '23503') throw new RoleInUseError(`role "${name}" is bound to a scope`);
    throw err;
  }
}

async function grantRoleTx(trx: Db, user: UserRow, role: string): Promise<void> {
  const exists = await trx.selectFrom('roles').select('name').where('name', '=', role).executeTakeFirst();
  if (!exists) throw new UnknownRoleError(`no role "${role}" (create it with: keymgr role create ${role})`);
  await trx.insertInto('user_roles').values({ user_id: user.id, role_name: role })
    .onConflict((oc) => oc.columns(['user_id', 'role_name']).doNothing()).execute();
}

export async function grantRole(db: Db, username: string, role: string): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const user = await findUserByUsername(trx, username);
    if (!user) throw new UnknownUserError(`no user "${username}"`);
    await grantRoleTx(trx, user, role);
  });
}

export async function revokeRole(db: Db, username: string, role: string): Promise<boolean> {
  const user = await findUserByUsername(db, username);
  if (!user) throw new UnknownUserError(`no user "${username}"`);
  const r = await db.deleteFrom('user_roles').where('user_id', '=', user.id).where('role_name', '=', role).executeTakeFirst();
  return r.numDeletedRows > 0n;
}

export function describeUser(u: UserRow & { roles?: string[] }) {
  return {
    id: u.id,
    username: u.username,
    disabled: u.disabled,
    federated_idp: u.federated_idp,
    federated_name_id: u.federated_name_id,
    ...(u.roles ? { roles: u.roles } : {}),
    created_at: u.created_at.toISOString(),
    updated_at: u.updated_at.toISOString(),
  };
}

/** The roles of each of these users, in name order: one query. */
async function rolesOfUsers(db: Db, userIds: string[]): Promise<Map<string, string[]>> {
  const roles = new Map<string, string[]>(userIds.map((id) => [id, []]));
  if (userIds.length === 0) return roles;
  const rows = await db.selectFrom('user_roles').select(['user_id', 'role_name']).where('user_id', 'in', userIds).orderBy('role_name').execute();
  for (const r of rows) roles.get(r.user_id)?.push(r.role_name);
  return roles;
}

/**
 * One page of users in the order of `keymgr user list` (lower(username), unique), starting
 * after the user named `after`, each with their roles; and how many users there are.
 */
export async function listUsersPage(db: Db, { limit, after }: { limit: number; after?: string }): Promise<{ rows: (UserRow & { roles: string[] })[]; total: number; more: boolean }> {
  let query = db.selectFrom('users').selectAll().orderBy(sql`lower(username)`).limit(limit + 1);
  if (after !== undefined) query = query.where(sql<string>`lower(username)`, '>', sql<string>`lower(${after})`);
  const [rows, count] = await Promise.all([
    query.execute(),
    db.selectFrom('users').select((e) => e.fn.countAll<string>().as('n')).executeTakeFirstOrThrow(),
  ]);
  const page = rows.slice(0, limit);
  const roles = await rolesOfUsers(db, page.map((u) => u.id));
  return { rows: page.map((u) => ({ ...u, roles: roles.get(u.id) ?? [] })), total: Number(count.n), more: rows.length > limit };
}

/** The user (found as findUserByUsername does) with their roles. */
export async function findUserWithRoles(db: Db, username: string): Promise<(UserRow & { roles: string[] }) | undefined> {
  const user = await findUserByUsername(db, username);
  return user && { ...user, roles: await rolesOfUser(db, user.id) };
}

/**
 * Replaces the user's roles with exactly these (each must exist). Undefined for an unknown user.
 */
export async function setUserRoles(db: Db, username: string, roles: string[]): Promise<(UserRow & { roles: string[] }) | undefined> {
  roles.forEach(checkRoleName);
  return db.transaction().execute(async (trx) => {
    const user = await trx.selectFrom('users').selectAll()
      .where(sameUsername(username)).forUpdate().executeTakeFirst();
    if (!user) return undefined;
    let removal = trx.deleteFrom('user_roles').where('user_id', '=', user.id);
    if (roles.length > 0) removal = removal.where('role_name', 'not in', roles);
    await removal.execute();
    for (const role of roles) await grantRoleTx(trx, user, role);
    const updated = await trx.updateTable('users').set({ updated_at: new Date() }).where('id', '=', user.id).returningAll().executeTakeFirstOrThrow();
    return { ...updated, roles: await rolesOfUser(trx, user.id) };
  });
}

/**
 * Lifts a lockout: deletes every failed (and in-flight) sign-in counted against the account,
 * keyed like the count by PostgreSQL's lower() of the username. Undefined for an unknown user;
 * otherwise how many rows were deleted.
 */
export async function unlockUser(db: Db, username: string): Promise<{ user: UserRow; deleted: number } | undefined> {
  const user = await findUserByUsername(db, username);
  if (!user) return undefined;
  return { user, deleted: await deleteAllLoginFailures(db, user.username) };
}

/** The role with how many users hold it, as listRoles describes it. */
export async function findRole(db: Db, name: string): Promise<{ name: string; description: string; users: number } | undefined> {
  const row = await db.selectFrom('roles')
    .leftJoin('user_roles', 'user_roles.role_name', 'roles.name')
    .select(['roles.name', 'roles.description', (eb) => eb.fn.count<string>('user_roles.user_id').as('users')])
    .where('roles.name', '=', name)
    .groupBy(['roles.name', 'roles.description'])
    .executeTakeFirst();
  return row && { name: row.name, description: row.description, users: Number(row.users) };
}

/** One page of roles in name order, as listRoles describes them, after the role `after`; and how many roles there are. */
export async function listRolesPage(db: Db, { limit, after }: { limit: number; after?: string }): Promise<{ rows: { name: string; description: string; users: number }[]; total: number; more: boolean }> {
  let query = db.selectFrom('roles')
    .leftJoin('user_roles', 'user_roles.role_name', 'roles.name')
    .select(['roles.name', 'roles.description', (eb) => eb.fn.count<string>('user_roles.user_id').as('users')])
    .groupBy(['roles.name', 'roles.description'])
    .orderBy('roles.name')
    .limit(limit + 1);
  if (after !== undefined) query = query.where('roles.name', '>', after);
  const [rows, count] = await Promise.all([
    query.execute(),
    db.selectFrom('roles').select((e) => e.fn.countAll<string>().as('n')).executeTakeFirstOrThrow(),
  ]);
  return {
    rows: rows.slice(0, limit).map((r) => ({ name: r.name, description: r.description, users: Number(r.users) })),
    total: Number(count.n),
    more: rows.length > limit,
  };
}
