// The scope registry: which scopes exist, what they mean, and which roles they are bound to.
import type { Db } from '../db/database.ts';
import { AlreadyExistsError, checkRoleName, UnknownRoleError, UserInputError } from './users.ts';

const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]{1,200}$/; // RFC 6749 §3.3

export interface RegisteredScope {
  name: string;
  description: string;
  roles: string[];
}

export async function createScope(db: Db, name: string, description = '', roles: string[] = []): Promise<RegisteredScope> {
  if (!SCOPE_TOKEN.test(name)) throw new UserInputError(`invalid scope name "${name}" (RFC 6749 §3.3 scope-token)`);
  roles.forEach(checkRoleName);
  return db.transaction().execute(async (trx) => {
    const exists = await trx.selectFrom('scopes').select('name').where('name', '=', name).executeTakeFirst();
    if (exists) throw new AlreadyExistsError(`scope "${name}" already exists`);
    await trx.insertInto('scopes').values({ name, description }).execute();
    for (const role of roles) {
      const known = await trx.selectFrom('roles').select('name').where('name', '=', role).executeTakeFirst();
      if (!known) throw new UnknownRoleError(`no role "${role}" (create it with: keymgr role create ${role})`);
      await trx.insertInto('scope_roles').values({ scope_name: name, role_name: role }).execute();
    }
    return { name, description, roles };
  });
}

export async function listScopes(db: Db): Promise<RegisteredScope[]> {
  const scopes = await db.selectFrom('scopes').select(['name', 'description']).orderBy('name').execute();
  const bindings = await db.selectFrom('scope_roles').select(['scope_name', 'role_name']).orderBy('role_name').execute();
  return scopes.map((s) => ({ ...s, roles: bindings.filter((b) => b.scope_name === s.name).map((b) => b.role_name) }));
}

/** The registered scopes among `names`, each with its role bindings: one query. */
export async function findScopes(db: Db, names: readonly string[]): Promise<Map<string, RegisteredScope>> {
  const found = new Map<string, RegisteredScope>();
  if (names.length === 0) return found;
  const rows = await db.selectFrom('scopes')
    .leftJoin('scope_roles', 'scope_roles.scope_name', 'scopes.name')
    .select(['scopes.name', 'scopes.description', 'scope_roles.role_name'])
    .where('scopes.name', 'in', names)
    .execute();
  for (const r of rows) {
    const s = found.get(r.name) ?? { name: r.name, description: r.description, roles: [] };
    if (r.role_name) s.roles.push(r.role_name);
    found.set(r.name, s);
  }
  return found;
}

/**
 * Changes a scope's description and/or replaces its role bindings (an empty list: granted to
 * every user the client may ask for it). Undefined for an unknown scope. The registry's change
 * trigger tells every instance.
 */
export async function updateScope(db: Db, name: string, change: { description?: string; roles?: string[] }): Promise<RegisteredScope | undefined> {
  change.roles?.forEach(checkRoleName);
  return db.transaction().execute(async (trx) => {
    const row = await trx.selectFrom('scopes').select(['name', 'description']).where('name', '=', name).forUpdate().executeTakeFirst();
    if (!row) return undefined;
    if (change.description !== undefined) await trx.updateTable('scopes').set({ description: change.description }).where('name', '=', name).execute();
    if (change.roles !== undefined) {
      const roles = [...new Set(change.roles)];
      const known = roles.length ? await trx.selectFrom('roles').select('name').where('name', 'in', roles).forShare().execute() : [];
      const unknown = roles.find((r) => !known.some((k) => k.name === r));
      if (unknown) throw new UnknownRoleError(`no role "${unknown}" (create it with: keymgr role create ${unknown})`);
      await trx.deleteFrom('scope_roles').where('scope_name', '=', name).execute();
      if (roles.length) await trx.insertInto('scope_roles').values(roles.map((role) => ({ scope_name: name, role_name: role }))).execute();
    }
    const updated = (await findScopes(trx, [name])).get(name)!;
    return { ...updated, roles: updated.roles.sort() };
  });
}

export async function deleteScope(db: Db, name: string): Promise<boolean> {
  const r = await db.deleteFrom('scopes').where('name', '=', name).executeTakeFirst();
  return r.numDeletedRows > 0n;
}

/** One page of scopes in name order, as listScopes describes them, after the scope `after`; and how many scopes there are. */
export async function listScopesPage(db: Db, { limit, after }: { limit: number; after?: string }): Promise<{ rows: RegisteredScope[]; total: number; more: boolean }> {
  let query = db.selectFrom('scopes').select(['name', 'description']).orderBy('name').limit(limit + 1);
  if (after !== undefined) query = query.where('name', '>', after);
  const [rows, count] = await Promise.all([
    query.execute(),
    db.selectFrom('scopes').select((e) => e.fn.countAll<string>().as('n')).executeTakeFirstOrThrow(),
  ]);
  const page = rows.slice(0, limit);
  const found = await findScopes(db, page.map((s) => s.name));
  return {
    rows: page.map((s) => ({ ...s, roles: (found.get(s.name)?.roles ?? []).sort() })),
    total: Number(count.n),
    more: rows.length > limit,
  };
}
