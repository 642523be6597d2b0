// /management/users: the OAuth users (resource owners, the `users` table — not the management
// users of keymanager.toml), with the field names `keymgr user list --json` prints. Users are
// named by username in paths, found regardless of case as everywhere else. A password is
// write-only: hashed with argon2id on arrival and never returned.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import type { Db } from '../db/database.ts';
import type { Config } from '../config/index.ts';
import { checkPasswordAcceptable, hashPassword, passwordParams, PasswordPolicyError } from '../store/passwords.ts';
import {
  AlreadyExistsError, createUser, deleteUser, describeUser, findRole, findUserByUsername, findUserWithRoles, grantRole, listUsersPage,
  MAX_USERNAME_LENGTH, revokeRole, RoleInUseError, setPasswordHash, setUserDisabled, setUserRoles, UnknownRoleError, UnknownUserError,
  unlockUser, UserInputError,
} from '../store/users.ts';
import type { ManagementApi } from './api.ts';
import { badRequest, ManagementError, notFound } from './errors.ts';
import { cursorAfter, pageOf, pageQuery, pageStart } from './paging.ts';

/** Bounded text. NUL and lone surrogates never get this far: ManagementApi refuses them in paths and bodies. */
export const boundedText = (max: number) => z.string().max(max);
export const roleName = z.string().regex(/^[A-Za-z0-9_.:-]{1,100}$/, 'a role name is 1-100 of A-Z a-z 0-9 _ . : -');

export const userSchema = z.object({
  id: z.string(),
  username: z.string(),
  disabled: z.boolean(),
  federated_idp: z.string().nullable(),
  federated_name_id: z.string().nullable(),
  roles: z.array(z.string()),
  created_at: z.string(),
  updated_at: z.string(),
}).meta({ id: 'User' });

const password = boundedText(4096);
const roles = z.array(roleName).max(100);

const createBody = z.object({
  username: boundedText(MAX_USERNAME_LENGTH).min(1),
  password,
  roles: roles.default([]),
}).strict();

const updateBody = z.object({ roles, disabled: z.boolean() }).partial().strict()
  .refine((b) => Object.keys(b).length > 0, 'nothing to change');

const passwordBody = z.object({ password }).strict();

const deleted = z.object({ username: z.string(), id: z.string(), deleted: z.literal(true) });
const disabledState = z.object({ username: z.string(), disabled: z.boolean() });
const passwordChanged = z.object({ username: z.string(), password_changed: z.literal(true) });
const unlocked = z.object({ username: z.string(), unlocked: z.literal(true), login_failures_deleted: z.number().int() });
const granted = z.object({ username: z.string(), role: z.string(), granted: z.literal(true) });
const revoked = z.object({ username: z.string(), role: z.string(), revoked: z.boolean() });

/** The username in the path; one no user can have (too long) is simply not found. */
function usernameParam(ctx: Context & { params: Record<string, string> }): string {
  const username = ctx.params.username ?? '';
  if (!username || username.length > MAX_USERNAME_LENGTH) throw notFound(`no user "${username.replace(/[\0-\x1f]/g, '?').slice(0, 300)}"`);
  return username;
}

function roleParam(ctx: Context & { params: Record<string, string> }): string {
  const role = ctx.params.role ?? '';
  if (!roleName.safeParse(role).success) throw notFound(`no role "${role.replace(/[\0-\x1f]/g, '?').slice(0, 300)}"`);
  return role;
}

/** Store refusals as API errors: duplicates 409, unknown user 404, bad input 400 with the field. */
function asApiError(field: string, unknownRole: 400 | 404 = 400) {
  return (err: unknown): never => {
    if (err instanceof AlreadyExistsError || err instanceof RoleInUseError) throw new ManagementError(409, 'conflict', err.message);
    if (err instanceof UnknownUserError) throw notFound(err.message);
    if (err instanceof UnknownRoleError) throw unknownRole === 404 ? notFound(err.message) : badRequest(`roles: ${err.message}`);
    if (err instanceof PasswordPolicyError) throw badRequest(`password: ${err.message}`);
    if (err instanceof UserInputError) throw badRequest(`${field}: ${err.message}`);
    throw err;
  };
}

async function hashAcceptable(config: Config, plain: string): Promise<string> {
  try {
    checkPasswordAcceptable(plain);
  } catch (err) {
    asApiError('password')(err);
  }
  return hashPassword(plain, passwordParams(config));
}

