-- Core schema: clients, tokens (every oidc-provider model) and client certificates.
-- Forward-only and frozen once landed: later changes go into new files.

CREATE TABLE clients (
  client_id                    text PRIMARY KEY,
  name                         text NOT NULL,
  -- hex SHA-256 of the server-generated secret; NULL for clients that do not use a secret
  secret_sha256                text CHECK (secret_sha256 ~ '^[0-9a-f]{64}$'),
  secret_created_at            timestamptz,
  token_endpoint_auth_method   text NOT NULL DEFAULT 'client_secret_basic'
    CHECK (token_endpoint_auth_method IN ('client_secret_basic', 'client_secret_post', 'none',
                                          'tls_client_auth', 'self_signed_tls_client_auth')),
  grant_types                  text[] NOT NULL DEFAULT '{client_credentials}',
  redirect_uris                text[] NOT NULL DEFAULT '{}',
  scope                        text NOT NULL DEFAULT '',
  access_token_format          text NOT NULL DEFAULT 'opaque' CHECK (access_token_format IN ('opaque', 'jwt')),
  introspect_any               boolean NOT NULL DEFAULT false,
  tls_client_auth_subject_dn   text,
  tls_client_auth_san_dns      text,
  disabled                     boolean NOT NULL DEFAULT false,
  created_at                   timestamptz NOT NULL DEFAULT now(),
  updated_at                   timestamptz NOT NULL DEFAULT now(),
  CHECK (token_endpoint_auth_method NOT IN ('client_secret_basic', 'client_secret_post') OR secret_sha256 IS NOT NULL)
);

CREATE TABLE tokens (
  -- hex SHA-256 of the oidc-provider id; for tokens and codes the id is the value itself
  id_sha256     text PRIMARY KEY CHECK (id_sha256 ~ '^[0-9a-f]{64}$'),
  kind          text NOT NULL,
  format        text NOT NULL DEFAULT 'opaque' CHECK (format IN ('opaque', 'jwt')),
  client_id     text REFERENCES clients (client_id) ON DELETE CASCADE,
  account_id    text,
  grant_id      text,
  uid           text,
  scope         text,
  issued_at     timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz,
  consumed_at   timestamptz,
  revoked_at    timestamptz,
  payload       jsonb NOT NULL
);
CREATE INDEX tokens_grant_id_idx ON tokens (grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX tokens_uid_idx ON tokens (uid) WHERE uid IS NOT NULL;
CREATE INDEX tokens_expires_at_idx ON tokens (expires_at);
CREATE INDEX tokens_client_id_idx ON tokens (client_id);

CREATE TABLE client_certificates (
  id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  client_id          text NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
  alias              text NOT NULL,
  pem                text NOT NULL,
  -- base64url SHA-256 of the DER certificate, as in RFC 8705 x5t#S256
  thumbprint_sha256  text NOT NULL,
  subject_dn         text NOT NULL,
  issuer_dn          text NOT NULL,
  san_dns            text[] NOT NULL DEFAULT '{}',
  san_uri            text[] NOT NULL DEFAULT '{}',
  san_ip             text[] NOT NULL DEFAULT '{}',
  san_email          text[] NOT NULL DEFAULT '{}',
  not_before         timestamptz NOT NULL,
  not_after          timestamptz NOT NULL,
  tier               text,
  created_at         timestamptz NOT NULL DEFAULT now(),
  removed_at         timestamptz
);
CREATE UNIQUE INDEX client_certificates_alias_uq ON client_certificates (client_id, alias) WHERE removed_at IS NULL;
CREATE UNIQUE INDEX client_certificates_thumbprint_uq ON client_certificates (thumbprint_sha256) WHERE removed_at IS NULL;
CREATE INDEX client_certificates_not_after_idx ON client_certificates (not_after) WHERE removed_at IS NULL;
