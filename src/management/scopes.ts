// /management/scopes: the scope registry, with the field names `keymgr scope list --json`
// prints. A scope bound to roles is granted only to users holding one of them.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import type { Db } from '../db/database.ts';
import { createScope, deleteScope, findScopes, listScopesPage, updateScope } from '../store/scopes.ts';
import { AlreadyExistsError, UnknownRoleError, UserInputError } from '../store/users.ts';
import type { ManagementApi } from './api.ts';
import { badRequest, ManagementError, notFound } from './errors.ts';
import { cursorAfter, pageOf, pageQuery, pageStart } from './paging.ts';
import { roleName, boundedText } from './users.ts';

const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]{1,200}$/; // RFC 6749 §3.3

export const scopeSchema = z.object({ name: z.string(), description: z.string(), roles: z.array(z.string()) }).meta({ id: 'Scope' });

const createBody = z.object({
  name: z.string().regex(SCOPE_TOKEN, 'a scope-token of RFC 6749 §3.3, 1-200 characters'),
  description: boundedText(1000).default(''),
  roles: z.array(roleName).max(100).default([]),
}).strict();
const updateBody = z.object({
  description: boundedText(1000).optional(),
  roles: z.array(roleName).max(100).optional(),
}).strict().refine((b) => b.description !== undefined || b.roles !== undefined, 'give description and/or roles');
const deleted = z.object({ name: z.string(), deleted: z.literal(true) });

function nameParam(ctx: Context & { params: Record<string, string> }): string {
  const name = ctx.params.name ?? '';
  if (!SCOPE_TOKEN.test(name)) throw notFound(`no scope "${name.replace(/[\0-\x1f]/g, '?').slice(0, 300)}"`);
  return name;
}

function asApiError(err: unknown): never {
  if (err instanceof AlreadyExistsError) throw new ManagementError(409, 'conflict', err.message);
  if (err instanceof UnknownRoleError) throw badRequest(`roles: ${err.message}`);
  if (err instanceof UserInputError) throw badRequest(`name: ${err.message}`);
  // Created, or a bound role deleted, by a concurrent request between the store's check and its insert.
  const code = (err as { code?: string }).code;
  if (code === '23505') throw new ManagementError(409, 'conflict', 'the scope was created meanwhile');
  if (code === '23503') throw badRequest('roles: a role was deleted meanwhile');
  throw err;
}

export function addScopeRoutes(api: ManagementApi, router: Router, db: Db): void {
  api.add(router, {
    method: 'get', path: '/scopes', summary: 'List registered scopes and the roles they are bound to', query: pageQuery,
    responses: { 200: pageOf(scopeSchema) },
    handler: async (_ctx, { query }) => {
      const after = pageStart(query.cursor);
      const { rows, total, more } = await listScopesPage(db, { limit: query.limit, after });
      return { items: rows, next_cursor: more ? cursorAfter(rows.at(-1)!.name) : null, total };
    },
  });
  api.add(router, {
    method: 'get', path: '/scopes/:name', summary: 'Show a scope', responses: { 200: scopeSchema },
    handler: async (ctx) => {
      const scope = (await findScopes(db, [nameParam(ctx)])).get(nameParam(ctx));
      if (!scope) throw notFound(`no scope "${nameParam(ctx)}"`);
      return { ...scope, roles: scope.roles.sort() };
    },
  });
  api.add(router, {
    method: 'post', path: '/scopes', summary: 'Register a scope, optionally granted only to users holding one of the given roles',
    body: createBody, responses: { 201: scopeSchema },
    handler: async (ctx, { body }) => {
      const created = await createScope(db, body.name, body.description, [...new Set(body.roles)]).catch(asApiError);
      ctx.status = 201;
      ctx.set('Location', `/management/scopes/${encodeURIComponent(body.name)}`);
      return created;
    },
  });
  api.add(router, {
    method: 'patch', path: '/scopes/:name',
    summary: 'Change the description and/or replace the roles a scope is bound to (an empty list: no role needed); every instance applies it from the next request',
    body: updateBody, responses: { 200: scopeSchema },
    handler: async (ctx, { body }) => {
      const updated = await updateScope(db, nameParam(ctx), body).catch(asApiError);
      if (!updated) throw notFound(`no scope "${nameParam(ctx)}"`);
      return updated;
    },
  });
  api.add(router, {
    method: 'delete', path: '/scopes/:name', summary: 'Remove a scope from the registry (it is no longer granted)', responses: { 200: deleted },
    handler: async (ctx) => {
      if (!(await deleteScope(db, nameParam(ctx)))) throw notFound(`no scope "${nameParam(ctx)}"`);
      return { name: nameParam(ctx), deleted: true as const };
    },
  });
}
