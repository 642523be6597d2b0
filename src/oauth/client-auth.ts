// Client authentication for the endpoints we serve ourselves (/introspect, /revoke), with the
// same rules oidc-provider applies at /token: the method used must be the client's registered
// one, the secret is compared as a digest in constant time, and every failure looks the same.
import { errors } from 'oidc-provider';
import type { Db } from '../db/database.ts';
import type { ClientRow } from '../db/types.ts';
import { clientSecretMatches, findClientById, usesSecret } from '../store/clients.ts';

export class BasicAuthInvalidClient extends errors.InvalidClient {
  /** RFC 6749 §5.2: a client that tried the Authorization header gets a 401 challenge. */
  readonly challenge = 'Basic realm="keymanager", charset="UTF-8"';
}

interface PresentedCredentials {
  method: 'client_secret_basic' | 'client_secret_post';
  clientId: string;
  clientSecret: string;
}

function decodeFormComponent(s: string): string {
  return decodeURIComponent(s.replace(/\+/g, ' '));
}

export function presentedCredentials(authorization: string | undefined, form: URLSearchParams): PresentedCredentials {
  const postId = form.get('client_id');
  const postSecret = form.get('client_secret');
  if (authorization !== undefined) {
    if (postSecret !== null) throw new errors.InvalidRequest('client authentication must only be provided using one mechanism');
    const match = /^Basic ([A-Za-z0-9+/]+={0,2})$/i.exec(authorization.trim());
    const decoded = match ? Buffer.from(match[1] ?? '', 'base64').toString('utf8') : '';
    const colon = decoded.indexOf(':');
    if (colon <= 0) throw new BasicAuthInvalidClient('invalid authorization header value format');
    try {
      // RFC 6749 §2.3.1: both parts are form-urlencoded before being joined.
      const clientId = decodeFormComponent(decoded.slice(0, colon));
      const clientSecret = decodeFormComponent(decoded.slice(colon + 1));
      if (postId !== null && postId !== clientId) throw new errors.InvalidRequest('mismatch in body and authorization client ids');
      return { method: 'client_secret_basic', clientId, clientSecret };
    } catch (err) {
      if (err instanceof errors.InvalidRequest) throw err;
      throw new BasicAuthInvalidClient('client_id and client_secret in the authorization header are not properly encoded');
    }
  }
  if (postId === null) throw new errors.InvalidRequest('no client authentication mechanism provided');
  if (postSecret === null) throw new errors.InvalidClient('client authentication failed');
  return { method: 'client_secret_post', clientId: postId, clientSecret: postSecret };
}

export async function authenticateClient(db: Db, authorization: string | undefined, form: URLSearchParams): Promise<ClientRow> {
  const presented = presentedCredentials(authorization, form);
  const fail = presented.method === 'client_secret_basic'
    ? () => new BasicAuthInvalidClient('client authentication failed')
    : () => new errors.InvalidClient('client authentication failed');
  const client = await findClientById(db, presented.clientId);
  // Compare even for an unknown client, so that timing does not reveal which client ids exist.
  const secretOk = clientSecretMatches(presented.clientSecret, client?.secret_sha256 ?? null);
  if (!client || client.disabled || !secretOk) throw fail();
  if (!usesSecret(client.token_endpoint_auth_method) || client.token_endpoint_auth_method !== presented.method) throw fail();
  return client;
}
