// Client authentication for the endpoints we serve ourselves (/introspect, /revoke), with the
// same rules oidc-provider applies at /token: a client registered with a secret may present it
// by Basic or in the body (oidc-provider treats the two as one family), the secret is compared
// as a digest in constant time, and every failure looks the same.
import { errors } from 'oidc-provider';
import type { ClientRow } from '../db/types.ts';
import { clientSecretMatches, usesSecret } from '../store/clients.ts';
import { certificateThumbprint, type CertificateRow } from '../store/certificates.ts';
import type { ClientDirectory } from './client-directory.ts';
import type { mtlsFeature } from './mtls.ts';
import type { Context } from 'koa';

/** How a caller tried to authenticate as a client: the label of km_client_auth_failures_total. */
export type ClientAuthMethodTried = 'client_secret_basic' | 'client_secret_post' | 'tls_client_auth' | 'self_signed_tls_client_auth' | 'none';

/** invalid_client with 401, as oidc-provider answers a failed client authentication at /token. */
export class ClientAuthFailed extends errors.InvalidClient {
  readonly method: ClientAuthMethodTried;

  constructor(description: string, method: ClientAuthMethodTried) {
    super(description);
    this.status = 401;
    this.statusCode = 401;
    this.method = method;
  }
}

export class BasicAuthInvalidClient extends ClientAuthFailed {
  /** RFC 6749 §5.2: a client that tried the Authorization header gets a Basic challenge. */
  readonly challenge = 'Basic';

  constructor(description: string, method: ClientAuthMethodTried = 'client_secret_basic') {
    super(description, method);
  }
}

type PresentedCredentials =
  | { method: 'client_secret_basic' | 'client_secret_post'; clientId: string; clientSecret: string }
  /** Only a client_id: a public client (where allowed), or one that authenticates with its TLS certificate. */
  | { method: 'client_id'; clientId: string };

const MALFORMED = 'invalid authorization header value format';
const NOT_ENCODED = 'client_id and client_secret in the authorization header are not properly encoded';
const NO_SECRET = 'client_secret must be provided in the Authorization header';
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const ENCODED = /[%+]/;

/** RFC 6749 §2.3.1 form-urlencoding; a malformed escape, invalid UTF-8 or NUL is undefined. */
function decodeCredential(s: string): string | undefined {
  // Nothing encoded (the usual generated id and secret): nothing to decode. Every request with
  // Basic credentials passes here at the edge (input-guard.ts), so this spares it the decoder.
  if (!ENCODED.test(s)) return s.includes('\0') ? undefined : s;
  try {
    const decoded = decodeURIComponent(s.replace(/\+/g, ' '));
    return decoded.includes('\0') ? undefined : decoded;
  } catch {
    return undefined; // URIError: a bad escape, bytes that are not UTF-8, or an encoded surrogate
  }
}

/**
 * The client id and secret of an `Authorization: Basic` header (RFC 6749 §2.3.1: each part is
 * form-urlencoded before being joined), or BasicAuthInvalidClient saying what is wrong with it.
 * Both parts are valid UTF-8 without NUL — storable, so safe to look up — and neither is empty.
 */
export function basicCredentials(header: string): { clientId: string; clientSecret: string } {
  const match = /^Basic ([A-Za-z0-9+/]+={0,2})$/i.exec(header.trim());
  if (!match) throw new BasicAuthInvalidClient(MALFORMED);
  let decoded: string;
  try {
    decoded = strictUtf8.decode(Buffer.from(match[1] ?? '', 'base64'));
  } catch {
    throw new BasicAuthInvalidClient(NOT_ENCODED);
  }
  const colon = decoded.indexOf(':');
  if (colon <= 0) throw new BasicAuthInvalidClient(MALFORMED);
  const clientId = decodeCredential(decoded.slice(0, colon));
  const clientSecret = decodeCredential(decoded.slice(colon + 1));
  if (clientId === undefined || clientSecret === undefined) throw new BasicAuthInvalidClient(NOT_ENCODED);
  if (!clientId) throw new BasicAuthInvalidClient(MALFORMED);
  if (!clientSecret) throw new BasicAuthInvalidClient(NO_SECRET);
  return { clientId, clientSecret };
}

