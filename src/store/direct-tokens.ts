// Long-lived "direct" access tokens for gateways (the WSO2 document's configured token):
// `keymgr token issue --client ID --scope introspect --ttl SECONDS` writes one opaque
// client token, as the client-credentials grant would — scopes limited to the client's
// allow-list and the registry, stored by digest only — and prints its value once.
import { randomBytes } from 'node:crypto';
import type { Db } from '../db/database.ts';
import { findClientById } from './clients.ts';
import { findScopes } from './scopes.ts';
import { upsertModel } from './tokens.ts';

export class DirectTokenError extends Error {}

/** Ten years: long-lived, but with an end a database can hold. */
export const MAX_DIRECT_TOKEN_TTL = 10 * 365 * 24 * 3600;

export async function issueDirectToken(
  db: Db,
  { clientId, scope, ttlSeconds, audience }: { clientId: string; scope: string[]; ttlSeconds: number; audience: string },
): Promise<{ token: string; expiresAt: Date; scope: string }> {
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_DIRECT_TOKEN_TTL) {
    throw new DirectTokenError(`--ttl must be a whole number of seconds from 1 to ${MAX_DIRECT_TOKEN_TTL}`);
  }
  const client = await findClientById(db, clientId);
  if (!client) throw new DirectTokenError(`no client ${clientId}`);
  if (client.disabled) throw new DirectTokenError(`client ${clientId} is disabled`);
  // RFC 6749 §4.4: tokens that act for the client itself are for confidential clients only.
  if (client.token_endpoint_auth_method === 'none') throw new DirectTokenError(`client ${clientId} is a public client`);
  const requested = [...new Set(scope)];
  if (requested.length === 0) throw new DirectTokenError('give at least one scope (--scope)');
  const allowed = new Set(client.scope.split(' ').filter(Boolean));
  const notAllowed = requested.filter((s) => !allowed.has(s));
  if (notAllowed.length) throw new DirectTokenError(`client ${clientId} is not allowed the scope(s) ${notAllowed.join(', ')} (its allow-list: ${client.scope || 'empty'})`);
  const registered = await findScopes(db, requested);
  const unregistered = requested.filter((s) => !registered.has(s));
  if (unregistered.length) throw new DirectTokenError(`scope not registered: ${unregistered.join(', ')}`);

  // The form of the engine's opaque tokens: 256 random bits, base64url.
  const token = randomBytes(32).toString('base64url');
  const iat = Math.floor(Date.now() / 1000);
  const expiresAt = new Date((iat + ttlSeconds) * 1000);
  const scopeText = requested.join(' ');
  await upsertModel(db, token, {
    kind: 'ClientCredentials',
    format: 'opaque',
    clientId,
    scope: scopeText,
    expiresAt,
    payload: { kind: 'ClientCredentials', clientId, scope: scopeText, aud: audience, iat, exp: iat + ttlSeconds, extra: {} },
  });
  return { token, expiresAt, scope: scopeText };
}
