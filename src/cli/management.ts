// keymgr management …: helpers for the management API's user store ([[management.users]]).
import type { Command } from 'commander';
import { checkPasswordAcceptable, hashPassword, passwordParams, PasswordPolicyError } from '../store/passwords.ts';
import { CliError, output, withConfig, type OutputOptions } from './context.ts';
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
    }));
}
