// keymgr migrate and keymgr purge.
import type { Command } from 'commander';
import { loadConfig } from '../config/index.ts';
import { connectDatabase } from '../db/connect.ts';
import { migrate } from '../db/migrator.ts';
import { purgeExpiredTokens } from '../store/tokens.ts';
import { purgeOldLoginFailures } from '../store/login-failures.ts';
import { purgeExpiredAssertionIds } from '../store/idps.ts';
import { purgeExpiredRevocationEvents } from '../store/revocation-events.ts';
import { purgeOldAuditEvents } from '../store/audit.ts';
import { output, withDatabase, type OutputOptions } from './context.ts';

export function registerMaintenanceCommands(program: Command): void {
  program.command('migrate')
    .description('apply pending database migrations')
    .option('--json', 'print JSON')
    .action(async (opts: OutputOptions) => {
      const handle = await connectDatabase(loadConfig(), { applicationName: 'keymgr' });
      try {
        const applied = (await migrate(handle.db)).map((m) => `${m.version}_${m.name}`);
        output(opts, { applied }, (r) => r.applied.length ? r.applied.map((m) => `applied ${m}`).join('\n') : 'database is up to date');
      } finally {
        await handle.close();
      }
    });

  program.command('purge')
    .description('delete expired tokens, codes and sessions, and failed sign-ins older than the lockout window')
    .option('--json', 'print JSON')
    .action((opts: OutputOptions) => withDatabase(async ({ db, config }) => {
      const deleted = await purgeExpiredTokens(db);
      const loginFailures = await purgeOldLoginFailures(db, config.lockoutWindow);
      const assertionIds = await purgeExpiredAssertionIds(db);
      const revocationEvents = await purgeExpiredRevocationEvents(db);
      const auditEvents = await purgeOldAuditEvents(db, config.auditRetentionDays);
      output(opts, {
        deleted, login_failures_deleted: loginFailures, saml_assertion_ids_deleted: assertionIds,
        revocation_events_deleted: revocationEvents, audit_events_deleted: auditEvents,
      }, (r) => `deleted ${r.deleted} expired rows, ${r.login_failures_deleted} old failed sign-ins, ${r.saml_assertion_ids_deleted} expired SAML assertion ids, `
        + `${r.revocation_events_deleted} revocation events of expired tokens and ${r.audit_events_deleted} audit events past audit_retention_days`);
    }));
}
