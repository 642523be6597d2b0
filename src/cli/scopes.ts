// keymgr scope …: the scope registry and its role bindings.
import type { Command } from 'commander';
import { createScope, deleteScope, listScopes, updateScope } from '../store/scopes.ts';
import { asCliErrors, CliError, output, withDatabase, type OutputOptions } from './context.ts';
import { UserInputError } from '../store/users.ts';

const list = (value: string) => value.split(',').map((s) => s.trim()).filter(Boolean);

export function registerScopeCommands(program: Command): void {
  const scope = program.command('scope').description('manage registered scopes');

  scope.command('create <name>')
    .description('register a scope, optionally granted only to users holding one of the given roles')
    .option('--roles <list>', 'comma-separated roles; a user needs one of them to be granted the scope', list, [])
    .option('--description <text>', 'shown to users on the consent page', '')
    .option('--json', 'print JSON')
    .action((name: string, opts: OutputOptions & { roles: string[]; description: string }) => withDatabase(async ({ db }) => asCliErrors([UserInputError], async () => {
      const created = await createScope(db, name, opts.description, opts.roles);
      output(opts, created, (s) => `registered scope ${s.name}${s.roles.length ? ` (roles: ${s.roles.join(', ')})` : ''}`);
    })));

  scope.command('update <name>')
    .description('change the description and/or replace the roles the scope is bound to (--roles "" : no role needed)')
    .option('--roles <list>', 'comma-separated roles, replacing the current ones', list)
    .option('--description <text>', 'shown to users on the consent page')
    .option('--json', 'print JSON')
    .action((name: string, opts: OutputOptions & { roles?: string[]; description?: string }) => withDatabase(async ({ db }) => asCliErrors([UserInputError], async () => {
      if (opts.roles === undefined && opts.description === undefined) throw new CliError('give --description and/or --roles');
      const updated = await updateScope(db, name, { description: opts.description, roles: opts.roles });
      if (!updated) throw new CliError(`no scope "${name}"`);
      output(opts, updated, (s) => `updated scope ${s.name} (roles: ${s.roles.join(', ') || 'none needed'})`);
    })));

  scope.command('list')
    .description('list registered scopes')
    .option('--json', 'print JSON')
    .action((opts: OutputOptions) => withDatabase(async ({ db }) => {
      output(opts, await listScopes(db), (ss) => ss.length === 0 ? 'no scopes'
        : ss.map((s) => `${s.name}  roles=${s.roles.join(',') || '-'}  ${s.description}`).join('\n'));
    }));

  scope.command('delete <name>')
    .description('remove a scope from the registry (it is no longer granted)')
    .option('--json', 'print JSON')
    .action((name: string, opts: OutputOptions) => withDatabase(async ({ db }) => {
      if (!(await deleteScope(db, name))) throw new CliError(`no scope "${name}"`);
      output(opts, { name, deleted: true }, () => `deleted scope ${name}`);
    }));
}
