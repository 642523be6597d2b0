-- The authorization code flow: native applications (loopback redirect URIs with any port,
-- RFC 8252 §7.3), first-party clients that skip the consent page, and remembered consent.
-- Forward-only and frozen once landed.

ALTER TABLE clients
  ADD COLUMN application_type text NOT NULL DEFAULT 'web' CHECK (application_type IN ('web', 'native')),
  ADD COLUMN first_party boolean NOT NULL DEFAULT false;

-- What a user agreed to let a client do; asked again only for scopes beyond these.
CREATE TABLE consents (
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  client_id   text NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
  scopes      text[] NOT NULL DEFAULT '{}',
  granted_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, client_id)
);
CREATE INDEX consents_client_idx ON consents (client_id);
