// keymgr keys …: list the published signing keys; rotate (a new key signs at once on every
// running instance; the old one stays published until what it signed has expired).
import type { Command } from 'commander';
import { readSigningKeys, retirementDelaySeconds, rotateSigningKeys, type PublishedKey } from '../keys/signing-keys.ts';
import { changeSigningKeys } from '../store/signing-key-changes.ts';
import { output, withDatabase, withConfig, type OutputOptions } from './context.ts';

const describe = (k: PublishedKey) => `  ${k.kid}  ${k.alg}  created ${k.created_at}${k.retire_at ? `  published until ${k.retire_at}` : '  (signing)'}`;

export function registerKeyCommands(program: Command): void {
  const keys = program.command('keys').description('manage signing keys');
  keys.command('list')
    .description('list the published signing keys (never their private parts)')
    .option('--json', 'print JSON')
    .action((opts: OutputOptions) => withConfig(async (config) => {
      output(opts, readSigningKeys(config.keysDir).published, (list) => list.map(describe).join('\n'));
    }));
  keys.command('rotate')
    .description('add a new signing key: every running instance signs with it within moments; the old one stays published until its tokens expire')
    .option('--json', 'print JSON')
    .action((opts: OutputOptions) => withDatabase(async ({ config, db }) => {
      const retireAfter = retirementDelaySeconds(config.accessTokenTtl, config.clockSkew);
      // Serialised with every other rotation and announced to the running instances.
      const result = await changeSigningKeys(db, () => rotateSigningKeys(config.keysDir, retireAfter));
      output(opts, result, (r) => [`new signing key ${r.kid}; every running instance signs with it now`, ...r.published.map(describe)].join('\n'));
    }));
}
