// keymgr idp …: trusted SAML identity providers for the SAML2 bearer grant (RFC 7522).
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { addIdp, describeIdp, findIdp, IdpInputError, listIdps, removeIdp, setIdpEnabled } from '../store/idps.ts';
import { CertificateInputError, singleCertificate } from '../store/certificates.ts';
import { CliError, output, withDatabase, type OutputOptions } from './context.ts';

const collect = (value: string, previous: string[] = []) => [...previous, value];
const list = (value: string) => value.split(',').map((s) => s.trim()).filter(Boolean);

/** One PEM certificate per file; the key of an IdP never comes here. */
function readCertificate(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new CliError(`cannot read ${path}`);
  }
  try {
    return singleCertificate(text).toString();
  } catch (err) {
    if (err instanceof CertificateInputError) throw new CliError(`${path}: ${err.message}`);
    throw err;
  }
}

export function registerIdpCommands(program: Command): void {
  const idp = program.command('idp').description('manage trusted SAML identity providers');

  idp.command('add')
    .description('trust an identity provider\'s signed assertions')
    .requiredOption('--entity-id <id>', 'the IdP\'s entity ID (the assertions\' Issuer)')
    .requiredOption('--cert <file>', 'PEM signing certificate (repeatable, for rollover)', collect)
    .option('--jit', 'create users federated from this IdP on first use (otherwise a NameID must be linked first: keymgr user link)')
    .option('--default-roles <list>', 'roles given to users created on first use', list, [])
    .option('--allowed-clients <list>', 'only these client ids may use this IdP (default: any client with the grant)', list)
    .option('--allow-transient', 'accept transient NameIDs (refused by default: they identify nobody across sessions)')
    .option('--json', 'print JSON')
    .action((opts: OutputOptions & { entityId: string; cert: string[]; jit?: boolean; defaultRoles: string[]; allowedClients?: string[]; allowTransient?: boolean }) => withDatabase(async ({ db }) => {
      const certificates = opts.cert.map(readCertificate);
      try {
        const row = await addIdp(db, {
          entityId: opts.entityId, certificates, jit: opts.jit, defaultRoles: opts.defaultRoles, allowedClients: opts.allowedClients, allowTransient: opts.allowTransient,
        });
        output(opts, describeIdp(row), (r) => `trusting ${r.entity_id} (${r.certificates} certificate(s))`);
      } catch (err) {
        if (err instanceof IdpInputError) throw new CliError(err.message);
        throw err;
      }
    }));

  idp.command('list')
    .description('list identity providers')
    .option('--json', 'print JSON')
    .action((opts: OutputOptions) => withDatabase(async ({ db }) => {
      output(opts, (await listIdps(db)).map(describeIdp), (rs) => rs.length === 0 ? 'no identity providers'
        : rs.map((r) => `${r.entity_id}  ${r.enabled ? 'enabled' : 'disabled'}  certificates=${r.certificates}${r.jit_provisioning ? '  jit' : ''}${r.allow_transient ? '  transient' : ''}`).join('\n'));
    }));

  idp.command('show <entityId>')
    .description('show one identity provider')
    .option('--json', 'print JSON')
    .action((entityId: string, opts: OutputOptions) => withDatabase(async ({ db }) => {
      const row = await findIdp(db, entityId);
      if (!row) throw new CliError(`no identity provider "${entityId}"`);
      output(opts, { ...describeIdp(row), certificates: row.certificates }, (r) => Object.entries(r).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join('\n') : v}`).join('\n'));
    }));

  for (const [name, enabled] of [['disable', false], ['enable', true]] as const) {
    idp.command(`${name} <entityId>`)
      .description(enabled ? 'accept this IdP\'s assertions again' : 'refuse this IdP\'s assertions from the next request on')
      .option('--json', 'print JSON')
      .action((entityId: string, opts: OutputOptions) => withDatabase(async ({ db }) => {
        if (!(await setIdpEnabled(db, entityId, enabled))) throw new CliError(`no identity provider "${entityId}"`);
        output(opts, { entity_id: entityId, enabled }, () => `${entityId} ${enabled ? 'enabled' : 'disabled'}`);
      }));
  }

  idp.command('remove <entityId>')
    .description('stop trusting an identity provider (its users are kept; adding it again gives them back)')
    .option('--json', 'print JSON')
    .action((entityId: string, opts: OutputOptions) => withDatabase(async ({ db }) => {
      if (!(await removeIdp(db, entityId))) throw new CliError(`no identity provider "${entityId}"`);
      output(opts, { entity_id: entityId, removed: true }, () => `removed ${entityId}`);
    }));
}