/** As basicCredentials, but null instead of the error. */
export function parseBasicAuthorization(header: string): { clientId: string; clientSecret: string } | null {
  try {
    return basicCredentials(header);
  } catch (err) {
    if (err instanceof BasicAuthInvalidClient) return null;
    throw err;
  }
}

export function presentedCredentials(authorization: string | undefined, form: URLSearchParams): PresentedCredentials {
  const postId = form.get('client_id');
  const postSecret = form.get('client_secret');
  if (authorization !== undefined) {
    if (postSecret !== null) throw new errors.InvalidRequest('client authentication must only be provided using one mechanism');
    const basic = basicCredentials(authorization);
    if (postId !== null && postId !== basic.clientId) throw new errors.InvalidRequest('mismatch in body and authorization client ids');
    return { method: 'client_secret_basic', ...basic };
  }
  // RFC 6749 §5.2: "no client authentication included" is invalid_client; the challenge says how.
  if (postId === null) throw new BasicAuthInvalidClient('no client authentication mechanism provided', 'none');
  if (postSecret === null) return { method: 'client_id', clientId: postId };
  return { method: 'client_secret_post', clientId: postId, clientSecret: postSecret };
}

/** The certificate checks of RFC 8705 §2 (src/oauth/mtls.ts), shared with /token. */
export type CertificateCheck = ReturnType<typeof mtlsFeature>;

function certificateAuthenticates(client: ClientRow, registered: CertificateRow[], check: CertificateCheck, ctx: Context): boolean {
  const cert = check.getCertificate(ctx);
  if (!cert) return false;
  if (client.token_endpoint_auth_method === 'self_signed_tls_client_auth') {
    const thumbprint = certificateThumbprint(cert);
    return registered.some((c) => c.thumbprint_sha256 === thumbprint);
  }
  if (client.token_endpoint_auth_method === 'tls_client_auth') {
    if (!check.certificateAuthorized(ctx)) return false;
    if (client.tls_client_auth_subject_dn) return check.certificateSubjectMatches(ctx, 'tls_client_auth_subject_dn', client.tls_client_auth_subject_dn);
    if (client.tls_client_auth_san_dns) return check.certificateSubjectMatches(ctx, 'tls_client_auth_san_dns', client.tls_client_auth_san_dns);
  }
  return false;
}

export interface ClientAuthOptions {
  /**
   * Whether a public client (auth method `none`) may call with its client_id alone. RFC 7009
   * §2.1 lets it revoke its own tokens; RFC 7662 §2.1 wants an authorized caller, so
   * introspection keeps the default.
   */
  allowPublic?: boolean;
}

export async function authenticateClient(
  clients: ClientDirectory,
  check: CertificateCheck,
  ctx: Context,
  form: URLSearchParams,
  { allowPublic = false }: ClientAuthOptions = {},
): Promise<ClientRow> {
  const presented = presentedCredentials(ctx.get('authorization') || undefined, form);
  const entry = await clients.find(presented.clientId);
  const client = entry?.row;
  // A client_id alone is a public client's or a certificate's: which one, its registration says.
  const method: ClientAuthMethodTried = presented.method !== 'client_id' ? presented.method
    : client?.token_endpoint_auth_method === 'tls_client_auth' || client?.token_endpoint_auth_method === 'self_signed_tls_client_auth' ? client.token_endpoint_auth_method
      : 'none';
  const fail = presented.method === 'client_secret_basic'
    ? () => new BasicAuthInvalidClient('client authentication failed')
    : () => new ClientAuthFailed('client authentication failed', method);
  if (presented.method === 'client_id') {
    if (!entry || !client || client.disabled) throw fail();
    const ok = client.token_endpoint_auth_method === 'none' ? allowPublic : certificateAuthenticates(client, entry.certificates, check, ctx);
    if (!ok) throw fail();
    return client;
  }
  // Compare even for an unknown client, so that timing does not reveal which client ids exist.
  const secretOk = clientSecretMatches(presented.clientSecret, client?.secret_sha256 ?? null);
  if (!client || client.disabled || !secretOk) throw fail();
  if (!usesSecret(client.token_endpoint_auth_method)) throw fail();
  return client;
}
