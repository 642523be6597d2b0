// Client authentication for the endpoints we serve ourselves (/introspect, /revoke), with the
// same rules oidc-provider applies at /token: a client registered with a secret may present it
// by Basic or in the body (oidc-provider treats the two as one family), the secret is compared
// as a digest in constant time, and every failure looks the same.
import { errors } from 'oidc-provider';
import type { Db } from '../db/database.ts';
import type { ClientRow } from '../db/types.ts';
import { clientSecretMatches, findClientById, usesSecret } from '../store/clients.ts';
import { certificateThumbprint, usableCertificatesOfClient } from '../store/certificates.ts';
import type { mtlsFeature } from './mtls.ts';
import type { Context } from 'koa';

/** invalid_client with 401, as oidc-provider answers a failed client authentication at /token. */
export class ClientAuthFailed extends errors.InvalidClient {
  constructor(description = 'client authentication failed') {
    super(description);
    this.status = 401;
    this.statusCode = 401;
  }
}

export class BasicAuthInvalidClient extends ClientAuthFailed {
  /** RFC 6749 §5.2: a client that tried the Authorization header gets a Basic challenge. */
  readonly challenge = 'Basic';
}

type PresentedCredentials =
  | { method: 'client_secret_basic' | 'client_secret_post'; clientId: string; clientSecret: string }
  /** Only a client_id: the client must be one that authenticates with its TLS certificate. */
  | { method: 'certificate'; clientId: string };

function decodeFormComponent(s: string): string {
  return decodeURIComponent(s.replace(/\+/g, ' '));
}

/**
 * The client id and secret of an `Authorization: Basic` header (RFC 6749 §2.3.1: each part is
 * form-urlencoded before being joined), or null when the header is not such a credential.
 */
export function parseBasicAuthorization(header: string): { clientId: string; clientSecret: string } | null {
  const match = /^Basic ([A-Za-z0-9+/]+={0,2})$/i.exec(header.trim());
  if (!match) return null;
  const decoded = Buffer.from(match[1] ?? '', 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return null;
  try {
    return { clientId: decodeFormComponent(decoded.slice(0, colon)), clientSecret: decodeFormComponent(decoded.slice(colon + 1)) };
  } catch {
    return null;
  }
}

export function presentedCredentials(authorization: string | undefined, form: URLSearchParams): PresentedCredentials {
  const postId = form.get('client_id');
  const postSecret = form.get('client_secret');
  if (authorization !== undefined) {
    if (postSecret !== null) throw new errors.InvalidRequest('client authentication must only be provided using one mechanism');
    const basic = parseBasicAuthorization(authorization);
    if (!basic) throw new BasicAuthInvalidClient('invalid authorization header value format');
    if (postId !== null && postId !== basic.clientId) throw new errors.InvalidRequest('mismatch in body and authorization client ids');
    return { method: 'client_secret_basic', ...basic };
  }
  if (postId === null) throw new errors.InvalidRequest('no client authentication mechanism provided');
  if (postSecret === null) return { method: 'certificate', clientId: postId };
  return { method: 'client_secret_post', clientId: postId, clientSecret: postSecret };
}

/** The certificate checks of RFC 8705 §2 (src/oauth/mtls.ts), shared with /token. */
export type CertificateCheck = ReturnType<typeof mtlsFeature>;

async function certificateAuthenticates(db: Db, client: ClientRow, check: CertificateCheck, ctx: Context): Promise<boolean> {
  const cert = check.getCertificate(ctx);
  if (!cert) return false;
  if (client.token_endpoint_auth_method === 'self_signed_tls_client_auth') {
    const thumbprint = certificateThumbprint(cert);
    return (await usableCertificatesOfClient(db, client.client_id)).some((c) => c.thumbprint_sha256 === thumbprint);
  }
  if (client.token_endpoint_auth_method === 'tls_client_auth') {
    if (!check.certificateAuthorized(ctx)) return false;
    if (client.tls_client_auth_subject_dn) return check.certificateSubjectMatches(ctx, 'tls_client_auth_subject_dn', client.tls_client_auth_subject_dn);
    if (client.tls_client_auth_san_dns) return check.certificateSubjectMatches(ctx, 'tls_client_auth_san_dns', client.tls_client_auth_san_dns);
  }
  return false;
}

export async function authenticateClient(db: Db, check: CertificateCheck, ctx: Context, form: URLSearchParams): Promise<ClientRow> {
  const presented = presentedCredentials(ctx.get('authorization') || undefined, form);
  const fail = presented.method === 'client_secret_basic'
    ? () => new BasicAuthInvalidClient('client authentication failed')
    : () => new ClientAuthFailed();
  const client = await findClientById(db, presented.clientId);
  if (presented.method === 'certificate') {
    if (!client || client.disabled || !(await certificateAuthenticates(db, client, check, ctx))) throw fail();
    return client;
  }
  // Compare even for an unknown client, so that timing does not reveal which client ids exist.
  const secretOk = clientSecretMatches(presented.clientSecret, client?.secret_sha256 ?? null);
  if (!client || client.disabled || !secretOk) throw fail();
  if (!usesSecret(client.token_endpoint_auth_method)) throw fail();
  return client;
}