export function addUserRoutes(api: ManagementApi, router: Router, { db, config }: { db: Db; config: Config }): void {
  const found = async (ctx: Context & { params: Record<string, string> }) => {
    const user = await findUserByUsername(db, usernameParam(ctx));
    if (!user) throw notFound(`no user "${usernameParam(ctx)}"`);
    return user;
  };

  api.add(router, {
    method: 'get', path: '/users', summary: 'List users and their roles', query: pageQuery,
    responses: { 200: pageOf(userSchema) },
    handler: async (_ctx, { query }) => {
      const after = pageStart(query.cursor);
      const { rows, total, more } = await listUsersPage(db, { limit: query.limit, after });
      return { items: rows.map(describeUser), next_cursor: more ? cursorAfter(rows.at(-1)!.username) : null, total };
    },
  });
  api.add(router, {
    method: 'get', path: '/users/:username', summary: 'Show a user', responses: { 200: userSchema },
    handler: async (ctx) => {
      const user = await findUserWithRoles(db, usernameParam(ctx));
      if (!user) throw notFound(`no user "${usernameParam(ctx)}"`);
      return describeUser(user);
    },
  });
  api.add(router, {
    method: 'post', path: '/users', summary: 'Create a user with a password (write-only) and roles', body: createBody,
    responses: { 201: userSchema },
    handler: async (ctx, { body }) => {
      const hash = await hashAcceptable(config, body.password);
      const row = await createUser(db, body.username, hash, [...new Set(body.roles)]).catch(asApiError('username'));
      const user = await findUserWithRoles(db, row.username);
      ctx.status = 201;
      ctx.set('Location', `/management/users/${encodeURIComponent(row.username)}`);
      return describeUser(user ?? { ...row, roles: [] });
    },
  });
  api.add(router, {
    method: 'patch', path: '/users/:username', summary: 'Change a user: replace their roles, disable or enable them', body: updateBody,
    responses: { 200: userSchema },
    handler: async (ctx, { body }) => {
      const username = usernameParam(ctx);
      if (body.roles !== undefined && !(await setUserRoles(db, username, [...new Set(body.roles)]).catch(asApiError('roles')))) throw notFound(`no user "${username}"`);
      if (body.disabled !== undefined && !(await setUserDisabled(db, username, body.disabled))) throw notFound(`no user "${username}"`);
      const user = await findUserWithRoles(db, username);
      if (!user) throw notFound(`no user "${username}"`);
      return describeUser(user);
    },
  });
  api.add(router, {
    method: 'delete', path: '/users/:username', summary: 'Delete a user; every token issued for them stops working', responses: { 200: deleted },
    handler: async (ctx) => {
      const row = await deleteUser(db, usernameParam(ctx));
      if (!row) throw notFound(`no user "${usernameParam(ctx)}"`);
      return { username: row.username, id: row.id, deleted: true as const };
    },
  });
  api.add(router, {
    method: 'put', path: '/users/:username/password', summary: 'Replace a user\'s password', body: passwordBody,
    responses: { 200: passwordChanged },
    handler: async (ctx, { body }) => {
      const user = await found(ctx);
      await setPasswordHash(db, user.id, await hashAcceptable(config, body.password));
      return { username: user.username, password_changed: true as const };
    },
  });
  for (const [verb, disabled] of [['disable', true], ['enable', false]] as const) {
    api.add(router, {
      method: 'post', path: `/users/:username/${verb}`,
      summary: disabled ? 'Disable a user: no new sign-ins, and every token issued for them is revoked' : 'Enable a disabled user (revoked tokens stay revoked)',
      responses: { 200: disabledState },
      handler: async (ctx) => {
        const user = await found(ctx);
        if (!(await setUserDisabled(db, user.username, disabled))) throw notFound(`no user "${usernameParam(ctx)}"`);
        return { username: user.username, disabled };
      },
    });
  }
  api.add(router, {
    method: 'post', path: '/users/:username/unlock', summary: 'Lift a lockout: forget the failed sign-ins counted against the account',
    responses: { 200: unlocked },
    handler: async (ctx) => {
      const result = await unlockUser(db, usernameParam(ctx));
      if (!result) throw notFound(`no user "${usernameParam(ctx)}"`);
      return { username: result.user.username, unlocked: true as const, login_failures_deleted: result.deleted };
    },
  });
  api.add(router, {
    method: 'put', path: '/users/:username/roles/:role', summary: 'Give a user a role', responses: { 200: granted },
    handler: async (ctx) => {
      const user = await found(ctx);
      const role = roleParam(ctx);
      await grantRole(db, user.username, role).catch(asApiError('role', 404));
      return { username: user.username, role, granted: true as const };
    },
  });
  api.add(router, {
    method: 'delete', path: '/users/:username/roles/:role', summary: 'Take a role from a user (revoked is false when they did not hold it)',
    responses: { 200: revoked },
    handler: async (ctx) => {
      const user = await found(ctx);
      const role = roleParam(ctx);
      const removed = await revokeRole(db, user.username, role).catch(asApiError('role', 404));
      if (!removed && !(await findRole(db, role))) throw notFound(`no role "${role}"`);
      return { username: user.username, role, revoked: removed };
    },
  });
}
