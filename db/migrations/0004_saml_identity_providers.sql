-- SAML 2.0 bearer assertions (RFC 7522): trusted identity providers and the replay cache.
-- Forward-only and frozen once landed.

CREATE TABLE saml_identity_providers (
  entity_id          text PRIMARY KEY CHECK (length(entity_id) BETWEEN 1 AND 1024),
  -- PEM certificates whose keys may sign this IdP's assertions (several for rollover).
  -- Keys or certificates carried inside an assertion are never used.
  certificates       text[] NOT NULL CHECK (cardinality(certificates) >= 1),
  enabled            boolean NOT NULL DEFAULT true,
  -- false: NameID must be the username of an existing user; true: create the user on first use
  jit_provisioning   boolean NOT NULL DEFAULT false,
  jit_default_roles  text[] NOT NULL DEFAULT '{}',
  -- NULL: any client with the grant may use this IdP; otherwise only these client ids
  allowed_clients    text[],
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Each assertion ID is accepted once per IdP until the assertion expires (RFC 7522 §3).
CREATE TABLE saml_assertion_ids (
  idp_entity_id  text NOT NULL,
  assertion_id   text NOT NULL,
  expires_at     timestamptz NOT NULL,
  used_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (idp_entity_id, assertion_id)
);
CREATE INDEX saml_assertion_ids_expires_idx ON saml_assertion_ids (expires_at);
