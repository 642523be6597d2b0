// keymgr cert …: client certificates for mutual TLS (RFC 8705).
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import {
  addCertificate, CertificateInputError, describeCertificate, findCertificate, listCertificates, parseCertificatePem, removeCertificate,
} from '../store/certificates.ts';
import { asCliErrors, CliError, output, withDatabase, type OutputOptions } from './context.ts';

function readPemFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    throw new CliError(`cannot read ${path}`);
  }
}

export function registerCertificateCommands(program: Command): void {
  const cert = program.command('cert').description('manage client certificates (mutual TLS)');

  cert.command('add')
    .description('register a client certificate; it authenticates from the next request on, on every instance')
    .requiredOption('--client <id>', 'client id')
    .requiredOption('--alias <alias>', 'name of the certificate, unique per client')
    .requiredOption('--file <pem>', 'PEM file holding the certificate (not the key, not a chain)')
    .option('--tier <tier>', 'throttling tier returned to gateways in introspection')
    .option('--json', 'print JSON')
    .action((opts: OutputOptions & { client: string; alias: string; file: string; tier?: string }) => withDatabase(async ({ db }) => asCliErrors([CertificateInputError], async () => {
      const parsed = parseCertificatePem(readPemFile(opts.file));
      const row = await addCertificate(db, opts.client, opts.alias, parsed, opts.tier);
      output(opts, describeCertificate(row), (c) => `registered ${c.alias} for ${c.client_id}: ${c.subject_dn}, x5t#S256 ${c.thumbprint_sha256}, valid until ${c.not_after}`);
    })));

  cert.command('list')
    .description('list certificates')
    .option('--client <id>', 'only this client\'s')
    .option('--expiring-within <days>', 'only those expiring within this many days', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new CliError('--expiring-within takes a whole number of days');
      return n;
    })
    .option('--json', 'print JSON')
    .action((opts: OutputOptions & { client?: string; expiringWithin?: number }) => withDatabase(async ({ db }) => {
      const rows = (await listCertificates(db, { clientId: opts.client, expiringWithinDays: opts.expiringWithin })).map(describeCertificate);
      output(opts, rows, (rs) => rs.length === 0 ? 'no certificates'
        : rs.map((c) => `${c.client_id}  ${c.alias}  ${c.subject_dn}  until ${c.not_after}${c.tier ? `  tier=${c.tier}` : ''}`).join('\n'));
    }));

  cert.command('show')
    .description('show one certificate')
    .requiredOption('--client <id>', 'client id')
    .requiredOption('--alias <alias>', 'certificate alias')
    .option('--json', 'print JSON')
    .action((opts: OutputOptions & { client: string; alias: string }) => withDatabase(async ({ db }) => {
      const row = await findCertificate(db, opts.client, opts.alias);
      if (!row) throw new CliError(`no certificate "${opts.alias}" for client ${opts.client}`);
      output(opts, { ...describeCertificate(row), pem: row.pem }, (c) => Object.entries(c).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(' ') : v}`).join('\n'));
    }));

  cert.command('remove')
    .description('remove a certificate; it stops authenticating from the next request on')
    .requiredOption('--client <id>', 'client id')
    .requiredOption('--alias <alias>', 'certificate alias')
    .option('--json', 'print JSON')
    .action((opts: OutputOptions & { client: string; alias: string }) => withDatabase(async ({ db }) => {
      if (!(await removeCertificate(db, opts.client, opts.alias))) throw new CliError(`no certificate "${opts.alias}" for client ${opts.client}`);
      output(opts, { client_id: opts.client, alias: opts.alias, removed: true }, () => `removed ${opts.alias}`);
    }));
}
