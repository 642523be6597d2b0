// Clients: registration data and their secrets. Secrets are generated here (256 bits),
// handed out once and kept only as a SHA-256 digest, which is fast to check on the hot path
// and useless to whoever copies the table (a 256-bit random value cannot be guessed back).
import { hash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Db } from '../db/database.ts';
import type { ClientRow } from '../db/types.ts';
import { assertDistinguishedName, DistinguishedNameError } from './distinguished-name.ts';

export const SECRET_AUTH_METHODS = ['client_secret_basic', 'client_secret_post'] as const;
export const AUTH_METHODS = [...SECRET_AUTH_METHODS, 'none', 'tls_client_auth', 'self_signed_tls_client_auth'] as const;
/** The methods the server accepts (RFC 8705 §2 included). */
export const SUPPORTED_AUTH_METHODS = AUTH_METHODS;
export const CERTIFICATE_AUTH_METHODS = ['tls_client_auth', 'self_signed_tls_client_auth'] as const;
export type AuthMethod = (typeof AUTH_METHODS)[number];
export const GRANT_TYPES = [
  'client_credentials',
  'authorization_code',
  'refresh_token',
  'password',
  'urn:ietf:params:oauth:grant-type:saml2-bearer',
] as const;
export const TOKEN_FORMATS = ['opaque', 'jwt'] as const;
export type TokenFormat = (typeof TOKEN_FORMATS)[number];

export interface NewClient {
  name: string;
  grantTypes: string[];
  scope: string[];
  redirectUris?: string[];
  tokenFormat?: TokenFormat;
  authMethod?: AuthMethod;
  introspectAny?: boolean;
  /** A gateway limited to tokens for these audiences (introspection and the revocation feed); null or absent: any. */
  introspectAudiences?: string[] | null;
  /** native: loopback redirect URIs match on any port (RFC 8252 §7.3). */
  applicationType?: 'web' | 'native';
  /** First-party clients skip the consent page. */
  firstParty?: boolean;
  /** tls_client_auth: the subject DN (RFC 4514) or DNS SAN the certificate must carry. */
  tlsSubjectDn?: string;
  tlsSanDns?: string;
}

export class ClientInputError extends Error {}

export function generateClientSecret(): string {
  return randomBytes(32).toString('base64url');
}

export function hashClientSecret(secret: string): string {
  return hash('sha256', secret, 'hex');
}

/** Constant-time comparison of a presented secret with the stored digest. */
export function clientSecretMatches(presented: string, storedSha256: string | null): boolean {
  // Hash even when nothing is stored so that the time taken does not tell the two cases apart.
  const presentedDigest = hash('sha256', presented, 'buffer');
  const stored = Buffer.from(storedSha256 ?? '0'.repeat(64), 'hex');
  return timingSafeEqual(presentedDigest, stored) && storedSha256 !== null;
}

export function usesSecret(method: string): boolean {
  return (SECRET_AUTH_METHODS as readonly string[]).includes(method);
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);
const NEVER_REDIRECT_SCHEMES = new Set(['javascript:', 'vbscript:', 'data:', 'blob:', 'file:', 'about:']);

/**
 * What the protocol engine accepts of a redirect URI for the application type (OpenID Connect
 * Registration §2, RFC 8252 §7): refused here, at registration, rather than found out by every
 * request the client then makes. A web application redirects to http(s); a native one to a
 * loopback address over http, a claimed https URI that is not loopback, or its own scheme.
 */
function checkRedirectUriFor(applicationType: 'web' | 'native', uri: string, { protocol, hostname }: URL): void {
  const refuse = (why: string) => {
    throw new ClientInputError(`redirect URI "${uri}" ${why}`);
  };
  if (applicationType === 'web') {
    if (protocol !== 'https:' && protocol !== 'http:') refuse('must be an http or https URI for a web application (--native for an app with its own scheme)');
    return;
  }
  if (protocol === 'http:' && !LOOPBACK_HOSTS.has(hostname)) refuse('over http must name a loopback address (127.0.0.1, [::1] or localhost) for a native application');
  if (protocol === 'https:' && LOOPBACK_HOSTS.has(hostname)) refuse('must not name a loopback address over https for a native application (use http://127.0.0.1)');
  if (NEVER_REDIRECT_SCHEMES.has(protocol)) refuse(`must not use the ${protocol.slice(0, -1)} scheme`);
}

