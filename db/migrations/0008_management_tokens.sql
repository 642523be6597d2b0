-- The management API's token store (WSO2's in-memory TokenStore, here shared by every
-- instance): one row per management token issued by GET /management/login, by the SHA-256
-- digest of the token, never the token itself. A bearer counts only while its row is live;
-- logout revokes it everywhere at once. Rows expired or revoked are deleted by the cleanup
-- job (management.token_store.cleanup_interval).
CREATE TABLE management_tokens (
  id_sha256     text PRIMARY KEY CHECK (id_sha256 ~ '^[0-9a-f]{64}$'),
  username      text NOT NULL,
  roles         text[] NOT NULL,
  -- Digest of the user's credentials and roles when the token was issued: a token stops
  -- counting when the user's password or roles change, or the user is removed and re-added.
  credential_sha256 text NOT NULL CHECK (credential_sha256 ~ '^[0-9a-f]{64}$'),
  issued_at     timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz NOT NULL,
  -- Least recently used goes first when a login finds the store full.
  last_used_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at    timestamptz
);
CREATE INDEX management_tokens_live_lru_idx ON management_tokens (last_used_at) WHERE revoked_at IS NULL;
CREATE INDEX management_tokens_expires_idx ON management_tokens (expires_at);
