// keymgr token …: administrative revocation of a token by its value, and long-lived
// ("direct") tokens for gateways.
import type { Command } from 'commander';
import { revokeTokenByValue } from '../store/tokens.ts';
import { DirectTokenError, issueDirectToken } from '../store/direct-tokens.ts';
import { tokenAudience } from '../config/index.ts';
import { asCliErrors, CliError, output, withDatabase, type OutputOptions } from './context.ts';

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

  token.command('issue')
    .description('issue one long-lived opaque access token for a client (a gateway\'s "direct" token); prints it once')
    .requiredOption('--client <clientId>', 'the client the token acts for')
    .requiredOption('--scope <scopes>', 'space-separated scopes, from the client\'s allow-list (e.g. introspect)')
    .requiredOption('--ttl <seconds>', 'lifetime in seconds')
    .option('--json', 'print JSON')
    .action((opts: OutputOptions & { client: string; scope: string; ttl: string }) => withDatabase(async ({ config, db }) => asCliErrors([DirectTokenError], async () => {
      if (!/^\d+$/.test(opts.ttl)) throw new CliError('--ttl must be a whole number of seconds');
      const issued = await issueDirectToken(db, {
        clientId: opts.client, scope: opts.scope.split(/\s+/).filter(Boolean), ttlSeconds: Number(opts.ttl), audience: tokenAudience(config),
      });
      output(opts, {
        access_token: issued.token, token_type: 'Bearer', expires_in: Number(opts.ttl), expires_at: issued.expiresAt.toISOString(),
        scope: issued.scope, client_id: opts.client,
      }, (r) => r.access_token);
    })));
}
