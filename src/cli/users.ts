// keymgr user … and keymgr role …: resource owners and their roles.
import type { Command } from 'commander';
import {
  createRole, createUser, deleteRole, deleteUser, describeUser, grantRole, listRoles, listUsers, revokeRole,
  setPasswordHash, setUserDisabled, findUserByUsername, rolesOfUser, UserInputError, linkUser, unlockUser, setRoleDescription,
} from '../store/users.ts';
import { checkPasswordAcceptable, hashPassword, passwordParams, PasswordPolicyError } from '../store/passwords.ts';
import { asCliErrors, CliError, output, withDatabase, type OutputOptions } from './context.ts';

const list = (value: string) => value.split(',').map((s) => s.trim()).filter(Boolean);

/** Reads the password from standard input (first line), so it never shows in `ps` or history. */
export async function readPasswordFromStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new CliError('the password on standard input is not valid UTF-8');
  }
  const password = text.replace(/\r?\n$/, '');
  if (!password) throw new CliError('no password on standard input');
  return password;
}

const inputErrors = [UserInputError, PasswordPolicyError];

export function registerUserCommands(program: Command): void {
  const user = program.command('user').description('manage users (resource owners)');

  user.command('create')
    .description('create a user; the password is read from standard input')
    .requiredOption('--username <username>', 'username (unique regardless of case)')
    .option('--password-stdin', 'read the password from standard input (the only way to give one)')
    .option('--roles <list>', 'comma-separated roles to grant', list, [])
    .option('--json', 'print JSON')
    .action((opts: OutputOptions & { username: string; passwordStdin?: boolean; roles: string[] }) => withDatabase(async ({ db, config }) => asCliErrors(inputErrors, async () => {
      if (!opts.passwordStdin) throw new CliError('give the password on standard input with --password-stdin');
      const password = await readPasswordFromStdin();
      checkPasswordAcceptable(password);
      const row = await createUser(db, opts.username, await hashPassword(password, passwordParams(config)), [...new Set(opts.roles)]);
      output(opts, describeUser({ ...row, roles: await rolesOfUser(db, row.id) }), (u) => `created user ${u.username} (${u.id})${u.roles?.length ? ` with roles ${u.roles.join(', ')}` : ''}`);
    })));

  user.command('list')
    .description('list users and their roles')
    .option('--json', 'print JSON')
    .action((opts: OutputOptions) => withDatabase(async ({ db }) => {
      const users = (await listUsers(db)).map(describeUser);
      output(opts, users, (us) => us.length === 0 ? 'no users'
        : us.map((u) => `${u.username}  ${u.id}  roles=${(u.roles ?? []).join(',') || '-'}${u.federated_idp ? `  idp=${u.federated_idp}` : ''}${u.disabled ? '  (disabled)' : ''}`).join('\n'));
    }));

  user.command('set-password <username>')
    .description('replace a user\'s password (read from standard input)')
    .option('--password-stdin', 'read the password from standard input')
    .option('--json', 'print JSON')
    .action((username: string, opts: OutputOptions & { passwordStdin?: boolean }) => withDatabase(async ({ db, config }) => asCliErrors(inputErrors, async () => {
      if (!opts.passwordStdin) throw new CliError('give the password on standard input with --password-stdin');
      const found = await findUserByUsername(db, username);
      if (!found) throw new CliError(`no user "${username}"`);
      const password = await readPasswordFromStdin();
      checkPasswordAcceptable(password);
      await setPasswordHash(db, found.id, await hashPassword(password, passwordParams(config)));
      output(opts, { username: found.username, password_changed: true }, (r) => `password of ${r.username} changed`);
    })));

  user.command('disable <username>')
    .description('disable a user: no new sign-ins, and every token issued for them is revoked')
    .option('--json', 'print JSON')
    .action((username: string, opts: OutputOptions) => withDatabase(async ({ db }) => {
      if (!(await setUserDisabled(db, username, true))) throw new CliError(`no user "${username}"`);
      output(opts, { username, disabled: true }, () => `disabled ${username}`);
    }));

  user.command('unlock <username>')
    .description('lift a lockout: forget the failed sign-ins counted against the account')
    .option('--json', 'print JSON')
    .action((username: string, opts: OutputOptions) => withDatabase(async ({ db }) => {
      const result = await unlockUser(db, username);
      if (!result) throw new CliError(`no user "${username}"`);
      output(opts, { username: result.user.username, unlocked: true, login_failures_deleted: result.deleted },
        (r) => `${r.username} unlocked (${r.login_failures_deleted} failed sign-ins forgotten)`);
    }));

  user.command('enable <username>')
    .description('enable a disabled user again')
    .option('--json', 'print JSON')
    .action((username: string, opts: OutputOptions) => withDatabase(async ({ db }) => {
      if (!(await setUserDisabled(db, username, false))) throw new CliError(`no user "${username}"`);
      output(opts, { username, disabled: false }, () => `enabled ${username}`);
    }));

  user.command('delete <username>')
    .description('delete a user and revoke every token issued for them')
    .option('--json', 'print JSON')
    .action((username: string, opts: OutputOptions) => withDatabase(async ({ db }) => {
      const row = await deleteUser(db, username);
      if (!row) throw new CliError(`no user "${username}"`);
      output(opts, { username: row.username, id: row.id, deleted: true }, (r) => `deleted ${r.username}`);
    }));

  user.command('link <username>')
    .description('federate a user from a SAML identity provider: its assertions with this NameID (exact) then act for the user')
    .requiredOption('--idp <entityId>', 'the identity provider\'s entity ID')
    .requiredOption('--name-id <nameId>', 'the NameID the identity provider gives this user')
    .option('--json', 'print JSON')
    .action((username: string, opts: OutputOptions & { idp: string; nameId: string }) => withDatabase(async ({ db }) => asCliErrors(inputErrors, async () => {
      const row = await linkUser(db, username, { idp: opts.idp, nameId: opts.nameId });
      output(opts, { username: row.username, id: row.id, federated_idp: row.federated_idp, federated_name_id: row.federated_name_id },
        (r) => `${r.username} is now NameID ${JSON.stringify(r.federated_name_id)} of ${r.federated_idp}`);
    })));

  const role = program.command('role').description('manage roles and who holds them');

  role.command('create <name>')
    .description('create a role')
    .option('--description <text>', 'what the role is for', '')
    .option('--json', 'print JSON')
    .action((name: string, opts: OutputOptions & { description: string }) => withDatabase(async ({ db }) => asCliErrors(inputErrors, async () => {
      await createRole(db, name, opts.description);
      output(opts, { name, description: opts.description }, () => `created role ${name}`);
    })));

  role.command('update <name>')
    .description('change a role\'s description')
    .requiredOption('--description <text>', 'what the role is for')
    .option('--json', 'print JSON')
    .action((name: string, opts: OutputOptions & { description: string }) => withDatabase(async ({ db }) => {
      if (!(await setRoleDescription(db, name, opts.description))) throw new CliError(`no role "${name}"`);
      output(opts, { name, description: opts.description }, () => `updated role ${name}`);
    }));

  role.command('list')
    .description('list roles')
    .option('--json', 'print JSON')
    .action((opts: OutputOptions) => withDatabase(async ({ db }) => {
      output(opts, await listRoles(db), (rs) => rs.length === 0 ? 'no roles' : rs.map((r) => `${r.name}  users=${r.users}  ${r.description}`).join('\n'));
    }));

  role.command('delete <name>')
    .description('delete a role (users lose it); refused while scopes are bound to it')
    .option('--json', 'print JSON')
    .action((name: string, opts: OutputOptions) => withDatabase(async ({ db }) => asCliErrors(inputErrors, async () => {
      if (!(await deleteRole(db, name))) throw new CliError(`no role "${name}"`);
      output(opts, { name, deleted: true }, () => `deleted role ${name}`);
    })));

  role.command('grant <username> <role>')
    .description('give a user a role')
    .option('--json', 'print JSON')
    .action((username: string, roleName: string, opts: OutputOptions) => withDatabase(async ({ db }) => asCliErrors(inputErrors, async () => {
      await grantRole(db, username, roleName);
      output(opts, { username, role: roleName, granted: true }, () => `${username} now holds ${roleName}`);
    })));

  role.command('revoke <username> <role>')
    .description('take a role from a user')
    .option('--json', 'print JSON')
    .action((username: string, roleName: string, opts: OutputOptions) => withDatabase(async ({ db }) => asCliErrors(inputErrors, async () => {
      const removed = await revokeRole(db, username, roleName);
      output(opts, { username, role: roleName, revoked: removed }, (r) => r.revoked ? `${username} no longer holds ${roleName}` : `${username} did not hold ${roleName}`);
    })));
}
