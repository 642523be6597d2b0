// keymgr client …: register, list, show, delete clients and rotate their secrets.
import type { Command } from 'commander';
import {
  SUPPORTED_AUTH_METHODS, ClientInputError, createClient, deleteClient, describeClient, findClientById, listClients,
  rotateClientSecret, setClientDisabled, TOKEN_FORMATS, type AuthMethod, type TokenFormat,
} from '../store/clients.ts';
import { CliError, output, withDatabase, type OutputOptions } from './context.ts';

const collect = (value: string, previous: string[] = []) => [...previous, value];
const list = (value: string) => value.split(',').map((s) => s.trim()).filter(Boolean);

interface CreateOptions extends OutputOptions {
  name: string;
  grantTypes: string[];
  scope: string;
  redirectUri?: string[];
  tokenFormat: string;
  authMethod: string;
  introspectAny?: boolean;
  introspectAudience?: string[];
  public?: boolean;
  native?: boolean;
  firstParty?: boolean;
  tlsSubjectDn?: string;
  tlsSanDns?: string;
}

export function registerClientCommands(program: Command): void {
  const client = program.command('client').description('manage OAuth clients');

  client.command('create')
    .description('register a client; prints its client_id and, once, its client_secret')
    .requiredOption('--name <name>', 'display name')
    .option('--grant-types <list>', 'comma-separated grant types', list, ['client_credentials'])
    .option('--scope <scopes>', 'space-separated scopes the client may request', '')
    .option('--redirect-uri <uri>', 'redirect URI (repeatable)', collect)
    .option('--token-format <format>', `access token format: ${TOKEN_FORMATS.join('|')}`, 'opaque')
    .option('--auth-method <method>', `token endpoint authentication: ${SUPPORTED_AUTH_METHODS.join('|')}`, 'client_secret_basic')
    .option('--introspect-any', 'may introspect tokens of any client (resource servers, gateways)')
    .option('--introspect-audience <list>', 'comma-separated audiences: as a gateway, sees only tokens for these (others introspect as inactive)', list)
    .option('--public', 'a public client (no secret; --auth-method none): browser or native apps using PKCE')
    .option('--native', 'a native application: loopback redirect URIs match on any port (RFC 8252)')
    .option('--first-party', 'a client of your own: users are not asked for consent')
    .option('--tls-subject-dn <dn>', 'tls_client_auth: the subject DN (RFC 4514, e.g. "CN=gw,O=Example") the certificate must carry')
    .option('--tls-san-dns <name>', 'tls_client_auth: a DNS name the certificate must carry as subjectAltName')
    .option('--json', 'print JSON')
    .action((opts: CreateOptions) => withDatabase(async ({ db }) => {
      if (opts.public) {
        if (opts.authMethod !== 'client_secret_basic' && opts.authMethod !== 'none') throw new CliError('--public cannot be combined with --auth-method');
        opts.authMethod = 'none';
      }
      if (!(TOKEN_FORMATS as readonly string[]).includes(opts.tokenFormat)) throw new CliError(`--token-format must be one of ${TOKEN_FORMATS.join(', ')}`);
      if (!(SUPPORTED_AUTH_METHODS as readonly string[]).includes(opts.authMethod)) throw new CliError(`--auth-method must be one of ${SUPPORTED_AUTH_METHODS.join(', ')}`);
      // The store's own wording names no flags (the management API shares it).
      const certificateFlags = [opts.tlsSubjectDn, opts.tlsSanDns].filter((v) => v !== undefined).length;
      if (opts.authMethod === 'tls_client_auth' && certificateFlags !== 1) {
        throw new CliError('--auth-method tls_client_auth needs exactly one of --tls-subject-dn <dn> or --tls-san-dns <name>: what the client certificate must carry (RFC 8705 §2.1.2)');
      }
      if (opts.authMethod !== 'tls_client_auth' && certificateFlags > 0) throw new CliError('--tls-subject-dn and --tls-san-dns go with --auth-method tls_client_auth only');
      try {
        const { client: row, clientSecret } = await createClient(db, {
          name: opts.name,
          grantTypes: opts.grantTypes,
          scope: opts.scope.split(/\s+/).filter(Boolean),
          redirectUris: opts.redirectUri ?? [],
          tokenFormat: opts.tokenFormat as TokenFormat,
          authMethod: opts.authMethod as AuthMethod,
          introspectAny: opts.introspectAny ?? false,
          introspectAudiences: opts.introspectAudience ?? null,
          applicationType: opts.native ? 'native' : 'web',
          firstParty: opts.firstParty ?? false,
          tlsSubjectDn: opts.tlsSubjectDn,
          tlsSanDns: opts.tlsSanDns,
        });
        const result = { client_id: row.client_id, ...(clientSecret ? { client_secret: clientSecret } : {}) };
        output(opts, result, (r) => [
          `client_id:     ${r.client_id}`,
          ...(r.client_secret ? [`client_secret: ${r.client_secret}`, '(the secret is shown only now; store it safely)'] : []),
        ].join('\n'));
      } catch (err) {
        if (err instanceof ClientInputError) throw new CliError(err.message);
        throw err;
      }
    }));

  client.command('list')
    .description('list clients')
    .option('--json', 'print JSON')
    .action((opts: OutputOptions) => withDatabase(async ({ db }) => {
      const rows = (await listClients(db)).map(describeClient);
      output(opts, rows, (rs) => rs.length === 0 ? 'no clients'
        : rs.map((c) => `${c.client_id}  ${c.name}  [${c.grant_types.join(',')}]  scope="${c.scope}"${c.disabled ? '  (disabled)' : ''}`).join('\n'));
    }));

  client.command('show <clientId>')
    .description('show one client')
    .option('--json', 'print JSON')
    .action((clientId: string, opts: OutputOptions) => withDatabase(async ({ db }) => {
      const row = await findClientById(db, clientId);
      if (!row) throw new CliError(`no client ${clientId}`);
      output(opts, describeClient(row), (c) => Object.entries(c).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(' ') : v}`).join('\n'));
    }));

  client.command('delete <clientId>')
    .description('delete a client and every token issued to it')
    .option('--json', 'print JSON')
    .action((clientId: string, opts: OutputOptions) => withDatabase(async ({ db }) => {
      if (!(await deleteClient(db, clientId))) throw new CliError(`no client ${clientId}`);
      output(opts, { client_id: clientId, deleted: true }, (r) => `deleted ${r.client_id}`);
    }));

  for (const [verb, disabled] of [['disable', true], ['enable', false]] as const) {
    client.command(`${verb} <clientId>`)
      .description(disabled
        ? 'disable a client: it can no longer authenticate, and every token issued to it is revoked'
        : 'enable a disabled client again (tokens revoked when it was disabled stay revoked)')
      .option('--json', 'print JSON')
      .action((clientId: string, opts: OutputOptions) => withDatabase(async ({ db }) => {
        if (!(await setClientDisabled(db, clientId, disabled))) throw new CliError(`no client ${clientId}`);
        output(opts, { client_id: clientId, disabled }, (r) => `${verb}d ${r.client_id}`);
      }));
  }

  client.command('rotate-secret <clientId>')
    .description('issue a new client secret; the old one stops working at once')
    .option('--json', 'print JSON')
    .action((clientId: string, opts: OutputOptions) => withDatabase(async ({ db }) => {
      const secret = await rotateClientSecret(db, clientId);
      if (!secret) throw new CliError(`no client ${clientId} that authenticates with a secret`);
      output(opts, { client_id: clientId, client_secret: secret }, (r) => `client_id:     ${r.client_id}\nclient_secret: ${r.client_secret}`);
    }));
}
