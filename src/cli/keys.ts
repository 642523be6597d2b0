// keymgr keys rotate: add a new signing key; the old one stays published until what it signed
// has expired.
import type { Command } from 'commander';
import { retirementDelaySeconds, rotateSigningKeys } from '../keys/signing-keys.ts';
import { output, withConfig, type OutputOptions } from './context.ts';

export function registerKeyCommands(program: Command): void {
  const keys = program.command('keys').description('manage signing keys');
  keys.command('rotate')
    .description('add a new signing key (used after the next restart); keep the old one published until its tokens expire')
    .option('--json', 'print JSON')
    .action((opts: OutputOptions) => withConfig(async (config) => {
      const retireAfter = retirementDelaySeconds(config.accessTokenTtl, config.clockSkew);
      const result = await rotateSigningKeys(config.keysDir, retireAfter);
      output(opts, result, (r) => [
        `new signing key ${r.kid}; restart the server(s) to sign with it`,
        ...r.published.map((k) => `  ${k.kid}  created ${k.created_at}${k.retire_at ? `  published until ${k.retire_at}` : '  (signing)'}`),
      ].join('\n'));
    }));
}