function validate(input: NewClient): void {
  if (!input.name.trim()) throw new ClientInputError('name must not be empty');
  if (input.grantTypes.length === 0) throw new ClientInputError('at least one grant type is required');
  for (const g of input.grantTypes) {
    if (!(GRANT_TYPES as readonly string[]).includes(g)) {
      throw new ClientInputError(`unknown grant type "${g}" (one of: ${GRANT_TYPES.join(', ')})`);
    }
  }
  for (const s of input.scope) {
    // RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E
    if (!/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(s)) throw new ClientInputError(`invalid scope value "${s}"`);
  }
  for (const uri of input.redirectUris ?? []) {
    let parsed: URL;
    try {
      parsed = new URL(uri);
    } catch {
      throw new ClientInputError(`redirect URI "${uri}" is not an absolute URI`);
    }
    if (parsed.hash) throw new ClientInputError(`redirect URI "${uri}" must not contain a fragment`);
    // Credentials in a redirect URI would travel in every authorization response.
    if (parsed.username || parsed.password) throw new ClientInputError(`redirect URI "${uri}" must not contain a user name or password`);
    checkRedirectUriFor(input.applicationType ?? 'web', uri, parsed);
    // A browser sends what it redirects to percent-encoded: a raw space or control character could never match.
    if (uri.length > 2000 || /[\x00-\x20\x7f]/.test(uri)) throw new ClientInputError(`redirect URI "${uri}" must be at most 2000 characters, without spaces or control characters`);
  }
  const method = input.authMethod ?? 'client_secret_basic';
  if (!(SUPPORTED_AUTH_METHODS as readonly string[]).includes(method)) {
    throw new ClientInputError(`token endpoint auth method "${method}" is not supported yet (one of: ${SUPPORTED_AUTH_METHODS.join(', ')})`);
  }
  // RFC 6749 §4.4 and §4.3: these grants are for clients that can keep a secret.
  const confidentialOnly = input.grantTypes.filter((g) => g === 'client_credentials' || g === 'password');
  if (method === 'none' && confidentialOnly.length > 0) {
    throw new ClientInputError(`a public client (auth method none) cannot use ${confidentialOnly.join(' or ')}`);
  }
  if (method === 'tls_client_auth' && Boolean(input.tlsSubjectDn) === Boolean(input.tlsSanDns)) {
    throw new ClientInputError('tls_client_auth needs exactly one of a subject DN or a DNS SAN for the certificate (RFC 8705 §2.1.2)');
  }
  if (method !== 'tls_client_auth' && (input.tlsSubjectDn || input.tlsSanDns)) {
    throw new ClientInputError('a certificate subject or SAN only applies to tls_client_auth');
  }
  if (input.tlsSanDns !== undefined && (input.tlsSanDns.length > 253 || /[\x00-\x20\x7f]/.test(input.tlsSanDns))) {
    throw new ClientInputError('the DNS SAN must be a host name of at most 253 characters');
  }
  if (input.tlsSubjectDn) {
    if (input.tlsSubjectDn.length > 1000) throw new ClientInputError('the subject DN must be at most 1000 characters');
    try {
      assertDistinguishedName(input.tlsSubjectDn);
    } catch (err) {
      if (err instanceof DistinguishedNameError) throw new ClientInputError(`the subject DN "${input.tlsSubjectDn}" does not parse: ${err.message} (write it as CN=gateway,O=Example or /O=Example/CN=gateway)`);
      throw err;
    }
  }
  const audiences = input.introspectAudiences ?? [];
  if (audiences.length > 50) throw new ClientInputError('at most 50 introspection audiences');
  for (const a of audiences) {
    if (!a || a.length > 2000 || /[\x00-\x20\x7f]/.test(a)) throw new ClientInputError(`invalid introspection audience "${a}" (1-2000 characters, no spaces or control characters)`);
  }
  if (input.grantTypes.includes('authorization_code') && !input.redirectUris?.length) {
    throw new ClientInputError('the authorization_code grant needs at least one redirect URI');
  }
}

