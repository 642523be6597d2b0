// /management/certificates: client certificates for mutual TLS (RFC 8705), with the field names
// `keymgr cert … --json` prints and the same checks as `keymgr cert add` (one certificate,
// valid now, no key, no chain). A change takes effect from the next request on every instance.
import type Router from '@koa/router';
import { z } from 'zod';
import type { Db } from '../db/database.ts';
import {
  addCertificate, CertificateClientNotFoundError, CertificateConflictError, CertificateInputError, describeCertificate, findCertificate, listCertificatesPage, parseCertificatePem, removeCertificate,
} from '../store/certificates.ts';
import { findClientById } from '../store/clients.ts';
import type { ManagementApi } from './api.ts';
import { badRequest, ManagementError, notFound } from './errors.ts';
import { cursorAfter, pageOf, pageQuery, pageStart } from './paging.ts';

// NUL and lone surrogates in a path or a body never get this far: ManagementApi refuses them.
const bounded = (max: number) => z.string().min(1).max(max);

export const certificateSchema = z.object({
  client_id: z.string(),
  alias: z.string(),
  thumbprint_sha256: z.string(),
  subject_dn: z.string(),
  issuer_dn: z.string(),
  san_dns: z.array(z.string()),
  san_uri: z.array(z.string()),
  san_ip: z.array(z.string()),
  san_email: z.array(z.string()),
  not_before: z.string(),
  not_after: z.string(),
  tier: z.string().nullable(),
  created_at: z.string(),
}).meta({ id: 'Certificate' });

const withPem = certificateSchema.extend({ pem: z.string() }).meta({ id: 'CertificateWithPem' });

const listQuery = pageQuery.extend({
  client_id: bounded(200).optional(),
  expiring_within: z.coerce.number().int().min(0).max(36500).optional().describe('only certificates expiring within this many days'),
});

const addBody = z.object({
  client_id: bounded(200),
  alias: z.string().regex(/^[A-Za-z0-9_.:-]{1,100}$/, 'alias must be 1-100 of A-Z a-z 0-9 _ . : -'),
  pem: z.string().min(1).max(32 * 1024),
  tier: bounded(100).optional(),
}).strict();

const removed = z.object({ client_id: z.string(), alias: z.string(), removed: z.literal(true) });

/** The (client_id, alias) pair a cursor stands for; a cursor that is not one is a bad request. */
function pairAfter(cursor: string | undefined): [string, string] | undefined {
  const key = pageStart(cursor);
  if (key === undefined) return undefined;
  try {
    const pair: unknown = JSON.parse(key);
    if (Array.isArray(pair) && pair.length === 2 && pair.every((p) => typeof p === 'string')) return pair as [string, string];
  } catch { /* refused below */ }
  throw badRequest('cursor: not a cursor of this list');
}

function asInput(err: unknown): never {
  if (err instanceof CertificateInputError) {
    if (err instanceof CertificateConflictError) throw new ManagementError(409, 'conflict', err.message);
    if (err instanceof CertificateClientNotFoundError) throw notFound(err.message);
    throw badRequest(err.message);
  }
  throw err;
}

/** The certificate the path names; one no certificate can have (too long) is simply not found. */
function where(ctx: { params: Record<string, string> }): { clientId: string; alias: string } {
  const clientId = ctx.params.clientId ?? '';
  const alias = ctx.params.alias ?? '';
  if (!bounded(200).safeParse(clientId).success || !bounded(100).safeParse(alias).success) {
    throw notFound(`no certificate "${alias.replace(/[\0-\x1f]/g, '?').slice(0, 100)}" for client ${clientId.replace(/[\0-\x1f]/g, '?').slice(0, 200)}`);
  }
  return { clientId, alias };
}

export function addCertificateRoutes(api: ManagementApi, router: Router, db: Db): void {
  api.add(router, {
    method: 'get', path: '/certificates', summary: 'List client certificates (?client_id=, ?expiring_within=DAYS)', query: listQuery,
    responses: { 200: pageOf(certificateSchema) },
    handler: async (_ctx, { query }) => {
      const { rows, total, more } = await listCertificatesPage(db, {
        clientId: query.client_id, expiringWithinDays: query.expiring_within, limit: query.limit, after: pairAfter(query.cursor),
      });
      const last = rows.at(-1);
      return { items: rows.map(describeCertificate), next_cursor: more && last ? cursorAfter(JSON.stringify([last.client_id, last.alias])) : null, total };
    },
  });
  api.add(router, {
    method: 'get', path: '/certificates/:clientId/:alias', summary: 'Show a client certificate, with its PEM', responses: { 200: withPem },
    handler: async (ctx) => {
      const { clientId, alias } = where(ctx);
      const row = await findCertificate(db, clientId, alias);
      if (!row) throw notFound(`no certificate "${alias}" for client ${clientId}`);
      return { ...describeCertificate(row), pem: row.pem };
    },
  });
  api.add(router, {
    method: 'post', path: '/certificates', summary: 'Register a client certificate (the certificate alone: no key, no chain)', body: addBody,
    responses: { 201: certificateSchema },
    handler: async (ctx, { body }) => {
      const parsed = (() => {
        try {
          return parseCertificatePem(body.pem);
        } catch (err) {
          if (err instanceof CertificateInputError) throw badRequest(`pem: ${err.message}`);
          throw err;
        }
      })();
      if (!(await findClientById(db, body.client_id))) throw notFound(`no client ${body.client_id}`);
      const row = await addCertificate(db, body.client_id, body.alias, parsed, body.tier).catch(asInput);
      ctx.status = 201;
      ctx.set('Location', `/management/certificates/${encodeURIComponent(row.client_id)}/${encodeURIComponent(row.alias)}`);
      return describeCertificate(row);
    },
  });
  api.add(router, {
    method: 'delete', path: '/certificates/:clientId/:alias', summary: 'Remove a client certificate; it stops authenticating from the next request on',
    responses: { 200: removed },
    handler: async (ctx) => {
      const { clientId, alias } = where(ctx);
      if (!(await removeCertificate(db, clientId, alias))) throw notFound(`no certificate "${alias}" for client ${clientId}`);
      return { client_id: clientId, alias, removed: true as const };
    },
  });
}
