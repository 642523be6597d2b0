// /management/clients: the registered clients, with the field names `keymgr client … --json`
// prints. The secret of a new or rotated client is in that one response and never again.
import type Router from '@koa/router';
import { z } from 'zod';
import type { Db } from '../db/database.ts';
import {
  AUTH_METHODS, ClientInputError, createClient, deleteClient, describeClient, findClientById, GRANT_TYPES, listClientsPage,
  rotateClientSecret, setClientDisabled, TOKEN_FORMATS, updateClient,
} from '../store/clients.ts';
import type { ManagementApi } from './api.ts';
import { badRequest, ManagementError, notFound } from './errors.ts';
import { cursorAfter, pageOf, pageQuery, pageStart } from './paging.ts';

const scopeString = z.string().max(4000).regex(/^[\x21\x23-\x5b\x5d-\x7e]*( [\x21\x23-\x5b\x5d-\x7e]+)*$/, 'space-separated scope tokens');

export const clientSchema = z.object({
  client_id: z.string(),
  name: z.string(),
  grant_types: z.array(z.string()),
  scope: z.string(),
  redirect_uris: z.array(z.string()),
  token_endpoint_auth_method: z.string(),
  access_token_format: z.enum(TOKEN_FORMATS),
  introspect_any: z.boolean(),
  introspect_audiences: z.array(z.string()).nullable(),
  application_type: z.enum(['web', 'native']),
  first_party: z.boolean(),
  tls_client_auth_subject_dn: z.string().optional(),
  tls_client_auth_san_dns: z.string().optional(),
  disabled: z.boolean(),
  secret_created_at: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
}).meta({ id: 'Client' });

const writable = {
  name: z.string().min(1).max(200),
  grant_types: z.array(z.enum(GRANT_TYPES)).min(1),
  scope: scopeString,
  redirect_uris: z.array(z.string().max(2000)).max(50),
  access_token_format: z.enum(TOKEN_FORMATS),
  introspect_any: z.boolean(),
  introspect_audiences: z.array(z.string().min(1).max(2000)).max(50).nullable(),
  application_type: z.enum(['web', 'native']),
  first_party: z.boolean(),
  tls_client_auth_subject_dn: z.string().min(1).max(1000),
  tls_client_auth_san_dns: z.string().min(1).max(253),
};

const createBody = z.object({
  ...writable,
  grant_types: writable.grant_types.default(['client_credentials']),
  scope: writable.scope.default(''),
  redirect_uris: writable.redirect_uris.optional(),
  access_token_format: writable.access_token_format.optional(),
  introspect_any: writable.introspect_any.optional(),
  introspect_audiences: writable.introspect_audiences.optional(),
  application_type: writable.application_type.optional(),
  first_party: writable.first_party.optional(),
  tls_client_auth_subject_dn: writable.tls_client_auth_subject_dn.optional(),
  tls_client_auth_san_dns: writable.tls_client_auth_san_dns.optional(),
  token_endpoint_auth_method: z.enum(AUTH_METHODS).optional(),
}).strict();

const updateBody = z.object(writable).partial().strict()
  .refine((b) => Object.keys(b).length > 0, 'nothing to change');

const withSecret = clientSchema.extend({ client_secret: z.string().optional() }).meta({ id: 'ClientWithSecret' });
const secretOnly = z.object({ client_id: z.string(), client_secret: z.string() });
const deleted = z.object({ client_id: z.string(), deleted: z.literal(true) });
const disabledState = z.object({ client_id: z.string(), disabled: z.boolean() });
const clientId = (ctx: { params: Record<string, string> }) => ctx.params.clientId!;

function asInput(err: unknown): never {
  if (err instanceof ClientInputError) throw badRequest(err.message);
  throw err;
}

const split = (scope: string | undefined) => scope === undefined ? undefined : scope.split(' ').filter(Boolean);

