// The audit trail (audit_events): appended by the management API, keymgr and the security
// events of the server; read newest first. Never holds a secret value.
import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import type { Db } from '../db/database.ts';

export interface AuditEvent {
  actorType: 'management_user' | 'cli' | 'client' | 'system';
  actor: string;
  action: string;
  resourceType?: string | null;
  resourceId?: string | null;
  source?: string | null;
  outcome: 'success' | 'failure';
  changedFields?: string[];
}

/**
 * Characters that would make a line of the trail printed as text say something else: control
 * characters (a newline starts a forged line, an escape sequence rewrites the terminal), line
 * and paragraph separators, format characters (bidirectional overrides, isolates and marks
 * show text reordered; zero-width and tag characters hide in a name that looks like another),
 * every character Unicode says to show as nothing (default-ignorable: variation selectors,
 * the Hangul fillers, …), spaces other than the ASCII one (no-break, ideographic, …), and
 * blanks that are symbols (the braille blank U+2800, the null notehead U+1D159); and what has
 * no meaning of its own to show: unassigned code points and noncharacters, private use, the
 * object replacement character, enclosing marks (a circle or a keycap around a letter).
 */
const MISLEADING = /[[\p{Cc}\p{Cf}\p{Cn}\p{Co}\p{Me}\p{Default_Ignorable_Code_Point}\p{Zs}\u2028\u2029\u2800\u{1D159}\uFFFC]--[\x20]]/gv;

/** How a value cut to fit ends: `…#` and the start of a digest of the whole value. */
const CUT_MARK = /…#[0-9a-f]{12}$/u;
const CUT_MARK_LENGTH = 14;

/**
 * What the caller sent, made storable and safe to print: an audit event must be written
 * whatever the input held. A value longer than the column (in characters, as PostgreSQL counts
 * them) is cut and marked with a digest of the whole, so that two long values that differ late
 * stay apart; so is one that ends as a cut one does, so that no value sent can pass for a cut.
 */
function storable(text: string, max = 255): string {
  const chars = Array.from(text);
  const kept = chars.length <= max && !CUT_MARK.test(text)
    ? text
    : `${chars.slice(0, max - CUT_MARK_LENGTH).join('')}…#${createHash('sha256').update(text).digest('hex').slice(0, CUT_MARK_LENGTH - 2)}`;
  return kept.replace(MISLEADING, '\uFFFD').toWellFormed();
}

export async function recordAuditEvent(db: Db, event: AuditEvent): Promise<void> {
  await db.insertInto('audit_events').values({
    actor_type: event.actorType,
    actor: storable(event.actor),
    action: storable(event.action, 500),
    resource_type: event.resourceType == null ? null : storable(event.resourceType),
    resource_id: event.resourceId == null ? null : storable(event.resourceId),
    source: event.source == null ? null : storable(event.source),
    outcome: event.outcome,
    changed_fields: (event.changedFields ?? []).map((f) => storable(f, 100)),
  }).execute();
}

/** One page, newest first, before the cursor (the id of the previous page's last event). */
export async function listAuditEvents(db: Db, { limit, before, action }: { limit: number; before?: string; action?: string }) {
  let query = db.selectFrom('audit_events').selectAll().orderBy('id', 'desc').limit(limit + 1);
  let count = db.selectFrom('audit_events').select((e) => e.fn.countAll<string>().as('n'));
  if (before !== undefined) query = query.where('id', '<', before);
  if (action !== undefined) {
    query = query.where('action', '=', action);
    count = count.where('action', '=', action);
  }
  const [rows, total] = await Promise.all([query.execute(), count.executeTakeFirstOrThrow()]);
  return { rows: rows.slice(0, limit), total: Number(total.n), more: rows.length > limit };
}

export function describeAuditEvent(row: Awaited<ReturnType<typeof listAuditEvents>>['rows'][number]) {
  return {
    id: String(row.id),
    occurred_at: row.occurred_at.toISOString(),
    actor_type: row.actor_type,
    actor: row.actor,
    action: row.action,
    resource_type: row.resource_type,
    resource_id: row.resource_id,
    source: row.source,
    outcome: row.outcome,
    changed_fields: row.changed_fields,
  };
}

/** Deletes events older than the retention period (days; 0 keeps everything). */
export async function purgeOldAuditEvents(db: Db, retentionDays: number): Promise<number> {
  if (retentionDays <= 0) return 0;
  const r = await db.deleteFrom('audit_events')
    .where('occurred_at', '<', sql<Date>`now() - make_interval(days => ${retentionDays})`).executeTakeFirst();
  return Number(r.numDeletedRows);
}
