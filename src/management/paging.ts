// Cursor paging of management lists: ?limit= (1–500, default 50) and ?cursor= (opaque, from
// the previous page's next_cursor); the body carries the items, next_cursor and the total.
import type { Context } from 'koa';
import { z } from 'zod';
import { badRequest } from './errors.ts';

const query = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().regex(/^[A-Za-z0-9_-]{1,400}$/).optional(),
});

export interface PageRequest {
  limit: number;
  /** The key after which the page starts. */
  after?: string;
}

export function pageRequest(ctx: Context): PageRequest {
  const parsed = query.safeParse({ limit: ctx.query.limit, cursor: ctx.query.cursor });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw badRequest(`${issue?.path.join('.') ?? 'query'}: ${issue?.message ?? 'invalid'}`);
  }
  const after = parsed.data.cursor === undefined ? undefined : Buffer.from(parsed.data.cursor, 'base64url').toString('utf8');
  return { limit: parsed.data.limit, after };
}

export function page<T>(items: T[], { total, more, lastKey }: { total: number; more: boolean; lastKey?: string }) {
  return { items, next_cursor: more && lastKey !== undefined ? Buffer.from(lastKey, 'utf8').toString('base64url') : null, total };
}
