// How a clients row looks to oidc-provider. The secret handed over is the stored digest;
// Client#compareClientSecret (set in provider.ts) hashes what the client presents before the
// constant-time comparison, so the clear secret is never needed.
import type { AdapterPayload, ClientAuthMethod } from 'oidc-provider';
import type { ClientRow } from '../db/types.ts';
import { usesSecret } from '../store/clients.ts';

/** Our own client metadata, carried through oidc-provider's extraClientMetadata. */
export const EXTRA_CLIENT_METADATA = ['km_allowed_scope', 'km_access_token_format', 'km_introspect_any', 'km_first_party'] as const;

export function clientMetadataFromRow(row: ClientRow): AdapterPayload {
  const grantTypes = row.grant_types;
  return {
    client_id: row.client_id,
    client_name: row.name,
    ...(usesSecret(row.token_endpoint_auth_method) && row.secret_sha256 ? { client_secret: row.secret_sha256 } : {}),
    token_endpoint_auth_method: row.token_endpoint_auth_method as ClientAuthMethod,
    grant_types: grantTypes,
    response_types: grantTypes.includes('authorization_code') ? ['code'] : [],
    redirect_uris: row.redirect_uris,
    application_type: row.application_type,
    km_allowed_scope: row.scope,
    km_access_token_format: row.access_token_format,
    km_introspect_any: row.introspect_any,
    km_first_party: row.first_party,
  };
}
