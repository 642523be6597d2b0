// /management/management-users: the operators of this API ([[management.users]]), with
// whether failed sign-ins have locked them out and how many live tokens they hold; an admin
// can lift a lockout and revoke another operator's tokens (a leaked token, someone who left)
// on every instance at once. The user store itself is the configuration file.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import { countLoginFailures, deleteAllLoginFailures, managementAccountKey } from '../store/login-failures.ts';
import { countLiveManagementTokens, revokeManagementTokensOfUser } from '../store/management-tokens.ts';
import type { ManagementApi } from './api.ts';
import type { ManagementAuthDeps } from './auth.ts';
import { notFound } from './errors.ts';
import { cursorAfter, pageOf, pageQuery, pageStart } from './paging.ts';

export const managementUserSchema = z.object({
  username: z.string(),
  roles: z.array(z.enum(['admin', 'auditor'])),
  locked: z.boolean(),
  failed_sign_ins: z.number().int().min(0),
  active_tokens: z.number().int().min(0),
}).meta({ id: 'ManagementUser' });

export function addManagementUserRoutes(api: ManagementApi, router: Router, deps: ManagementAuthDeps): void {
  const { config, db, users } = deps;
  const configured = (ctx: Context & { params: Record<string, string> }) => {
    const user = users.get(ctx.params.username ?? '');
    if (!user) throw notFound(`no management user "${String(ctx.params.username).replace(/[\0-\x1f]/g, '?').slice(0, 300)}"`);
    return user;
  };
  const describe = async (username: string, tokens: Map<string, number>) => {
    const failed = await countLoginFailures(db, managementAccountKey(username), config.lockoutWindow);
    return {
      username, roles: [...users.get(username)!.roles],
      locked: failed >= config.lockoutMaxFailures, failed_sign_ins: failed, active_tokens: tokens.get(username) ?? 0,
    };
  };

  api.add(router, {
    method: 'get', path: '/management-users', summary: 'List the management users, whether they are locked out, and their live tokens',
    query: pageQuery, responses: { 200: pageOf(managementUserSchema) },
    handler: async (_ctx, { query }) => {
      const after = pageStart(query.cursor);
      const names = [...users.keys()].sort();
      const rest = after === undefined ? names : names.filter((n) => n > after);
      const page = rest.slice(0, query.limit);
      const tokens = await countLiveManagementTokens(db);
      const items = [];
      for (const name of page) items.push(await describe(name, tokens));
      return { items, next_cursor: rest.length > page.length ? cursorAfter(page.at(-1)!) : null, total: names.length };
    },
  });
  api.add(router, {
    method: 'get', path: '/management-users/:username', summary: 'Show a management user', responses: { 200: managementUserSchema },
    handler: async (ctx) => describe(configured(ctx).username, await countLiveManagementTokens(db)),
  });
  api.add(router, {
    method: 'post', path: '/management-users/:username/unlock', summary: 'Lift a lockout: forget the failed sign-ins counted against the management user',
    responses: { 200: z.object({ username: z.string(), unlocked: z.literal(true), login_failures_deleted: z.number().int() }) },
    handler: async (ctx) => {
      const { username } = configured(ctx);
      return { username, unlocked: true as const, login_failures_deleted: await deleteAllLoginFailures(db, managementAccountKey(username)) };
    },
  });
  api.add(router, {
    method: 'post', path: '/management-users/:username/revoke-tokens', summary: 'Revoke every live token of a management user, on every instance',
    responses: { 200: z.object({ username: z.string(), revoked: z.number().int().min(0) }) },
    handler: async (ctx) => {
      const { username } = configured(ctx);
      return { username, revoked: await revokeManagementTokensOfUser(db, username) };
    },
  });
}
