// /management/roles: the roles users hold and scopes may be bound to, with the field names
// `keymgr role list --json` prints (`users`: how many users hold the role).
import type Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import type { Db } from '../db/database.ts';
import { AlreadyExistsError, createRole, deleteRole, findRole, listRolesPage, RoleInUseError, setRoleDescription, UserInputError } from '../store/users.ts';
import type { ManagementApi } from './api.ts';
import { badRequest, ManagementError, notFound } from './errors.ts';
import { cursorAfter, pageOf, pageQuery, pageStart } from './paging.ts';
import { roleName, boundedText } from './users.ts';

export const roleSchema = z.object({ name: z.string(), description: z.string(), users: z.number().int() }).meta({ id: 'Role' });

const createBody = z.object({ name: roleName, description: boundedText(1000).default('') }).strict();
const updateBody = z.object({ description: boundedText(1000) }).strict();
const deleted = z.object({ name: z.string(), deleted: z.literal(true) });

function nameParam(ctx: Context & { params: Record<string, string> }): string {
  const name = ctx.params.name ?? '';
  if (!roleName.safeParse(name).success) throw notFound(`no role "${name.replace(/[\0-\x1f]/g, '?').slice(0, 300)}"`);
  return name;
}

function asApiError(err: unknown): never {
  if (err instanceof AlreadyExistsError || err instanceof RoleInUseError) throw new ManagementError(409, 'conflict', err.message);
  if (err instanceof UserInputError) throw badRequest(`name: ${err.message}`);
  throw err;
}

export function addRoleRoutes(api: ManagementApi, router: Router, db: Db): void {
  api.add(router, {
    method: 'get', path: '/roles', summary: 'List roles and how many users hold each', query: pageQuery,
    responses: { 200: pageOf(roleSchema) },
    handler: async (_ctx, { query }) => {
      const after = pageStart(query.cursor);
      const { rows, total, more } = await listRolesPage(db, { limit: query.limit, after });
      return { items: rows, next_cursor: more ? cursorAfter(rows.at(-1)!.name) : null, total };
    },
  });
  api.add(router, {
    method: 'get', path: '/roles/:name', summary: 'Show a role', responses: { 200: roleSchema },
    handler: async (ctx) => {
      const role = await findRole(db, nameParam(ctx));
      if (!role) throw notFound(`no role "${nameParam(ctx)}"`);
      return role;
    },
  });
  api.add(router, {
    method: 'post', path: '/roles', summary: 'Create a role', body: createBody, responses: { 201: roleSchema },
    handler: async (ctx, { body }) => {
      await createRole(db, body.name, body.description).catch(asApiError);
      ctx.status = 201;
      ctx.set('Location', `/management/roles/${body.name}`);
      return { name: body.name, description: body.description, users: 0 };
    },
  });
  api.add(router, {
    method: 'patch', path: '/roles/:name', summary: 'Change a role\'s description', body: updateBody, responses: { 200: roleSchema },
    handler: async (ctx, { body }) => {
      const changed = await setRoleDescription(db, nameParam(ctx), body.description);
      // Deleted meanwhile (between the update and this read): gone, as a later GET would say.
      const role = changed ? await findRole(db, nameParam(ctx)) : undefined;
      if (!role) throw notFound(`no role "${nameParam(ctx)}"`);
      return role;
    },
  });
  api.add(router, {
    method: 'delete', path: '/roles/:name', summary: 'Delete a role (users lose it); refused (409) while scopes are bound to it',
    responses: { 200: deleted },
    handler: async (ctx) => {
      if (!(await deleteRole(db, nameParam(ctx)).catch(asApiError))) throw notFound(`no role "${nameParam(ctx)}"`);
      return { name: nameParam(ctx), deleted: true as const };
    },
  });
}
