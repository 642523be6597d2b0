// keymgr token …: administrative revocation of a token by its value.
import type { Command } from 'commander';
import { revokeTokenByValue } from '../store/tokens.ts';
import { CliError, output, withDatabase, type OutputOptions } from './context.ts';

export function registerTokenCommands(program: Command): void {
  const token = program.command('token').description('manage issued tokens');
  token.command('revoke <token>')
    .description('revoke an access or refresh token (a refresh token takes its grant with it)')
    .option('--json', 'print JSON')
    .action((value: string, opts: OutputOptions) => withDatabase(async ({ db }) => {
      const row = await revokeTokenByValue(db, value);
      if (!row) throw new CliError('no such token');
      output(opts, { revoked: true, kind: row.kind, client_id: row.client_id }, (r) => `revoked ${r.kind} of client ${r.client_id}`);
    }));
}
