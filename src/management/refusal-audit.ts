// Audit rows for refused, unauthenticated attempts (failed sign-ins, a write without valid
// credentials). They cost the caller nothing — a locked account or a missing token needs no
// password check — so without a limit anyone who reaches the port could fill audit_events.
// Per instance and per minute, each source address gets a few rows and all sources together
// a bounded number; past that one `audit.suppressed` row says rows are being dropped, and the
// log keeps a line for every attempt. Failed sign-ins of a configured operator, and their
// lockout, are counted apart, per operator: a flood from many addresses (all of 127/8, an
// IPv6 /64) must not keep the attack on an account out of the trail, and there are only as
// many such budgets as operators.
import type { Logger } from 'pino';
import type { Db } from '../db/database.ts';
import { recordAuditEvent, type AuditEvent } from '../store/audit.ts';

export interface RefusalAuditLimits {
  perSourcePerMinute: number;
  totalPerMinute: number;
  perAccountPerMinute: number;
}

export const DEFAULT_REFUSAL_AUDIT_LIMITS: RefusalAuditLimits = { perSourcePerMinute: 10, totalPerMinute: 300, perAccountPerMinute: 10 };

/** `account`: the configured operator a sign-in was for (not a name nobody has). */
export type RefusalAudit = (event: AuditEvent & { source: string; account?: string }) => Promise<void>;

export function refusalAudit(db: Db, logger: Logger, limits: RefusalAuditLimits = DEFAULT_REFUSAL_AUDIT_LIMITS): RefusalAudit {
  let minute = -1;
  let total = 0;
  /** Rows written this minute per source; bounded, since entries are only added under the total. */
  const perSource = new Map<string, number>();
  /** Rows written this minute per operator; bounded by the configured operators. */
  const perAccount = new Map<string, number>();
  const suppressionNoted = new Set<string>();

  const write = (event: AuditEvent) => recordAuditEvent(db, event)
    .catch((err) => logger.error({ error: (err as Error).message }, 'audit event not recorded'));

  return async (event) => {
    const now = Math.floor(Date.now() / 60_000);
    if (now !== minute) {
      minute = now;
      total = 0;
      perSource.clear();
      perAccount.clear();
      suppressionNoted.clear();
    }
    if (event.account !== undefined) {
      const used = perAccount.get(event.account) ?? 0;
      if (used < limits.perAccountPerMinute) {
        perAccount.set(event.account, used + 1);
        return write(event);
      }
      return suppressed(event, `account:${event.account}`);
    }
    const used = perSource.get(event.source) ?? 0;
    if (used < limits.perSourcePerMinute && total < limits.totalPerMinute) {
      perSource.set(event.source, used + 1);
      total++;
      return write(event);
    }
    // Once per minute (per source while the total allows, else once for all): say rows are dropped.
    return suppressed(event, total < limits.totalPerMinute ? event.source : '(all sources)');
  };

  function suppressed(event: AuditEvent & { source: string }, key: string): Promise<void> | undefined {
    logger.warn({ event: 'audit.suppressed', action: event.action, source: event.source }, 'refused attempt not written to the audit trail (rate limit); logged only');
    if (suppressionNoted.has(key) || suppressionNoted.size >= limits.totalPerMinute) return;
    suppressionNoted.add(key);
    return write({
      actorType: 'system', actor: 'keymanager', action: 'audit.suppressed', outcome: 'failure',
      resourceType: event.action, resourceId: key.startsWith('account:') ? event.actor : null,
      source: key === '(all sources)' ? null : event.source,
    });
  }
}
