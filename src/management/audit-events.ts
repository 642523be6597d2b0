// GET /management/audit-events: the audit trail, newest first, paged; ?action= filters.
import type Router from '@koa/router';
import { z } from 'zod';
import type { Db } from '../db/database.ts';
import { describeAuditEvent, listAuditEvents } from '../store/audit.ts';
import type { ManagementApi } from './api.ts';
import { cursorAfter, pageOf, pageQuery, pageStart } from './paging.ts';
import { badRequest } from './errors.ts';

export const auditEventSchema = z.object({
  id: z.string(),
  occurred_at: z.string(),
  actor_type: z.enum(['management_user', 'cli', 'client', 'system']),
  actor: z.string(),
  action: z.string(),
  resource_type: z.string().nullable(),
  resource_id: z.string().nullable(),
  source: z.string().nullable(),
  outcome: z.enum(['success', 'failure']),
  changed_fields: z.array(z.string()),
}).meta({ id: 'AuditEvent' });

export function addAuditEventRoutes(api: ManagementApi, router: Router, db: Db): void {
  api.add(router, {
    method: 'get', path: '/audit-events', summary: 'The audit trail, newest first',
    query: pageQuery.extend({ action: z.string().max(200).optional() }),
    responses: { 200: pageOf(auditEventSchema) },
    handler: async (_ctx, { query }) => {
      const before = pageStart(query.cursor);
      if (before !== undefined && !/^[1-9]\d{0,17}$/.test(before)) throw badRequest('cursor: not a cursor of this list');
      const { rows, total, more } = await listAuditEvents(db, { limit: query.limit, before, action: query.action });
      return { items: rows.map(describeAuditEvent), next_cursor: more ? cursorAfter(String(rows.at(-1)!.id)) : null, total };
    },
  });
}
