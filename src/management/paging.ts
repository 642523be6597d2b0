// Cursor paging of management lists: ?limit= (1–500, default 50) and ?cursor= (opaque, from
// the previous page's next_cursor); the body carries the items, next_cursor and the total.
import { z } from 'zod';
import { badRequest } from './errors.ts';

export const pageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().regex(/^[A-Za-z0-9_-]{1,400}$/).optional(),
});

/** The key after which the page starts; a cursor no list made (bytes a key cannot hold) is a 400. */
export function pageStart(cursor: string | undefined): string | undefined {
  if (cursor === undefined) return undefined;
  const key = Buffer.from(cursor, 'base64url').toString('utf8');
  if (/[\0\uFFFD]/.test(key)) throw badRequest('cursor: not a cursor of this list');
  return key;
}

export function cursorAfter(key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url');
}

export function pageOf<T extends z.ZodType>(item: T) {
  return z.object({ items: z.array(item), next_cursor: z.string().nullable(), total: z.number().int() });
}
