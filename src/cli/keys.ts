// keymgr keys …: list the published signing keys; rotate (a new key signs at once on every
// running instance; the old one stays published until what it signed has expired).
import { Option, type Command } from 'commander';
import { readSigningKeys, retirementDelaySeconds, rotateSigningKeys, SIGNING_ALGORITHMS, type PublishedKey, type SigningAlgorithm } from '../keys/signing-keys.ts';
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
    .addOption(new Option('--algorithm <alg>', 'algorithm of the new key (default: the configured signing_algorithm). An instance started later with another signing_algorithm replaces it').choices(SIGNING_ALGORITHMS))
    .option('--json', 'print JSON')
    .action((opts: OutputOptions & { algorithm?: SigningAlgorithm }) => withDatabase(async ({ config, db }) => {
      const retireAfter = retirementDelaySeconds(config.accessTokenTtl, config.clockSkew);
      const algorithm = opts.algorithm ?? config.signingAlgorithm;
      // Serialised with every other rotation and announced to the running instances.
      const result = await changeSigningKeys(db, () => rotateSigningKeys(config.keysDir, retireAfter, algorithm));
      output(opts, result, (r) => [`new ${algorithm} signing key ${r.kid}; every running instance signs with it now`, ...r.published.map(describe)].join('\n'));
    }));
}
