// The management API under /management: login and logout (jwt handler only), then every
// resource behind authentication and roles — admin does everything, auditor only reads.
import Router from '@koa/router';
import { revokeManagementToken, storeManagementToken } from '../store/management-tokens.ts';
import { bearerToken, principalFromBasic, principalFromBearer, signManagementToken, type ManagementAuthDeps, type ManagementPrincipal } from './auth.ts';
import { forbidden, ManagementError } from './errors.ts';
import { recordAuditEvent } from '../store/audit.ts';
import { addClientRoutes } from './clients.ts';
import { addUserRoutes } from './users.ts';
import { addRoleRoutes } from './roles.ts';
import { addScopeRoutes } from './scopes.ts';
import { addTokenRoutes } from './tokens.ts';
import { addCertificateRoutes } from './certificates.ts';
import { addIdpRoutes } from './idps.ts';
import { addAuditEventRoutes } from './audit-events.ts';
import { addSigningKeyRoutes } from './signing-keys.ts';
import { addManagementUserRoutes } from './management-users.ts';
import { ManagementApi } from './api.ts';

const READS = new Set(['GET', 'HEAD']);

/** What a write acts on — `POST /clients/:clientId/disable` on clients/<id> — known before the route runs. */
function auditedResource(router: Router, ctx: { method: string; path: string }) {
  const layer = router.match(ctx.path, ctx.method).pathAndMethod.findLast((l) => l.methods.length > 0);
  const route = String(layer?.path ?? ctx.path).replace(/^\/management/, '');
  // Every path parameter: a role grant is user/role, a certificate client/alias.
  const params = layer ? Object.values(layer.params(ctx.path, layer.captures(ctx.path), {})).filter((v) => typeof v === 'string') : [];
  return { action: `${ctx.method} ${route}`, resourceType: route.split('/')[1] ?? null, resourceId: params.length ? params.join('/') : null };
}

/** What a create made, named by the response: the new client_id, username, name, entity id, alias or key id. */
function createdId(body: unknown): string | null {
  if (!body || typeof body !== 'object') return null;
  const b = body as Record<string, unknown>;
  const id = b.client_id && b.alias ? `${b.client_id}/${b.alias}` : b.client_id ?? b.username ?? b.entity_id ?? b.name ?? b.kid;
  return typeof id === 'string' ? id : null;
}

