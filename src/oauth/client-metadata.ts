// How a clients row looks to oidc-provider. The secret handed over is the stored digest;
// Client#compareClientSecret (set in provider.ts) hashes what the client presents before the
// constant-time comparison, so the clear secret is never needed.
import { X509Certificate } from 'node:crypto';
import type { AdapterPayload, ClientAuthMethod } from 'oidc-provider';
import type { ClientRow } from '../db/types.ts';
import { usesSecret } from '../store/clients.ts';
import type { CertificateRow } from '../store/certificates.ts';

function jwkOfCertificate(row: CertificateRow) {
  const cert = new X509Certificate(row.pem);
  return { ...cert.publicKey.export({ format: 'jwk' }), 'x5t#S256': row.thumbprint_sha256, x5c: [cert.raw.toString('base64')] };
}

/** Our own client metadata, carried through oidc-provider's extraClientMetadata. */
export const EXTRA_CLIENT_METADATA = ['km_allowed_scope', 'km_access_token_format', 'km_introspect_any', 'km_first_party'] as const;

/**
 * `certificates`: the client's usable certificates, for self_signed_tls_client_auth, which
 * oidc-provider matches by the `x5t#S256` of the client's JWKS (RFC 8705 §2.2).
 */
export function clientMetadataFromRow(row: ClientRow, certificates: CertificateRow[] = []): AdapterPayload {
  const grantTypes = row.grant_types;
  const certificateAuth = row.token_endpoint_auth_method === 'tls_client_auth' || row.token_endpoint_auth_method === 'self_signed_tls_client_auth';
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
    // RFC 8705 §3: a client that authenticates with a certificate gets tokens bound to it.
    ...(certificateAuth ? { tls_client_certificate_bound_access_tokens: true } : {}),
    ...(row.tls_client_auth_subject_dn ? { tls_client_auth_subject_dn: row.tls_client_auth_subject_dn } : {}),
    ...(row.tls_client_auth_san_dns ? { tls_client_auth_san_dns: row.tls_client_auth_san_dns } : {}),
    ...(row.token_endpoint_auth_method === 'self_signed_tls_client_auth' ? { jwks: { keys: certificates.map(jwkOfCertificate) } } : {}),
  };
}
