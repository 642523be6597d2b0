// /management/idps: trusted SAML identity providers for the SAML2 bearer grant (RFC 7522), with
// the field names `keymgr idp … --json` prints. The entity ID is usually a URL: in a path it is
// percent-encoded (`/management/idps/https%3A%2F%2Fidp.example%2F`).
import type Router from '@koa/router';
import { z } from 'zod';
import type { Db } from '../db/database.ts';
import { CertificateInputError, singleCertificate } from '../store/certificates.ts';
import { addIdp, describeIdp, findIdp, IdpConflictError, IdpInputError, listIdpsPage, removeIdp, setIdpEnabled } from '../store/idps.ts';
import type { ManagementApi } from './api.ts';
import { badRequest, ManagementError, notFound } from './errors.ts';
import { cursorAfter, pageOf, pageQuery, pageStart } from './paging.ts';

// NUL and lone surrogates in a path or a body never get this far: ManagementApi refuses them.
const bounded = (max: number) => z.string().min(1).max(max);

export const idpSchema = z.object({
  entity_id: z.string(),
  enabled: z.boolean(),
  certificates: z.number().int().describe('how many signing certificates are trusted'),
  jit_provisioning: z.boolean(),
  jit_default_roles: z.array(z.string()),
  allowed_clients: z.array(z.string()).nullable(),
  allow_transient: z.boolean(),
  created_at: z.string(),
  updated_at: z.string(),
}).meta({ id: 'IdentityProvider' });

const withCertificates = idpSchema.extend({ certificates: z.array(z.string()).describe('the trusted signing certificates, PEM') })
  .meta({ id: 'IdentityProviderWithCertificates' });

const addBody = z.object({
  entity_id: bounded(1024),
  certificates: z.array(z.string().min(1).max(32 * 1024)).min(1).max(10),
  jit: z.boolean().optional(),
  default_roles: z.array(bounded(100)).max(50).optional(),
  allowed_clients: z.array(bounded(200)).max(500).optional(),
  allow_transient: z.boolean().optional(),
}).strict();

const enabledState = z.object({ entity_id: z.string(), enabled: z.boolean() });
const removed = z.object({ entity_id: z.string(), removed: z.literal(true) });

/** The entity ID in the path; one no IdP can have (too long) is simply not found. */
function entityIdParam(ctx: { params: Record<string, string> }): string {
  const entityId = ctx.params.entityId ?? '';
  if (!bounded(1024).safeParse(entityId).success) throw notFound(`no identity provider "${entityId.replace(/[\0-\x1f]/g, '?').slice(0, 300)}"`);
  return entityId;
}

function asInput(err: unknown): never {
  if (err instanceof IdpInputError) {
    if (err instanceof IdpConflictError) throw new ManagementError(409, 'conflict', err.message);
    throw badRequest(err.message);
  }
  throw err;
}

export function addIdpRoutes(api: ManagementApi, router: Router, db: Db): void {
  api.add(router, {
    method: 'get', path: '/idps', summary: 'List SAML identity providers', query: pageQuery,
    responses: { 200: pageOf(idpSchema) },
    handler: async (_ctx, { query }) => {
      const { rows, total, more } = await listIdpsPage(db, { limit: query.limit, after: pageStart(query.cursor) });
      return { items: rows.map(describeIdp), next_cursor: more ? cursorAfter(rows.at(-1)!.entity_id) : null, total };
    },
  });
  api.add(router, {
    method: 'get', path: '/idps/:entityId', summary: 'Show an identity provider, with its certificates', responses: { 200: withCertificates },
    handler: async (ctx) => {
      const entityId = entityIdParam(ctx);
      const row = await findIdp(db, entityId);
      if (!row) throw notFound(`no identity provider "${entityId}"`);
      return { ...describeIdp(row), certificates: row.certificates };
    },
  });
  api.add(router, {
    method: 'post', path: '/idps', summary: 'Trust an identity provider\'s signed assertions (signing certificates only, never a key)', body: addBody,
    responses: { 201: idpSchema },
    handler: async (ctx, { body }) => {
      const certificates = body.certificates.map((pem, i) => {
        try {
          return singleCertificate(pem).toString();
        } catch (err) {
          if (err instanceof CertificateInputError) throw badRequest(`certificates.${i}: ${err.message}`);
          throw err;
        }
      });
      const row = await addIdp(db, {
        entityId: body.entity_id, certificates, jit: body.jit, defaultRoles: body.default_roles,
        allowedClients: body.allowed_clients, allowTransient: body.allow_transient,
      }).catch(asInput);
      ctx.status = 201;
      ctx.set('Location', `/management/idps/${encodeURIComponent(row.entity_id)}`);
      return describeIdp(row);
    },
  });
  for (const [verb, enabled] of [['disable', false], ['enable', true]] as const) {
    api.add(router, {
      method: 'post', path: `/idps/:entityId/${verb}`,
      summary: enabled ? 'Accept the identity provider\'s assertions again' : 'Refuse the identity provider\'s assertions from the next request on',
      responses: { 200: enabledState },
      handler: async (ctx) => {
        const entityId = entityIdParam(ctx);
        if (!(await setIdpEnabled(db, entityId, enabled))) throw notFound(`no identity provider "${entityId}"`);
        return { entity_id: entityId, enabled };
      },
    });
  }
  api.add(router, {
    method: 'delete', path: '/idps/:entityId', summary: 'Stop trusting an identity provider (its users are kept; adding it again gives them back)',
    responses: { 200: removed },
    handler: async (ctx) => {
      const entityId = entityIdParam(ctx);
      if (!(await removeIdp(db, entityId))) throw notFound(`no identity provider "${entityId}"`);
      return { entity_id: entityId, removed: true as const };
    },
  });
}
