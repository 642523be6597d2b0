// keymgr management …: the management API's users ([[management.users]]): hash a password,
// lift a lockout, revoke a user's management tokens on every instance.
import type { Command } from 'commander';
import { checkPasswordAcceptable, hashPassword, passwordParams, PasswordPolicyError } from '../store/passwords.ts';
import { deleteAllLoginFailures, managementAccountKey } from '../store/login-failures.ts';
import { revokeManagementTokensOfUser } from '../store/management-tokens.ts';
import type { Config } from '../config/index.ts';
import { CliError, output, withConfig, withDatabase, type OutputOptions } from './context.ts';
import { readPasswordFromStdin } from './users.ts';

export function registerManagementCommands(program: Command): void {
  const management = program.command('management').description('the management API');
  management.command('hash-password')
    .description('read a password on standard input and print its argon2id hash, for password_hash in [[management.users]]')
    .option('--json', 'print JSON')
    .action((opts: OutputOptions) => withConfig(async (config) => {
      const password = await readPasswordFromStdin();
      try {
        checkPasswordAcceptable(password);
      } catch (err) {
        if (err instanceof PasswordPolicyError) throw new CliError(err.message);
        throw err;
      }
      output(opts, { password_hash: await hashPassword(password, passwordParams(config)) }, (r) => r.password_hash);
    }, { anywhere: true }));

  management.command('unlock <username>')
    .description('lift a lockout of a management user: forget the failed sign-ins counted against it')
    .option('--json', 'print JSON')
    .action((username: string, opts: OutputOptions) => withDatabase(async ({ config, db }) => {
      configuredUser(config, username);
      const deleted = await deleteAllLoginFailures(db, managementAccountKey(username));
      output(opts, { username, unlocked: true, login_failures_deleted: deleted }, (r) => `${r.username} unlocked (${r.login_failures_deleted} failed sign-ins forgotten)`);
    }));
  management.command('revoke-tokens <username>')
    .description('revoke every live management token of a user, on every instance')
    .option('--json', 'print JSON')
    .action((username: string, opts: OutputOptions) => withDatabase(async ({ config, db }) => {
      configuredUser(config, username);
      const revoked = await revokeManagementTokensOfUser(db, username);
      output(opts, { username, revoked }, (r) => `${r.revoked} management token(s) of ${r.username} revoked`);
    }));
}

function configuredUser(config: Config, username: string): void {
  // With none configured, a development server has made its own `admin` (management-admin.txt).
  const bootstrapAdmin = config.managementUsers.length === 0 && config.env !== 'production' && username === 'admin';
  if (!bootstrapAdmin && !config.managementUsers.some((u) => u.username === username)) {
    throw new CliError(`no management user "${username}" in [[management.users]]`);
  }
}