export function addClientRoutes(api: ManagementApi, router: Router, db: Db): void {
  api.add(router, {
    method: 'get', path: '/clients', summary: 'List clients', query: pageQuery,
    responses: { 200: pageOf(clientSchema) },
    handler: async (_ctx, { query }) => {
      const { rows, total, more } = await listClientsPage(db, { limit: query.limit, after: pageStart(query.cursor) });
      return { items: rows.map(describeClient), next_cursor: more ? cursorAfter(rows.at(-1)!.client_id) : null, total };
    },
  });
  api.add(router, {
    method: 'get', path: '/clients/:clientId', summary: 'Show a client', responses: { 200: clientSchema },
    handler: async (ctx) => {
      const row = await findClientById(db, clientId(ctx));
      if (!row) throw notFound(`no client ${clientId(ctx)}`);
      return describeClient(row);
    },
  });
  api.add(router, {
    method: 'post', path: '/clients', summary: 'Register a client (the secret is shown in this response only)', body: createBody,
    responses: { 201: withSecret },
    handler: async (ctx, { body }) => {
      const { client, clientSecret } = await createClient(db, {
        name: body.name, grantTypes: body.grant_types, scope: split(body.scope) ?? [], redirectUris: body.redirect_uris,
        tokenFormat: body.access_token_format, authMethod: body.token_endpoint_auth_method, introspectAny: body.introspect_any, introspectAudiences: body.introspect_audiences,
        applicationType: body.application_type, firstParty: body.first_party,
        tlsSubjectDn: body.tls_client_auth_subject_dn, tlsSanDns: body.tls_client_auth_san_dns,
      }).catch(asInput);
      ctx.status = 201;
      ctx.set('Location', `/management/clients/${client.client_id}`);
      return { ...describeClient(client), ...(clientSecret ? { client_secret: clientSecret } : {}) };
    },
  });
  api.add(router, {
    method: 'patch', path: '/clients/:clientId', summary: 'Change a client', body: updateBody, responses: { 200: clientSchema },
    handler: async (ctx, { body }) => {
      const row = await updateClient(db, clientId(ctx), {
        name: body.name, grantTypes: body.grant_types, scope: split(body.scope), redirectUris: body.redirect_uris,
        tokenFormat: body.access_token_format, introspectAny: body.introspect_any, introspectAudiences: body.introspect_audiences, applicationType: body.application_type,
        firstParty: body.first_party, tlsSubjectDn: body.tls_client_auth_subject_dn, tlsSanDns: body.tls_client_auth_san_dns,
      }).catch(asInput);
      if (!row) throw notFound(`no client ${clientId(ctx)}`);
      return describeClient(row);
    },
  });
  api.add(router, {
    method: 'delete', path: '/clients/:clientId', summary: 'Delete a client and every token and certificate it has', responses: { 200: deleted },
    handler: async (ctx) => {
      if (!(await deleteClient(db, clientId(ctx)))) throw notFound(`no client ${clientId(ctx)}`);
      return { client_id: clientId(ctx), deleted: true as const };
    },
  });
  for (const [verb, disabled] of [['disable', true], ['enable', false]] as const) {
    api.add(router, {
      method: 'post', path: `/clients/:clientId/${verb}`,
      summary: disabled ? 'Disable a client: every token issued to it is revoked' : 'Enable a disabled client (revoked tokens stay revoked)',
      responses: { 200: disabledState },
      handler: async (ctx) => {
        if (!(await setClientDisabled(db, clientId(ctx), disabled))) throw notFound(`no client ${clientId(ctx)}`);
        return { client_id: clientId(ctx), disabled };
      },
    });
  }
  api.add(router, {
    method: 'post', path: '/clients/:clientId/rotate-secret', summary: 'Issue a new secret (shown in this response only); the old one stops working',
    responses: { 200: secretOnly },
    handler: async (ctx) => {
      const row = await findClientById(db, clientId(ctx));
      if (!row) throw notFound(`no client ${clientId(ctx)}`);
      const secret = await rotateClientSecret(db, clientId(ctx));
      if (!secret) throw new ManagementError(409, 'conflict', `client ${clientId(ctx)} does not authenticate with a secret`);
      return { client_id: clientId(ctx), client_secret: secret };
    },
  });
}
