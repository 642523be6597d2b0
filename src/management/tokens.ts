// Administrative revocation: one token by its value (in the body, never in a URL, where logs
// and proxies would keep it), or everything of a client, a user or a grant. Revoked rows are
// inactive at /introspect from the next request on, on every instance (it reads revoked_at).
import type Router from '@koa/router';
import { z } from 'zod';
import type { Db } from '../db/database.ts';
import { revokeTokenByValue, revokeTokensOfAccount, revokeTokensOfClient, revokeTokensOfGrant } from '../store/tokens.ts';
import { findUserByUsername } from '../store/users.ts';
import type { ManagementApi } from './api.ts';
import { notFound } from './errors.ts';

const revokeBody = z.object({ token: z.string().min(1).max(16 * 1024) }).strict();
const revokedOne = z.object({ revoked: z.literal(true), kind: z.string(), client_id: z.string().nullable() }).meta({ id: 'RevokedToken' });
const revokedCount = z.object({ revoked: z.number().int().min(0) }).meta({ id: 'RevokedCount' });

/** The client, user or grant the path names; one nothing can be called (too long) is simply not found. */
function param(ctx: { params: Record<string, string> }, name: 'clientId' | 'username' | 'grantId', what: string): string {
  const value = ctx.params[name] ?? '';
  if (!value || value.length > 1024) throw notFound(`no ${what} ${value.replace(/[\0-\x1f]/g, '?').slice(0, 300)}`);
  return value;
}

export function addTokenRoutes(api: ManagementApi, router: Router, db: Db): void {
  api.add(router, {
    method: 'post', path: '/tokens/revoke', summary: 'Revoke an access or refresh token by its value (a refresh token takes its grant with it)',
    body: revokeBody, responses: { 200: revokedOne },
    handler: async (_ctx, { body }) => {
      const row = await revokeTokenByValue(db, body.token);
      if (!row) throw notFound('no such token');
      return { revoked: true as const, kind: row.kind, client_id: row.client_id };
    },
  });
  api.add(router, {
    method: 'post', path: '/clients/:clientId/revoke-tokens', summary: 'Revoke every token, code and grant issued to a client',
    responses: { 200: revokedCount },
    handler: async (ctx) => {
      const clientId = param(ctx, 'clientId', 'client');
      const revoked = await revokeTokensOfClient(db, clientId);
      if (revoked === undefined) throw notFound(`no client ${clientId}`);
      return { revoked };
    },
  });
  api.add(router, {
    method: 'post', path: '/users/:username/revoke-tokens', summary: 'Revoke every token, code and grant issued for a user',
    responses: { 200: revokedCount },
    handler: async (ctx) => {
      const username = param(ctx, 'username', 'user');
      const user = await findUserByUsername(db, username);
      if (!user) throw notFound(`no user ${username}`);
      return { revoked: await revokeTokensOfAccount(db, user.id) };
    },
  });
  api.add(router, {
    method: 'post', path: '/grants/:grantId/revoke', summary: 'Revoke a grant and every token issued under it',
    responses: { 200: revokedCount },
    handler: async (ctx) => {
      const grantId = param(ctx, 'grantId', 'grant');
      const revoked = await revokeTokensOfGrant(db, grantId);
      if (revoked === undefined) throw notFound(`no grant ${grantId}`);
      return { revoked };
    },
  });
}