/** The routers, in order: sessions (login, logout), then the authenticated resources. */
export function managementRouters(deps: ManagementAuthDeps): Router[] {
  const jwt = deps.config.managementAuth === 'jwt';
  const session = new Router({ prefix: '/management', strict: true, sensitive: true });
  if (jwt) {
    session.get('/login', async (ctx) => {
      // HEAD would mint a token nobody sees, taking a place in the store.
      if (ctx.method === 'HEAD') throw new ManagementError(405, 'invalid_request', 'use GET /management/login');
      const principal = await principalFromBasic(deps, ctx);
      const { token, expiresAt } = await signManagementToken(deps, principal);
      const stored = await storeManagementToken(deps.db, token, { ...principal, expiresAt }, {
        maxSize: deps.config.managementTokenStoreMaxSize,
        removeOldestOnOverflow: deps.config.managementTokenStoreRemoveOldest,
      });
      ctx.set('Cache-Control', 'no-store');
      if (stored.outcome === 'full') {
        // Not a 503: the database is fine; the store is full by configuration.
        ctx.status = 507;
        ctx.body = { error: 'token_store_full', error_description: 'the management token store is full (management.token_store.max_size): log out elsewhere or wait for tokens to expire' };
        return;
      }
      deps.logger.info({ event: 'management.login', username: principal.username }, 'management user signed in');
      const audit = (action: string, resourceId?: string) => recordAuditEvent(deps.db, {
        actorType: 'management_user', actor: principal.username, action, source: ctx.ip, outcome: 'success',
        ...(resourceId === undefined ? {} : { resourceType: 'management_user', resourceId }),
      }).catch((err) => deps.logger.error({ error: (err as Error).message }, 'audit event not recorded'));
      await audit('management.login');
      // Another operator's token revoked to make room: they will find themselves signed out.
      for (const username of stored.evicted) {
        deps.logger.warn({ event: 'management.token.evicted', username, by: principal.username }, 'management token store full: another user\'s token evicted');
        await audit('management.token.evicted', username);
      }
      ctx.body = { AccessToken: token };
    });
    session.get('/logout', async (ctx) => {
      // A HEAD is a GET without the body, and must change nothing (RFC 9110 §9.2.1).
      if (ctx.method === 'HEAD') throw new ManagementError(405, 'invalid_request', 'use GET /management/logout');
      const principal = await principalFromBearer(deps, ctx);
      await revokeManagementToken(deps.db, bearerToken(ctx)!);
      deps.logger.info({ event: 'management.logout', username: principal.username }, 'management user signed out');
      await recordAuditEvent(deps.db, { actorType: 'management_user', actor: principal.username, action: 'management.logout', source: ctx.ip, outcome: 'success' })
        .catch((err) => deps.logger.error({ error: (err as Error).message }, 'audit event not recorded'));
      ctx.set('Cache-Control', 'no-store');
      ctx.body = { Message: 'Logout successful' };
    });
  }

  const resources = new Router({ prefix: '/management', strict: true, sensitive: true });
  resources.use(async (ctx, next) => {
    ctx.set('Cache-Control', 'no-store');
    const write = !READS.has(ctx.method);
    // Read now: a request torn down mid-body has no address to ask for later.
    const source = ctx.ip;
    // Every write attempt is audited, refused ones too; with field names, never values.
    const target = write ? auditedResource(resources, ctx) : undefined;
    let principal: ManagementPrincipal;
    try {
      principal = jwt ? await principalFromBearer(deps, ctx) : await principalFromBasic(deps, ctx);
    } catch (err) {
      // A write nobody could be found behind: what was tried, from where (rate-limited).
      if (target && err instanceof ManagementError && err.status === 401) await deps.auditRefusal({ ...target, actorType: 'management_user', actor: '(unauthenticated)', source, outcome: 'failure' });
      throw err;
    }
    ctx.state.principal = principal;
    if (!target) return next();
    const audit = (outcome: 'success' | 'failure') => recordAuditEvent(deps.db, {
      ...target,
      resourceId: target.resourceId ?? (outcome === 'success' ? createdId(ctx.body) : null),
      actorType: 'management_user', actor: principal.username, source, outcome,
      changedFields: (ctx.state.changedFields as string[] | undefined) ?? [],
    }).catch((err) => deps.logger.error({ error: (err as Error).message }, 'audit event not recorded'));
    try {
      if (!principal.roles.includes('admin')) throw forbidden('the auditor role may only read');
      await next();
    } catch (err) {
      await audit('failure');
      throw err;
    }
    // A change answers once every instance has dropped what it cached of the old state (a
    // revoked token, a rotated secret, a disabled client), so it counts everywhere from the
    // next request.
    if (ctx.status < 400) await deps.syncInstances();
    await audit(ctx.status < 400 ? 'success' : 'failure');
  });
  const api = new ManagementApi();
  addClientRoutes(api, resources, deps.db);
  addUserRoutes(api, resources, deps);
  addRoleRoutes(api, resources, deps.db);
  addScopeRoutes(api, resources, deps.db);
  addTokenRoutes(api, resources, deps.db);
  addCertificateRoutes(api, resources, deps.db);
  addIdpRoutes(api, resources, deps.db);
  addSigningKeyRoutes(api, resources, deps);
  addManagementUserRoutes(api, resources, deps);
  addAuditEventRoutes(api, resources, deps.db);

  // The document of every route above, unauthenticated (as API descriptions usually are).
  const openapi = new Router({ prefix: '/management', strict: true, sensitive: true });
  const document = api.document({ auth: deps.config.managementAuth });
  openapi.get('/openapi.json', (ctx) => {
    ctx.body = document;
  });

  return [openapi, session, resources];
}
