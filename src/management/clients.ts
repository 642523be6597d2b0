// /management/clients: the registered clients, as `keymgr client list/show --json` prints them.
import type Router from '@koa/router';
import type { Db } from '../db/database.ts';
import { deleteClient, describeClient, findClientById, listClientsPage, rotateClientSecret, setClientDisabled } from '../store/clients.ts';
import { notFound } from './errors.ts';
import { page, pageRequest } from './paging.ts';

export function addClientRoutes(router: Router, db: Db): void {
  router.get('/clients', async (ctx) => {
    const request = pageRequest(ctx);
    const { rows, total, more } = await listClientsPage(db, request);
    ctx.body = page(rows.map(describeClient), { total, more, lastKey: rows.at(-1)?.client_id });
  });
  router.get('/clients/:clientId', async (ctx) => {
    const row = await findClientById(db, ctx.params.clientId!);
    if (!row) throw notFound(`no client ${ctx.params.clientId}`);
    ctx.body = describeClient(row);
  });
  router.delete('/clients/:clientId', async (ctx) => {
    if (!(await deleteClient(db, ctx.params.clientId!))) throw notFound(`no client ${ctx.params.clientId}`);
    ctx.body = { client_id: ctx.params.clientId, deleted: true };
  });
  for (const [verb, disabled] of [['disable', true], ['enable', false]] as const) {
    router.post(`/clients/:clientId/${verb}`, async (ctx) => {
      if (!(await setClientDisabled(db, ctx.params.clientId!, disabled))) throw notFound(`no client ${ctx.params.clientId}`);
      ctx.body = { client_id: ctx.params.clientId, disabled };
    });
  }
  router.post('/clients/:clientId/rotate-secret', async (ctx) => {
    const secret = await rotateClientSecret(db, ctx.params.clientId!);
    if (!secret) throw notFound(`no client ${ctx.params.clientId} that authenticates with a secret`);
    // Shown this once, to the admin who asked; never again.
    ctx.body = { client_id: ctx.params.clientId, client_secret: secret };
  });
}