async function assertScopesRegistered(db: Db, scopes: string[]): Promise<void> {
  if (scopes.length === 0) return;
  const found = await db.selectFrom('scopes').select('name').where('name', 'in', scopes).execute();
  const missing = scopes.filter((s) => !found.some((f) => f.name === s));
  if (missing.length > 0) {
    throw new ClientInputError(`scope not registered: ${missing.join(', ')} (register it first: keymgr scope create ${missing[0]})`);
  }
}

export async function createClient(db: Db, input: NewClient): Promise<{ client: ClientRow; clientSecret: string | null }> {
  validate(input);
  await assertScopesRegistered(db, input.scope);
  const authMethod = input.authMethod ?? 'client_secret_basic';
  const clientSecret = usesSecret(authMethod) ? generateClientSecret() : null;
  const client = await db.insertInto('clients')
    .values({
      client_id: generateClientId(),
      name: input.name.trim(),
      secret_sha256: clientSecret ? hashClientSecret(clientSecret) : null,
      secret_created_at: clientSecret ? new Date() : null,
      token_endpoint_auth_method: authMethod,
      grant_types: [...new Set(input.grantTypes)],
      redirect_uris: [...new Set(input.redirectUris ?? [])],
      scope: [...new Set(input.scope)].join(' '),
      access_token_format: input.tokenFormat ?? 'opaque',
      introspect_any: input.introspectAny ?? false,
      // An empty list limits the gateway to no audience at all (never read as "any").
      introspect_audiences: input.introspectAudiences == null ? null : [...new Set(input.introspectAudiences)],
      application_type: input.applicationType ?? 'web',
      first_party: input.firstParty ?? false,
      tls_client_auth_subject_dn: input.tlsSubjectDn || null,
      tls_client_auth_san_dns: input.tlsSanDns || null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  return { client, clientSecret };
}

/** What an update may change: everything but the authentication method (and so the secret). */
export type ClientChanges = Partial<Omit<NewClient, 'authMethod'>>;

/** Applies the changes with the same rules as registration; undefined when there is no such client. */
export async function updateClient(db: Db, clientId: string, changes: ClientChanges): Promise<ClientRow | undefined> {
  const row = await findClientById(db, clientId);
  if (!row) return undefined;
  const merged: NewClient = {
    name: changes.name ?? row.name,
    grantTypes: changes.grantTypes ?? row.grant_types,
    scope: changes.scope ?? row.scope.split(' ').filter(Boolean),
    redirectUris: changes.redirectUris ?? row.redirect_uris,
    tokenFormat: changes.tokenFormat ?? row.access_token_format,
    authMethod: row.token_endpoint_auth_method as AuthMethod,
    introspectAny: changes.introspectAny ?? row.introspect_any,
    introspectAudiences: changes.introspectAudiences !== undefined ? changes.introspectAudiences : row.introspect_audiences,
    applicationType: changes.applicationType ?? row.application_type,
    firstParty: changes.firstParty ?? row.first_party,
    tlsSubjectDn: changes.tlsSubjectDn ?? row.tls_client_auth_subject_dn ?? undefined,
    tlsSanDns: changes.tlsSanDns ?? row.tls_client_auth_san_dns ?? undefined,
  };
  validate(merged);
  await assertScopesRegistered(db, merged.scope);
  return db.updateTable('clients').set({
    name: merged.name.trim(),
    grant_types: [...new Set(merged.grantTypes)],
    redirect_uris: [...new Set(merged.redirectUris ?? [])],
    scope: [...new Set(merged.scope)].join(' '),
    access_token_format: merged.tokenFormat ?? 'opaque',
    introspect_any: merged.introspectAny ?? false,
    introspect_audiences: merged.introspectAudiences == null ? null : [...new Set(merged.introspectAudiences)],
    application_type: merged.applicationType ?? 'web',
    first_party: merged.firstParty ?? false,
    tls_client_auth_subject_dn: merged.tlsSubjectDn || null,
    tls_client_auth_san_dns: merged.tlsSanDns || null,
    updated_at: new Date(),
  }).where('client_id', '=', clientId).returningAll().executeTakeFirst();
}

export async function findClientById(db: Db, clientId: string): Promise<ClientRow | undefined> {
  return db.selectFrom('clients').selectAll().where('client_id', '=', clientId).executeTakeFirst();
}

export async function listClients(db: Db): Promise<ClientRow[]> {
  return db.selectFrom('clients').selectAll().orderBy('created_at').orderBy('client_id').execute();
}

/** One page of clients in client_id order, after the cursor (the last id of the previous page), and the total. */
export async function listClientsPage(db: Db, { limit, after }: { limit: number; after?: string }): Promise<{ rows: ClientRow[]; total: number; more: boolean }> {
  let query = db.selectFrom('clients').selectAll().orderBy('client_id').limit(limit + 1);
  if (after !== undefined) query = query.where('client_id', '>', after);
  const [rows, count] = await Promise.all([
    query.execute(),
    db.selectFrom('clients').select((e) => e.fn.countAll<string>().as('n')).executeTakeFirstOrThrow(),
  ]);
  return { rows: rows.slice(0, limit), total: Number(count.n), more: rows.length > limit };
}

/** Deletes the client; its tokens and certificates go with it (ON DELETE CASCADE). */
export async function deleteClient(db: Db, clientId: string): Promise<boolean> {
  const result = await db.deleteFrom('clients').where('client_id', '=', clientId).executeTakeFirst();
  return result.numDeletedRows > 0n;
}

/** Disables or enables a client; disabling revokes every token issued to it (a trigger, 0005). */
/**
 * 128 random bits, base64url. Never starting with "-": an id is typed as a command-line
 * argument (`keymgr client show ID`), where a leading dash reads as an option.
 */
function generateClientId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

export async function setClientDisabled(db: Db, clientId: string, disabled: boolean): Promise<boolean> {
  const result = await db.updateTable('clients').set({ disabled, updated_at: new Date() }).where('client_id', '=', clientId).executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** Replaces the secret; the old one stops working on the next request of every instance. */
export async function rotateClientSecret(db: Db, clientId: string): Promise<string | undefined> {
  const clientSecret = generateClientSecret();
  const result = await db.updateTable('clients')
    .set({ secret_sha256: hashClientSecret(clientSecret), secret_created_at: new Date(), updated_at: new Date() })
    .where('client_id', '=', clientId)
    .where('token_endpoint_auth_method', 'in', [...SECRET_AUTH_METHODS])
    .executeTakeFirst();
  return result.numUpdatedRows > 0n ? clientSecret : undefined;
}

/** What operators see of a client: never the secret digest. */
export function describeClient(row: ClientRow) {
  return {
    client_id: row.client_id,
    name: row.name,
    grant_types: row.grant_types,
    scope: row.scope,
    redirect_uris: row.redirect_uris,
    token_endpoint_auth_method: row.token_endpoint_auth_method,
    access_token_format: row.access_token_format,
    introspect_any: row.introspect_any,
    introspect_audiences: row.introspect_audiences,
    application_type: row.application_type,
    first_party: row.first_party,
    ...(row.tls_client_auth_subject_dn ? { tls_client_auth_subject_dn: row.tls_client_auth_subject_dn } : {}),
    ...(row.tls_client_auth_san_dns ? { tls_client_auth_san_dns: row.tls_client_auth_san_dns } : {}),
    disabled: row.disabled,
    secret_created_at: row.secret_created_at?.toISOString() ?? null,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}
