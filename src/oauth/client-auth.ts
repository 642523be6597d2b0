// Client authentication for the endpoints we serve ourselves (/introspect, /revoke), with the
// same rules oidc-provider applies at /token: a client registered with a secret may present it
// by Basic or in the body (oidc-provider treats the two as one family), the secret is compared
// as a digest in constant time, and every failure looks the same.
import { errors } from 'oidc-provider';
import type { Db } from '../db/database.ts';
import type { ClientRow } from '../db/types.ts';
import { clientSecretMatches, findClientById, usesSecret } from '../store/clients.ts';

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

interface PresentedCredentials {
  method: 'client_secret_basic' | 'client_secret_post';
  clientId: string;
  clientSecret: string;
}

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
  if (postSecret === null) throw new ClientAuthFailed();
  return { method: 'client_secret_post', clientId: postId, clientSecret: postSecret };
}

export async function authenticateClient(db: Db, authorization: string | undefined, form: URLSearchParams): Promise<ClientRow> {
  const presented = presentedCredentials(authorization, form);
  const fail = presented.method === 'client_secret_basic'
    ? () => new BasicAuthInvalidClient('client authentication failed')
    : () => new ClientAuthFailed();
  const client = await findClientById(db, presented.clientId);
  // Compare even for an unknown client, so that timing does not reveal which client ids exist.
  const secretOk = clientSecretMatches(presented.clientSecret, client?.secret_sha256 ?? null);
  if (!client || client.disabled || !secretOk) throw fail();
  if (!usesSecret(client.token_endpoint_auth_method)) throw fail();
  return client;
}
